"""/v1/holders: register, list, change and remove holders."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from pageholder.service.api.auth import Principal, hash_token, new_token
from pageholder.service.api.deps import (
    AdminDep,
    PrincipalDep,
    RegistryDep,
    StateDep,
    require_self_or_admin,
)
from pageholder.service.api.problems import documented
from pageholder.service.api.schemas import (
    HolderCreate,
    HolderCreated,
    HolderList,
    HolderOut,
    HolderPatch,
)
from pageholder.service.core.errors import Forbidden
from pageholder.service.core.model import Holder
from pageholder.service.core.registry import UNSET, Unset
from pageholder.service.webhooks.caller import new_webhook_secret
from pageholder.service.webhooks.policy import validate_release_url

router = APIRouter(prefix="/v1/holders", tags=["holders"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    name="create_holder",
    responses=documented(
        "unauthorized",
        "forbidden",
        "holder_exists",
        "payload_too_large",
        "invalid_request",
        "storage_unavailable",
    ),
)
async def create_holder(
    body: HolderCreate, state: StateDep, registry: RegistryDep, _: AdminDep
) -> HolderCreated:
    """Register a holder. Its `token` and `webhook_secret` are shown only in this answer."""
    url = None if body.release_url is None else _checked_url(state, body.release_url)
    token = new_token("pht")
    secret = new_webhook_secret()
    holder = await registry.add_holder(
        body.name,
        release_url=url,
        timeout_s=body.timeout_s,
        description=body.description,
        token_hash=hash_token(token),
        webhook_secret=secret,
    )
    out = HolderOut.of(holder, show_url=True)  # the admin's
    return HolderCreated(**out.model_dump(), token=token, webhook_secret=secret)


@router.get("", name="list_holders", responses=documented("unauthorized"))
async def list_holders(registry: RegistryDep, principal: PrincipalDep) -> HolderList:
    """Every holder with how much it holds. Release URLs are shown to the admin and to
    each holder for itself only."""
    return HolderList(
        items=[
            _view(h, principal) for h in sorted(registry.holders.values(), key=lambda h: h.name)
        ]
    )


@router.get(
    "/{name}",
    name="get_holder",
    responses=documented("unauthorized", "holder_not_found", "invalid_request"),
)
async def get_holder(name: str, registry: RegistryDep, principal: PrincipalDep) -> HolderOut:
    """One holder: its timeout, holds, held pages and last release error; its release URL
    only for the admin and for itself."""
    return _view(registry.holder(name), principal)


@router.patch(
    "/{name}",
    name="update_holder",
    responses=documented(
        "unauthorized",
        "forbidden",
        "holder_not_found",
        "payload_too_large",
        "invalid_request",
        "storage_unavailable",
    ),
)
async def update_holder(
    name: str, body: HolderPatch, state: StateDep, registry: RegistryDep, principal: PrincipalDep
) -> HolderOut:
    """Change a holder's release URL, timeout or description (admin or the holder)."""
    require_self_or_admin(principal, name)
    registry.holder(name)
    fields = body.model_fields_set
    url: str | None | Unset = UNSET
    if "release_url" in fields:
        url = None if body.release_url is None else _checked_url(state, body.release_url)
    holder = await registry.update_holder(
        name, release_url=url, timeout_s=body.timeout_s, description=body.description
    )
    return _view(holder, principal)


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    name="delete_holder",
    responses=documented(
        "unauthorized",
        "forbidden",
        "holder_not_found",
        "holder_has_holds",
        "invalid_request",
        "storage_unavailable",
    ),
)
async def delete_holder(
    name: str,
    registry: RegistryDep,
    principal: PrincipalDep,
    force: Annotated[bool, Query(description="drop the holder's holds too (admin only)")] = False,
) -> Response:
    """Remove a holder. One that still holds pages needs `?force=true` from the admin."""
    require_self_or_admin(principal, name)
    registry.holder(name)
    if force and not principal.is_admin:
        raise Forbidden("only the admin may drop a holder's holds with force")
    await registry.remove_holder(name, force=force)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _view(holder: Holder, principal: Principal) -> HolderOut:
    """A holder's release URL is for the admin and for itself, never for other holders."""
    return HolderOut.of(holder, show_url=principal.is_admin or principal.holder == holder.name)


def _checked_url(state: StateDep, url: str) -> str:
    settings = state.settings
    return validate_release_url(
        url,
        allow_loopback=settings.webhook_allow_loopback,
        allow_private=settings.webhook_allow_private,
    )
