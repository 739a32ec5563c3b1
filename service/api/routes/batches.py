"""/v1/holds: many holds in one request."""

from __future__ import annotations

from fastapi import APIRouter, Response

from pageholder.service.api import bigjson
from pageholder.service.api.auth import Principal
from pageholder.service.api.batchlimit import too_many
from pageholder.service.api.deps import PrincipalDep, RegistryDep
from pageholder.service.api.problems import HTTPProblem, documented
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
from pageholder.service.core.errors import InvalidRequest
from pageholder.service.core.registry import ADMIN
from pageholder.service.core.slices import SLICE, pause

router = APIRouter(prefix="/v1/holds", tags=["holds"])

BATCH_PROBLEMS = documented(401, 403, 404, 409, 413, 422, 503)


def _entries(pages: list[BatchPage], ranges: list[BatchRange]) -> list[tuple[int, int]]:
    total = len(pages) + sum(r.nr_pages for r in ranges)
    if total > MAX_BATCH_ENTRIES:
        # Most such bodies were refused before parsing (``api.batchlimit``); this is
        # the rule for the ones its scan could not be sure of.
        raise HTTPProblem("payload_too_large", too_many(total))
    return expand([(p.pfn, p.order) for p in pages], [(r.start_pfn, r.nr_pages) for r in ranges])


async def _response(items: list[BatchItem]) -> Response:
    """The batch's answer, serialized straight from the core's results: validating
    65536 response models one by one cost a fifth of a batch (``BatchResponse`` is
    still the documented shape). Built and encoded in slices (``api.bigjson``)."""
    results: list[dict[str, object]] = []
    for start in range(0, len(items), SLICE):
        if start:
            await pause()
        results.extend(
            {"pfn": i.pfn, "order": i.order, "status": i.status}
            if i.code is None
            else {
                "pfn": i.pfn,
                "order": i.order,
                "status": i.status,
                "code": i.code,
                "detail": i.detail,
            }
            for i in items[start : start + SLICE]
        )
    body = await bigjson.encode({"results": results}, ["results"])
    return Response(body, media_type="application/json")


def _actor(principal: Principal) -> str | None:
    return ADMIN if principal.is_admin else principal.holder


@router.post("/batch-set", name="batch_set", response_model=BatchResponse, responses=BATCH_PROBLEMS)
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
    entries = _entries(body.pages, body.ranges)
    items = await batch_set(
        registry,
        holder,
        entries,
        overwrite=body.overwrite,
        atomic=body.atomic,
        actor=_actor(principal),
    )
    return await _response(items)


@router.post(
    "/batch-unset", name="batch_unset", response_model=BatchResponse, responses=BATCH_PROBLEMS
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
    return await _response(await batch_unset(registry, entries, atomic=body.atomic, actor=actor))
