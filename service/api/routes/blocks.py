"""/v1/blocks: memory blocks, their state and what is held in them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Response

from pageholder.service.api import cursors, problems
from pageholder.service.api.deps import AdminDep, PrincipalDep, RegistryDep, StateDep
from pageholder.service.api.problems import documented
from pageholder.service.api.schemas import BlockList, BlockOut, OfflineReportOut, OfflineRequest
from pageholder.service.core import bigjson
from pageholder.service.core.errors import BlockNotFound, InvalidRequest, OfflineFailed
from pageholder.service.core.layout import MemoryBlock
from pageholder.service.core.model import BlockState, BlockUsage
from pageholder.service.core.offline import offline_block, online_block
from pageholder.service.core.registry import Registry
from pageholder.service.core.rules import MAX_BLOCK_ID

router = APIRouter(prefix="/v1/blocks", tags=["blocks"])

BlockId = Annotated[int, Path(ge=0, le=MAX_BLOCK_ID, description="memory block number")]


def _out(usage: BlockUsage) -> BlockOut:
    return BlockOut.of(
        usage.block,
        usage.state.value,
        usage.held_pages,
        usage.holds,
        usage.removable,
        usage.orphaned_pages,
    )


@router.get("", name="list_blocks", responses=documented("unauthorized", "invalid_request"))
async def list_blocks(
    registry: RegistryDep,
    _: PrincipalDep,
    state: Annotated[BlockState | None, Query(description="only blocks in this state")] = None,
    zone: Annotated[
        str | None, Query(description='only blocks of this zone, e.g. "0/Normal"')
    ] = None,
    held: Annotated[bool | None, Query(description="true: only blocks with holds")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> BlockList:
    """Memory blocks in ascending order, with held pages, holds and whether they are removable."""
    start = 0 if cursor is None else cursors.decode("b", cursor)
    items: list[BlockOut] = []
    next_cursor = None
    for usage in _usages(registry, start, zone):
        if len(items) == limit:
            next_cursor = cursors.encode("b", usage.block.id)
            break
        if state is not None and usage.state is not state:
            continue
        if held is not None and (usage.holds > 0) != held:
            continue
        items.append(_out(usage))
    return BlockList(items=items, next_cursor=next_cursor)


def _usages(registry: Registry, start: int, zone_id: str | None) -> Iterator[BlockUsage]:
    """Blocks from ``start`` on (optionally of one zone), computed as they are consumed."""
    layout = registry.layout
    if zone_id is None:
        blocks: Iterable[MemoryBlock | None] = layout.blocks(start)
    else:
        zone = layout.zone_by_id(zone_id)
        if zone is None:
            raise InvalidRequest(f"no zone {zone_id!r}", field="zone")
        blocks = (layout.block(i) for i in layout.zone_blocks(zone) if i >= start)
    return (registry.block_usage(block) for block in blocks if block is not None)


@router.get(
    "/{block_id}",
    name="get_block",
    responses=documented("unauthorized", "block_not_found", "invalid_request"),
)
async def get_block(block_id: BlockId, registry: RegistryDep, _: PrincipalDep) -> BlockOut:
    """One memory block: its state, held pages, holds and whether it is removable."""
    block = registry.layout.block(block_id)
    if block is None:
        raise BlockNotFound(f"memory block {block_id} does not exist", block=block_id)
    return _out(registry.block_usage(block))


@router.post(
    "/{block_id}/offline",
    name="offline_block",
    response_model=OfflineReportOut,
    responses=documented(
        "unauthorized",
        "forbidden",
        "block_not_found",
        "offline_failed",
        "block_not_online",
        "multizone_block",
        "payload_too_large",
        "invalid_request",
        "storage_unavailable",
    ),
)
async def offline(
    block_id: BlockId,
    state: StateDep,
    _: AdminDep,
    body: Annotated[OfflineRequest | None, Body()] = None,
) -> OfflineReportOut | Response:
    """Take a memory block offline (hot-remove): isolate it, ask every holder once for all
    of its pages there, and commit, or cancel with a report of what refused and why.
    With `reclaim_orphans`, holds of holders whose lease expired are erased uncalled."""
    request = body or OfflineRequest()
    try:
        report = await offline_block(
            state.registry,
            block_id,
            deadline_s=request.deadline_s,
            reclaim_orphans=request.reclaim_orphans,
        )
    except OfflineFailed as failed:
        state.metrics.observe_offline(failed.extra["report"])
        # Its report may list 32,768 failures: encoded for its event already (in slices),
        # spliced in here; else encoded in slices, not in one step.
        document = problems.document(failed.code, failed.detail, **failed.extra)
        if failed.report_json is not None:
            head = bigjson.dumps({k: v for k, v in document.items() if k != "report"})
            encoded = f'{head[:-1]},"report":{failed.report_json}}}'.encode()
        else:
            encoded = await bigjson.encode(document, ["report", "failures"])
        return Response(
            encoded, status_code=document["status"], media_type=problems.PROBLEM_JSON
        )
    state.metrics.observe_offline(report.as_dict())
    return OfflineReportOut.model_validate(report.as_dict())


@router.post(
    "/{block_id}/online",
    name="online_block",
    responses=documented(
        "unauthorized",
        "forbidden",
        "block_not_found",
        "block_not_offline",
        "invalid_request",
        "storage_unavailable",
    ),
)
async def online(block_id: BlockId, registry: RegistryDep, _: AdminDep) -> BlockOut:
    """Bring an offline block back online; holds may start in it again."""
    await online_block(registry, block_id)
    block = registry.layout.block(block_id)
    assert block is not None
    return _out(registry.block_usage(block))
