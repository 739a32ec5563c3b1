"""The app factory: ``create_app(settings)``; the lifespan owns every resource."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute

from pageholder.service.api import console, docs, problems
from pageholder.service.api.auth import TokenBook, load_admin_token
from pageholder.service.api.authfirst import AuthFirst
from pageholder.service.api.batchlimit import BatchEntryLimit
from pageholder.service.api.fast import FastPages
from pageholder.service.api.fastbatch import FastBatches
from pageholder.service.api.leadership import Leadership
from pageholder.service.api.loading import become_ready, recover_and_open
from pageholder.service.api.metrics import Metrics
from pageholder.service.api.middleware import (
    BodyLimit,
    CountRequests,
    RevisionHeader,
    StreamBodies,
)
from pageholder.service.api.readiness import NotReadyGate, Readiness
from pageholder.service.api.routes import (
    batches,
    blocks,
    events,
    health,
    holders,
    pages,
    whoami,
    zones,
)
from pageholder.service.api.standby import Standby
from pageholder.service.api.state import ServiceState
from pageholder.service.core import collector
from pageholder.service.core.layout import MemoryLayout
from pageholder.service.core.model import ReleaseCaller
from pageholder.service.core.registry import Registry
from pageholder.service.settings import Settings
from pageholder.service.storage.leader import LeaderLease
from pageholder.service.storage.postgres import PgStore
from pageholder.service.storage.protocol import DurableStore
from pageholder.service.storage.recovery import (
    Durable,
    open_durable,
    open_shared,
)
from pageholder.service.webhooks.addresses import AddressPolicy
from pageholder.service.webhooks.caller import WebhookCaller
from pageholder.service.webhooks.transport import CheckedTransport

log = logging.getLogger("pageholder")

DESCRIPTION = """\
A networked page-holder registry. Subsystems register as **holders** with a release
webhook and put **holds** on pfns; operators ask who holds a page, ask for it back, or
take a memory block offline.

Any `/v1` call may be answered 503 `not_ready` (the registry is starting) or, on a
standby of several registries sharing one PostgreSQL store, 503 `not_leader` with
`leader` (the leader's URL) and `Retry-After`: ask the leader.

Click **Authorize** and paste the admin token that `pageholder serve` printed at first
start (or a holder's token returned by `POST /v1/holders`).
"""


#: The tags of the operations, in the order /docs shows them.
TAGS: list[dict[str, Any]] = [
    {
        "name": "holders",
        "description": "Subsystems that hold pages: a name, a release webhook, a token and a "
        "webhook secret (both shown once, at registration).",
    },
    {
        "name": "pages",
        "description": "Who holds a page (`page_owner`); hold it, unset it, or ask its holder "
        "for it back through its release webhook.",
    },
    {"name": "holds", "description": "Up to 65536 holds set or unset in one request."},
    {"name": "zones", "description": "The machine's zones and how much is held in each."},
    {
        "name": "blocks",
        "description": "Memory blocks: what is held in each and whether it is removable; "
        "taking one offline (hot-remove) and back online.",
    },
    {
        "name": "events",
        "description": "Every committed change as a resumable Server-Sent Events stream "
        "(watch from a revision).",
    },
    {"name": "health", "description": "Liveness and readiness probes, Prometheus metrics."},
]
#: Relative: /docs and /redoc try requests on the server that serves them, wherever it runs.
SERVERS: list[dict[str, str]] = [{"url": "/", "description": "this registry"}]
CONTACT: dict[str, str] = {"name": "pageholder maintainers"}
LICENSE: dict[str, str] = {"name": "MIT", "identifier": "MIT"}


def _operation_id(route: APIRoute) -> str:
    return route.name


def _lease(store: PgStore, settings: Settings) -> LeaderLease:
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return LeaderLease(store.url, owner, settings.advertise_url, settings.leader_ttl_s)


def _log_fatal(reason: str) -> None:
    log.error("%s", reason)


#: With a store, memory keeps the recent revisions only (the store keeps the retention):
#: at most this many, and at most this many parts plus holds.
MEMORY_KEEP = 10_000
MEMORY_KEEP_WEIGHT = 1_000_000


def keep_events(registry: Registry, store: DurableStore | None, settings: Settings) -> None:
    """How many revisions memory and the store keep for ``GET /v1/events``."""
    log = registry.events
    log.watcher_limit = settings.events_buffer
    log.flush_interval = settings.events_flush_interval_s
    if store is None:  # memory is the whole history
        log.keep = settings.events_retention
        return
    store.retention = settings.events_retention
    log.keep = min(MEMORY_KEEP, settings.events_retention)
    log.keep_weight = MEMORY_KEEP_WEIGHT


def create_app(
    settings: Settings | None = None,
    *,
    layout: MemoryLayout | None = None,
    release_caller: ReleaseCaller | None = None,
    durable: Durable | None = None,
    on_fatal: Callable[[str], None] | None = None,
) -> FastAPI:
    """Build the app. Nothing is opened until the lifespan starts.

    ``durable`` is a store the caller opened already (``serve`` does, to refuse a bad
    data dir with one clear line before the server starts); without it the lifespan
    opens the store of ``settings.data_dir`` itself (none for ``:memory:``). The stored
    holds are recovered once the server runs (``readiness.py``); if that fails, the
    registry stays not ready and ``on_fatal(reason)`` is called.
    """
    settings = settings or Settings()
    metrics = Metrics()

    readiness = Readiness()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        memory_layout = layout or MemoryLayout.load(settings.layout)
        data_dir = None if settings.in_memory else Path(settings.data_dir)
        opened = durable
        if opened is None and settings.store is not None:
            opened = open_shared(settings.store, memory_layout)
        elif opened is None and data_dir is not None:
            opened = open_durable(data_dir, memory_layout)
        async with AsyncExitStack() as stack:
            # Release calls connect only to addresses the policy allows, checked at every
            # connection (webhooks/transport.py), not only when the URL was registered.
            policy = AddressPolicy(
                allow_loopback=settings.webhook_allow_loopback,
                allow_private=settings.webhook_allow_private,
            )
            http = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=CheckedTransport(policy), follow_redirects=False, trust_env=False
                )
            )
            caller = release_caller or WebhookCaller(
                http,
                backoff_base_s=settings.webhook_retry_min_s,
                backoff_max_s=settings.webhook_retry_max_s,
                max_calls=settings.webhook_max_calls,
                observe=metrics.observe_webhook,
            )
            store = None if opened is None else opened.store
            registry = Registry(memory_layout, caller, journal=store)
            keep_events(registry, store, settings)
            leadership = None
            if isinstance(store, PgStore):
                # Several registries share this store: the leader lease says who writes
                # (leadership.py); until this one holds it, it is a standby. The lease is
                # let go only once the store closed (what was in flight committed).
                leadership = Leadership(store, _lease(store, settings))
                readiness.leadership = leadership
                stack.push_async_callback(leadership.release)
            if store is not None:
                stack.push_async_callback(store.close)  # after in-flight requests finished
            admin = load_admin_token(settings.admin_token, data_dir)
            state = ServiceState(
                settings=settings,
                registry=registry,
                admin=admin,
                tokens=TokenBook(admin.token, registry),
                http=http,
                metrics=metrics,
                readiness=readiness,
                store=store,
            )
            metrics.watch(registry)
            app.state.service = state
            stop = threading.Event()
            recovery: asyncio.Task[None] | None = None
            if store is None:
                become_ready(state)
            elif leadership is not None:
                assert isinstance(store, PgStore)
                # A standby loads the store at once and follows the leader's commits;
                # taking over applies what it has not seen yet (standby.py).
                standby = Standby(state, store, stop, on_fatal, warm=settings.standby_follow)
                stack.push_async_callback(asyncio.to_thread, standby.close)
                leadership.describe_standby = standby.describe
                recovery = asyncio.create_task(
                    leadership.run(standby.load, standby.take_over, on_fatal or _log_fatal)
                )
            else:
                # The trees are rebuilt after the server started accepting: /healthz
                # answers meanwhile, /readyz and /v1 say 503 not_ready (readiness.py).
                recovery = asyncio.create_task(recover_and_open(state, store, stop, on_fatal))
            try:
                yield
            finally:
                state.ready = readiness.ready = False
                if recovery is not None:
                    stop.set()
                    if leadership is not None:
                        recovery.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await recovery
                gc.unfreeze()
                if state.full_every is not None:
                    collector.space_full_collections(state.full_every)

    app = FastAPI(
        title="pageholder",
        version="1",
        summary="Who holds which physical page, and how to ask for it back.",
        description=DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        openapi_tags=TAGS,
        servers=SERVERS,
        contact=CONTACT,
        license_info=LICENSE,
        docs_url=None,  # served by docs.install from local files, not a CDN
        redoc_url=None,
    )
    problems.install(app)
    docs.install(app, app.title)
    console.install(app)
    build_spec = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = problems.add_problem_schema(build_spec())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    for module in (holders, pages, batches, zones, blocks, health, whoami, events):
        app.include_router(module.router)
    # Innermost: the hot page routes answered ahead of FastAPI (fast.py), inside the
    # body limit, auth-before-body, the revision header, the readiness gate and the
    # request metrics.
    app.add_middleware(FastPages, routes=pages.router.routes)
    app.add_middleware(FastBatches, routes=batches.router.routes)  # bodies in slices
    app.add_middleware(BatchEntryLimit)  # an authenticated batch's count, before parsing
    app.add_middleware(AuthFirst)  # after the size limit, before any body is read
    app.add_middleware(RevisionHeader)
    # Outside auth: while recovering, holder tokens are not loaded yet; /v1 is a 503.
    app.add_middleware(NotReadyGate, readiness=readiness)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(CountRequests, metrics=metrics)
    app.add_middleware(StreamBodies)  # outermost: the event streams' chunks skip the rest
    return app
