"""/v1/holds: many holds in one request."""

from __future__ import annotations

import json
from collections.abc import Sequence

from fastapi import APIRouter, Response

from pageholder.service.api.auth import Principal
from pageholder.service.api.batchbody import BatchBody, of_model
from pageholder.service.api.batchlimit import too_many
from pageholder.service.api.deps import PrincipalDep, RegistryDep
from pageholder.service.api.problems import SET_HOLD_CODES, HTTPProblem, documented
from pageholder.service.api.schemas import BatchResponse, BatchSetRequest, BatchUnsetRequest
from pageholder.service.core.batch import (
    MAX_BATCH_ENTRIES,
    BatchItem,
    batch_set,
    batch_unset,
    expand,
)
from pageholder.service.core.bulk import CreatedRun, batch_set_ranges
from pageholder.service.core.errors import InvalidRequest
from pageholder.service.core.registry import ADMIN, Registry
from pageholder.service.core.slices import Slices

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


def _check_size(body: BatchBody) -> None:
    total = len(body.pages) + sum(nr_pages for _, nr_pages in body.ranges)
    if total > MAX_BATCH_ENTRIES:
        raise HTTPProblem(
            # Most such bodies were refused before parsing (``api.batchlimit``); this is
            # the rule for the ones its scan could not be sure of.
            "payload_too_large",
            too_many(total),
        )


async def _response(items: Sequence[BatchItem | CreatedRun]) -> Response:
    """The batch's answer, serialized straight from the core's results: validating
    65536 response models one by one cost a fifth of a batch (``BatchResponse`` is
    still the documented shape). Results are written by string templates, one C-level
    format each (a failed entry's, whose detail may need escaping, by ``json.dumps``),
    in slices (``core.slices.Slices``): 65,536 results are ~50-100 ms of work."""
    parts: list[str] = []
    slices = Slices()
    for n, item in enumerate(items, 1):
        if isinstance(item, CreatedRun):
            start, end = item.start_pfn, item.start_pfn + item.nr_pages
            for cut in range(start, end, RUN_SLICE):
                parts.append(",".join(map(_CREATED.__mod__, range(cut, min(end, cut + RUN_SLICE)))))
                if slices.over():
                    await slices.pause()
            continue
        if item.code is None:
            parts.append(_DONE % (item.pfn, item.order, item.status))
        else:
            failed = {
                "pfn": item.pfn,
                "order": item.order,
                "status": item.status,
                "code": item.code,
                "detail": item.detail,
            }
            parts.append(json.dumps(failed, separators=(",", ":")))
        if slices.due(n):
            await slices.pause()
    body = '{"results":[' + ",".join(parts) + "]}"
    return Response(body, media_type="application/json")


#: a page that was done (``status`` is one of the core's fixed words: no escaping)
_DONE = '{"pfn":%d,"order":%d,"status":"%s"}'
_CREATED = '{"pfn":%d,"order":0,"status":"created"}'
#: pages of a ``CreatedRun`` written between two looks at the clock
RUN_SLICE = 2048


def _actor(principal: Principal) -> str | None:
    return ADMIN if principal.is_admin else principal.holder


async def hold_many(body: BatchBody, registry: Registry, principal: Principal) -> Response:
    """A validated batch-set (the route's, or ``api.fastbatch``'s)."""
    holder = body.holder or principal.holder
    if holder is None:
        raise InvalidRequest("the admin must name the holder", field="holder")
    _check_size(body)
    if body.ranges:
        # Ranges are taken as ranges: a free run is held in one step (core/bulk.py).
        items: Sequence[BatchItem | CreatedRun] = await batch_set_ranges(
            registry,
            holder,
            body.pages,
            body.ranges,
            overwrite=body.overwrite,
            atomic=body.atomic,
            actor=_actor(principal),
        )
    else:
        items = await batch_set(
            registry,
            holder,
            body.pages,
            overwrite=body.overwrite,
            atomic=body.atomic,
            actor=_actor(principal),
        )
    return await _response(items)


async def unset_many_of(body: BatchBody, registry: Registry, principal: Principal) -> Response:
    """A validated batch-unset (the route's, or ``api.fastbatch``'s)."""
    if body.holder is not None:
        registry.holder(body.holder)
        if not principal.is_admin and body.holder != principal.holder:
            raise HTTPProblem("forbidden", f"only the admin or {body.holder!r} may do this")
    actor = body.holder if body.holder is not None else _actor(principal)
    _check_size(body)
    entries = expand(body.pages, body.ranges)
    return await _response(await batch_unset(registry, entries, atomic=body.atomic, actor=actor))


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
    return await hold_many(of_model(body), registry, principal)


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
    return await unset_many_of(of_model(body), registry, principal)
