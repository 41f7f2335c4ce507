"""Parsers of /proc and the series' debugfs file, on real captures (see fixtures/proc/README.md)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.core.errors import HarnessError
from harness.observe.dmesg import classify
from harness.observe.procfs import (
    HINTING_STATE_PATH,
    HintingListState,
    HintingZoneState,
    ProcfsMissingFile,
    ProcfsParseError,
    cat_files_command,
    parse_buddyinfo,
    parse_hinting_state,
    parse_meminfo,
    parse_pagetypeinfo,
    parse_zoneinfo,
    read_observations,
    split_files,
)
from harness.pipeline import stock_kernel

FIXTURES = Path(__file__).parent / "fixtures" / "proc"
HOST = FIXTURES / "host-6.18.44"
GUEST = FIXTURES / "guest-6.1-stock"
SYNTHETIC = FIXTURES / "synthetic-series"


def fixture_reader(*directories: Path):
    """A `read` for read_observations that serves files by base name from `directories`."""

    def read(path: str) -> str:
        name = "hinting_state" if path == HINTING_STATE_PATH else Path(path).name
        for directory in directories:
            if (directory / name).exists():
                return (directory / name).read_text()
        raise FileNotFoundError(path)

    return read


# --- real captures ---------------------------------------------------------------------------


def test_guest_zoneinfo() -> None:
    zones = parse_zoneinfo((GUEST / "zoneinfo").read_text())
    assert [(z.node, z.zone) for z in zones] == [(0, "DMA32"), (0, "Normal"), (0, "Movable")]
    dma32 = zones[0]
    assert (dma32.free_pages, dma32.min, dma32.low, dma32.high) == (509169, 1429, 1940, 2451)
    assert (dma32.spanned, dma32.present, dma32.managed) == (524255, 524158, 512345)
    assert dma32.stats["nr_free_pages"] == dma32.free_pages
    assert dma32.stats["start_pfn"] == 1 and dma32.stats["node_unreclaimable"] == 0
    assert "nr_inactive_anon" not in dma32.stats  # a per-node counter, not this zone's
    assert not {"count", "batch", "high_min", "vm stats threshold"} & set(dma32.stats)
    assert dma32.hinted == {}
    for empty in zones[1:]:  # unpopulated zones print only the first block
        assert (empty.free_pages, empty.managed, empty.stats) == (0, 0, {"boost": 0, "cma": 0})


def test_guest_files_agree_with_each_other() -> None:
    """Captured back to back on an idle guest: the three views of the free lists agree."""
    obs = read_observations(fixture_reader(GUEST))
    dma32 = obs.zoneinfo[0]
    per_order = obs.buddyinfo.free[(0, "DMA32")]
    assert per_order == (1, 2, 1, 1, 2, 2, 0, 3, 3, 4, 494)
    assert sum(count << order for order, count in enumerate(per_order)) == dma32.free_pages
    by_type = [v for (node, zone, _), v in obs.pagetypeinfo.free.items() if zone == "DMA32"]
    assert tuple(map(sum, zip(*by_type, strict=True))) == per_order
    blocks = obs.pagetypeinfo.blocks[(0, "DMA32")]
    assert blocks == {"Unmovable": 5, "Movable": 1017, "Reclaimable": 2, "HighAtomic": 0}
    assert sum(blocks.values()) * obs.pagetypeinfo.pages_per_block >= dma32.present
    assert obs.pagetypeinfo.pageblock_order == 9
    assert obs.meminfo["MemTotal"] == 2049380 and obs.meminfo["HugePages_Total"] == 0
    assert obs.meminfo["Active(anon)"] == 1672
    assert obs.hinting is None  # stock kernel: no debugfs file


def test_host_6_18_zoneinfo_with_newer_fields() -> None:
    zones = parse_zoneinfo((HOST / "zoneinfo").read_text())
    names = [z.zone for z in zones]
    assert names == ["DMA", "DMA32", "Normal", "Movable", "Device"]
    normal = zones[2]
    assert normal.managed == 1507328 and normal.stats["start_pfn"] == 1048576
    assert "promo" in normal.stats and "numa_hit" in normal.stats
    assert not {"high_min", "high_max", "count"} & set(normal.stats)
    assert zones[3].stats == {"boost": 0, "promo": 32, "cma": 0}


def test_host_other_files() -> None:
    buddy = parse_buddyinfo((HOST / "buddyinfo").read_text())
    assert set(buddy.free) == {(0, "DMA"), (0, "DMA32"), (0, "Normal")}
    assert all(len(counts) == 11 for counts in buddy.free.values())
    pti = parse_pagetypeinfo((HOST / "pagetypeinfo").read_text())
    assert len(pti.free) == 3 * 5 and pti.blocks[(0, "Normal")]["Reclaimable"] == 299
    assert parse_meminfo((HOST / "meminfo").read_text())["DirectMap1G"] == 25165824


def test_real_proc_of_this_host() -> None:
    """The live files of the machine running the tests (no hinting series on the host)."""
    obs = read_observations(lambda path: Path(path).read_text())
    assert obs.zoneinfo and obs.meminfo["MemTotal"] > 0
    assert obs.hinting is None
    populated = [z for z in obs.zoneinfo if z.present > 0]
    assert {(z.node, z.zone) for z in populated} == set(obs.buddyinfo.free)


# --- the series' additions (synthetic until the port prints them) ----------------------------


def test_synthetic_series_zoneinfo_and_state_agree() -> None:
    obs = read_observations(fixture_reader(SYNTHETIC, GUEST))
    assert [z.hinted for z in obs.zoneinfo] == [{9: 0, 10: 480}, {}, {}]  # populated only
    assert "hinted_order_10" not in obs.zoneinfo[0].stats
    state = obs.hinting
    assert state is not None
    assert (state.min_order, state.hwm, state.capacity, state.refcnt, state.device) == (
        9,
        32,
        32,
        0,
        True,
    )
    assert state.zones == (HintingZoneState(0, "DMA32", requested=False, active=False),)
    assert len(state.lists) == 8
    movable_10 = HintingListState("DMA32", 0, 10, "Movable", 494, 480, 14, True)
    assert movable_10 in state.lists
    hinted_10 = sum(entry.hinted for entry in state.lists if entry.order == 10)
    assert hinted_10 == obs.zoneinfo[0].hinted[10]


@pytest.mark.parametrize("where", ["after pages free", "after protection", "at the end"])
def test_hinted_lines_are_found_anywhere_in_the_zone(where: str) -> None:
    lines = (GUEST / "zoneinfo").read_text().splitlines()
    anchor = {
        "after pages free": next(i for i, x in enumerate(lines) if "pages free" in x),
        "after protection": next(i for i, x in enumerate(lines) if "protection:" in x),
        "at the end": next(i for i, x in enumerate(lines) if "start_pfn" in x),
    }[where]
    lines[anchor + 1 : anchor + 1] = ["        hinted_order_9 7", "        hinted_order_10 3"]
    assert parse_zoneinfo("\n".join(lines))[0].hinted == {9: 7, 10: 3}


# --- malformed input -------------------------------------------------------------------------

GUEST_ZONEINFO = (GUEST / "zoneinfo").read_text()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GUEST_ZONEINFO.replace("        low      1940", "        low      lots"), "line 46"),
        (GUEST_ZONEINFO.replace("  pagesets", "  pagesets\n    what is this"), "what is this"),
        ("  pages free 3\n" + GUEST_ZONEINFO, "before the first"),
        (GUEST_ZONEINFO.replace("        managed  512345\n", ""), "missing managed"),
        (GUEST_ZONEINFO.replace("        min      1429\n", "        min      1429\n" * 2), "twice"),
        (GUEST_ZONEINFO + "Node 0, zone    DMA32\n  pages free 0\n", "listed twice"),
        ("", "no zones"),
    ],
)
def test_malformed_zoneinfo_names_the_line(text: str, message: str) -> None:
    with pytest.raises(ProcfsParseError, match=message) as caught:
        parse_zoneinfo(text)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, HarnessError)
    assert caught.value.hint


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (parse_buddyinfo, "Node 0, zone DMA32 1 2 3\nNode 0, zone Normal 1 2\n", "line 2"),
        (parse_buddyinfo, "Node 0, zone DMA32 1 x 3\n", "line 1"),
        (parse_buddyinfo, "\n", "no zones"),
        (parse_meminfo, "MemTotal: 100 kB\nMemFree 3 kB\n", "line 2"),
        (parse_meminfo, "MemFree: 3 kB\n", "no MemTotal"),
        (
            parse_pagetypeinfo,
            (GUEST / "pagetypeinfo").read_text().replace("1017", "1017 5"),
            "types differs",
        ),
        (
            parse_pagetypeinfo,
            (GUEST / "pagetypeinfo").read_text().replace("   494 \n", "\n", 1),
            "orders differs",
        ),
        (parse_pagetypeinfo, "Page block order: 9\n", "no free lists"),
        (parse_hinting_state, "", "empty"),
        (parse_hinting_state, "hwm 32 min_order 9 capacity 32 refcnt 0 device 1", "min_order"),
        (parse_hinting_state, "min_order 9 hwm 32 capacity 32 refcnt 0", "missing device"),
        (parse_hinting_state, "min_order 9 hwm 32 capacity 32 refcnt 0 device 2", "0 or 1"),
        (
            parse_hinting_state,
            "min_order 9 hwm 32 capacity 32 refcnt 0 device 1\n"
            "order 9 mt Movable free 1 hinted 0 first_hinted -1 contiguous_tail 1",
            "before any zone",
        ),
        (
            parse_hinting_state,
            "min_order 9 hwm 32 capacity 32 refcnt 0 device 1\nzone DMA32 node 0 requested",
            "odd number",
        ),
        (
            parse_hinting_state,
            "min_order 9 hwm 32 capacity x refcnt 0 device 1",
            "'x' is not an integer",
        ),
        (
            parse_hinting_state,
            "min_order 9 hwm 32 capacity 1 refcnt 0 device 1\nboundary 3",
            "line 2",
        ),
    ],
)
def test_malformed_files_name_the_line(parse, text: str, message: str) -> None:
    with pytest.raises(ProcfsParseError, match=message):
        parse(text)


def test_missing_required_file_is_reported() -> None:
    def read(path: str) -> str:
        raise FileNotFoundError(path)

    with pytest.raises(ProcfsMissingFile, match="/proc/zoneinfo") as caught:
        read_observations(read)
    assert isinstance(caught.value, FileNotFoundError)


def test_parse_error_in_read_observations_names_the_file() -> None:
    def read(path: str) -> str:
        if path == "/proc/buddyinfo":
            return "Node 0, zone DMA32 oops\n"
        return fixture_reader(GUEST)(path)

    with pytest.raises(ProcfsParseError, match="/proc/buddyinfo line 1"):
        read_observations(read)


# --- pagetypeinfo details --------------------------------------------------------------------

TWO_NODES = """\
Page block order: 9
Pages per block:  512

Free pages count per migrate type at order       0      1      2
Node    0, zone   Normal, type    Unmovable      1      0      0
Node    0, zone   Normal, type      Movable >100000      7      0

Number of blocks type     Unmovable      Movable
Node 0, zone   Normal            3          100

Number of mixed blocks    Unmovable      Movable
Node 0, zone   Normal            1            0
Page block order: 9
Pages per block:  512

Free pages count per migrate type at order       0      1      2
Node    1, zone   Normal, type    Unmovable      0      0      1
Node    1, zone   Normal, type      Movable      0      2      0

Number of blocks type     Unmovable      Movable
Node 1, zone   Normal            1           50
"""


def test_pagetypeinfo_two_nodes_overflow_and_mixed_blocks() -> None:
    pti = parse_pagetypeinfo(TWO_NODES)
    assert pti.free[(0, "Normal", "Movable")] == (100000, 7, 0)  # ">100000": a lower bound
    assert pti.free[(1, "Normal", "Unmovable")] == (0, 0, 1)
    assert pti.blocks == {
        (0, "Normal"): {"Unmovable": 3, "Movable": 100},
        (1, "Normal"): {"Unmovable": 1, "Movable": 50},
    }


def test_pagetypeinfo_nodes_must_agree_on_block_order() -> None:
    second = TWO_NODES.rindex("Page block order: 9")
    text = TWO_NODES[:second] + TWO_NODES[second:].replace(": 9", ": 10", 1)
    with pytest.raises(ProcfsParseError, match="pageblock_order was 9"):
        parse_pagetypeinfo(text)


# --- debugfs state round trip ----------------------------------------------------------------

MIGRATETYPES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic")


def render_state(zones: list[tuple[str, int, bool, bool, list[tuple]]]) -> str:
    lines = ["min_order 9 hwm 32 capacity 32 refcnt 1 device 1"]
    for zone, node, requested, active, lists in zones:
        lines.append(f"zone {zone} node {node} requested {int(requested)} active {int(active)}")
        for order, mt, free, hinted, first, tail in lists:
            lines.append(
                f"order {order} mt {mt} free {free} hinted {hinted} "
                f"first_hinted {first} contiguous_tail {int(tail)}"
            )
    return "\n".join(lines) + "\n"


list_entries = st.tuples(
    st.integers(9, 10),
    st.sampled_from(MIGRATETYPES),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(-1, 10**6),
    st.booleans(),
)
zone_entries = st.tuples(
    st.sampled_from(("DMA", "DMA32", "Normal")),
    st.integers(0, 3),
    st.booleans(),
    st.booleans(),
    st.lists(list_entries, max_size=8),
)


@given(st.lists(zone_entries, max_size=4))
def test_hinting_state_round_trip(zones: list) -> None:
    state = parse_hinting_state(render_state(zones))
    assert [(z.zone, z.node, z.requested, z.active) for z in state.zones] == [
        (zone, node, requested, active) for zone, node, requested, active, _ in zones
    ]
    expected = [
        HintingListState(zone, node, order, mt, free, hinted, first, tail)
        for zone, node, _, _, lists in zones
        for order, mt, free, hinted, first, tail in lists
    ]
    assert list(state.lists) == expected


# --- live guest ------------------------------------------------------------------------------

GUEST_INIT = """#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t debugfs debugfs /sys/kernel/debug
for f in /proc/zoneinfo /proc/buddyinfo /proc/pagetypeinfo /proc/meminfo \\
         /sys/kernel/debug/page_hinting/state; do
  if [ -e $f ]; then echo "=====BEGIN $f====="; cat $f; echo "=====END $f====="; fi
done
reboot -f
"""


def stock_bzimage() -> Path:
    """The stock 6.1 guest kernel (built or taken from the cache; PHH_TEST_KERNEL overrides)."""
    return stock_kernel()


def busybox_initramfs(directory: Path, init_script: str) -> Path:
    root = directory / "root"
    (root / "bin").mkdir(parents=True)
    for mount_point in ("proc", "sys", "dev"):
        (root / mount_point).mkdir()
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    for applet in ("sh", "mount", "cat", "echo", "reboot", "["):
        (root / "bin" / applet).symlink_to("busybox")
    (root / "init").write_text(init_script)
    (root / "init").chmod(0o755)
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    cpio = subprocess.run(
        ["cpio", "-o", "-H", "newc", "--quiet"],
        input="\n".join(names).encode(),
        cwd=root,
        capture_output=True,
        check=True,
    )
    image = directory / "initramfs.cpio"
    image.write_bytes(cpio.stdout)
    return image


def boot_and_capture(kernel: Path, initramfs: Path) -> str:
    """Serial console of one guest boot; the guest reboots (= QEMU exits) when /init ends."""
    command = [
        "qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-nographic", "-no-reboot",
        "-kernel", str(kernel), "-initrd", str(initramfs),
        "-append", "console=ttyS0 panic=-1",
        "-device", "virtio-balloon-pci,free-page-reporting=on", "-nic", "none",
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, timeout=180, check=False
    )  # kills on timeout
    return done.stdout.decode("utf-8", "replace").replace("\r", "")


@pytest.mark.real
def test_real_stock_guest_proc_files_parse(tmp_path: Path) -> None:
    console = boot_and_capture(stock_bzimage(), busybox_initramfs(tmp_path, GUEST_INIT))
    files = dict(re.findall(r"=====BEGIN (\S+)=====\n(.*?)=====END \1=====", console, re.S))
    assert set(files) == {
        "/proc/zoneinfo",
        "/proc/buddyinfo",
        "/proc/pagetypeinfo",
        "/proc/meminfo",
    }

    def read(path: str) -> str:
        if path not in files:
            raise FileNotFoundError(path)
        return files[path]

    obs = read_observations(read)
    assert obs.hinting is None
    assert 900_000 < obs.meminfo["MemTotal"] <= 1024 * 1024
    free_pages = sum(z.free_pages for z in obs.zoneinfo)
    from_buddy = sum(c << o for counts in obs.buddyinfo.free.values() for o, c in enumerate(counts))
    assert abs(free_pages - from_buddy) <= 0.01 * free_pages  # read moments apart on a live guest
    assert classify(console) == []  # a clean stock boot has nothing to report


def test_one_command_reads_every_file_and_names_the_missing_one(tmp_path: Path) -> None:
    """observe() reads all the files in one SSH command: run that command in a real shell
    (busybox sh in the guest, sh here) and get each file back whole, a missing one as None."""
    present = tmp_path / "zoneinfo"
    present.write_text("Node 0, zone  DMA32\n  pages free     5\n\nlast line\n")
    empty = tmp_path / "empty"
    empty.write_text("")
    missing = str(tmp_path / "page_hinting" / "state")
    paths = (missing, str(present), str(empty))
    out = subprocess.run(
        ["sh", "-c", cat_files_command(paths)], capture_output=True, text=True, check=True
    ).stdout
    assert split_files(out) == {missing: None, str(present): present.read_text(), str(empty): ""}
