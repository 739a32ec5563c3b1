"""Rebuilding the registry from the store at start.

Two steps, so that a server can answer ``/healthz`` while the second one runs:

``open_durable`` (before the server starts; fast)
    opens and checks the store and refuses, in one line, a data dir whose holds the
    memory layout does not contain: one indexed query per gap between zones, not a
    read of every hold.
``recover`` (after the server started; as long as reading the holds takes)
    streams the holds as runs (``Store.hold_runs``: one row per run a batch left,
    never a list of every hold) and builds the trees from them: a run is one
    ``ZoneHolds.fill``, which fills whole leaves, so a recovered tree is what live
    operation built (the same nodes, stamps, marks and counts) and costs no more memory.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pageholder.service.core.errors import PageHolderError
from pageholder.service.core.layout import MemoryLayout
from pageholder.service.core.model import Holder, OnExpiry
from pageholder.service.core.radix import MAX_ORDER
from pageholder.service.core.registry import Registry
from pageholder.service.storage.errors import StoreError
from pageholder.service.storage.postgres import PgStore
from pageholder.service.storage.protocol import DurableStore
from pageholder.service.storage.runs import HoldRun
from pageholder.service.storage.sqlite import Store


@dataclass(frozen=True, slots=True)
class Durable:
    """An opened, checked store whose holds are not read yet (``recover`` reads them)."""

    store: DurableStore
    holders: int  # how many holders it keeps


class RecoveryStopped(Exception):
    """``recover`` was asked to stop (the server is shutting down before it was ready)."""


def open_durable(data_dir: Path, layout: MemoryLayout) -> Durable:
    """Open the store of ``data_dir`` and check it against ``layout``; ``StoreError``
    (one clear line) if it is corrupt, too new, or holds a hold outside every zone.
    Cost: the store's quick_check, plus one indexed query per gap between zones."""
    return _checked(Store.open(data_dir), layout)


def open_shared(url: str, layout: MemoryLayout) -> Durable:
    """Open (creating or migrating) the PostgreSQL store at ``url`` and check it against
    ``layout``, as ``open_durable`` does."""
    return _checked(PgStore.open(url), layout)


def _checked(store: DurableStore, layout: MemoryLayout) -> Durable:
    try:
        for start, end in _gaps(layout):
            found = store.hold_touching(start, end, MAX_ORDER)
            if found is not None:
                pfn, order, name = found
                _check_fits(layout, pfn, order, name)
                raise AssertionError(f"hold at {pfn} touches the gap [{start}, {end})")
        holders = len(store.holders())
    except BaseException:
        store.close_now()
        raise
    return Durable(store, holders)


def _gaps(layout: MemoryLayout) -> list[tuple[int, int]]:
    """The pfn ranges no zone covers (the last one open-ended: ``2**62``)."""
    gaps: list[tuple[int, int]] = []
    pfn = 0
    for zone in sorted(layout.zones, key=lambda z: z.start_pfn):
        if zone.start_pfn > pfn:
            gaps.append((pfn, zone.start_pfn))
        pfn = max(pfn, zone.end_pfn)
    gaps.append((pfn, 1 << 62))
    return gaps


def _check_fits(layout: MemoryLayout, pfn: int, order: int, holder: str) -> None:
    zone = layout.zone_of(pfn)
    end = pfn + (1 << order)
    if zone is None or end > zone.end_pfn or pfn & ((1 << order) - 1):
        where = "in no zone" if zone is None else f"not within zone {zone.id}"
        raise StoreError(
            f"stored order-{order} hold at pfn {pfn} of holder {holder!r} is {where} of this "
            "memory layout; start with the layout the data dir was made on"
        )


def recover(
    registry: Registry,
    store: DurableStore,
    *,
    stop: threading.Event | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Load holders, holds and block states into an empty registry; returns holds loaded.

    Nothing else may touch ``registry`` meanwhile (the server answers ``/v1`` with 503
    until this returns), so it may run in a worker thread. ``stop`` set: it raises
    ``RecoveryStopped`` at the next run. ``progress(holds)`` is called now and then.
    Every lease restarts live at ``now + ttl_s``.

    Refuses (``StoreError``) a stored hold that the memory layout does not contain or
    that overlaps another: starting without it would report its pages as free. A block
    stored ``going_offline`` comes back ``online``.
    Cost: O(runs * height + holds / 64) on top of streaming the rows.
    """
    for row in store.holders():
        name, url, timeout_s, description, created, token_hash, secret, ttl_s, on_expiry = row
        holder = Holder(
            name,
            release_url=url,
            timeout_s=timeout_s,
            description=description,
            created=created,
            token_hash=token_hash,
            webhook_secret=secret,
            on_expiry=OnExpiry(on_expiry),
        )
        registry.enrol(holder)
        # Every lease restarts at now + ttl_s: the registry's downtime expires nobody.
        registry.leases.restart(holder, ttl_s)
    holders = registry.holders
    last_stamp = 0
    loaded = 0
    for n, run in enumerate(store.hold_runs()):
        if stop is not None and stop.is_set():
            raise RecoveryStopped("recovery stopped before it finished")
        owner = holders.get(run.holder)
        if owner is None:
            raise StoreError(f"stored hold at pfn {run.pfn} names no holder ({run.holder!r})")
        _load_run(registry, run, owner)
        loaded += run.nr_holds
        if run.since_us > last_stamp:
            last_stamp = run.since_us
        if progress is not None and not n % 256:
            progress(loaded)
    registry.advance_stamp(last_stamp)
    registry.blocks.recover(store.block_states())
    registry.events.start_at(store.revision())  # revisions go on from the last stored
    return loaded


def _load_run(registry: Registry, run: HoldRun, holder: Holder) -> None:
    """One run into its zone(s): a batch's range may go on across a zone boundary."""
    pfn, order, nr_holds, _, since = run
    end = pfn + (nr_holds << order)
    while pfn < end:
        try:
            zh = registry.place(pfn, order)
        except PageHolderError:
            _check_fits(registry.layout, pfn, order, run.holder)
            raise
        if nr_holds == 1:
            done = zh.insert(pfn, order, holder, since)
            stop = end
        else:
            stop = min(end, zh.zone.end_pfn)
            done = zh.fill(pfn, stop, holder, since)
        if not done:
            raise StoreError(f"stored holds overlap at pfns [{pfn}, {stop})")
        pfn = stop
