"""The app factory: ``create_app(settings)``; the lifespan owns every resource."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
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
from pageholder.service.api.metrics import Metrics
from pageholder.service.api.middleware import BodyLimit, CountRequests
from pageholder.service.api.routes import batches, blocks, health, holders, pages, whoami, zones
from pageholder.service.api.state import ServiceState
from pageholder.service.core.layout import MemoryLayout
from pageholder.service.core.model import ReleaseCaller
from pageholder.service.core.registry import Registry
from pageholder.service.settings import Settings
from pageholder.service.storage.recovery import Durable, open_durable, recover
from pageholder.service.webhooks.addresses import AddressPolicy
from pageholder.service.webhooks.caller import WebhookCaller
from pageholder.service.webhooks.transport import CheckedTransport

log = logging.getLogger("pageholder")

DESCRIPTION = """\
A networked page-holder registry. Subsystems register as **holders** with a release
webhook and put **holds** on pfns; operators ask who holds a page, ask for it back, or
take a memory block offline.

Click **Authorize** and paste the admin token that `pageholder serve` printed at first
start (or a holder's token returned by `POST /v1/holders`).
"""


def _operation_id(route: APIRoute) -> str:
    return route.name


def create_app(
    settings: Settings | None = None,
    *,
    layout: MemoryLayout | None = None,
    release_caller: ReleaseCaller | None = None,
    durable: Durable | None = None,
) -> FastAPI:
    """Build the app. Nothing is opened until the lifespan starts.

    ``durable`` is a store the caller opened already (``serve`` does, to refuse a bad
    data dir with one clear line before the server starts); without it the lifespan
    opens the store of ``settings.data_dir`` itself (none for ``:memory:``).
    """
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        memory_layout = layout or MemoryLayout.load(settings.layout)
        data_dir = None if settings.in_memory else Path(settings.data_dir)
        opened = durable
        if opened is None and data_dir is not None:
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
            if opened is not None:
                assert store is not None
                recovered = recover(registry, opened.snapshot)
                log.info("recovered %d holds from %s", recovered, store.path)
                store.start()
                stack.push_async_callback(store.close)  # after in-flight requests finished
            admin = load_admin_token(settings.admin_token, data_dir)
            state = ServiceState(
                settings=settings,
                registry=registry,
                admin=admin,
                tokens=TokenBook(admin.token, registry),
                http=http,
                metrics=metrics,
            )
            metrics.watch(registry)
            app.state.service = state
            # Everything built so far (the recovered trees, the app) lives as long as the
            # process: keep it out of the collector's generations, so that collections
            # stay short however many holds there are (fewer p99 spikes).
            gc.collect()
            gc.freeze()
            state.ready = True
            try:
                yield
            finally:
                state.ready = False
                gc.unfreeze()

    app = FastAPI(
        title="pageholder",
        version="1",
        summary="Who holds which physical page, and how to ask for it back.",
        description=DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
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
    for module in (holders, pages, batches, zones, blocks, health, whoami):
        app.include_router(module.router)
    # Innermost: the hot page routes answered ahead of FastAPI (fast.py), inside the
    # body limit, auth-before-body and the request metrics.
    app.add_middleware(FastPages, routes=pages.router.routes)
    app.add_middleware(BatchEntryLimit)  # an authenticated batch's count, before parsing
    app.add_middleware(AuthFirst)  # after the size limit, before any body is read
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(CountRequests, metrics=metrics)
    return app
