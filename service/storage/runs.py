"""Stored holds read back as runs, streamed: the same for every store.

A run (``HoldRun``) is ``nr_holds`` holds of one order by one holder with one
``since_us``, heads ``pfn, pfn + 1, ...``: what one batch's range left behind, read as
one row. The database aggregates ``RUN_WINDOW`` pfns at a time: a window held whole by
one batch (one holder, one ``since``, order 0, no gap) is one run without a row of it
reaching Python; only a mixed window's rows are read, and grouped here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple


class HoldRun(NamedTuple):
    """``nr_holds`` stored holds of ``order`` by one holder with one ``since_us``, heads
    ``pfn, pfn + 1, ...`` (``nr_holds`` is 1 unless ``order`` is 0)."""

    pfn: int
    order: int
    nr_holds: int
    holder: str
    since_us: int


#: The pfns read per step while streaming holds: ``RUN_WINDOW`` pages in one aggregate.
RUN_WINDOW = 4096

#: the three queries, with ``{p}`` for the driver's parameter mark
WINDOW_SQL = (
    "SELECT count(*), min(pfn), max(pfn), max(page_order), min(holder), max(holder),"
    " min(since_us), max(since_us) FROM holds WHERE pfn >= {p} AND pfn < {p}"
)
NEXT_SQL = "SELECT min(pfn) FROM holds WHERE pfn >= {p}"
ROWS_SQL = (
    "SELECT pfn, page_order, holder, since_us FROM holds WHERE pfn >= {p} AND pfn < {p}"
    " ORDER BY pfn"
)

Query = Callable[[str, tuple[int, ...]], Sequence[Sequence[Any]]]


def stream_runs(query: Query, mark: str) -> Iterator[HoldRun]:
    """Every stored hold once, in pfn order, as runs. ``query(sql, params)`` returns the
    rows; ``mark`` is the driver's parameter mark. Memory: one window's rows at most.
    Cost: O(rows) in the database, plus O(rows of mixed windows) in Python."""
    window, following, rows = (s.format(p=mark) for s in (WINDOW_SQL, NEXT_SQL, ROWS_SQL))
    start = query(following, (0,))[0][0]
    while start is not None:
        low = start - start % RUN_WINDOW
        high = low + RUN_WINDOW
        count, first, last, order, holder, other, since, later = query(window, (low, high))[0]
        if order == 0 and holder == other and since == later and last - first < count:
            yield HoldRun(first, 0, count, holder, since)
        else:
            yield from group_runs(query(rows, (low, high)))
        start = query(following, (high,))[0][0]


def group_runs(rows: Sequence[Sequence[Any]]) -> Iterator[HoldRun]:
    """Rows in pfn order grouped into runs: consecutive order-0 pfns of one holder and
    one ``since_us``."""
    i = 0
    n = len(rows)
    while i < n:
        pfn, order, holder, since = rows[i]
        j = i + 1
        if not order:
            expected = pfn + 1
            while j < n:
                row = rows[j]
                if row[0] != expected or row[1] or row[3] != since or row[2] != holder:
                    break
                expected += 1
                j += 1
        yield HoldRun(pfn, order, j - i, holder, since)
        i = j
