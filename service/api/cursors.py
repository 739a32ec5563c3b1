"""Opaque page cursors: a letter and a number, e.g. ``p1048576`` or ``b40``."""

from __future__ import annotations

from pageholder.service.core.errors import InvalidRequest

MAX_DIGITS = 20  # a pfn or block id never needs more


def encode(kind: str, position: int) -> str:
    return f"{kind}{position}"


def decode(kind: str, cursor: str) -> int:
    """The position in a cursor of this kind that this server gave, or 422."""
    digits = cursor[1:]
    if (
        not cursor.startswith(kind)
        or not digits.isascii()
        or not digits.isdecimal()
        or len(digits) > MAX_DIGITS
    ):
        raise InvalidRequest(f"cursor {cursor[:40]!r} is not one this server gave", field="cursor")
    return int(digits)
