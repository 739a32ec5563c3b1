"""``json.loads`` of a big batch body, in slices.

``json.loads`` of a 65,536-entry batch (2.6 MB) is one C call: 12 ms on an idle
machine, 50-90 ms on a busy one, and every other request waits it out. ``loads`` parses
the same document in pieces, with a yield to the loop between them:

* the top-level object, key by key, with the standard decoder's own scanner
  (``JSONDecoder.scan_once``, what ``json.loads`` runs), so keys, strings, numbers,
  duplicate keys (the last one wins) and whitespace read exactly as there;
* a top-level array of objects (``pages``, ``ranges``) in windows of about ``WINDOW``
  characters, each one ``json.loads("[" + window + "]")``. A window ends after a ``}``
  followed by whitespace and ``,`` or ``]``. It starts where the real parse stands
  between two items of the array, so if the window parses as a complete array, the real
  parse was between two items at its end as well (a cut inside a string leaves the
  string unterminated; a cut inside a nested value leaves a bracket open: both fail),
  and its items are the real ones.

Whatever it cannot read this way (a window that does not parse, bytes that are not
UTF-8, any error) makes it answer None: the caller then takes the whole body the usual
way (FastAPI's ``json.loads`` and its error answers). What it answers is what
``json.loads`` answers.
"""

from __future__ import annotations

import json
import json.scanner
import re
from collections.abc import Callable
from typing import Any, Final

from pageholder.service.core.slices import Slices

#: characters of an array parsed per ``json.loads`` (~2,000 batch entries)
WINDOW: Final = 64 << 10

#: the scanner ``json.loads`` runs (the C one where there is one), for one value at an index
_scanner: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    json.JSONDecoder()  # type: ignore[arg-type]  # typeshed names the class, not a decoder
)
_WS = re.compile(r"[ \t\n\r]*")
#: the end of an array item that is an object: ``}``, whitespace, then ``,`` or ``]``
_CUT = re.compile(r"\}[ \t\n\r]*([,\]])")


class _Unsure(Exception):
    """The sliced reading cannot vouch for this text."""


def _scan(s: str, at: int) -> tuple[Any, int]:
    """One JSON value at ``at`` and the index after it (``StopIteration``, the scanner's
    "no value here", would be a RuntimeError out of a coroutine)."""
    try:
        return _scanner(s, at)
    except StopIteration:
        raise _Unsure from None


async def loads(body: bytes) -> Any | None:
    """``json.loads(body)``, parsed in slices, or None (see the module docstring).
    Cost: O(len(body)), in windows of ``WINDOW`` characters."""
    if json.detect_encoding(body) != "utf-8":
        return None
    try:
        text = body.decode("utf-8", "surrogatepass")  # as json.loads decodes bytes
        return await _document(text)
    except (_Unsure, ValueError, IndexError, RecursionError):
        return None


async def _document(s: str) -> Any:
    at = _WS.match(s, 0).end()  # type: ignore[union-attr]
    if s[at : at + 1] != "{":
        value, end = _scan(s, at)  # not an object: small, or not a batch at all
    else:
        value, end = await _object(s, at + 1)
    if _WS.match(s, end).end() != len(s):  # type: ignore[union-attr]
        raise _Unsure
    return value


async def _object(s: str, at: int) -> tuple[dict[str, Any], int]:
    """The object whose ``{`` is just before ``at``; returns it and the index after its
    ``}``."""
    found: dict[str, Any] = {}
    at = _WS.match(s, at).end()  # type: ignore[union-attr]
    if s[at] == "}":
        return found, at + 1
    slices = Slices()
    while True:
        if s[at] != '"':
            raise _Unsure
        key, at = _scan(s, at)
        at = _WS.match(s, at).end()  # type: ignore[union-attr]
        if s[at] != ":":
            raise _Unsure
        at = _WS.match(s, at + 1).end()  # type: ignore[union-attr]
        if s[at] == "[":
            found[key], at = await _array(s, at, slices)
        else:
            found[key], at = _scan(s, at)
        at = _WS.match(s, at).end()  # type: ignore[union-attr]
        if s[at] == "}":
            return found, at + 1
        if s[at] != ",":
            raise _Unsure
        at = _WS.match(s, at + 1).end()  # type: ignore[union-attr]


async def _array(s: str, opening: int, slices: Slices) -> tuple[list[Any], int]:
    """The array whose ``[`` is at ``opening``, in windows; returns it and the index
    after its ``]``."""
    at = _WS.match(s, opening + 1).end()  # type: ignore[union-attr]
    if s[at] != "{":
        value, end = _scan(s, opening)  # empty, or not an array of objects: one step
        return value, end
    items: list[Any] = []
    while True:
        cut = _CUT.search(s, at + WINDOW)
        window = None if cut is None else _window(s, at, cut.start() + 1)
        if window is None:  # past the array's end, or a cut that was no boundary
            cut = _CUT.search(s, at)
            while cut is not None and cut.group(1) != "]":
                cut = _CUT.search(s, cut.end())
            if cut is None:
                raise _Unsure
            window = _window(s, at, cut.start() + 1)
            if window is None:
                raise _Unsure
        assert cut is not None
        items.extend(window)
        if cut.group(1) == "]":
            return items, cut.end()
        at = _WS.match(s, cut.end()).end()  # type: ignore[union-attr]
        if slices.over():
            await slices.pause()


def _window(s: str, start: int, end: int) -> list[Any] | None:
    try:
        items: list[Any] = json.loads("[" + s[start:end] + "]")
    except ValueError:
        return None
    return items
