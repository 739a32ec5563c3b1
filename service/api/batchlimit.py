"""A batch's entry count, read from its raw body before anything parses it.

A batch holds at most ``MAX_BATCH_ENTRIES`` entries (pages plus range pages). Checked
only after the body is validated, an 8 MiB batch of 300,000 pages costs the server
about two seconds of pydantic before its 413, and every other request waits them out.
``BatchEntryLimit`` counts the entries of a batch body with a few C-speed scans of
the bytes (``bytes.count``, a compiled regex, a handful of milliseconds for 8 MiB) and
answers 413 before the body reaches FastAPI, with the document the route would give.

The count trusts what a *valid* batch looks like: its only strings are its keys and a
holder name (no quotes, brackets or braces in either), so every ``{`` in the ``pages``
array is one page, and every range object has one plain integer ``nr_pages``. Whatever
the scan cannot be sure of (a key spelt with escapes, a key given twice, an
``nr_pages`` that is not a plain integer in range) makes it answer None, and the body
goes on to the route, whose own check after validation stays the rule. So a valid body
gets the same answer as before, only sooner; an invalid body that is over the limit
now gets 413 rather than 422: the count is checked first.
"""

from __future__ import annotations

import re
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pageholder.service.api import problems
from pageholder.service.core.rules import MAX_BATCH_ENTRIES, MAX_RANGE_PAGES
from pageholder.service.core.slices import pause

#: the routes whose bodies are batches
BATCH_PATHS: Final = frozenset({"/v1/holds/batch-set", "/v1/holds/batch-unset"})
#: bytes of ``ranges`` scanned between two yields to the event loop
SCAN_WINDOW: Final = 256 << 10

_ARRAY = re.compile(rb'"(pages|ranges)"\s*:\s*\[')
_NR_PAGES = re.compile(rb'"nr_pages"\s*:\s*(\d+)\s*[,}]')


def too_many(total: int) -> str:
    """The detail of the 413 for a batch of ``total`` entries (said once, here)."""
    return f"{total} entries; a batch holds at most {MAX_BATCH_ENTRIES}"


def _arrays(body: bytes) -> dict[bytes, tuple[int, int]] | None:
    """Where the ``pages`` and ``ranges`` arrays are: ``[start, end)`` inside their
    brackets; None if a key appears twice or an array is not closed."""
    found: dict[bytes, tuple[int, int]] = {}
    for match in _ARRAY.finditer(body):
        key = match.group(1)
        end = body.find(b"]", match.end())  # items of a valid batch hold no arrays
        if key in found or end < 0:
            return None
        found[key] = (match.end(), end)
    return found


async def count_entries(body: bytes) -> int | None:
    """Pages plus range pages of a batch body, or None when the scan cannot be sure.
    Cost: O(len(body)) in C, yielding to the loop every ``SCAN_WINDOW`` bytes of ranges.
    """
    arrays = _arrays(body)
    if arrays is None:
        return None
    total = 0
    if b"pages" in arrays:
        start, end = arrays[b"pages"]
        total += body.count(b"{", start, end)
    if b"ranges" in arrays:
        start, end = arrays[b"ranges"]
        objects = body.count(b"{", start, end)
        end = body.rfind(b"}", start, end) + 1  # past the last object, if any
        seen = 0
        while start < end:
            cut = body.rfind(b"}", start, min(end, start + SCAN_WINDOW)) + 1
            if cut <= start:  # one object longer than a window: not a valid range
                return None
            for digits in _NR_PAGES.findall(body, start, cut):
                nr_pages = int(digits)
                if not 1 <= nr_pages <= MAX_RANGE_PAGES:
                    return None  # invalid: the route answers 422 as it always did
                total += nr_pages
                seen += 1
            start = cut
            if start < end:
                await pause()
        if seen != objects:
            return None
    return total


class BatchEntryLimit:
    """Answers 413 to a batch body over ``MAX_BATCH_ENTRIES`` entries before it is
    parsed; any other request passes untouched. Sits inside ``AuthFirst`` and
    ``BodyLimit``: only an authenticated body of at most the size limit is read here."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in BATCH_PATHS
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # gone: let the app see it
                await self.app(scope, _replay([], message, receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        total = await count_entries(body)
        if total is not None and total > MAX_BATCH_ENTRIES:
            await problems.problem("payload_too_large", too_many(total))(scope, receive, send)
            return
        whole: Message = {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, _replay([whole], None, receive), send)


def _replay(messages: list[Message], last: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that gives ``messages`` (then ``last``) before the real one."""
    queue = list(messages) + ([last] if last is not None else [])

    async def replayed() -> Message:
        if queue:
            return queue.pop(0)
        return await receive()

    return replayed
