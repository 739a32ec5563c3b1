"""Memory of the per-holder index of heads (core/heads.py) against the zone it indexes.

Run: ``.venv/bin/python -m bench heads``. One Normal-zone ``ZoneHolds`` is built per
pattern with tracemalloc on; "zone" is everything it holds (tree, counts, index), "index"
the same holds noted in a ``Heads`` alone. The baseline is the zone without its index
(zone minus index), measured in the same run.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable

from pageholder.service.core.heads import Heads
from pageholder.service.core.layout import MemoryLayout
from pageholder.service.core.model import Holder
from pageholder.service.core.zone import ZoneHolds

from ._report import header, write_section
from ._server import Row, table

COMMAND = ".venv/bin/python -m bench heads"
SECTION = "Holder index memory"
NORMAL = 1 << 20
MILLION = 1 << 20


def _patterns() -> dict[str, Callable[[Callable[[int, int, Holder], None]], int]]:
    holders = [Holder(f"h{i}", release_url="http://127.0.0.1:9/") for i in range(64)]

    def interleaved(k: int) -> Callable[[Callable[[int, int, Holder], None]], int]:
        def build(add: Callable[[int, int, Holder], None]) -> int:
            for i in range(MILLION):
                add(NORMAL + i, 0, holders[i % k])
            return MILLION

        return build

    def stride(add: Callable[[int, int, Holder], None]) -> int:
        for i in range(MILLION // 2):
            add(NORMAL + 2 * i, 0, holders[0])
        return MILLION // 2

    def order6(add: Callable[[int, int, Holder], None]) -> int:
        for i in range(3 << 14):
            add(NORMAL + (i << 6), 6, holders[0])
        return 3 << 14

    return {
        "2^20 order-0 holds, one holder": interleaved(1),
        "2^20 order-0 holds, 8 holders page by page": interleaved(8),
        "2^20 order-0 holds, 64 holders page by page (worst case)": interleaved(64),
        "2^19 order-0 holds on every other page": stride,
        "49,152 order-6 holds": order6,
    }


def _traced(build: Callable[[], int]) -> tuple[float, int]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = [build()]
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used, kept[0]


def measure() -> list[Row]:
    rows = []
    zone = MemoryLayout.default().zones[2]
    keep: list[object] = []
    for name, pattern in _patterns().items():

        def with_zone(pattern: Callable[..., int] = pattern) -> int:
            zh = ZoneHolds(zone)
            keep.append(zh)
            return pattern(lambda pfn, order, h: zh.insert(pfn, order, h, 1))

        def index_only(pattern: Callable[..., int] = pattern) -> int:
            heads = Heads()
            keep.append(heads)
            return pattern(lambda pfn, order, h: heads.add(h, pfn, order))

        zone_bytes, holds = _traced(with_zone)
        keep.clear()
        index_bytes, _ = _traced(index_only)
        keep.clear()
        per_zone, per_index = zone_bytes / holds, index_bytes / holds
        rows.append(
            Row(
                name,
                f"{per_zone:.1f} B/hold with the index ({per_index:.1f} of it the index)",
                f"{per_zone - per_index:.1f} B/hold without",
                f"{per_zone / (per_zone - per_index):.2f}x",
                "< 2x",
                per_index < per_zone - per_index,
                "" if per_index < per_zone - per_index else "one dict item per holder per leaf",
            )
        )
    return rows


def main() -> None:
    began = time.monotonic()
    rows = measure()
    text = header(SECTION, COMMAND, time.monotonic() - began) + (
        "tracemalloc, one Normal-zone ZoneHolds per pattern (see bench/bench_heads.py).\n\n"
        + table(rows)
        + "\n"
    )
    print(text)
    write_section(SECTION, text)


if __name__ == "__main__":
    main()
