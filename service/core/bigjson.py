"""Big JSON encoded in slices.

``json.dumps`` of a 65,536-result batch answer or of an offline report with 32,768
failures is tens of milliseconds in one step, and every other request waits for it.
``encode_text`` writes the document around its one big list itself and encodes that
list ``PART`` items at a time, yielding to the event loop in between. The text is that
of ``json.dumps(..., separators=(",", ":"), ensure_ascii=False)`` except that the big
list's key comes last in each object on its path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pageholder.service.core.slices import pause

#: items of the big list encoded in one step (a report's 1024 failures: about 1 ms)
PART = 1024


def dumps(value: Any) -> str:
    """Compact JSON, as every part of ``encode_text`` is written."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


async def encode(document: dict[str, Any], path: Sequence[str]) -> bytes:
    """``encode_text`` as UTF-8, for an answer's body."""
    return (await encode_text(document, path)).encode()


async def encode_text(document: dict[str, Any], path: Sequence[str]) -> str:
    """``document`` as compact JSON; the list at ``path`` (keys from the top) is encoded in
    slices of ``PART`` items with a yield between two. Cost: O(size), in slices."""
    parts: list[str] = []
    await _encode(document, tuple(path), parts)
    return "".join(parts)


async def _encode(value: Any, path: tuple[str, ...], parts: list[str]) -> None:
    if not path:
        items: Sequence[Any] = value
        parts.append("[")
        for start in range(0, len(items), PART):
            if start:
                parts.append(",")
                await pause()
            parts.append(dumps(list(items[start : start + PART]))[1:-1])
        parts.append("]")
        return
    key, rest = path[0], path[1:]
    head = dumps({k: v for k, v in value.items() if k != key})
    parts.append(head[:-1] + ("," if len(head) > 2 else "") + dumps(key) + ":")
    await _encode(value[key], rest, parts)
    parts.append("}")
