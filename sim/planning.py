"""Where each simulated subsystem's holds go: disjoint slices of the blocks it uses."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pageholder.client import Block

from .scenario import HUGE9, HUGE18, RUN_PAGES, ScenarioError, SubsystemSpec


@dataclass(frozen=True, slots=True)
class HoldPlan:
    """The holds one subsystem makes: ``pages`` as ``(pfn, order)``, ``ranges`` as
    ``(start_pfn, nr_pages)`` runs of single pages."""

    pages: tuple[tuple[int, int], ...] = ()
    ranges: tuple[tuple[int, int], ...] = ()

    @property
    def holds(self) -> int:
        return len(self.pages) + sum(n for _, n in self.ranges)

    @property
    def nr_pages(self) -> int:
        return sum(1 << order for _, order in self.pages) + sum(n for _, n in self.ranges)


def plan_holds(specs: Sequence[SubsystemSpec], blocks: Mapping[int, Block]) -> dict[str, HoldPlan]:
    """Where each subsystem's holds go. ``blocks`` has every block the specs name.

    Each spec's ``count`` is split evenly over its blocks; within a block, the
    subsystems that use it (huge18 ones aside) each get an equal, disjoint slice.
    Raises ``ScenarioError`` when the holds do not fit in the slice.
    """
    sharing: dict[int, list[str]] = {}
    for spec in specs:
        if spec.pattern != "huge18":
            for block_id in spec.unique_blocks:
                sharing.setdefault(block_id, []).append(spec.name)
    plans: dict[str, HoldPlan] = {}
    for spec in specs:
        if spec.pattern == "huge18":
            plans[spec.name] = _plan_huge18(spec, blocks)
            continue
        pages: list[tuple[int, int]] = []
        ranges: list[tuple[int, int]] = []
        ids = spec.unique_blocks
        for i, block_id in enumerate(ids):
            n = spec.count // len(ids) + (1 if i < spec.count % len(ids) else 0)
            if n == 0:
                continue
            users = sharing[block_id]
            block = blocks[block_id]
            size = block.nr_pages // len(users)
            start = block.start_pfn + users.index(spec.name) * size
            _place(spec, n, block_id, start, start + size, pages, ranges)
        plans[spec.name] = HoldPlan(tuple(pages), tuple(ranges))
    return plans


def _place(
    spec: SubsystemSpec,
    n: int,
    block_id: int,
    start: int,
    end: int,
    pages: list[tuple[int, int]],
    ranges: list[tuple[int, int]],
) -> None:
    span = end - start
    if spec.pattern == "huge9":
        size = 1 << HUGE9
        first = -(-start // size) * size
        slots = max(0, (end - first) // size)
        if n > slots:
            raise _no_room(spec, n, block_id, slots)
        stride = slots // n * size
        pages.extend((first + i * stride, HUGE9) for i in range(n))
    elif spec.pattern == "runs":
        runs = math.ceil(n / RUN_PAGES)
        if runs * RUN_PAGES > span:
            raise _no_room(spec, n, block_id, span // RUN_PAGES * RUN_PAGES)
        stride = span // runs
        for i in range(runs):
            ranges.append((start + i * stride, min(RUN_PAGES, n - i * RUN_PAGES)))
    else:  # scattered
        if n > span:
            raise _no_room(spec, n, block_id, span)
        stride = span // n
        pages.extend((start + i * stride, 0) for i in range(n))


def _no_room(spec: SubsystemSpec, n: int, block_id: int, room: int) -> ScenarioError:
    return ScenarioError(
        f"subsystem {spec.name}: count: {n} {spec.pattern} holds do not fit in its share "
        f"of block {block_id} (room for {room})"
    )


def _plan_huge18(spec: SubsystemSpec, blocks: Mapping[int, Block]) -> HoldPlan:
    size = 1 << HUGE18
    heads = list(dict.fromkeys(blocks[b].start_pfn // size * size for b in spec.unique_blocks))
    while len(heads) < spec.count:
        heads.append(heads[-1] + size)
    return HoldPlan(tuple((head, HUGE18) for head in heads[: spec.count]))
