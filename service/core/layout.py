"""The physical memory layout: nodes, zones and memory blocks; pfn -> zone and block.

Vocabulary (the kernel's words, used with the kernel's meaning):

pfn
    page frame number: a physical address divided by ``PAGE_SIZE`` (4096).
node
    a NUMA node. Every zone belongs to one node.
zone
    the pfn range ``[start_pfn, start_pfn + spanned_pages)`` of one node with one
    purpose (``DMA``, ``DMA32``, ``Normal``, ``Movable``...). Only ``present_pages`` of
    the spanned pages are backed by memory. Its id is ``"{node}/{name}"``, e.g.
    ``"0/Normal"``. Zones never overlap here; a pfn in no zone does not exist.
memory block
    the unit of memory hot-remove. Block ``i`` covers pfns ``[i*B, (i+1)*B)`` with
    ``B = pages_per_block``; only blocks that intersect a zone exist.
block size
    the size of a memory block in bytes: a power of two, at least one page (128 MiB on
    x86_64; the host's is ``/sys/devices/system/memory/block_size_bytes``, in hex).
multizone block
    a block that intersects more than one zone. The kernel refuses to offline one
    ("multizone range"), and so does the registry.

A layout comes from ``MemoryLayout.default()``, a TOML file (``from_toml``), the text
of ``/proc/zoneinfo`` (``from_zoneinfo``) or the running machine (``from_host``);
``load()`` picks one from a ``--layout`` argument. Bad input of any kind raises
``LayoutError``, whose message is one line naming the source, the field or line, and
what is wrong.

>>> layout = MemoryLayout.default()
>>> layout.zone_of(4096).id
'0/DMA32'
>>> layout.zone_of(0) is None
True
>>> block = layout.block_of(5000)
>>> block.id, [zone.name for zone in block.zones], block.multizone
(0, ['DMA', 'DMA32'], True)
"""

from __future__ import annotations

import os
import re
import tomllib
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "PAGE_SIZE",
    "LayoutError",
    "MemoryBlock",
    "MemoryLayout",
    "Zone",
    "ZoneSpec",
]

PAGE_SIZE = 4096
DEFAULT_BLOCK_SIZE = 128 << 20  # x86_64 memory block size
MAX_PFN = 1 << 52  # 64-bit physical addresses in 4096-byte pages
ZONEINFO_PATH = "/proc/zoneinfo"
BLOCK_SIZE_PATH = "/sys/devices/system/memory/block_size_bytes"

_ZONE_NAME = re.compile(r"[A-Za-z0-9_.-]+")  # appears in ids, URLs and TOML unquoted
_ZONE_KEYS = ("node", "name", "start_pfn", "spanned_pages", "present_pages")
_REQUIRED_ZONE_KEYS = _ZONE_KEYS[:4]
_ZONEINFO_HEADER = re.compile(r"Node\s+([0-9]+),\s+zone\s+(\S+)\s*$")
_ZONEINFO_FIELD = re.compile(r"\s*(spanned|present|start_pfn:)\s+(\S+)\s*$")


class LayoutError(ValueError):
    """A layout that cannot be used. ``str(err)`` is one line meant for a person."""


class ZoneLike(Protocol):
    """What ``MemoryLayout`` needs to know of a zone: a ``ZoneSpec`` or a ``Zone``."""

    @property
    def node(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def start_pfn(self) -> int: ...
    @property
    def spanned_pages(self) -> int: ...
    @property
    def present_pages(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class ZoneSpec:
    """A zone as given, before validation; ``present_pages=None`` means all spanned."""

    node: int
    name: str
    start_pfn: int
    spanned_pages: int
    present_pages: int | None = None


@dataclass(frozen=True, slots=True)
class Zone:
    """A validated zone of a layout; ``index`` is its position in ``layout.zones``."""

    node: int
    name: str
    start_pfn: int
    spanned_pages: int
    present_pages: int
    index: int

    @property
    def id(self) -> str:
        """``"{node}/{name}"``, e.g. ``"0/Normal"``."""
        return f"{self.node}/{self.name}"

    @property
    def end_pfn(self) -> int:
        """The first pfn past the zone."""
        return self.start_pfn + self.spanned_pages

    def __contains__(self, pfn: int) -> bool:
        return self.start_pfn <= pfn < self.start_pfn + self.spanned_pages


@dataclass(frozen=True, slots=True)
class MemoryBlock:
    """Memory block ``id``: pfns ``[start_pfn, start_pfn + nr_pages)``.

    ``zones`` are the zones it intersects (at least one), ascending. A block may
    begin or end in a hole: its pfns outside every zone do not exist.
    """

    id: int
    start_pfn: int
    nr_pages: int
    zones: tuple[Zone, ...]

    @property
    def end_pfn(self) -> int:
        return self.start_pfn + self.nr_pages

    @property
    def zone(self) -> Zone:
        """The first zone the block intersects."""
        return self.zones[0]

    @property
    def node(self) -> int:
        """The node of the first zone."""
        return self.zones[0].node

    @property
    def multizone(self) -> bool:
        """True when the block intersects more than one zone: it cannot be offlined."""
        return len(self.zones) > 1

    def __contains__(self, pfn: int) -> bool:
        return self.start_pfn <= pfn < self.start_pfn + self.nr_pages


class MemoryLayout:
    """Zones sorted by ``start_pfn`` and the memory blocks that cover them.

    The layout is immutable. Lookups bisect the zone starts: O(log(zones)).
    """

    __slots__ = (
        "block_size",
        "pages_per_block",
        "zones",
        "multizone_block_ids",
        "nr_blocks",
        "_starts",
        "_ends",
        "_by_id",
    )

    block_size: int
    pages_per_block: int
    zones: tuple[Zone, ...]
    multizone_block_ids: tuple[int, ...]
    nr_blocks: int

    def __init__(self, zones: Iterable[ZoneLike], block_size: int) -> None:
        """Validate ``zones`` and ``block_size`` (bytes); raise ``LayoutError`` if bad.

        Zones may come in any order; they are sorted by ``start_pfn`` and numbered.
        Runtime complexity: O(zones * log(zones)).
        """
        _check_block_size(block_size)
        checked = [_check_zone(spec, n) for n, spec in enumerate(zones, 1)]
        if not checked:
            raise LayoutError("a layout needs at least one zone")
        seen: set[str] = set()
        for zone in checked:
            if zone.id in seen:
                raise LayoutError(f"zone {zone.id} is defined twice")
            seen.add(zone.id)
        checked.sort(key=lambda zone: zone.start_pfn)
        for lower, upper in pairwise(checked):
            if upper.start_pfn < lower.end_pfn:
                raise LayoutError(
                    f"zone {lower.id} [{lower.start_pfn}, {lower.end_pfn}) overlaps"
                    f" zone {upper.id} [{upper.start_pfn}, {upper.end_pfn})"
                )
        self.block_size = block_size
        self.pages_per_block = block_size // PAGE_SIZE
        self.zones = tuple(
            Zone(z.node, z.name, z.start_pfn, z.spanned_pages, z.present_pages, index)
            for index, z in enumerate(checked)
        )
        self._starts = [zone.start_pfn for zone in self.zones]
        self._ends = [zone.end_pfn for zone in self.zones]
        self._by_id = {zone.id: zone for zone in self.zones}

        nr_blocks, last = 0, -1
        multizone: list[int] = []
        for zone in self.zones:
            ids = self.zone_blocks(zone)
            if ids.start <= last:  # shares its first block with the zone before
                if not multizone or multizone[-1] != ids.start:
                    multizone.append(ids.start)
            nr_blocks += ids.stop - max(ids.start, last + 1)
            last = ids.stop - 1
        self.nr_blocks = nr_blocks
        self.multizone_block_ids = tuple(multizone)

    # -- sources ---------------------------------------------------------------------

    @classmethod
    def default(cls) -> MemoryLayout:
        """One node, x86_64 with 16 GiB: DMA, DMA32, Normal; 128 MiB blocks."""
        return cls(
            [
                ZoneSpec(0, "DMA", 1, 4095),
                ZoneSpec(0, "DMA32", 4096, 1048576 - 4096),
                ZoneSpec(0, "Normal", 1048576, 4194304 - 1048576),
            ],
            DEFAULT_BLOCK_SIZE,
        )

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> MemoryLayout:
        """Read a layout file (see ``from_toml_text`` for the format)."""
        text = _read_text(path)
        return cls.from_toml_text(text, source=os.fspath(path))

    @classmethod
    def from_toml_text(cls, text: str, source: str = "<string>") -> MemoryLayout:
        """Parse a layout written in TOML::

            block_size = 134217728      # bytes
            [[zone]]                    # one table per zone
            node = 0
            name = "Normal"
            start_pfn = 1048576
            spanned_pages = 3145728
            present_pages = 3145728     # optional, defaults to spanned_pages

        Unknown keys are refused. Errors name ``source`` and the key, zones as
        ``zone #N`` (the N-th ``[[zone]]`` table) until their id is known.
        """
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            detail = " ".join(str(err).split())
            raise LayoutError(f"{source}: invalid TOML: {detail}") from None
        try:
            return cls._from_document(document)
        except LayoutError as err:
            raise LayoutError(f"{source}: {err}") from None

    @classmethod
    def _from_document(cls, document: dict[str, Any]) -> MemoryLayout:
        for key in document:
            if key not in ("block_size", "zone"):
                raise LayoutError(f"unknown key {key!r} (expected block_size and [[zone]])")
        if "block_size" not in document:
            raise LayoutError("missing required key 'block_size'")
        tables = document.get("zone")
        if tables is None:
            raise LayoutError("no [[zone]] tables")
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise LayoutError("'zone' must be an array of tables, written [[zone]]")
        specs = []
        for n, table in enumerate(tables, 1):
            for key in table:
                if key not in _ZONE_KEYS:
                    raise LayoutError(
                        f"zone #{n}: unknown key {key!r} (expected {', '.join(_ZONE_KEYS)})"
                    )
            for key in _REQUIRED_ZONE_KEYS:
                if key not in table:
                    raise LayoutError(f"zone #{n}: missing required key {key!r}")
            specs.append(ZoneSpec(**table))
        return cls(specs, document["block_size"])

    def to_toml(self) -> str:
        """The layout as TOML that ``from_toml_text`` reads back to an equal layout."""
        lines = [f"block_size = {self.block_size}  # {_human(self.block_size)}"]
        for zone in self.zones:
            lines += [
                "",
                "[[zone]]",
                f"node = {zone.node}",
                f'name = "{zone.name}"',
                f"start_pfn = {zone.start_pfn}",
                f"spanned_pages = {zone.spanned_pages}",
                f"present_pages = {zone.present_pages}",
            ]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_zoneinfo(
        cls, zoneinfo_text: str, block_size: int, source: str = ZONEINFO_PATH
    ) -> MemoryLayout:
        """Parse the text of ``/proc/zoneinfo``.

        Reads the ``Node N, zone NAME`` headers and each zone's ``spanned``,
        ``present`` and ``start_pfn:`` lines; every other line is ignored. Zones with
        no pages spanned are skipped, and so are zones with none present (the kernel
        prints no ``start_pfn:`` for either).
        """
        raw: list[tuple[int, int, str, dict[str, int]]] = []  # line, node, name, fields
        headers: set[tuple[int, str]] = set()
        for lineno, line in enumerate(zoneinfo_text.splitlines(), 1):
            if line.startswith("Node"):
                header = _ZONEINFO_HEADER.match(line)
                if header is None:
                    raise LayoutError(
                        f"{source}: line {lineno}: expected 'Node N, zone NAME',"
                        f" got {line.strip()!r}"
                    )
                node, name = int(header[1]), header[2]
                if (node, name) in headers:
                    raise LayoutError(f"{source}: line {lineno}: second 'Node {node}, zone {name}'")
                headers.add((node, name))
                raw.append((lineno, node, name, {}))
                continue
            field = _ZONEINFO_FIELD.match(line)
            if field is None:
                continue
            key, value = field[1].rstrip(":"), field[2]
            if not raw:
                raise LayoutError(
                    f"{source}: line {lineno}: {key!r} before any 'Node N, zone NAME' line"
                )
            _, node, name, fields = raw[-1]
            if key in fields:
                raise LayoutError(
                    f"{source}: line {lineno}: second {key!r} in 'Node {node}, zone {name}'"
                )
            if not value.isascii() or not value.isdigit():
                raise LayoutError(
                    f"{source}: line {lineno}: {key} must be a non-negative integer, got {value!r}"
                )
            fields[key] = int(value)
        if not raw:
            raise LayoutError(f"{source}: no 'Node N, zone NAME' line; is this /proc/zoneinfo?")

        specs = []
        for lineno, node, name, fields in raw:
            where = f"{source}: line {lineno}: 'Node {node}, zone {name}'"
            for key in ("spanned", "present"):
                if key not in fields:
                    raise LayoutError(f"{where} has no {key!r} line")
            if fields["spanned"] == 0 or ("start_pfn" not in fields and fields["present"] == 0):
                continue
            if "start_pfn" not in fields:
                raise LayoutError(f"{where} has no 'start_pfn:' line")
            specs.append(
                ZoneSpec(node, name, fields["start_pfn"], fields["spanned"], fields["present"])
            )
        if not specs:
            raise LayoutError(f"{source}: no zone spans any pages")
        try:
            return cls(specs, block_size)
        except LayoutError as err:
            raise LayoutError(f"{source}: {err}") from None

    @classmethod
    def from_host(
        cls, zoneinfo_path: str = ZONEINFO_PATH, block_size_path: str = BLOCK_SIZE_PATH
    ) -> MemoryLayout:
        """The running machine: ``/proc/zoneinfo`` and the sysfs memory block size."""
        zoneinfo = _read_text(zoneinfo_path)
        raw = _read_text(block_size_path).strip()
        try:
            block_size = int(raw, 16)  # sysfs prints hex without "0x"
        except ValueError:
            raise LayoutError(
                f"{block_size_path}: expected a hexadecimal size such as '8000000', got {raw!r}"
            ) from None
        try:
            _check_block_size(block_size)
        except LayoutError as err:
            raise LayoutError(f"{block_size_path}: {err}") from None
        return cls.from_zoneinfo(zoneinfo, block_size, source=zoneinfo_path)

    @classmethod
    def load(cls, spec: str) -> MemoryLayout:
        """``"default"``, ``"host"`` or the path of a TOML layout file."""
        if spec == "default":
            return cls.default()
        if spec == "host":
            return cls.from_host()
        return cls.from_toml(spec)

    # -- lookups ---------------------------------------------------------------------

    def zone_of(self, pfn: int) -> Zone | None:
        """The zone spanning ``pfn``, or None. Runtime complexity: O(log(zones))."""
        i = bisect_right(self._starts, pfn) - 1
        if i >= 0 and pfn < self._ends[i]:
            return self.zones[i]
        return None

    def zone_by_id(self, zone_id: str) -> Zone | None:
        """The zone whose id is ``zone_id`` (``"0/Normal"``), or None. O(1)."""
        return self._by_id.get(zone_id)

    def block_id(self, pfn: int) -> int:
        """The id of the block that would cover ``pfn`` (whether or not it exists)."""
        return pfn // self.pages_per_block

    def block(self, block_id: int) -> MemoryBlock | None:
        """Block ``block_id``, or None if it intersects no zone. O(log(zones))."""
        if block_id < 0:
            return None
        start = block_id * self.pages_per_block
        end = start + self.pages_per_block
        first = bisect_right(self._ends, start)  # first zone ending after start
        stop = bisect_left(self._starts, end)  # zones before it start before end
        if first >= stop:
            return None
        return MemoryBlock(block_id, start, self.pages_per_block, self.zones[first:stop])

    def block_of(self, pfn: int) -> MemoryBlock | None:
        """The block covering ``pfn``, or None if ``pfn`` is in no zone.

        A pfn in a hole gets None even when its block exists (pfn 0 of the default
        layout lies in block 0): a pfn outside every zone does not exist.
        """
        if self.zone_of(pfn) is None:
            return None
        return self.block(pfn // self.pages_per_block)

    def blocks(self, start_id: int = 0) -> Iterator[MemoryBlock]:
        """Existing blocks with id >= ``start_id``, ascending, made as they are asked for.

        Runtime complexity: O(log(zones)) per block.
        """
        next_id = max(start_id, 0)
        first = bisect_right(self._ends, next_id * self.pages_per_block)
        for zone in self.zones[first:]:
            ids = self.zone_blocks(zone)
            for block_id in range(max(ids.start, next_id), ids.stop):
                block = self.block(block_id)
                assert block is not None
                yield block
            next_id = max(next_id, ids.stop)

    def zone_blocks(self, zone: Zone) -> range:
        """The ids of the blocks intersecting ``zone``."""
        pages = self.pages_per_block
        return range(zone.start_pfn // pages, (zone.end_pfn - 1) // pages + 1)

    def describe(self) -> str:
        """A short summary: a header line, then one aligned line per zone.

        >>> print(MemoryLayout.default().describe())  # doctest: +NORMALIZE_WHITESPACE
        1 node, 3 zones, 16.0 GiB present; 128 blocks of 128 MiB (32768 pages); multizone blocks: 0
          0/DMA     pfn [1, 4096)           16.0 MiB present  blocks 0-0
          0/DMA32   pfn [4096, 1048576)      4.0 GiB present  blocks 0-31
          0/Normal  pfn [1048576, 4194304)    12 GiB present  blocks 32-127
        """
        nodes = len({zone.node for zone in self.zones})
        present = sum(zone.present_pages for zone in self.zones)
        multizone = ", ".join(map(str, self.multizone_block_ids)) or "none"
        lines = [
            f"{_plural(nodes, 'node')}, {_plural(len(self.zones), 'zone')},"
            f" {_human(present * PAGE_SIZE)} present; {_plural(self.nr_blocks, 'block')} of"
            f" {_human(self.block_size)} ({self.pages_per_block} pages);"
            f" multizone blocks: {multizone}"
        ]
        rows = [
            (
                zone.id,
                f"[{zone.start_pfn}, {zone.end_pfn})",
                _human(zone.present_pages * PAGE_SIZE),
                f"{ids.start}-{ids.stop - 1}",
            )
            for zone in self.zones
            for ids in [self.zone_blocks(zone)]
        ]
        widths = [max(len(row[column]) for row in rows) for column in range(3)]
        for zone_id, pfns, size, blocks in rows:
            lines.append(
                f"  {zone_id:<{widths[0]}}  pfn {pfns:<{widths[1]}}  {size:>{widths[2]}} present"
                f"  blocks {blocks}"
            )
        return "\n".join(lines)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MemoryLayout):
            return NotImplemented
        return self.block_size == other.block_size and self.zones == other.zones

    def __hash__(self) -> int:
        return hash((self.block_size, self.zones))

    def __repr__(self) -> str:
        zones = ", ".join(zone.id for zone in self.zones)
        return f"MemoryLayout(zones=[{zones}], block_size={self.block_size})"


def _check_block_size(block_size: object) -> None:
    size = _check_int(block_size, "block_size")
    if size < PAGE_SIZE or size & (size - 1):
        raise LayoutError(
            f"block_size must be a power of two and a multiple of {PAGE_SIZE} bytes, got {size}"
        )


def _check_zone(spec: ZoneLike, n: int) -> Zone:
    """Validate one zone; ``n`` counts zones from 1 as given. Returns it with index -1."""
    where = f"zone #{n}"
    node = _check_int(spec.node, f"{where}: node")
    if node < 0:
        raise LayoutError(f"{where}: node must be >= 0, got {node}")
    name: object = spec.name
    if not isinstance(name, str):
        raise LayoutError(f"{where}: name must be a string, got {_kind(name)}")
    if not _ZONE_NAME.fullmatch(name):
        raise LayoutError(f"{where}: name must be letters, digits, '_', '.' or '-', got {name!r}")
    where = f"zone {node}/{name}"
    start = _check_int(spec.start_pfn, f"{where}: start_pfn")
    spanned = _check_int(spec.spanned_pages, f"{where}: spanned_pages")
    present = spanned if spec.present_pages is None else spec.present_pages
    present = _check_int(present, f"{where}: present_pages")
    if start < 0:
        raise LayoutError(f"{where}: start_pfn must be >= 0, got {start}")
    if spanned <= 0:
        raise LayoutError(f"{where}: spanned_pages must be > 0, got {spanned}")
    if not 0 <= present <= spanned:
        raise LayoutError(
            f"{where}: present_pages must be between 0 and spanned_pages ({spanned}), got {present}"
        )
    if start + spanned > MAX_PFN:
        raise LayoutError(f"{where}: ends at pfn {start + spanned}, past 2**52")
    return Zone(node, name, start, spanned, present, -1)


def _check_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LayoutError(f"{what} must be an integer, got {_kind(value)}")
    return value


def _kind(value: object) -> str:
    """How a person would name ``value`` in a TOML file: ``a string '4096'``."""
    kinds = {str: "a string", bool: "a boolean", float: "a float", list: "an array"}
    kind = "a table" if isinstance(value, dict) else kinds.get(type(value), type(value).__name__)
    shown = repr(value)
    return f"{kind} {shown if len(shown) <= 40 else shown[:37] + '...'}"


def _read_text(path: str | os.PathLike[str]) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LayoutError(f"{os.fspath(path)}: no such file") from None
    except UnicodeDecodeError as err:
        raise LayoutError(f"{os.fspath(path)}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise LayoutError(f"{os.fspath(path)}: cannot read: {err.strerror or err}") from None


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _human(nbytes: int) -> str:
    """``134217728`` -> ``'128 MiB'``; one decimal when not whole."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift:
            value = nbytes / (1 << shift)
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{nbytes} B"
