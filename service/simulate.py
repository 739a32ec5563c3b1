"""Simulated subsystems: real release handlers that hold pages in a real registry.

A *scenario* lists subsystems; each is a holder of the registry with a ``behaviour``
(how its release handler answers) and a ``pattern`` (which pages it holds)::

    behaviour    its release handler (a real ReleaseReceiver on its own port)
    cooperative  releases every page at once                 204
    refusing     refuses: "<name>: pages pinned by DMA"      500 {"error"}
    slow         sleeps delay_s (default 2), then releases   204 after delay_s
    flaky        the first `temporary` calls (default 2)     503 + Retry-After, then 204
                 say "later", then it releases
    partial      releases half of the pages of each call     200 {"released", "failed"}
    no_handler   registers without a release_url: no receiver at all

    pattern      its holds (count = how many holds), spread evenly over its blocks
    scattered    single pages (order 0) spaced across the block
    runs         contiguous runs of 16 single pages
    huge9        order-9 holds (2 MiB pages), 512-aligned
    huge18       order-18 holds (1 GiB), aligned: one covers several 128 MiB blocks,
                 starting at the aligned boundary at or below each listed block

Subsystems that share a block each get a disjoint slice of it, so their holds never
collide (huge18 holds take whole aligned ranges and may collide; a refused hold is
counted in ``Subsystem.refused`` and logged, not fatal).

A scenario comes from a TOML file (``Scenario.from_toml``)::

    [[subsystem]]
    name = "nic0"
    behaviour = "cooperative"
    pattern = "scattered"
    count = 64
    blocks = [40, 41]        # or "40-41"
    timeout_s = 5            # optional: the holder's webhook timeout
    delay_s = 2              # optional: slow only
    temporary = 2            # optional: flaky only
    port = 0                 # optional: a fixed port for the receiver

or from ``name:behaviour:pattern:count:blocks[:key=value...]`` strings
(``Scenario.from_specs``), e.g. ``nic0:cooperative:scattered:64:40-41``.

Restarts: a holder's ``webhook_secret`` is returned only when it is created, so a
subsystem whose holder already exists (the simulator ran before) deletes it with
``force`` (dropping its holds) and registers it again, then holds its pages afresh.

``SimulatedFleet`` runs a scenario against a registry (``async with``); the
``pageholder simulate`` command runs one until SIGINT/SIGTERM or ``--duration``, logging
one line per release request and one per answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import math
import signal
import sys
import time
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args

import typer
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from pageholder.client import (
    AsyncPageHolderClient,
    BatchResult,
    Block,
    BlockNotFound,
    ClientError,
    HolderCreated,
    HolderExists,
    ReleaseReceiver,
    ReleaseRequest,
    ReleaseResult,
    RunningReceiver,
    serve_receiver,
)

from .commands import client_errors, err

__all__ = [
    "BEHAVIOURS",
    "PATTERNS",
    "HoldPlan",
    "ReleaseCall",
    "Scenario",
    "ScenarioError",
    "SimulatedFleet",
    "Subsystem",
    "SubsystemSpec",
    "plan_holds",
    "register",
]

log = logging.getLogger("pageholder.simulate")

Behaviour = Literal["cooperative", "refusing", "slow", "flaky", "partial", "no_handler"]
Pattern = Literal["scattered", "runs", "huge9", "huge18"]
BEHAVIOURS: Final[tuple[str, ...]] = get_args(Behaviour)
PATTERNS: Final[tuple[str, ...]] = get_args(Pattern)

#: Pages in one run of the ``runs`` pattern.
RUN_PAGES: Final = 16
#: What a flaky handler asks the registry to wait before it retries.
FLAKY_RETRY_AFTER_S: Final = 0.2
HUGE9: Final = 9
HUGE18: Final = 18
MAX_HOLDS: Final = 65536  # one batch-set


class ScenarioError(ValueError):
    """A scenario that cannot run; the message is one line that names the field."""


# --- the scenario ------------------------------------------------------------------------


def _parse_blocks(value: Any) -> Any:
    """``"40-41,45"`` -> ``[40, 41, 45]``; a list (or anything else) is left to pydantic."""
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if not isinstance(value, str):
        return value
    blocks: list[int] = []
    for part in value.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            lo = int(first)
            hi = int(last) if dash else lo
        except ValueError:
            raise ValueError(f"not a block list like '40-41,45': {value!r}") from None
        if hi < lo:
            raise ValueError(f"empty block range {part.strip()!r}")
        blocks.extend(range(lo, hi + 1))
    return blocks


class SubsystemSpec(BaseModel):
    """One simulated subsystem of a scenario (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    behaviour: Behaviour
    pattern: Pattern
    count: int = Field(ge=1, le=MAX_HOLDS)
    blocks: Annotated[
        list[Annotated[int, Field(ge=0)]], BeforeValidator(_parse_blocks), Field(min_length=1)
    ]
    timeout_s: float = Field(default=5.0, ge=0.1, le=30)
    delay_s: float = Field(default=2.0, ge=0, le=300)
    temporary: int = Field(default=2, ge=0, le=1000)
    port: int = Field(default=0, ge=0, le=65535)
    description: str = ""

    @classmethod
    def make(
        cls, name: str, behaviour: str, pattern: str, count: int, *blocks: int, **extra: float
    ) -> SubsystemSpec:
        """``make("nic0", "cooperative", "scattered", 64, 40, 41, timeout_s=2)``, checked."""
        fields = {"name": name, "behaviour": behaviour, "pattern": pattern, "count": count}
        return cls.model_validate({**fields, "blocks": list(blocks), **extra})

    @property
    def order(self) -> int:
        return {"huge9": HUGE9, "huge18": HUGE18}.get(self.pattern, 0)

    @property
    def unique_blocks(self) -> list[int]:
        return list(dict.fromkeys(self.blocks))

    def describe(self) -> str:
        """``flaky (2 x 'later' first), 48 runs holds in block 44``."""
        extra = ""
        if self.behaviour == "slow":
            extra = f" ({self.delay_s:g} s late)"
        elif self.behaviour == "flaky":
            extra = f" ({self.temporary} x 'later' first)"
        where = "blocks" if len(self.unique_blocks) > 1 else "block"
        return (
            f"{self.behaviour}{extra}, {self.count} {self.pattern} holds in {where} "
            f"{block_list(self.blocks)}"
        )


def block_list(blocks: Iterable[int]) -> str:
    """``[40, 41, 42, 45]`` -> ``"40-42, 45"``."""
    ordered = sorted(set(blocks))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ", ".join(parts)


class _ScenarioFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subsystem: list[SubsystemSpec] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class Scenario:
    """The subsystems to simulate; names and fixed ports are unique."""

    subsystems: tuple[SubsystemSpec, ...]

    def __post_init__(self) -> None:
        if not self.subsystems:
            raise ScenarioError("a scenario needs at least one subsystem")
        seen: set[str] = set()
        ports: dict[int, str] = {}
        for spec in self.subsystems:
            if spec.name in seen:
                raise ScenarioError(f"subsystem {spec.name}: name: used twice")
            seen.add(spec.name)
            if spec.port and spec.behaviour != "no_handler":
                if spec.port in ports:
                    raise ScenarioError(
                        f"subsystem {spec.name}: port: {spec.port} is {ports[spec.port]}'s too"
                    )
                ports[spec.port] = spec.name

    @classmethod
    def from_toml(cls, path: str | Path) -> Scenario:
        """Read a scenario file; ``ScenarioError`` names the file and the bad field."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ScenarioError(f"{path}: cannot read: {reason}") from None
        return cls.from_toml_text(text, str(path))

    @classmethod
    def from_toml_text(cls, text: str, source: str = "<scenario>") -> Scenario:
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
        try:
            parsed = _ScenarioFile.model_validate(document)
        except ValidationError as exc:
            raise ScenarioError(f"{source}: {_first_error(exc, document)}") from None
        try:
            return cls(tuple(parsed.subsystem))
        except ScenarioError as exc:
            raise ScenarioError(f"{source}: {exc}") from None

    @classmethod
    def from_specs(cls, specs: Iterable[str]) -> Scenario:
        """From ``name:behaviour:pattern:count:blocks[:key=value...]`` strings."""
        subsystems = []
        for text in specs:
            subsystems.append(parse_spec(text))
        return cls(tuple(subsystems))


SPEC_FIELDS: Final = ("name", "behaviour", "pattern", "count", "blocks")


def parse_spec(text: str) -> SubsystemSpec:
    """``nic0:cooperative:scattered:64:40-41[:delay_s=1...]`` as a ``SubsystemSpec``."""
    parts = text.split(":")
    if len(parts) < len(SPEC_FIELDS):
        raise ScenarioError(
            f"--subsystem {text!r}: expected name:behaviour:pattern:count:blocks[:key=value...]"
        )
    values: dict[str, Any] = dict(zip(SPEC_FIELDS, parts, strict=False))
    for extra in parts[len(SPEC_FIELDS) :]:
        key, eq, value = extra.partition("=")
        if not eq:
            raise ScenarioError(f"--subsystem {text!r}: {extra!r} is not key=value")
        values[key.strip()] = value.strip()
    try:
        return SubsystemSpec.model_validate(values)
    except ValidationError as exc:
        raise ScenarioError(f"--subsystem {text!r}: {_first_error(exc, None)}") from None


def _first_error(exc: ValidationError, document: Any) -> str:
    """The first validation error as ``subsystem 2 (nic0): count: <message>``; an
    unknown field goes first (a misspelt ``cuont`` explains the missing ``count``)."""
    errors = exc.errors()
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = list(error["loc"])
    where = ""
    if len(loc) >= 2 and loc[0] == "subsystem" and isinstance(loc[1], int):
        index = loc[1]
        where = f"subsystem {index + 1}"
        with contextlib.suppress(LookupError, TypeError, AttributeError):
            name = document["subsystem"][index].get("name")
            if isinstance(name, str):
                where += f" ({name})"
        loc = loc[2:]
    # nested list entries (blocks[1]) read as "blocks[1]"; a validator's own loc is noise
    names = [str(p) if not isinstance(p, int) else f"[{p}]" for p in loc]
    path = "".join(n if n.startswith("[") else f".{n}" for n in names).lstrip(".")
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    elif error["type"] != "missing" and "input" in error:
        message += f" (got {error['input']!r})"
    label = ": ".join(x for x in (where, path or "scenario") if x)
    return f"{label}: {message}"


# --- where the holds go ----------------------------------------------------------------


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


# --- one running subsystem -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReleaseCall:
    """One release request a subsystem got, and what it answered."""

    request: ReleaseRequest
    answer: str  # all | partial | later | refuse
    detail: str
    released_pages: int
    at: float  # time.monotonic() when answered

    @property
    def nr_pages(self) -> int:
        return sum(1 << p.order for p in self.request.pages)


@dataclass
class Subsystem:
    """A simulated subsystem: its holder, receiver, holds and the calls it answered."""

    spec: SubsystemSpec
    plan: HoldPlan = field(default_factory=HoldPlan)
    holder: HolderCreated | None = None
    running: RunningReceiver | None = None
    #: head pfn -> order of what it believes it holds (held, not yet released)
    held: dict[int, int] = field(default_factory=dict)
    #: batch-set entries the registry refused (page held by someone else, ...)
    refused: list[BatchResult] = field(default_factory=list)
    calls: list[ReleaseCall] = field(default_factory=list)
    released_pages: int = 0
    #: how many "later" answers it gave (flaky: the first ``spec.temporary`` calls)
    later_answers: int = 0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def release_url(self) -> str | None:
        return None if self.holder is None else self.holder.release_url

    @property
    def held_pages(self) -> int:
        return sum(1 << order for order in self.held.values())

    async def on_release(self, request: ReleaseRequest) -> ReleaseResult:
        """The release handler: answer as the behaviour says, and log both ends."""
        nr_pages = sum(1 << p.order for p in request.pages)
        block = "-" if request.block is None else request.block
        log.info(
            "%s <- release request: reason=%s block=%s holds=%d pages=%d",
            self.name,
            request.reason,
            block,
            len(request.pages),
            nr_pages,
        )
        result = await self._answer(request)
        released = {p.pfn for p in request.pages} if result.kind == "all" else set()
        released.update(result.released)
        pages = 0
        for pfn in released:
            order = self.held.pop(pfn, None)
            if order is not None:
                pages += 1 << order
        self.released_pages += pages
        detail = _describe(result, len(request.pages))
        self.calls.append(ReleaseCall(request, result.kind, detail, pages, time.monotonic()))
        log.info("%s -> %s (block=%s)", self.name, detail, block)
        return result

    async def _answer(self, request: ReleaseRequest) -> ReleaseResult:
        behaviour = self.spec.behaviour
        if behaviour == "refusing":
            return ReleaseResult.refuse(f"{self.name}: pages pinned by DMA")
        if behaviour == "slow":
            await asyncio.sleep(self.spec.delay_s)
        elif behaviour == "flaky" and self.later_answers < self.spec.temporary:
            self.later_answers += 1
            return ReleaseResult.later(
                FLAKY_RETRY_AFTER_S,
                error=f"{self.name}: busy ({self.later_answers} of {self.spec.temporary})",
            )
        elif behaviour == "partial":
            heads = sorted(p.pfn for p in request.pages)
            keep = heads[(len(heads) + 1) // 2 :]
            return ReleaseResult.partial(
                heads[: (len(heads) + 1) // 2],
                {pfn: f"{self.name}: page busy with in-flight I/O" for pfn in keep},
            )
        return ReleaseResult.all()


def _describe(result: ReleaseResult, holds: int) -> str:
    if result.kind == "all":
        return f"released all {holds} holds"
    if result.kind == "partial":
        return f"released {len(result.released)} of {holds} holds, refused {len(result.failed)}"
    if result.kind == "later":
        return f"later: HTTP {result.status}, retry after {result.retry_after_s:g} s"
    return f"refused: HTTP {result.status} {result.error}"


# --- the fleet ---------------------------------------------------------------------------


class SimulatedFleet:
    """Runs a ``Scenario`` against a registry: registers every subsystem, serves its
    release handler on ``listen_host`` and holds its pages; ``stop()`` (or leaving the
    ``async with``) stops the handlers. ``client`` needs the admin token.

    Holders stay registered after ``stop()`` (a stopped subsystem that never gave its
    pages back) unless ``cleanup`` is true: then they are deleted with their holds.
    """

    def __init__(
        self,
        client: AsyncPageHolderClient,
        scenario: Scenario,
        listen_host: str = "127.0.0.1",
        advertise_host: str | None = None,
        *,
        cleanup: bool = False,
    ) -> None:
        self.client = client
        self.scenario = scenario
        self.listen_host = listen_host
        self.advertise_host = advertise_host or listen_host
        if advertise_host is None and _unspecified(listen_host):
            raise ScenarioError(
                f"advertise-host: needed when listening on {listen_host} "
                "(the registry must be told an address it can reach)"
            )
        self.cleanup = cleanup
        self.subsystems: dict[str, Subsystem] = {
            spec.name: Subsystem(spec) for spec in scenario.subsystems
        }
        self.blocks: dict[int, Block] = {}

    async def __aenter__(self) -> SimulatedFleet:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def held_pages(self) -> int:
        return sum(s.held_pages for s in self.subsystems.values())

    async def start(self) -> None:
        """Register, serve and hold, subsystem by subsystem; on failure undo it all."""
        try:
            await self._load_blocks()
            plans = plan_holds(self.scenario.subsystems, self.blocks)
            for subsystem in self.subsystems.values():
                subsystem.plan = plans[subsystem.name]
                await self._register(subsystem)
            for subsystem in self.subsystems.values():
                await self._hold(subsystem)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop every release handler; with ``cleanup``, delete the holders. Idempotent."""
        closing = []
        for subsystem in self.subsystems.values():
            if subsystem.running is not None:
                closing.append(subsystem.running.close())
                subsystem.running = None
        await asyncio.gather(*closing)
        if self.cleanup:
            for subsystem in self.subsystems.values():
                if subsystem.holder is not None:
                    with contextlib.suppress(ClientError):
                        await self.client.delete_holder(subsystem.name, force=True)
                    subsystem.holder = None

    async def _load_blocks(self) -> None:
        for spec in self.scenario.subsystems:
            for block_id in spec.unique_blocks:
                if block_id in self.blocks:
                    continue
                try:
                    block = await self.client.get_block(block_id)
                except BlockNotFound:
                    raise ScenarioError(
                        f"subsystem {spec.name}: blocks: block {block_id} is not in the "
                        "registry's memory layout"
                    ) from None
                if block.state != "online" and spec.pattern != "huge18":
                    raise ScenarioError(
                        f"subsystem {spec.name}: blocks: block {block_id} is {block.state}, "
                        f"not online (pageholder online {block_id})"
                    )
                self.blocks[block_id] = block

    async def _register(self, subsystem: Subsystem) -> None:
        spec = subsystem.spec
        description = spec.description or f"simulated: {spec.describe()}"
        try:
            created = await self.client.create_holder(
                spec.name, timeout_s=spec.timeout_s, description=description
            )
        except HolderExists:
            # The webhook secret is shown only at creation: start over with a new holder.
            log.info("%s: holder existed (a restart?): deleted with its holds", spec.name)
            await self.client.delete_holder(spec.name, force=True)
            created = await self.client.create_holder(
                spec.name, timeout_s=spec.timeout_s, description=description
            )
        subsystem.holder = created
        if spec.behaviour == "no_handler":
            return
        receiver = ReleaseReceiver(created.webhook_secret, subsystem.on_release)
        try:
            subsystem.running = await serve_receiver(receiver, self.listen_host, spec.port)
        except OSError as exc:
            raise ScenarioError(
                f"subsystem {spec.name}: port: cannot listen on "
                f"{_netloc(self.listen_host)}:{spec.port}: {exc.strerror or exc}"
            ) from None
        url = f"http://{_netloc(self.advertise_host)}:{subsystem.running.port}/"
        holder = await self.client.update_holder(spec.name, release_url=url)
        subsystem.holder = dataclasses.replace(created, release_url=holder.release_url)

    async def _hold(self, subsystem: Subsystem) -> None:
        plan = subsystem.plan
        results = await self.client.batch_set(subsystem.name, pages=plan.pages, ranges=plan.ranges)
        for result in results:
            if result.status == "error":
                subsystem.refused.append(result)
            else:
                subsystem.held[result.pfn] = result.order
        if subsystem.refused:
            codes: dict[str, int] = {}
            for result in subsystem.refused:
                codes[result.code or "error"] = codes.get(result.code or "error", 0) + 1
            log.warning(
                "%s: %d of %d holds refused by the registry (%s)",
                subsystem.name,
                len(subsystem.refused),
                len(results),
                ", ".join(f"{code} x{n}" for code, n in codes.items()),
            )


def _unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return host == ""


def _netloc(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# --- the command -------------------------------------------------------------------------


def simulate(
    registry: Annotated[
        str, typer.Option("--registry", envvar="PAGEHOLDER_URL", help="registry URL")
    ],
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="PAGEHOLDER_TOKEN", help="the registry's admin token"),
    ] = None,
    scenario_file: Annotated[
        Path | None, typer.Option("--scenario", help="a TOML scenario file", dir_okay=False)
    ] = None,
    subsystem: Annotated[
        list[str] | None,
        typer.Option(
            "--subsystem",
            help="name:behaviour:pattern:count:blocks[:key=value...], "
            "e.g. nic0:cooperative:scattered:64:40-41 (repeatable)",
        ),
    ] = None,
    listen_host: Annotated[
        str, typer.Option(help="address the release handlers listen on")
    ] = "127.0.0.1",
    advertise_host: Annotated[
        str | None,
        typer.Option(help="host put in the release URLs (default: --listen-host)"),
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="stop after this many seconds (default: on a signal)")
    ] = None,
    cleanup: Annotated[
        bool, typer.Option("--cleanup", help="delete the holders (and their holds) on exit")
    ] = False,
) -> None:
    """Simulated subsystems: real release handlers on local ports that register as
    holders and hold pages, answering release calls as their behaviour says.

    A holder that exists already (a restart) is deleted with its holds and registered
    anew: its webhook secret is shown only when it is created."""
    try:
        if (scenario_file is None) == (not subsystem):
            raise ScenarioError("give --scenario FILE or --subsystem SPEC..., one of the two")
        scenario = (
            Scenario.from_toml(scenario_file)
            if scenario_file is not None
            else Scenario.from_specs(subsystem or ())
        )
    except ScenarioError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with client_errors(registry):
            code = asyncio.run(
                _run(registry, token, scenario, listen_host, advertise_host, duration, cleanup)
            )
    except ScenarioError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except OSError as exc:
        err.print(f"[red]error:[/red] {exc.strerror or exc}")
        raise typer.Exit(1) from None
    raise typer.Exit(code)


async def _run(
    url: str,
    token: str | None,
    scenario: Scenario,
    listen_host: str,
    advertise_host: str | None,
    duration: float | None,
    cleanup: bool,
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with (
            AsyncPageHolderClient(url, token) as client,
            SimulatedFleet(client, scenario, listen_host, advertise_host, cleanup=cleanup) as fleet,
        ):
            for s in fleet.subsystems.values():
                log.info(
                    "%s: %s = %d pages; release handler: %s",
                    s.name,
                    s.spec.describe(),
                    s.held_pages,
                    s.release_url or "none",
                )
            until = "until SIGINT/SIGTERM" if duration is None else f"for {duration:g} s"
            log.info(
                "simulating %d subsystems holding %d pages against %s, %s",
                len(fleet.subsystems),
                fleet.held_pages,
                url,
                until,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration)
            log.info("stopping")
            for s in fleet.subsystems.values():
                log.info(
                    "%s: %d release calls, released %d pages, still holds %d pages",
                    s.name,
                    len(s.calls),
                    s.released_pages,
                    s.held_pages,
                )
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return 0


def register(cli: typer.Typer) -> None:
    cli.command()(simulate)
