"""Scenarios of simulated subsystems: what each one is, does and holds.

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
    lease_ttl_s = 3          # optional: a holder lease, kept alive while it runs
    on_expiry = "keep"       # optional: keep | reclaim its holds when the lease expires

or from ``name:behaviour:pattern:count:blocks[:key=value...]`` strings
(``Scenario.from_specs``), e.g. ``nic0:cooperative:scattered:64:40-41``.

Restarts: a holder's ``webhook_secret`` is returned only when it is created, so a
subsystem whose holder already exists (the simulator ran before) deletes it with
``force`` (dropping its holds) and registers it again, then holds its pages afresh.

Leases: a subsystem with ``lease_ttl_s`` registers a holder with that lease and keeps
it alive (its ``ReleaseReceiver`` does, or the client for one without a handler) for
as long as it runs. Kill the process (SIGKILL) and the keepalives stop: after the TTL
its holds read ``orphaned``, which is how ``pageholder demo`` shows a subsystem dying.

``SimulatedFleet`` runs a scenario against a registry (``async with``); the
``pageholder simulate`` command runs one until SIGINT/SIGTERM or ``--duration``, logging
one line per release request and one per answer.
"""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

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
    lease_ttl_s: float | None = Field(default=None, ge=1, le=3600)
    on_expiry: Literal["keep", "reclaim"] = "keep"

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
        lease = "" if self.lease_ttl_s is None else f", lease {self.lease_ttl_s:g} s"
        return (
            f"{self.behaviour}{extra}, {self.count} {self.pattern} holds in {where} "
            f"{block_list(self.blocks)}{lease}"
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
