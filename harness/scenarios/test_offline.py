"""Memory offline while hinting: a DIMM's zone is hot-removed while a batch from it is out.

One guest per hinting revision (2 GiB, room for a 512 MiB DIMM, hot-added memory onlined as
movable: `memhp_default_state=online_movable`) goes through one step:

1. a pc-dimm is plugged: a Movable zone appears and is hinted like any other memory;
2. a pattern writer holds 256 MiB (some of it in the DIMM), and a release makes the DIMM's
   zone start a cycle; while its first batch is held out (the series' react delay hook),
   `device_del` removes the DIMM: the guest isolates the zone's pageblocks (hinted blocks
   move to MIGRATE_ISOLATE and must lose flag and count), migrates the writer's pages out,
   and waits for the held pages, which come back to an isolated block;
3. the offline must complete (QEMU's DEVICE_DELETED), MemTotal and free memory come back
   to where they were before the plug, the writer's pattern is intact, the emptied zone's
   hinted counts are reset and no hinted block is left on an isolated list;
4. a DIMM is plugged again: the new zone hints as the idle rule says.

A revision that marks a page hinted on an isolated block (v2: the PG_offline alias) BUGs in
__offline_isolated_pages(); when the series lists that in its known-splats.txt, the step
requires it to show instead (and stops: the offline never completes).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.build.known_splats import is_known, load_known_splats
from harness.build.revisions import Revision
from harness.core.errors import VMError
from harness.core.poll import poll_until
from harness.core.units import PAGE_SIZE, MiB
from harness.drive.lifecycle import add_dimm, remove_dimm
from harness.drive.workloads import read_hinting_state, set_react_delay, wait_batches
from harness.judge import (
    FreeMemory,
    Verdict,
    judge_accounting,
    judge_hotplug,
    judge_integrity,
    judge_kept_defect_shows,
    judge_offline,
    judge_offline_work,
    verdict_of,
)
from harness.observe import dmesg
from harness.pipeline import GuestFactory
from harness.scenarios.scripted_guest import (
    ScriptedGuest,
    hold_batches,
    idle_verdict,
    scripted_guest,
)

DIMM_MIB = 512  # four 128 MiB memory blocks, onlined to ZONE_MOVABLE
ZONE = "Movable"
HOLD_MS = 3000  # the batch out when device_del comes
RELEASE_MIB = 384  # user memory comes from ZONE_MOVABLE first: a cycle there
PATTERN_MIB = 256
OFFLINE_TIMEOUT_S = 60.0  # offlining 512 MiB took a few seconds on hinting-v2-fixed
OFFLINE_POLL_S = 1.0
BUG_SHOWS_S = 30.0
# Free memory after the DIMM came and went, against before it came (as in test_lifecycle:
# noise was under 6 MiB; a batch lost is >= 4 MiB a block).
TOLERANCES_KIB = (8 * 1024, 32 * 1024)  # MemFree, blocks of order >= 9
# KASAN's quarantine holds freed slab memory back (up to 1/32 of RAM: 64 MiB here), and two
# vCPUs keep more in their per-CPU lists: the debug kernel was 16 MiB below after the DIMM
# came and went on hinting-v2-fixed+debug.
DEBUG_TOLERANCES_KIB = (64 * 1024, 64 * 1024)


@pytest.fixture(scope="module")
def offline_guest(
    hinting_revision: Revision, new_guest: GuestFactory, results_dir: Path
) -> Iterator[ScriptedGuest]:
    revision = hinting_revision
    evidence = results_dir / f"offline[{revision.name}]"
    with scripted_guest(
        revision,
        new_guest,
        evidence,
        hotplug_mib=DIMM_MIB,
        extra_cmdline="memhp_default_state=online_movable",
    ) as scripted:
        yield scripted


def test_memory_offline_while_a_batch_is_out(offline_guest: ScriptedGuest) -> None:
    """A movable DIMM is hinted, then removed while a batch from its zone is held out; the
    offline must complete with nothing lost, and a new DIMM in the zone must be hinted
    (the steps and checks: the module's docstring)."""
    guest, vm = offline_guest, offline_guest.vm
    start = guest.settle() or read_hinting_state(vm)
    before = guest.observe("before-dimm")
    total_before = before.meminfo["MemTotal"]
    dimm = add_dimm(vm, DIMM_MIB)
    grown = guest.mem_total_reaching(total_before + DIMM_MIB * 1024) - total_before
    online, verdict = idle_verdict(guest, "dimm-online")
    verdict += judge_hotplug(grown, DIMM_MIB, start, online.hinting)

    writer = vm.ssh.start(f"pattern --hold-until-line {PATTERN_MIB}")
    writer.expect_line(f"filled {PATTERN_MIB}", timeout=300)
    guest.settle()
    at_release = read_hinting_state(vm)
    hold_batches(guest, HOLD_MS, "cannot hold a batch out")
    try:
        vm.ssh.check(f"echo | memhog {RELEASE_MIB} > /dev/null", timeout=300)
        batches = next(
            (z.activity.batches for z in at_release.zones if z.zone == ZONE and z.activity), 0
        )
        wait_batches(vm, ZONE, batches + 1, timeout_s=4 * HOLD_MS / 1000)
        vm.forget_qmp_events()
        remove_dimm(vm, dimm)
    finally:
        set_react_delay(vm, 0)  # (the held batch keeps its sleep)
    known_bug = sorted(
        p for p in load_known_splats(guest.revision.series) if p.startswith("kernel_BUG")
    )
    if known_bug:
        _bug_must_show(guest, known_bug)
        return
    deleted, problems = wait_offline(guest, dimm)
    if not deleted:  # the guest may not answer any more: judge from QEMU and the console
        guest.wedged = bool(problems)
        verdict += judge_offline(False, 0, 0, None, ZONE, problems)
        guest.record("memory offline while a batch is out: no DEVICE_DELETED", verdict)
        assert verdict.passed, f"{guest.revision.name} memory offline while hinting:\n{verdict}"
    writer.write_line()
    pattern = writer.wait(timeout=300).stdout
    (guest.evidence / "pattern-offline.out").write_text(pattern)
    total_after = guest.mem_total_reaching(total_before)
    gone, idle = idle_verdict(guest, "dimm-removed")
    verdict += idle + judge_offline(True, total_before, total_after, gone, ZONE)
    verdict += Verdict(
        (
            judge_integrity(pattern, []),
            judge_accounting(
                FreeMemory.of(before, guest.spec.min_order),
                [FreeMemory.of(gone, guest.spec.min_order)],
                *(DEBUG_TOLERANCES_KIB if guest.revision.debug else TOLERANCES_KIB),
            ),
        )
    )
    # the zone again, from a new DIMM
    add_dimm(vm, DIMM_MIB, index=1)
    regrown = guest.mem_total_reaching(total_before + DIMM_MIB * 1024) - total_before
    replugged, again = idle_verdict(guest, "dimm-replugged")
    verdict += again + judge_hotplug(regrown, DIMM_MIB, gone.hinting, replugged.hinting)
    top_blocks = DIMM_MIB * MiB // (PAGE_SIZE << (guest.spec.min_order + 1))
    if replugged.hinting is not None:
        verdict += Verdict(
            (judge_offline_work(at_release, replugged.hinting, ZONE, top_blocks, guest.spec),)
        )
    guest.record("memory offline while a batch is out, then a new DIMM", verdict)
    assert verdict.passed, f"{guest.revision.name} memory offline while hinting:\n{verdict}"


def wait_offline(guest: ScriptedGuest, dimm: str) -> tuple[bool, list[str]]:
    """Until QEMU says the DIMM is gone (DEVICE_DELETED), or the console shows a kernel
    problem (an offline that crashed will never finish), or OFFLINE_TIMEOUT_S pass:
    (deleted, the console's problems)."""
    deadline = time.monotonic() + OFFLINE_TIMEOUT_S
    while True:
        try:
            guest.vm.wait_qmp_event("DEVICE_DELETED", OFFLINE_POLL_S, device=dimm)
            return True, []
        except VMError:
            problems = [f"{s.kind} {s.id}" for s in dmesg.classify(guest.vm.console_text())]
            if problems or time.monotonic() > deadline:
                return False, problems


def _bug_must_show(guest: ScriptedGuest, patterns: list[str]) -> None:
    """The revision keeps v2's PG_offline alias: offlining a block it hinted on an isolated
    list must BUG. The BUG leaves zone->lock held, so the guest no longer answers: the
    console is read, and nothing is asked of the guest afterwards."""
    found, _ = poll_until(
        lambda: dmesg.classify(guest.vm.console_text()),
        lambda found: any(is_known(s.id, patterns) for s in found),
        timeout=BUG_SHOWS_S,
        interval=1.0,
    )
    guest.expected_splats |= set(patterns)
    guest.wedged = True
    what = f"offlining a zone while a batch was out ({BUG_SHOWS_S:.0f} s)"
    verdict = guest.record(
        "offline: the kept defect must show",
        verdict_of(judge_kept_defect_shows(found, patterns, what)),
    )
    assert verdict.passed, f"{guest.revision.name}:\n{verdict}"
