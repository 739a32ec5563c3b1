"""Loading the registry from its store after the server started, then opening the gate.

``load`` rebuilds the registry in a worker thread (``storage.recovery.recover``) while
the event loop answers /healthz and /readyz; ``open_for_writes`` starts the store's
writer, restarts every lease on the loop and opens the gate (``become_ready``). A
single registry does both at start (``recover``); a standby on PostgreSQL loads at
start and opens only once it leads (``standby.py``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Callable

from pageholder.service.api.state import ServiceState
from pageholder.service.core import collector
from pageholder.service.storage.protocol import DurableStore
from pageholder.service.storage.recovery import RecoveryStopped, recover

log = logging.getLogger("pageholder")


def become_ready(state: ServiceState) -> None:
    # Everything built so far (the recovered trees, the app) lives as long as the
    # process: keep it out of the collector's generations, so that collections stay
    # short however many holds there are (fewer p99 spikes).
    gc.collect()
    gc.freeze()
    if state.full_every is None:  # and space the full collections out (collector.py)
        state.full_every = collector.space_full_collections()
    state.ready = state.readiness.ready = True
    state.readiness.settled.set()


async def load(
    state: ServiceState,
    store: DurableStore,
    stop: threading.Event,
    on_fatal: Callable[[str], None] | None,
) -> bool:
    """Rebuild the registry from ``store`` in a worker thread; False if stopped or failed
    (then ``on_fatal`` was called with the reason).

    Nothing else touches the registry until then (the gate answers 503), so the thread
    may build it alone. The collector is paused while it runs: the trees are
    long-lived, and collections triggered by building them would walk every node built
    so far, again and again."""
    readiness = state.readiness
    readiness.recovering = True
    began = time.perf_counter()
    collecting = gc.isenabled()
    gc.disable()

    def progress(loaded: int) -> None:
        readiness.loaded = loaded

    try:
        loaded = await asyncio.to_thread(
            recover, state.registry, store, stop=stop, progress=progress
        )
    except RecoveryStopped:
        return False
    except Exception as exc:  # a store that cannot be read back: never serve half of it
        readiness.failure = str(exc)
        log.error("recovery from %s failed: %s", store.description, exc)
        readiness.settled.set()
        if on_fatal is not None:
            on_fatal(str(exc))
        return False
    finally:
        readiness.recovering = False
        if collecting:
            gc.enable()
    readiness.loaded = loaded
    log.info(
        "recovered %d holds from %s in %.1f s",
        loaded,
        store.description,
        time.perf_counter() - began,
    )
    return True


def open_for_writes(state: ServiceState, store: DurableStore) -> None:
    """Start the writer, restart the leases (timers on this loop; grace counts from
    now) and open the gate."""
    state.registry.leases.restart_all()
    store.start()
    become_ready(state)


async def recover_and_open(
    state: ServiceState,
    store: DurableStore,
    stop: threading.Event,
    on_fatal: Callable[[str], None] | None,
) -> None:
    """``load``, then ``open_for_writes``."""
    if await load(state, store, stop, on_fatal):
        open_for_writes(state, store)
