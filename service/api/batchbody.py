"""A batch body, validated in slices.

Pydantic validates a 65,536-entry ``pages`` list in one step (``BatchSetRequest``: a
model object per page, ~50-100 ms, and the full collections its allocations trigger),
and every other request waits it out. ``read_batch`` checks the JSON document of a
batch itself, ``Slices`` of entries at a time with a yield in between, and gives the
route what it needs (``BatchBody``: plain ``(pfn, order)`` tuples, no model objects).

It accepts only the canonical shape, where its answer is certainly pydantic's: keys
the model knows, ``true``/``false`` for the flags, a string matching the holder-name
rule (or null), JSON integers within the schema's limits. Anything else (an unknown
key, a string for a number, ``1.0`` for ``1``, a value out of range, a missing
``pfn``) makes it answer None: the request then goes to the FastAPI route, whose
pydantic model stays the rule and answers as it always did (its 422
``invalid_request`` documents are never copied here). The models in ``schemas`` stay
the documented shape (OpenAPI).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, NamedTuple

from pageholder.service.api.schemas import BatchSetRequest, BatchUnsetRequest
from pageholder.service.core.radix import MAX_ORDER
from pageholder.service.core.rules import HOLDER_NAME, MAX_PFN, MAX_RANGE_PAGES
from pageholder.service.core.slices import Slices

#: the keys each kind of batch body may have (the models' fields)
SET_KEYS: Final = frozenset(BatchSetRequest.model_fields)
UNSET_KEYS: Final = frozenset(BatchUnsetRequest.model_fields)


class BatchBody(NamedTuple):
    """A validated batch body; ``overwrite`` is False for an unset."""

    holder: str | None
    overwrite: bool
    atomic: bool
    pages: list[tuple[int, int]]
    ranges: list[tuple[int, int]]


def of_model(body: BatchSetRequest | BatchUnsetRequest) -> BatchBody:
    """The same values from a body pydantic validated. Cost: O(entries), in one step."""
    overwrite = body.overwrite if isinstance(body, BatchSetRequest) else False
    return BatchBody(
        body.holder,
        overwrite,
        body.atomic,
        [(p.pfn, p.order) for p in body.pages],
        [(r.start_pfn, r.nr_pages) for r in body.ranges],
    )


async def read_batch(doc: Any, *, unset: bool) -> BatchBody | None:
    """``doc`` (a parsed JSON document) as a batch-set (or batch-unset) body, or None if
    it is not certainly a valid one. Cost: O(entries), in slices."""
    if type(doc) is not dict or not doc.keys() <= (UNSET_KEYS if unset else SET_KEYS):
        return None
    holder = doc.get("holder")
    if holder is not None and (type(holder) is not str or not HOLDER_NAME.fullmatch(holder)):
        return None
    overwrite = doc.get("overwrite", False)
    atomic = doc.get("atomic", False)
    if type(overwrite) is not bool or type(atomic) is not bool:
        return None
    pages = doc.get("pages", [])
    ranges = doc.get("ranges", [])
    if type(pages) is not list or type(ranges) is not list:
        return None
    slices = Slices()
    read_pages = await _pages(pages, slices)
    if read_pages is None:
        return None
    read_ranges = await _ranges(ranges, slices)
    if read_ranges is None:
        return None
    return BatchBody(holder, overwrite, atomic, read_pages, read_ranges)


async def _pages(items: Sequence[Any], slices: Slices) -> list[tuple[int, int]] | None:
    out: list[tuple[int, int]] = []
    append = out.append
    for n, item in enumerate(items, 1):
        if type(item) is not dict:
            return None
        pfn = item.get("pfn")
        order = item.get("order", 0)
        if (
            type(pfn) is not int
            or type(order) is not int
            or not 0 <= pfn <= MAX_PFN
            or not 0 <= order <= MAX_ORDER
            or len(item) != (2 if "order" in item else 1)
        ):
            return None
        append((pfn, order))
        if slices.due(n):
            await slices.pause()
    return out


async def _ranges(items: Sequence[Any], slices: Slices) -> list[tuple[int, int]] | None:
    out: list[tuple[int, int]] = []
    for n, item in enumerate(items, 1):
        if type(item) is not dict or len(item) != 2:
            return None
        start = item.get("start_pfn")
        nr_pages = item.get("nr_pages")
        if (
            type(start) is not int
            or type(nr_pages) is not int
            or not 0 <= start <= MAX_PFN
            or not 1 <= nr_pages <= MAX_RANGE_PAGES
        ):
            return None
        out.append((start, nr_pages))
        if slices.due(n):
            await slices.pause()
    return out
