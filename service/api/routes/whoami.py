"""/v1/whoami: whom a token speaks for (the console shows a holder a read-only view)."""

from __future__ import annotations

from fastapi import APIRouter

from pageholder.service.api.deps import PrincipalDep
from pageholder.service.api.problems import documented
from pageholder.service.api.schemas import WhoAmI

router = APIRouter(prefix="/v1/whoami", tags=["holders"])


@router.get("", name="whoami", responses=documented("unauthorized"))
async def whoami(principal: PrincipalDep) -> WhoAmI:
    """The caller: the admin, or the holder whose token this is."""
    if principal.is_admin:
        return WhoAmI(role="admin", holder=None)
    return WhoAmI(role="holder", holder=principal.holder)
