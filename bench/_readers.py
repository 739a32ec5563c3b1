"""Event subscribers for the watch benchmark, in a process of their own.

    python -m bench._readers raw|sdk URL TOKEN COUNT

opens COUNT streams of ``GET /v1/events`` (admin token: every event), prints ``READY``
once every one has its response headers, and reads until its stdin closes; then it
prints ``DONE {json}``: per reader the events it parsed, and whether every ``id`` it
saw was greater than the one before (``ordered``).

``raw``: one asyncio connection per reader and a small parser, so that the readers
cost little next to the registry: HTTP/1.1 chunked framing undone, then per chunk the
events counted (``data:`` lines) and the ``id:`` lines read with one compiled regex
each, all in C (``bytes.count``, ``re.findall``). Every byte is read; every event is
counted; ids are checked in order.

``sdk``: COUNT ``AsyncPageHolderClient.watch()`` loops, what an application would run
(every event parsed into an ``Event``, revisions held back until their last part); a
reader is ready once it got its first event (the benchmark makes changes until then).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit

_ID = re.compile(rb"^id: (\d+)$", re.M)
_DATA = b"\ndata: "


@dataclass
class Tally:
    events: int = 0
    last_id: int = -1
    ordered: bool = True


async def raw_reader(host: str, port: int, token: str, tally: Tally, ready: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET /v1/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") or b"transfer-encoding: chunked" not in head.lower():
        raise RuntimeError(f"unexpected answer: {head!r}")
    ready.set()
    pending = b""  # undelivered bytes of the chunked body
    text = b"\n"  # event text not yet ended by a blank line (a leading \n for _DATA)
    while True:
        data = await reader.read(1 << 16)
        if not data:
            return
        pending += data
        body: list[bytes] = []
        while True:  # undo the chunked framing: "<hex>\r\n<bytes>\r\n"
            eol = pending.find(b"\r\n")
            if eol < 0:
                break
            size = int(pending[:eol], 16)
            end = eol + 2 + size + 2
            if len(pending) < end:
                break
            body.append(pending[eol + 2 : end - 2])
            pending = pending[end:]
        if not body:
            continue
        text += b"".join(body)
        cut = text.rfind(b"\n\n")
        if cut < 0:
            continue
        whole, text = text[: cut + 2], b"\n" + text[cut + 2 :]
        tally.events += whole.count(_DATA)
        for digits in _ID.findall(whole):
            rev = int(digits)
            if rev < tally.last_id:  # the stream's first bare id repeats nothing
                tally.ordered = False
            tally.last_id = rev


async def sdk_reader(url: str, token: str, tally: Tally, ready: asyncio.Event) -> None:
    from pageholder.client import AsyncPageHolderClient

    async with AsyncPageHolderClient(url, token) as client:
        async for event in client.watch():
            ready.set()  # connected: the benchmark makes changes until every reader is
            tally.events += 1
            if event.rev < tally.last_id:
                tally.ordered = False
            tally.last_id = event.rev


async def run(kind: str, url: str, token: str, count: int) -> None:
    split = urlsplit(url)
    host, port = split.hostname or "127.0.0.1", split.port or 80
    tallies = [Tally() for _ in range(count)]
    readies = [asyncio.Event() for _ in range(count)]
    if kind == "raw":
        tasks = [
            asyncio.create_task(raw_reader(host, port, token, t, r))
            for t, r in zip(tallies, readies, strict=True)
        ]
    else:
        tasks = [
            asyncio.create_task(sdk_reader(url, token, t, r))
            for t, r in zip(tallies, readies, strict=True)
        ]
    for ready in readies:
        await ready.wait()
    print("READY", flush=True)
    await asyncio.to_thread(sys.stdin.read)  # until the benchmark closes our stdin
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    done = {"events": [t.events for t in tallies], "ordered": all(t.ordered for t in tallies)}
    print("DONE " + json.dumps(done), flush=True)


if __name__ == "__main__":
    asyncio.run(run(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
