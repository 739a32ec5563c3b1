"""Event subscribers for the watch benchmark, in a process of their own.

    python -m bench._readers raw|sdk URL TOKEN COUNT

opens COUNT streams of ``GET /v1/events`` (admin token: every event), prints ``READY``
once every one has its response headers, and reads until its stdin closes; then it
prints ``DONE {json}``: per reader the events it parsed, and whether every ``id`` it
saw was greater than the one before (``ordered``).

``raw``: plain non-blocking sockets in one ``epoll`` loop and a small parser, so that
the readers cost little next to the registry: HTTP/1.1 chunked framing undone, then per
chunk the events counted (``data:`` lines) and the ``id:`` lines read with one
compiled regex, both in C (``bytes.count``, ``re.findall``). Every byte is read; every
event is counted; ids are checked in order.

``c`` (not run through this module): ``bench/_reader.c``, built with the system's cc,
one process and one epoll loop that copies every byte of every stream to a file in a
tmpfs folder and parses nothing; ``verify`` checks each file after the measured run
(chunked framing undone, every event parsed, its ``rev``, ``part``/``parts`` and ``id``
checked: revisions in order with no gap, since the admin sees every one). So reading
costs the load generator's CPU only the copies, and checking costs it nothing while
wrk runs.

``sdk``: COUNT ``AsyncPageHolderClient.watch()`` loops, what an application would run
(every event parsed into an ``Event``, revisions held back until their last part); a
reader is ready once it got its first event (the benchmark makes changes until then).
"""

from __future__ import annotations

import asyncio
import json
import re
import select
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

_ID = re.compile(rb"^id: (\d+)$", re.M)
_DATA = b"\ndata: "
#: The raw readers' pause between two polls (the server flushes every 25 ms).
PAUSE_S = 0.005


@dataclass
class Tally:
    events: int = 0
    last_id: int = -1
    ordered: bool = True


class RawReader(Tally):
    """One stream on a plain socket; ``feed`` takes what ``recv`` returned."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock
        self.pending = b""  # chunked body bytes not yet unframed
        self.text = b"\n"  # event text not yet ended by a blank line (\n: for _DATA)

    def feed(self, data: bytes) -> None:
        pending = self.pending + data
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
        self.pending = pending
        if not body:
            return
        text = self.text + b"".join(body)
        cut = text.rfind(b"\n\n")
        if cut < 0:
            self.text = text
            return
        whole, self.text = text[: cut + 2], b"\n" + text[cut + 2 :]
        self.events += whole.count(_DATA)
        ids = list(map(int, _ID.findall(whole)))
        if ids:
            # in order: never below the last one (the first bare id repeats nothing)
            if ids[0] < self.last_id or ids != sorted(ids):
                self.ordered = False
            self.last_id = ids[-1]


def open_raw(host: str, port: int, token: str) -> RawReader:
    """Connect, ask for the stream, read its head; the socket is then non-blocking."""
    sock = socket.create_connection((host, port))
    sock.sendall(
        f"GET /v1/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise RuntimeError(f"closed before the head: {head!r}")
        head += chunk
    head, _, rest = head.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") or b"transfer-encoding: chunked" not in head.lower():
        raise RuntimeError(f"unexpected answer: {head!r}")
    sock.setblocking(False)
    reader = RawReader(sock)
    reader.feed(rest)
    return reader


def run_raw(host: str, port: int, token: str, count: int) -> list[Tally]:
    """Every stream in one epoll loop on this thread, until stdin closes, waking at
    most every ``PAUSE_S``: a burst of sends from the server (one per stream per flush)
    is read in one or two wake-ups, not one per stream, so that the readers take
    little CPU (and few preemptions) from the load generator beside them."""
    readers = {}
    for _ in range(count):
        reader = open_raw(host, port, token)
        readers[reader.sock.fileno()] = reader
    print("READY", flush=True)
    poll = select.epoll()
    for fd in readers:
        poll.register(fd, select.EPOLLIN)
    stdin = sys.stdin.fileno()
    poll.register(stdin, select.EPOLLIN | select.EPOLLHUP)
    while True:
        for fd, _ in poll.poll():
            if fd == stdin:
                return list(readers.values())
            reader = readers[fd]
            try:
                data = reader.sock.recv(1 << 18)
            except BlockingIOError:
                continue
            if not data:
                poll.unregister(fd)
                continue
            reader.feed(data)
        time.sleep(PAUSE_S)  # the kernel's socket buffers hold what comes meanwhile


C_SOURCE = Path(__file__).with_name("_reader.c")


def build_c_reader(folder: Path) -> Path | None:
    """``_reader.c`` compiled into ``folder`` (None: no cc on this machine)."""
    cc = shutil.which("cc")
    if cc is None:
        return None
    binary = folder / "_reader"
    subprocess.run([cc, "-O2", "-o", str(binary), str(C_SOURCE)], check=True, timeout=120)
    return binary


@dataclass
class Checked(Tally):
    """What ``verify`` found in one stream: ``ordered`` is False with ``problem`` said."""

    first: int = -1  # the revision the stream started after (its bare id)
    problem: str = ""


def unchunk(raw: bytes) -> bytes:
    """The body of a recorded HTTP/1.1 response (head checked: 200, chunked), framing
    undone; a chunk cut off by the end of the recording is left out."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/1.1 200"):
        raise ValueError(f"unexpected answer: {head[:200]!r}")
    if b"transfer-encoding: chunked" not in head.lower():
        raise ValueError(f"not chunked: {head[:200]!r}")
    body: list[bytes] = []
    at, end = 0, len(rest)
    while at < end:  # bounded: every turn moves ``at`` forward or stops
        eol = rest.find(b"\r\n", at)
        if eol < 0:
            break
        size = int(rest[at:eol], 16)
        stop = eol + 2 + size
        if size == 0 or stop + 2 > end:
            break
        if rest[stop : stop + 2] != b"\r\n":
            raise ValueError(f"bad chunk framing at byte {stop}")
        body.append(rest[eol + 2 : stop])
        at = stop + 2
    return b"".join(body)


def verify(raw: bytes) -> Checked:
    """Every event of one recorded admin stream: counted, its data parsed; the parts of
    a revision numbered 1..parts with the ``id`` (= rev) on the last one only, and
    each revision the one after the last (an admin sees every revision). An event cut
    off by the end of the recording is not counted."""
    tally = Checked()
    text = unchunk(raw).decode()
    blocks = text.split("\n\n")[:-1]  # the last one: not ended (or empty)
    rev, part, parts = -1, 0, 0
    for block in blocks:
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                continue  # a keep-alive comment
            name, _, value = line.partition(": ")
            fields[name] = value
        if "data" not in fields:
            if "id" in fields:
                if tally.first >= 0:
                    return _bad(tally, f"a second bare id {fields['id']}")
                tally.first = rev = int(fields["id"])
                part = parts = 0
            continue
        data = json.loads(fields["data"])
        if data["type"] != fields.get("event"):
            return _bad(tally, f"event {fields.get('event')} with data of {data['type']}")
        if data["rev"] != rev:
            if part != parts:
                return _bad(tally, f"revision {rev} ended at part {part} of {parts}")
            if data["rev"] != rev + 1:
                return _bad(tally, f"revision {data['rev']} after {rev}")
            rev, part, parts = data["rev"], 0, data["parts"]
        if data["part"] != part + 1 or data["parts"] != parts:
            return _bad(tally, f"part {data['part']}/{data['parts']} after {part}/{parts}")
        part += 1
        last = part == parts
        if ("id" in fields) != last or (last and int(fields["id"]) != rev):
            return _bad(tally, f"id {fields.get('id')} on part {part}/{parts} of {rev}")
        tally.events += 1
        if last:
            tally.last_id = rev
    if tally.first < 0:
        return _bad(tally, "no bare id first")
    return tally


def _bad(tally: Checked, problem: str) -> Checked:
    tally.ordered = False
    tally.problem = problem
    return tally


async def sdk_reader(url: str, token: str, tally: Tally, ready: asyncio.Event) -> None:
    from pageholder.client import AsyncPageHolderClient

    async with AsyncPageHolderClient(url, token) as client:
        async for event in client.watch():
            ready.set()  # connected: the benchmark makes changes until every reader is
            tally.events += 1
            if event.rev < tally.last_id:
                tally.ordered = False
            tally.last_id = event.rev


async def run_sdk(url: str, token: str, count: int) -> list[Tally]:
    tallies = [Tally() for _ in range(count)]
    readies = [asyncio.Event() for _ in range(count)]
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
    return tallies


def main(kind: str, url: str, token: str, count: int) -> None:
    split = urlsplit(url)
    host, port = split.hostname or "127.0.0.1", split.port or 80
    if kind == "raw":
        tallies = run_raw(host, port, token, count)
    else:
        tallies = asyncio.run(run_sdk(url, token, count))
    done = {"events": [t.events for t in tallies], "ordered": all(t.ordered for t in tallies)}
    print("DONE " + json.dumps(done), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
