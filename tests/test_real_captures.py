"""The parsers, the judge and the known-splat lists on real captures of the series.

Captured from the harness's own guests (tests/fixtures/proc/README.md and
tests/fixtures/dmesg/README.md say how), so these tests pin the kernel<->harness contract
to what the ported series really prints.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.build.known_splats import is_known, load_known_splats
from harness.build.revisions import HINTING_V2, HINTING_V2_FIXED
from harness.drive.workloads import DebugfsUnreadable, read_hinting_state
from harness.judge import judge_kernel, judge_stalled
from harness.observe import dmesg
from harness.observe.procfs import (
    HINTING_STATE_PATH,
    GuestObservations,
    parse_buddyinfo,
    parse_hinting_state,
    parse_meminfo,
    parse_pagetypeinfo,
    parse_zoneinfo,
    read_observations,
)

FIXTURES = Path(__file__).parent / "fixtures"
V2_PROC = FIXTURES / "proc" / "guest-6.1-hinting-v2"
DMESG = FIXTURES / "dmesg"


def v2_observations() -> GuestObservations:
    text = {p.name: p.read_text() for p in V2_PROC.iterdir()}
    return GuestObservations(
        zoneinfo=parse_zoneinfo(text["zoneinfo"]),
        buddyinfo=parse_buddyinfo(text["buddyinfo"]),
        pagetypeinfo=parse_pagetypeinfo(text["pagetypeinfo"]),
        meminfo=parse_meminfo(text["meminfo"]),
        hinting=parse_hinting_state(text["hinting_state"]),
    )


def test_real_hinting_v2_snapshot_parses_and_is_consistent() -> None:
    obs = v2_observations()
    dma32 = next(z for z in obs.zoneinfo if z.zone == "DMA32")
    assert set(dma32.hinted) == {9, 10}
    assert dma32.hinted[10] > 400  # most of the 2 GiB guest, hinted after the memhog
    assert obs.pagetypeinfo.pageblock_order == 9
    assert obs.hinting is not None and obs.hinting.device and obs.hinting.min_order == 9
    verdict = judge_kernel(obs)
    assert verdict.passed, str(verdict)


def test_real_hinting_v2_snapshot_with_a_gap_fails_the_judge() -> None:
    """The same real capture with one hinted entry moved off the tail must fail."""
    obs = v2_observations()
    assert obs.hinting is not None
    lists = tuple(
        replace(entry, first_hinted=5, contiguous_tail=False)
        if entry.order == 10 and entry.migratetype == "Movable"
        else entry
        for entry in obs.hinting.lists
    )
    broken = replace(obs, hinting=replace(obs.hinting, lists=lists))
    verdict = judge_kernel(broken)
    assert not verdict.passed
    assert "hinted_tail_block" in {c.name for c in verdict.failures}


def test_real_v2_lockdep_splat_is_the_known_defect() -> None:
    found = dmesg.classify((DMESG / "hinting-v2-debug-lockdep.console.log").read_text())
    ids = [s.id for s in found]
    assert any(i.startswith("lockdep:inconsistent_lock_state:") for i in ids), ids
    known = load_known_splats(HINTING_V2.series)
    assert all(is_known(i, known) for i in ids), ids
    assert not any(is_known(i, load_known_splats(HINTING_V2_FIXED.series)) for i in ids)


def test_real_v2_poison_corruption_is_the_known_defect() -> None:
    found = dmesg.classify((DMESG / "hinting-v2-debug-poison.console.log").read_text())
    ids = {s.id for s in found}
    assert "pagealloc:memory_corruption" in ids
    known = load_known_splats(HINTING_V2.series)
    assert all(is_known(i, known) for i in ids), ids


def test_real_fixed_debug_log_is_clean() -> None:
    text = (DMESG / "hinting-v2-fixed-debug-clean.console.log").read_text()
    assert "page_hinting" in text or "virtio" in text  # a real boot log, not an empty file
    assert dmesg.classify(text) == []


def test_debugfs_output_that_does_not_parse_is_a_failed_check_naming_the_line() -> None:
    """A series that prints something the contract does not allow fails `debugfs_parses`
    with the offending line, instead of raising out of the scenario."""
    files = {
        "/proc/zoneinfo": "zoneinfo",
        "/proc/buddyinfo": "buddyinfo",
        "/proc/pagetypeinfo": "pagetypeinfo",
        "/proc/meminfo": "meminfo",
    }
    text = (V2_PROC / "hinting_state").read_text()
    broken = text.replace("order 9 mt Unmovable free", "order nine mt Unmovable free", 1)
    assert broken != text

    def read(path: str) -> str:
        if path == HINTING_STATE_PATH:
            return broken
        return (V2_PROC / files[path]).read_text()

    obs = read_observations(read)
    verdict = judge_kernel(obs)
    assert not verdict.passed
    check = verdict.check("debugfs_parses")
    assert "order nine mt Unmovable" in check.detail and "line" in check.detail
    assert str(verdict).count("FAIL") == 2  # the verdict's head and this check


def test_the_polling_read_of_a_broken_dump_is_the_same_failed_check() -> None:
    """Steps that poll the dump (waiting for idle) fail the same named check, with the
    line, as an AssertionError: a defect of the series, not an error of the harness."""
    text = (V2_PROC / "hinting_state").read_text().replace(" free ", " nr_free ", 1)
    vm = SimpleNamespace(ssh=SimpleNamespace(check=lambda command: SimpleNamespace(stdout=text)))
    with pytest.raises(DebugfsUnreadable) as raised:
        read_hinting_state(vm)
    assert isinstance(raised.value, AssertionError)
    message = str(raised.value)
    check = judge_stalled(raised.value)
    assert check is not None and str(check).startswith("[FAIL] debugfs_parses:")
    assert "nr_free" in message and "line" in message
