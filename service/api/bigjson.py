"""Big JSON answers encoded in slices.

``json.dumps`` of a 65,536-result batch answer or of an offline report with 32,768
failures is tens of milliseconds in one step, and every other request waits for it.
``encode`` writes the document around its one big list itself and encodes that list
``SLICE`` items at a time, yielding to the event loop in between. The bytes are those
of ``json.dumps(..., separators=(",", ":"))`` except that the big list's key comes last
in each object on its path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pageholder.service.core.slices import SLICE, pause


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


async def encode(document: dict[str, Any], path: Sequence[str]) -> bytes:
    """``document`` as compact JSON; the list at ``path`` (keys from the top) is encoded in
    slices of ``SLICE`` items with a yield between two. Cost: O(size), in slices."""
    parts: list[str] = []
    await _encode(document, tuple(path), parts)
    return "".join(parts).encode()


async def _encode(value: Any, path: tuple[str, ...], parts: list[str]) -> None:
    if not path:
        items: Sequence[Any] = value
        parts.append("[")
        for start in range(0, len(items), SLICE):
            if start:
                parts.append(",")
                await pause()
            parts.append(_dumps(list(items[start : start + SLICE]))[1:-1])
        parts.append("]")
        return
    key, rest = path[0], path[1:]
    head = _dumps({k: v for k, v in value.items() if k != key})
    parts.append(head[:-1] + ("," if len(head) > 2 else "") + _dumps(key) + ":")
    await _encode(value[key], rest, parts)
    parts.append("}")
