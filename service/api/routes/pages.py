"""/v1/pages: who holds a page, hold it, unset it, ask for it back."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Response, status

from pageholder.service.api import cursors
from pageholder.service.api.deps import AdminDep, PrincipalDep, RegistryDep
from pageholder.service.api.problems import documented
from pageholder.service.api.schemas import (
    HoldList,
    HoldOut,
    HoldRequest,
    HoldResult,
    PageOut,
    ReleaseOut,
    to_time,
)
from pageholder.service.core.errors import InvalidRequest
from pageholder.service.core.model import HoldState, SetStatus
from pageholder.service.core.registry import ADMIN
from pageholder.service.core.rules import MAX_PFN

router = APIRouter(prefix="/v1/pages", tags=["pages"])

PfnPath = Annotated[
    int, Path(ge=0, le=MAX_PFN, description="page frame number", examples=[1048576])
]


@router.get(
    "",
    name="list_holds",
    responses=documented("unauthorized", "holder_not_found", "invalid_request"),
)
async def list_holds(
    registry: RegistryDep,
    _: PrincipalDep,
    start: Annotated[int, Query(ge=0, le=MAX_PFN, description="first pfn")] = 0,
    end: Annotated[int | None, Query(ge=0, le=MAX_PFN, description="pfn past the last")] = None,
    holder: Annotated[str | None, Query(description="only this holder's holds")] = None,
    state: Annotated[
        HoldState | None, Query(description="only holds in this state (e.g. orphaned)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> HoldList:
    """Holds intersecting `[start, end)` in ascending pfn order, page by page.

    Following `next_cursor` lists every hold exactly once, even while holds change.
    """
    if end is not None and end < start:
        raise InvalidRequest(f"end {end} is below start {start}", field="end")
    owner = None if holder is None else registry.holder(holder)
    resume = cursor is not None
    first = start if cursor is None else max(start, cursors.decode("p", cursor))
    holds, more = await registry.holds_in(
        first, end, holder=owner, state=state, limit=limit, resume=resume
    )
    return HoldList(
        items=[HoldOut.of(h) for h in holds],
        next_cursor=None if more is None else cursors.encode("p", more),
    )


@router.get(
    "/{pfn}",
    name="get_page",
    response_model=PageOut,
    responses=documented("unauthorized", "pfn_not_found", "invalid_request"),
)
async def get_page(pfn: PfnPath, registry: RegistryDep, _: PrincipalDep) -> Response:
    """Who holds this page (`held: false` and nulls when it is free)."""
    info = await registry.lookup(pfn)
    hold = info.hold
    # The hottest route: built without validation (every field comes from the core) and
    # serialized once, instead of validated again against the response model.
    page = PageOut.model_construct(
        pfn=pfn,
        node=info.zone.node,
        zone=info.zone.id,
        block=info.block,
        held=hold is not None,
        holder=None if hold is None else hold.holder.name,
        head_pfn=None if hold is None else hold.pfn,
        order=None if hold is None else hold.order,
        state=None if hold is None else hold.state.value,
        since=None if hold is None else to_time(hold.since),
    )
    return Response(page.model_dump_json(), media_type="application/json")


@router.put(
    "/{pfn}/hold",
    name="set_hold",
    response_model=HoldResult,
    responses={
        201: {"model": HoldResult, "description": "a new hold"},
        **documented(
            "unauthorized",
            "forbidden",
            "pfn_not_found",
            "holder_not_found",
            "page_held",
            "page_releasing",
            "block_not_online",
            "lease_expired",
            "payload_too_large",
            "invalid_request",
            "misaligned",
            "crosses_zone",
            "storage_unavailable",
        ),
    },
)
async def set_hold(
    pfn: PfnPath,
    registry: RegistryDep,
    principal: PrincipalDep,
    body: Annotated[HoldRequest | None, Body()] = None,
) -> Response:
    """Hold `2**order` pages from `pfn` (the RFC's `page_set_hold`).

    201 for a new hold; 200 when it was already held the same way (`unchanged`) or when
    `overwrite` replaced other holds (`overwritten`, with the previous holder).
    """
    request = body or HoldRequest()
    holder = request.holder or principal.holder
    if holder is None:
        raise InvalidRequest("the admin must name the holder", field="holder")
    actor = ADMIN if principal.is_admin else principal.holder
    result = await registry.set_hold(
        pfn, holder, order=request.order, overwrite=request.overwrite, actor=actor
    )
    hold, previous = result.hold, result.previous
    # Built without validation (the core's values) and serialized once, as get_page does.
    answer = HoldResult.model_construct(
        pfn=hold.pfn,
        order=hold.order,
        holder=hold.holder.name,
        state=hold.state.value,
        since=to_time(hold.since),
        result=result.status.value,
        previous=previous[0].holder.name if previous else None,
        replaced=[HoldOut.of(h) for h in previous],
    )
    created = result.status is SetStatus.CREATED
    return Response(
        answer.model_dump_json(),
        status_code=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        media_type="application/json",
    )


@router.delete(
    "/{pfn}/hold",
    status_code=status.HTTP_204_NO_CONTENT,
    name="unset_hold",
    responses=documented(
        "unauthorized",
        "forbidden",
        "pfn_not_found",
        "page_not_held",
        "not_head",
        "page_releasing",
        "invalid_request",
        "storage_unavailable",
    ),
)
async def unset_hold(pfn: PfnPath, registry: RegistryDep, principal: PrincipalDep) -> Response:
    """Drop the hold whose head is `pfn` (the RFC's `page_unset_hold`)."""
    await registry.unset_hold(pfn, actor=ADMIN if principal.is_admin else principal.holder)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{pfn}/release",
    name="release_page",
    responses=documented(
        "unauthorized",
        "forbidden",
        "pfn_not_found",
        "page_not_held",
        "page_releasing",
        "no_release_handler",
        "invalid_request",
        "release_failed",
        "storage_unavailable",
        "release_timeout",
    ),
)
async def release_page(pfn: PfnPath, registry: RegistryDep, _: AdminDep) -> ReleaseOut:
    """Ask the page's holder to give it back through its release webhook.

    Concurrent requests for one hold share one webhook call and its result.
    """
    released = await registry.release(pfn)
    hold = released.hold
    return ReleaseOut(
        result="released",
        holder=hold.holder.name,
        pfn=hold.pfn,
        order=hold.order,
        webhook_calls=released.calls,
    )
