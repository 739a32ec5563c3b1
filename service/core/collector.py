"""Full collections held off while a big change runs, young ones not.

A 65,536-entry batch allocates a few hundred thousand short-lived objects (results,
ops, snapshots). Left alone, they trigger full collections that walk every object of
the process, tree nodes included, again and again (2-2.5x the batch's time, measured).
Pausing the collector outright (``gc.disable()``) avoids those, but then every object
the batch made is still young when it ends, and the first allocation after it runs one
young collection over all of them: 40-60 ms in one step on a busy machine, a stall for
every other request.

``full_collections_deferred`` keeps young collections (a few hundred objects each, a
fraction of a millisecond, spread over the batch's slices) and defers only the full
one: its threshold is raised for the duration, and restored when the last deferral
ends (deferrals nest: two batches may interleave at their slices). A full collection
that is due runs after that, once, as it would have anyway -- and by then the batch's
objects are gone, so it is short.

The API defers them for a whole batch request, not only its apply: the heap built at
start is frozen (``gc.freeze``), so the collector's "a quarter of the old objects are
new" rule fires after a few thousand survivors, and during a 65,536-entry request the
survivors are the request's own (its entries, snapshots, results): full collections of
100-200 ms each, several per request, measured.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from time import monotonic
from typing import Final

#: a full-collection threshold that is never reached while deferred
NEVER: Final = 1 << 30
#: young-generation (second) collections between full ones while serving (CPython: 10)
SERVING_FULL_EVERY: Final = 100
#: the longest full collections wait: batches that overlap without a break for longer
#: (a busy registry) get them as usual again, until the last one ends
MAX_DEFERRAL_S: Final = 5.0

_deferrals = 0
_since = 0.0
_threshold: tuple[int, int, int] = gc.get_threshold()


@contextmanager
def full_collections_deferred() -> Iterator[None]:
    """No full (oldest-generation) collection starts by itself inside (for at most
    ``MAX_DEFERRAL_S``); young ones do. Cost: O(1)."""
    global _deferrals, _since, _threshold
    if _deferrals == 0:
        _threshold = gc.get_threshold()
        _since = monotonic()
        gc.set_threshold(_threshold[0], _threshold[1], NEVER)
    elif monotonic() - _since > MAX_DEFERRAL_S:
        gc.set_threshold(*_threshold)
    _deferrals += 1
    try:
        yield
    finally:
        _deferrals -= 1
        if _deferrals == 0:
            gc.set_threshold(*_threshold)


def space_full_collections(every: int = SERVING_FULL_EVERY) -> int:
    """Full collections considered only every ``every`` second-generation collections
    (CPython's third threshold); returns the one before, for ``space_full_collections``
    to put back. Honours a deferral under way (the threshold it restores changes).

    Why, for a serving registry: once the heap built at start is frozen
    (``gc.freeze``), the oldest generation holds only what was promoted since, so the
    collector's "a quarter of the old objects are new" rule fires after a few thousand
    promotions, and requests in flight are promoted all the time: about two full
    collections a second on a busy registry. Each walks every long-lived object of the
    process, an open event stream is some 300 (sse-starlette's four tasks and their
    coroutines): with 100 subscribers, ~20 ms a collection, 4% of the loop and a 20 ms
    stall each time (measured with ``gc.callbacks``). At 100 they come ~10x less often;
    what lingers is cyclic garbage that reached the oldest generation, a little longer.
    Cost: O(1)."""
    global _threshold
    if _deferrals:
        before = _threshold[2]
        _threshold = (_threshold[0], _threshold[1], every)
        return before
    young, middle, before = gc.get_threshold()
    gc.set_threshold(young, middle, every)
    return before
