"""A registry on a shared store, from standby to leader (``leadership.py`` decides when).

    load       at start, the whole store, in one snapshot (``api.loading.load``);
               then a ``storage.follower.Follower`` keeps memory warm from the
               leader's commits
    take over  once the lease is ours (the epoch bumped): stop following, apply the
               revisions committed since the last one applied (``catch_up``), check
               memory is at the store's last revision, open for writes. If following
               failed, or that check does, empty the registry and load it all again

The log line of a takeover says which it was and how many revisions it applied.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from pageholder.service.api.loading import load, open_for_writes, recover_and_open
from pageholder.service.api.state import ServiceState
from pageholder.service.storage.follower import Follower
from pageholder.service.storage.postgres import PgStore

log = logging.getLogger("pageholder.leader")


class Standby:
    """The load, the following and the takeover of one registry on ``store``."""

    def __init__(
        self,
        state: ServiceState,
        store: PgStore,
        stop: threading.Event,
        on_fatal: Callable[[str], None] | None,
        *,
        warm: bool = True,
    ) -> None:
        self.state = state
        self.store = store
        self.stop = stop
        self.on_fatal = on_fatal
        self.warm = warm  # False: load the whole store at takeover (the old way; bench)
        self.follower: Follower | None = None

    async def load(self) -> bool:
        """Load the store and start following it (nothing to do when not ``warm``);
        False if the load failed or was stopped."""
        if not self.warm:
            return True
        if not await load(self.state, self.store, self.stop, self.on_fatal):
            return False
        registry = self.state.registry
        self.follower = Follower(self.store.url, registry, registry.events.revision)
        self.follower.start()
        return True

    async def take_over(self) -> None:
        """Bring memory to the store's last revision (warm, or a whole load) and open."""
        began = time.perf_counter()
        follower, self.follower = self.follower, None
        why = "following is off" if follower is None else follower.stale
        if follower is not None:
            await asyncio.to_thread(follower.stop)
        if follower is not None and why is None:
            try:
                applied = await asyncio.to_thread(follower.catch_up)
                stored = await asyncio.to_thread(self.store.revision)
                if stored != self.state.registry.events.revision:
                    why = f"memory is at revision {follower.last}, the store at {stored}"
            except Exception as exc:  # the store away, or a row that does not fit
                why = str(exc)
            finally:
                await asyncio.to_thread(follower.close)
            if why is None:
                log.warning(
                    "took over warm at revision %d: %d revisions applied at takeover, "
                    "%d while standby (no reload), in %.3f s",
                    follower.last,
                    applied,
                    follower.applied - applied,
                    time.perf_counter() - began,
                )
                open_for_writes(self.state, self.store)
                return
        log.warning("taking over: loading the whole store (%s)", why)
        self.state.registry.reset()
        await recover_and_open(self.state, self.store, self.stop, self.on_fatal)

    def describe(self) -> str:
        """What its memory is, for a standby's refusals: the revision it has applied."""
        follower = self.follower
        if not self.warm:
            return "it loads the store when it takes over"
        if follower is None:
            return "loading the store"
        if follower.stale is not None:
            return "not following: it loads the store when it takes over"
        return f"following the leader's commits, at revision {follower.last}"

    def close(self) -> None:
        """Stop following (shutdown)."""
        if self.follower is not None:
            self.follower.close()
            self.follower = None
