"""Rebuilding the registry from the store at start."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pageholder.service.core.errors import PageHolderError
from pageholder.service.core.layout import MemoryLayout
from pageholder.service.core.model import Holder, OnExpiry
from pageholder.service.core.registry import Registry
from pageholder.service.storage.sqlite import Snapshot, Store, StoreError


@dataclass(frozen=True, slots=True)
class Durable:
    """An opened store and what it held at start."""

    store: Store
    snapshot: Snapshot


def open_durable(data_dir: Path, layout: MemoryLayout) -> Durable:
    """Open the store of ``data_dir`` and read it; ``StoreError`` (one clear line) if it
    is corrupt, too new, or holds a hold that ``layout`` does not contain."""
    store = Store.open(data_dir)
    try:
        snapshot = store.load()
        for pfn, order, name, _ in snapshot.holds:
            _check_fits(layout, pfn, order, name)
    except BaseException:
        store.close_now()
        raise
    return Durable(store, snapshot)


def _check_fits(layout: MemoryLayout, pfn: int, order: int, holder: str) -> None:
    zone = layout.zone_of(pfn)
    end = pfn + (1 << order)
    if zone is None or end > zone.end_pfn or pfn & ((1 << order) - 1):
        where = "in no zone" if zone is None else f"not within zone {zone.id}"
        raise StoreError(
            f"stored order-{order} hold at pfn {pfn} of holder {holder!r} is {where} of this "
            "memory layout; start with the layout the data dir was made on"
        )


def recover(registry: Registry, snapshot: Snapshot) -> int:
    """Load holders, holds and block states into an empty registry; returns holds loaded.

    Every lease restarts live at ``now + ttl_s``. Refuses (``StoreError``) a stored hold
    that the memory layout no longer contains: starting without it would report its
    pages as free. A block stored ``going_offline``
    (never written by this version, but possible in principle) comes back ``online``.
    Cost: O(holds * height); holds arrive in pfn order, which keeps tree paths warm.
    """
    for row in snapshot.holders:
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
    for pfn, order, name, since_us in snapshot.holds:
        try:
            zh = registry.place(pfn, order)
        except PageHolderError:
            _check_fits(registry.layout, pfn, order, name)
            raise
        inserted = zh.insert(pfn, order, holders[name], since_us)
        assert inserted, f"stored holds overlap at pfn {pfn}"
        last_stamp = max(last_stamp, since_us)
    registry.advance_stamp(last_stamp)
    registry.blocks.recover(snapshot.block_states)
    return len(snapshot.holds)
