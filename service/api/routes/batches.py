"""/v1/holds: many holds in one request."""

from __future__ import annotations

import json
from collections.abc import Sequence

from fastapi import APIRouter, Response

from pageholder.service.api.auth import Principal
from pageholder.service.api.batchlimit import too_many
from pageholder.service.api.deps import PrincipalDep, RegistryDep
from pageholder.service.api.problems import SET_HOLD_CODES, HTTPProblem, documented
from pageholder.service.api.schemas import (
    BatchPage,
    BatchRange,
    BatchResponse,
    BatchSetRequest,
    BatchUnsetRequest,
)
from pageholder.service.core.batch import (
    MAX_BATCH_ENTRIES,
    BatchItem,
    batch_set,
    batch_unset,
    expand,
)
from pageholder.service.core.bulk import CreatedRun, batch_set_ranges
from pageholder.service.core.errors import InvalidRequest
from pageholder.service.core.registry import ADMIN

router = APIRouter(prefix="/v1/holds", tags=["holds"])

#: What a batch can answer; a 409/404/422 is the first failure of an ``atomic`` batch.
BATCH_SET_PROBLEMS = documented(*SET_HOLD_CODES)
BATCH_UNSET_PROBLEMS = documented(
    "unauthorized",
    "forbidden",
    "pfn_not_found",
    "holder_not_found",
    "page_not_held",
    "not_head",
    "page_releasing",
    "payload_too_large",
    "invalid_request",
    "storage_unavailable",
)


def _check_size(pages: list[BatchPage], ranges: list[BatchRange]) -> None:
    total = len(pages) + sum(r.nr_pages for r in ranges)
    if total > MAX_BATCH_ENTRIES:
        raise HTTPProblem(
            # Most such bodies were refused before parsing (``api.batchlimit``); this is
            # the rule for the ones its scan could not be sure of.
            "payload_too_large",
            too_many(total),
        )


def _entries(pages: list[BatchPage], ranges: list[BatchRange]) -> list[tuple[int, int]]:
    _check_size(pages, ranges)
    return expand([(p.pfn, p.order) for p in pages], [(r.start_pfn, r.nr_pages) for r in ranges])


def _response(items: Sequence[BatchItem | CreatedRun]) -> Response:
    """The batch's answer, serialized straight from the core's results: validating
    65536 response models one by one cost a fifth of a batch (``BatchResponse`` is
    still the documented shape). A ``CreatedRun`` is written by a string template, one
    C-level format per page."""
    parts: list[str] = []
    singles: list[dict[str, object]] = []
    for item in items:
        if isinstance(item, CreatedRun):
            if singles:
                parts.append(json.dumps(singles, separators=(",", ":"))[1:-1])
                singles = []
            start = item.start_pfn
            parts.append(",".join(map(_CREATED.__mod__, range(start, start + item.nr_pages))))
        elif item.code is None:
            singles.append({"pfn": item.pfn, "order": item.order, "status": item.status})
        else:
            singles.append(
                {
                    "pfn": item.pfn,
                    "order": item.order,
                    "status": item.status,
                    "code": item.code,
                    "detail": item.detail,
                }
            )
    if singles:
        parts.append(json.dumps(singles, separators=(",", ":"))[1:-1])
    body = '{"results":[' + ",".join(parts) + "]}"
    return Response(body, media_type="application/json")


_CREATED = '{"pfn":%d,"order":0,"status":"created"}'


def _actor(principal: Principal) -> str | None:
    return ADMIN if principal.is_admin else principal.holder


@router.post(
    "/batch-set", name="batch_set", response_model=BatchResponse, responses=BATCH_SET_PROBLEMS
)
async def set_many(
    body: BatchSetRequest, registry: RegistryDep, principal: PrincipalDep
) -> Response:
    """Hold many pages for one holder: `pages` with orders and/or `ranges` of order-0 pages.

    Each entry is answered alone; with `atomic` the first failure is the answer (409 for
    a conflict) and nothing is applied.
    """
    holder = body.holder or principal.holder
    if holder is None:
        raise InvalidRequest("the admin must name the holder", field="holder")
    if body.ranges:
        _check_size(body.pages, body.ranges)
        # Ranges are taken as ranges: a free run is held in one step (core/bulk.py).
        return _response(
            await batch_set_ranges(
                registry,
                holder,
                [(p.pfn, p.order) for p in body.pages],
                [(r.start_pfn, r.nr_pages) for r in body.ranges],
                overwrite=body.overwrite,
                atomic=body.atomic,
                actor=_actor(principal),
            )
        )
    items = await batch_set(
        registry,
        holder,
        _entries(body.pages, body.ranges),
        overwrite=body.overwrite,
        atomic=body.atomic,
        actor=_actor(principal),
    )
    return _response(items)


@router.post(
    "/batch-unset",
    name="batch_unset",
    response_model=BatchResponse,
    responses=BATCH_UNSET_PROBLEMS,
)
async def unset_many(
    body: BatchUnsetRequest, registry: RegistryDep, principal: PrincipalDep
) -> Response:
    """Unset many holds by their head pfns; `atomic` = all or nothing."""
    if body.holder is not None:
        registry.holder(body.holder)
        if not principal.is_admin and body.holder != principal.holder:
            raise HTTPProblem("forbidden", f"only the admin or {body.holder!r} may do this")
    actor = body.holder if body.holder is not None else _actor(principal)
    entries = _entries(body.pages, body.ranges)
    return _response(await batch_unset(registry, entries, atomic=body.atomic, actor=actor))
