"""/v1/zones: the machine's zones with what is held in each."""

from __future__ import annotations

from fastapi import APIRouter

from pageholder.service.api.deps import PrincipalDep, RegistryDep
from pageholder.service.api.problems import documented
from pageholder.service.api.schemas import ZoneList, ZoneOut

router = APIRouter(prefix="/v1/zones", tags=["zones"])


@router.get("", name="list_zones", responses=documented("unauthorized"))
async def list_zones(registry: RegistryDep, _: PrincipalDep) -> ZoneList:
    """Zones in pfn order, with held pages and holds from the trees' aggregate counts."""
    return ZoneList(
        items=[
            ZoneOut.of(zh.zone, zh.tree.pages, len(zh.tree), registry.zone_orphaned_pages(zh))
            for zh in registry.zones
        ]
    )
