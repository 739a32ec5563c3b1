"""MemoryLayout: zones, memory blocks and where they come from.

The story: the built-in default layout and its boundaries, then layouts read from
/proc/zoneinfo (this machine's shape and a two-node machine), a TOML layout with
holes, the running host, TOML round trips, and every kind of bad input, which must
give one clear line and never a traceback. A property test checks the bisecting
lookups against a pfn-by-pfn model on small random layouts.
"""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pageholder.service.core import layout as layout_module
from pageholder.service.core.layout import (
    DEFAULT_BLOCK_SIZE,
    PAGE_SIZE,
    LayoutError,
    MemoryBlock,
    MemoryLayout,
    Zone,
    ZoneSpec,
)

FIXTURES = Path(__file__).parent / "fixtures"
ONE_NODE = FIXTURES / "zoneinfo-1node.txt"  # this machine's /proc/zoneinfo
TWO_NODE = FIXTURES / "zoneinfo-2node.txt"
SPARSE = FIXTURES / "layout-sparse.toml"
MiB = 1 << 20
GiB = 1 << 30

default = MemoryLayout.default()


def zone_ids(layout: MemoryLayout) -> list[str]:
    return [zone.id for zone in layout.zones]


def one_line_error(excinfo: pytest.ExceptionInfo[LayoutError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message.strip() == message
    # no chained exception for a traceback to show ("During handling of ...")
    error = excinfo.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    return message


# -- the default layout -------------------------------------------------------------


def test_default_layout_values() -> None:
    assert PAGE_SIZE == 4096
    assert default.block_size == DEFAULT_BLOCK_SIZE == 128 * MiB
    assert default.pages_per_block == 32768
    assert [(z.node, z.name, z.start_pfn, z.end_pfn) for z in default.zones] == [
        (0, "DMA", 1, 4096),
        (0, "DMA32", 4096, 1048576),
        (0, "Normal", 1048576, 4194304),
    ]
    assert all(z.present_pages == z.spanned_pages for z in default.zones)
    assert [z.index for z in default.zones] == [0, 1, 2]
    assert zone_ids(default) == ["0/DMA", "0/DMA32", "0/Normal"]
    assert default.nr_blocks == 128  # 16 GiB / 128 MiB
    assert default.multizone_block_ids == (0,)
    assert default == MemoryLayout.load("default")


@pytest.mark.parametrize(
    ("pfn", "zone_id"),
    [
        (-1, None),
        (0, None),  # below DMA: the first page frame is not in any zone
        (1, "0/DMA"),
        (4095, "0/DMA"),
        (4096, "0/DMA32"),
        (1048575, "0/DMA32"),
        (1048576, "0/Normal"),
        (4194303, "0/Normal"),
        (4194304, None),  # past the last zone
        (1 << 60, None),
    ],
)
def test_default_zone_of_boundaries(pfn: int, zone_id: str | None) -> None:
    zone = default.zone_of(pfn)
    assert (zone.id if zone else None) == zone_id
    if zone is not None:
        assert pfn in zone and zone is default.zone_by_id(zone.id)
        assert zone is default.zones[zone.index]


@pytest.mark.parametrize(
    ("pfn", "block_id", "zones"),
    [
        (0, None, None),  # block 0 exists, but pfn 0 does not
        (1, 0, ["0/DMA", "0/DMA32"]),
        (4096, 0, ["0/DMA", "0/DMA32"]),
        (32767, 0, ["0/DMA", "0/DMA32"]),
        (32768, 1, ["0/DMA32"]),
        (1048575, 31, ["0/DMA32"]),
        (1048576, 32, ["0/Normal"]),
        (4194303, 127, ["0/Normal"]),
        (4194304, None, None),
    ],
)
def test_default_block_of_boundaries(
    pfn: int, block_id: int | None, zones: list[str] | None
) -> None:
    block = default.block_of(pfn)
    if block_id is None:
        assert block is None
        return
    assert block is not None and pfn in block
    assert block.id == block_id == default.block_id(pfn)
    assert (block.start_pfn, block.nr_pages) == (block_id * 32768, 32768)
    assert block.end_pfn == block.start_pfn + 32768
    assert [z.id for z in block.zones] == zones
    assert block.zone.id == zones[0] and block.node == 0
    assert block.multizone == (len(zones) > 1)


def test_zone_and_block_helpers() -> None:
    dma32 = default.zone_by_id("0/DMA32")
    assert dma32 is not None
    assert (dma32.id, dma32.end_pfn, dma32.index) == ("0/DMA32", 1048576, 1)
    assert 4095 not in dma32 and 4096 in dma32 and 1048575 in dma32 and 1048576 not in dma32
    assert default.zone_by_id("1/Normal") is None and default.zone_by_id("Normal") is None
    assert default.zone_blocks(dma32) == range(0, 32)
    assert [len(default.zone_blocks(z)) for z in default.zones] == [1, 32, 96]
    assert default.block(-1) is None and default.block(128) is None
    assert default.block(127) == MemoryBlock(127, 127 * 32768, 32768, (default.zones[2],))
    assert default.block_id(-1) == -1  # arithmetic only; block(-1) is None


def test_blocks_enumerates_existing_blocks_lazily() -> None:
    blocks = list(default.blocks())
    assert [b.id for b in blocks] == list(range(128)) and len(blocks) == default.nr_blocks
    assert [b.id for b in blocks if b.multizone] == [0]
    assert [b.id for b in default.blocks(start_id=126)] == [126, 127]
    assert [b.id for b in default.blocks(start_id=-5)][:2] == [0, 1]
    assert list(default.blocks(start_id=128)) == []
    # one page per block and 2**40 pages: enumeration must not build them all
    huge = MemoryLayout([ZoneSpec(0, "Normal", 0, 1 << 40)], PAGE_SIZE)
    assert huge.nr_blocks == 1 << 40
    iterator = huge.blocks(start_id=(1 << 40) - 2)
    assert [b.id for b in iterator] == [(1 << 40) - 2, (1 << 40) - 1]
    first = next(huge.blocks())
    assert (first.id, first.nr_pages, first.multizone) == (0, 1, False)


def test_describe_has_one_line_per_zone() -> None:
    lines = default.describe().splitlines()
    assert len(lines) == 1 + len(default.zones)
    assert "128 blocks of 128 MiB" in lines[0] and "multizone blocks: 0" in lines[0]
    assert lines[2].split()[:4] == ["0/DMA32", "pfn", "[4096,", "1048576)"]
    assert lines[3].endswith("blocks 32-127")


def test_module_doctests() -> None:
    failed, attempted = doctest.testmod(layout_module)
    assert attempted > 0 and failed == 0


# -- /proc/zoneinfo -------------------------------------------------------------------


def test_one_node_zoneinfo_like_this_machine() -> None:
    layout = MemoryLayout.from_zoneinfo(ONE_NODE.read_text(), 128 * MiB, source=str(ONE_NODE))
    # Movable and Device span nothing and are skipped
    assert [(z.id, z.start_pfn, z.spanned_pages, z.present_pages) for z in layout.zones] == [
        ("0/DMA", 1, 4095, 3998),
        ("0/DMA32", 4096, 1044480, 782336),
        ("0/Normal", 1048576, 5505024, 5505024),
    ]
    assert layout.nr_blocks == 200 and layout.multizone_block_ids == (0,)
    assert [b.id for b in layout.blocks() if b.multizone] == [0]
    assert layout.zone_of(0) is None and layout.block_of(0) is None
    assert layout.zone_of(6553599) is layout.zones[2] and layout.zone_of(6553600) is None


def test_two_node_zoneinfo() -> None:
    text = TWO_NODE.read_text()
    layout = MemoryLayout.from_zoneinfo(text, 128 * MiB, source=str(TWO_NODE))
    assert [(z.id, z.start_pfn, z.end_pfn) for z in layout.zones] == [
        ("0/DMA", 1, 4096),
        ("0/DMA32", 4096, 1048576),
        ("0/Normal", 1048576, 17039360),
        ("1/Normal", 17039360, 33816576),
    ]
    dma32 = layout.zone_by_id("0/DMA32")
    assert dma32 is not None and dma32.present_pages == 782304
    # node 0 ends at 65 GiB, on a 128 MiB boundary: only block 0 is multizone
    assert layout.multizone_block_ids == (0,) and layout.nr_blocks == 1032
    assert [b.id for b in layout.blocks() if b.multizone] == [0]
    last_of_node0, first_of_node1 = layout.block(519), layout.block(520)
    assert last_of_node0 is not None and first_of_node1 is not None
    assert (last_of_node0.node, first_of_node1.node) == (0, 1)

    # with 2 GiB blocks the node boundary falls inside block 32
    big = MemoryLayout.from_zoneinfo(text, 2 * GiB)
    assert big.pages_per_block == 524288 and big.nr_blocks == 65
    assert [b.id for b in big.blocks() if b.multizone] == [0, 32] == list(big.multizone_block_ids)
    block = big.block_of(17039360)
    assert block is not None and block.id == 32
    assert [z.id for z in block.zones] == ["0/Normal", "1/Normal"] and block.node == 0
    assert big.block_of(17039359) == block


def test_zoneinfo_zone_without_present_pages_is_skipped() -> None:
    # The kernel prints no start_pfn for a zone with no present page.
    text = "Node 0, zone Normal\n spanned 4096\n present 4096\n start_pfn: 0\n"
    text += "Node 0, zone Movable\n spanned 1024\n present 0\n"
    assert zone_ids(MemoryLayout.from_zoneinfo(text, 4 * MiB)) == ["0/Normal"]


def test_from_host() -> None:
    zoneinfo = Path("/proc/zoneinfo")
    if not zoneinfo.exists():
        pytest.skip("no /proc/zoneinfo on this machine")
    block_size_file = Path("/sys/devices/system/memory/block_size_bytes")
    if not block_size_file.exists():
        with pytest.raises(LayoutError, match="block_size_bytes: no such file"):
            MemoryLayout.from_host()
        return
    host = MemoryLayout.from_host()
    block_size = int(block_size_file.read_text(), 16)
    assert host == MemoryLayout.from_zoneinfo(zoneinfo.read_text(), block_size)
    assert host.block_size == block_size and host.nr_blocks == len(list(host.blocks()))
    assert all(z.spanned_pages > 0 for z in host.zones)
    assert host == MemoryLayout.load("host")


def test_from_host_with_given_files(tmp_path: Path) -> None:
    zoneinfo = tmp_path / "zoneinfo"
    zoneinfo.write_text(ONE_NODE.read_text())
    block_size = tmp_path / "block_size_bytes"
    block_size.write_text("80000000\n")  # hex: 2 GiB
    layout = MemoryLayout.from_host(str(zoneinfo), str(block_size))
    assert layout.block_size == 2 * GiB and zone_ids(layout) == ["0/DMA", "0/DMA32", "0/Normal"]

    with pytest.raises(LayoutError) as excinfo:
        MemoryLayout.from_host(str(zoneinfo), str(tmp_path / "missing"))
    assert one_line_error(excinfo) == f"{tmp_path / 'missing'}: no such file"
    with pytest.raises(LayoutError) as excinfo:
        MemoryLayout.from_host(str(tmp_path / "nozoneinfo"), str(block_size))
    assert one_line_error(excinfo) == f"{tmp_path / 'nozoneinfo'}: no such file"
    block_size.write_text("128M\n")
    with pytest.raises(LayoutError, match=r"block_size_bytes: expected a hexadecimal size"):
        MemoryLayout.from_host(str(zoneinfo), str(block_size))
    block_size.write_text("800\n")  # 2048 bytes, less than a page
    with pytest.raises(LayoutError, match=r"block_size_bytes: block_size must be a power of two"):
        MemoryLayout.from_host(str(zoneinfo), str(block_size))


BAD_ZONEINFO = [
    ("", "no 'Node N, zone NAME' line"),
    ("pages free 3\n", "no 'Node N, zone NAME' line"),
    ("        spanned  4095\nNode 0, zone DMA\n", "line 1: 'spanned' before any 'Node N"),
    ("Node zero, zone DMA\n", "line 1: expected 'Node N, zone NAME', got 'Node zero, zone DMA'"),
    ("Node 0, zone DMA\n spanned 12x\n", "line 2: spanned must be a non-negative integer"),
    ("Node 0, zone DMA\n spanned -5\n", "line 2: spanned must be a non-negative integer"),
    (
        "Node 0, zone DMA\n spanned 5\n spanned 5\n",
        "line 3: second 'spanned' in 'Node 0, zone DMA'",
    ),
    ("Node 0, zone DMA\n present 5\n", "line 1: 'Node 0, zone DMA' has no 'spanned' line"),
    ("Node 0, zone DMA\n spanned 5\n", "line 1: 'Node 0, zone DMA' has no 'present' line"),
    ("Node 0, zone DMA\n spanned 5\n present 5\n", "'Node 0, zone DMA' has no 'start_pfn:' line"),
    ("Node 0, zone DMA\n spanned 0\n present 0\n", "no zone spans any pages"),
    (
        "Node 0, zone DMA\n spanned 5\n present 5\n start_pfn: 1\nNode 0, zone DMA\n",
        "line 5: second 'Node 0, zone DMA'",
    ),
    (
        "Node 0, zone DMA\n spanned 9\n present 9\n start_pfn: 1\n"
        "Node 1, zone Normal\n spanned 8\n present 8\n start_pfn: 8\n",
        "zone 0/DMA [1, 10) overlaps zone 1/Normal [8, 16)",
    ),
    ("Node 0, zone DMA\n spanned 5\n present 6\n start_pfn: 1\n", "present_pages must be between"),
]


@pytest.mark.parametrize(("text", "message"), BAD_ZONEINFO)
def test_bad_zoneinfo(text: str, message: str) -> None:
    with pytest.raises(LayoutError) as excinfo:
        MemoryLayout.from_zoneinfo(text, 128 * MiB, source="zoneinfo.txt")
    error = one_line_error(excinfo)
    assert error.startswith("zoneinfo.txt: ") and message in error


def test_zoneinfo_with_bad_block_size() -> None:
    with pytest.raises(LayoutError, match=r"^/proc/zoneinfo: block_size must be a power of two"):
        MemoryLayout.from_zoneinfo(ONE_NODE.read_text(), 3 * 4096)


# -- TOML -----------------------------------------------------------------------------


def test_sparse_toml_layout_with_holes() -> None:
    layout = MemoryLayout.from_toml(SPARSE)
    assert zone_ids(layout) == ["0/DMA32", "0/Normal", "1/Normal", "1/Movable"]
    dma32, normal0, normal1, movable = layout.zones
    assert (dma32.present_pages, normal0.present_pages) == (780000, 1048576)  # defaulted
    for hole in (0, 4095, 786432, 1048575, 2097152, 4194303, 6291456, 6307839, 6373376):
        assert layout.zone_of(hole) is None and layout.block_of(hole) is None, hole
    assert layout.zone_of(6307840) is movable and layout.zone_of(6373375) is movable
    ids = [b.id for b in layout.blocks()]
    assert ids == [*range(0, 24), *range(32, 64), *range(128, 195)]
    assert len(ids) == layout.nr_blocks == 123
    assert layout.block(24) is None and layout.block(100) is None
    assert [b.id for b in layout.blocks(start_id=60)][:6] == [60, 61, 62, 63, 128, 129]
    assert list(layout.blocks(start_id=195)) == []
    # block 192 begins in the hole before Movable and touches no other zone
    block = layout.block(192)
    assert block is not None and block.zones == (movable,) and not block.multizone
    assert layout.multizone_block_ids == ()
    assert layout.zone_blocks(movable) == range(192, 195)


@pytest.mark.parametrize(
    "layout",
    [
        default,
        MemoryLayout.from_toml(SPARSE),
        MemoryLayout.from_zoneinfo(TWO_NODE.read_text(), 2 * GiB),
    ],
    ids=["default", "sparse", "two-node"],
)
def test_toml_round_trip(layout: MemoryLayout, tmp_path: Path) -> None:
    text = layout.to_toml()
    again = MemoryLayout.from_toml_text(text)
    assert again == layout and hash(again) == hash(layout)
    assert again.zones == layout.zones and again.block_size == layout.block_size
    path = tmp_path / "layout.toml"
    path.write_text(text)
    assert MemoryLayout.load(str(path)) == layout == MemoryLayout.from_toml(path)


def test_design_md_example_and_zone_inputs() -> None:
    text = """
        block_size = 134217728
        [[zone]]
        node = 0
        name = "Normal"
        start_pfn = 1048576
        spanned_pages = 3145728
        present_pages = 3145728
    """
    layout = MemoryLayout.from_toml_text(text)
    assert layout.zones == (Zone(0, "Normal", 1048576, 3145728, 3145728, 0),)
    assert layout != default and layout != "not a layout"
    # zones are sorted by start_pfn and renumbered, whatever order and type they come in
    mixed = MemoryLayout(
        [default.zones[2], ZoneSpec(0, "DMA", 1, 4095), default.zones[1]], 128 * MiB
    )
    assert mixed == default
    assert "0/DMA, 0/DMA32, 0/Normal" in repr(mixed)


BAD_TOML = [
    ("block-size-not-power-of-two.toml", "block_size must be a power of two"),
    ("block-size-below-page.toml", "block_size must be a power of two and a multiple of 4096"),
    ("block-size-float.toml", "block_size must be an integer, got a float"),
    ("missing-block-size.toml", "missing required key 'block_size'"),
    ("no-zones.toml", "no [[zone]] tables"),
    ("zone-not-array.toml", "'zone' must be an array of tables"),
    ("missing-start-pfn.toml", "zone #2: missing required key 'start_pfn'"),
    ("negative-start-pfn.toml", "zone 0/DMA32: start_pfn must be >= 0, got -4096"),
    ("wrong-type.toml", "zone 0/DMA32: spanned_pages must be an integer, got a string '1044480'"),
    ("boolean-node.toml", "zone #1: node must be an integer, got a boolean True"),
    ("bad-name.toml", "zone #1: name must be letters, digits"),
    ("zero-spanned.toml", "zone 0/DMA32: spanned_pages must be > 0, got 0"),
    ("present-exceeds-spanned.toml", "zone 0/DMA32: present_pages must be between 0 and"),
    (
        "overlapping-zones.toml",
        "zone 0/DMA32 [4096, 1048576) overlaps zone 0/Normal [1000000, 4145728)",
    ),
    ("duplicate-zone.toml", "zone 0/Normal is defined twice"),
    ("unknown-zone-key.toml", "zone #1: unknown key 'present'"),
    ("unknown-top-key.toml", "unknown key 'blocksize'"),
    ("syntax-error.toml", "invalid TOML: Expected newline or end of document after a statement"),
]


def test_every_bad_toml_fixture_is_listed() -> None:
    assert sorted(p.name for p in (FIXTURES / "bad").glob("*.toml")) == sorted(
        name for name, _ in BAD_TOML
    )


@pytest.mark.parametrize(("name", "message"), BAD_TOML, ids=[name for name, _ in BAD_TOML])
def test_bad_toml(name: str, message: str) -> None:
    path = FIXTURES / "bad" / name
    with pytest.raises(LayoutError) as excinfo:
        MemoryLayout.load(str(path))
    error = one_line_error(excinfo)
    assert error.startswith(f"{path}: ") and message in error


def test_toml_syntax_error_names_its_line() -> None:
    with pytest.raises(LayoutError) as excinfo:
        MemoryLayout.from_toml(FIXTURES / "bad" / "syntax-error.toml")
    assert "(at line 6, column 18)" in one_line_error(excinfo)
    with pytest.raises(LayoutError) as excinfo:
        MemoryLayout.from_toml_text('block_size = 4096\n[[zone]\nname = "x"\n', source="inline")
    assert one_line_error(excinfo).startswith("inline: invalid TOML: ")
    assert "line 2" in str(excinfo.value)


def test_unreadable_layout_files(tmp_path: Path) -> None:
    with pytest.raises(LayoutError) as excinfo:
        MemoryLayout.load(str(tmp_path / "missing.toml"))
    assert one_line_error(excinfo) == f"{tmp_path / 'missing.toml'}: no such file"
    with pytest.raises(LayoutError) as excinfo:
        MemoryLayout.load(str(tmp_path))  # a directory
    assert one_line_error(excinfo).startswith(f"{tmp_path}: cannot read: ")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"block_size = 4096\n\xff\xfe")
    with pytest.raises(LayoutError) as excinfo:
        MemoryLayout.load(str(binary))
    assert one_line_error(excinfo) == f"{binary}: not UTF-8 text (byte 18)"


@pytest.mark.parametrize(
    ("zones", "block_size", "message"),
    [
        ([], 128 * MiB, "a layout needs at least one zone"),
        ([ZoneSpec(0, "Normal", 0, 1)], 0, "block_size must be a power of two"),
        ([ZoneSpec(0, "Normal", 0, 1)], 128 * MiB + 4096, "block_size must be a power of two"),
        ([ZoneSpec(0, "Normal", 0, 1)], True, "block_size must be an integer, got a boolean"),
        ([ZoneSpec(-1, "Normal", 0, 1)], 4096, "zone #1: node must be >= 0, got -1"),
        ([ZoneSpec(0, "", 0, 1)], 4096, "zone #1: name must be letters"),
        ([ZoneSpec(0, "0/Normal", 0, 1)], 4096, "zone #1: name must be letters"),
        ([ZoneSpec(0, "Normal", 0, 1, -1)], 4096, "present_pages must be between 0 and"),
        ([ZoneSpec(0, "Normal", 0, -1)], 4096, "zone 0/Normal: spanned_pages must be > 0"),
        ([ZoneSpec(0, "Normal", (1 << 52) - 1, 2)], 4096, "past 2**52"),
        (
            [ZoneSpec(0, "A", 0, 100), ZoneSpec(0, "B", 50, 10), ZoneSpec(0, "C", 200, 10)],
            4096,
            "zone 0/A [0, 100) overlaps zone 0/B [50, 60)",
        ),
    ],
)
def test_bad_constructor_arguments(zones: list[ZoneSpec], block_size: int, message: str) -> None:
    with pytest.raises(LayoutError) as excinfo:
        MemoryLayout(zones, block_size)
    assert message in one_line_error(excinfo)


# -- the lookups against a pfn-by-pfn model --------------------------------------------


@st.composite
def small_layouts(draw: st.DrawFn) -> MemoryLayout:
    """Up to five zones with random gaps and sizes, blocks of 1 to 16 pages."""
    zones, pfn = [], draw(st.integers(0, 20))
    for n in range(draw(st.integers(1, 5))):
        spanned = draw(st.integers(1, 40))
        zones.append(ZoneSpec(n % 2, f"Z{n}", pfn, spanned, draw(st.integers(0, spanned))))
        pfn += spanned + draw(st.integers(0, 20))
    order = draw(st.permutations(zones))
    return MemoryLayout(order, PAGE_SIZE << draw(st.integers(0, 4)))


@given(small_layouts())
def test_lookups_match_a_pfn_by_pfn_model(layout: MemoryLayout) -> None:
    pages = layout.pages_per_block
    last_pfn = layout.zones[-1].end_pfn
    block_zones: dict[int, list[Zone]] = {}
    for pfn in range(-2, last_pfn + 2 * pages):
        owners = [z for z in layout.zones if z.start_pfn <= pfn < z.end_pfn]
        assert layout.zone_of(pfn) == (owners[0] if owners else None)
        if owners:
            block_zones.setdefault(pfn // pages, [])
            if owners[0] not in block_zones[pfn // pages]:
                block_zones[pfn // pages].append(owners[0])
            block = layout.block_of(pfn)
            assert block is not None and block.id == pfn // pages and pfn in block
        else:
            assert layout.block_of(pfn) is None
    assert [(b.id, list(b.zones)) for b in layout.blocks()] == sorted(block_zones.items())
    assert layout.nr_blocks == len(block_zones)
    assert list(layout.multizone_block_ids) == [i for i, z in block_zones.items() if len(z) > 1]
    for block_id in range(-1, last_pfn // pages + 2):
        block = layout.block(block_id)
        assert (block is not None) == (block_id in block_zones)
        assert [b.id for b in layout.blocks(block_id)] == sorted(
            i for i in block_zones if i >= block_id
        )
    for zone in layout.zones:
        assert [i for i, z in block_zones.items() if zone in z] == list(layout.zone_blocks(zone))
    assert MemoryLayout.from_toml_text(layout.to_toml()) == layout
