"""Isolation and failure paths: hinted blocks taken or moved while a cycle is active, and a
react() that fails.

One guest per hinting revision (2 GiB, a 256 MiB CMA area reserved at boot) goes through
these steps in order; each ends at an idle point judged like every other (counts agree
with the flags, hinted blocks one tail block, the idle rule, no hinted block on an
isolated list), and the guest's kernel log must stay clean:

* the boundary block taken mid-cycle: while a batch is held out (the series' react delay
  hook), the hugetlb pool takes every free block of order >= 9, the unhinted ones first,
  then the hinted ones the cycle's first batch just put back, the boundary block first:
  `clear_page_hinted()` must push the boundary back, or the next drain inserts pages next
  to a page that left the list;
* isolation by alloc_contig_range(): the CMA area (hinted by the boot flush) is allocated
  through CMA's debugfs, which isolates its pageblocks (hinted blocks move to
  MIGRATE_ISOLATE and must lose flag and count) and takes them; freed, they come back
  unhinted and are hinted again. Then again while a batch from the area is out: the
  allocation fails on the held pages and undoes the isolation, moving the blocks the
  first batch hinted while the zone is active;
* a react() that fails: fail_function makes the next virtqueue_add_inbuf() fail. A
  revision that handles it puts the batch back unhinted, stops the cycle and retries a
  second later; hinting then completes. A revision that keeps v2's defect (it ignores
  the error and waits forever) must show it as its known-splats.txt says: the hung task
  detector's report. That breaks the guest's hinting, so this step comes last.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.build.known_splats import is_known, load_known_splats
from harness.build.revisions import Revision
from harness.core.errors import StepTestedNothing
from harness.core.poll import poll_until
from harness.drive.workloads import (
    HUNG_TASK_TIMEOUT,
    cma_alloc,
    cma_free,
    cma_pages,
    disarm_fail_function,
    fail_next_calls,
    injections_left,
    read_hinting_state,
    set_hugepages,
    set_react_delay,
    wait_batches,
)
from harness.judge import (
    VerdictFailed,
    judge_contig_alloc,
    judge_kept_defect_shows,
    judge_react_failure,
    judge_step,
    verdict_of,
    zone_activity,
)
from harness.observe.procfs import HintingState
from harness.pipeline import GuestFactory
from harness.scenarios.guest_checks import splats
from harness.scenarios.scripted_guest import (
    ScriptedGuest,
    hold_batches,
    idle_verdict,
    scripted_guest,
    snapshot_verdict,
)

CMA_MIB = 256  # 64 order-10 blocks: freeing it is twice HWM, a cycle of two batches
ZONE = "DMA32"  # a 2 GiB guest's memory outside ZONE_DMA
HOLD_MS = 3000  # each batch is held this long before react() (the series' test hook)
RELEASE_MIB = 256  # 64 order-10 blocks: a cycle of two batches
LEFT_FREE_BLOCKS = 16  # 2 MiB blocks the pool leaves (the guest's watermarks)
# Guest shell: size the pool to every free block of order >= 9 outside ZONE_DMA (buddyinfo's
# order-9 and order-10 columns, MAX_ORDER 11 on x86-64) less LEFT_FREE_BLOCKS.
TAKE_ALL_HIGH_ORDER = (
    f"n=$(awk '$4 != \"DMA\" {{s += $14 + 2 * $15}} END {{print s - {LEFT_FREE_BLOCKS}}}' "
    "/proc/buddyinfo); echo $n > /proc/sys/vm/nr_hugepages; cat /proc/sys/vm/nr_hugepages"
)
FAILED_ERRNO = 28  # ENOSPC: what a full ring gives
HUNG_TASK_SECONDS = 5  # the detector's timeout in this guest (it checks every timeout)
HANG_SHOWS_S = 40.0  # two detector periods and the boot's first check
RETRY_IDLE_S = 30.0
# (seen on crngs.lock and on input_pool.lock, whichever the draw takes first)
INJECTION_SPLAT = "lockdep:inconsistent_lock_state:{INITIALUSE}->{IN-NMI}:*"


@pytest.fixture(scope="module")
def isolation_guest(
    hinting_revision: Revision, new_guest: GuestFactory, results_dir: Path
) -> Iterator[ScriptedGuest]:
    revision = hinting_revision
    evidence = results_dir / f"isolation[{revision.name}]"
    with scripted_guest(revision, new_guest, evidence, extra_cmdline=f"cma={CMA_MIB}M") as scripted:
        yield scripted


def _batches(state: HintingState, zone: str = ZONE) -> int:
    activity = zone_activity(state, zone)
    return activity.batches if activity else 0


def test_boundary_block_taken_mid_cycle(isolation_guest: ScriptedGuest) -> None:
    """While the cycle's second batch is held out, the pool takes every free block of
    order >= 9: the unhinted ones (list heads) first, then the blocks the first batch just
    hinted, the boundary block first. At the next idle point the checks must hold, and the
    kernel must not have corrupted a list (a boundary left on a taken page)."""
    guest, vm = isolation_guest, isolation_guest.vm
    before = guest.settle() or read_hinting_state(vm)
    hold_batches(guest, HOLD_MS, "cannot hold a batch out")
    try:
        vm.ssh.check(f"echo | memhog {RELEASE_MIB} > /dev/null", timeout=300)
        second_out = wait_batches(vm, ZONE, _batches(before) + 2, timeout_s=4 * HOLD_MS / 1000)
        pool = int(vm.ssh.check(TAKE_ALL_HIGH_ORDER, timeout=300).stdout.split()[-1])
        during = read_hinting_state(vm)
    finally:
        set_react_delay(vm, 0)
    set_hugepages(vm, 0)
    still_out = _batches(during) == _batches(second_out) and any(
        z.zone == ZONE and z.active for z in during.zones
    )
    if not still_out:
        raise StepTestedNothing(
            f"the pool ({pool} pages) was not taken while the second batch was held "
            f"({HOLD_MS} ms): the worker moved on",
            "raise HOLD_MS in harness/scenarios/test_isolation.py",
        )
    _, verdict = idle_verdict(guest, "boundary-taken-mid-cycle")
    guest.record(f"boundary block taken mid-cycle (pool {pool} pages)", verdict)
    assert verdict.passed, f"{guest.revision.name} after the pool took the boundary:\n{verdict}"


def test_contig_alloc_isolates_hinted_blocks(isolation_guest: ScriptedGuest) -> None:
    """alloc_contig_range() over the CMA area, which the boot flush hinted: its blocks are
    isolated (moved to MIGRATE_ISOLATE) and taken; while they are allocated, the counts
    agree with the flags; freed, they come back unhinted and are hinted again. Then the
    same while a batch from the area is held out (the allocation cannot have the held
    pages, and undoes the isolation while the zone is active)."""
    guest, vm = isolation_guest, isolation_guest.vm
    pages = cma_pages(vm)
    if not pages:
        raise StepTestedNothing(
            "the guest has no CMA area (debugfs cma/reserved)", "boot it with cma=SIZE"
        )
    before = guest.settle()
    start = guest.observe("cma-start")
    if before is None or not _hinted_in(before, "CMA"):
        raise StepTestedNothing(
            "the boot flush hinted no block of the CMA area", "reserve a larger area (cma=)"
        )
    if not cma_alloc(vm, pages):
        raise StepTestedNothing(
            f"alloc_contig_range() of the idle CMA area ({pages} pages) failed",
            "see the guest's dmesg (cma_alloc)",
        )
    allocated, verdict = snapshot_verdict(guest, "cma-allocated")
    cma_free(vm, pages)
    after_free, freed = idle_verdict(guest, "cma-freed")
    verdict += freed + judge_contig_alloc(start, allocated, after_free, pages, guest.spec)

    # again, while the cycle that hints the freed area holds its second batch out
    again_ok = cma_alloc(vm, pages)
    verdict += verdict_of(judge_step("contig_alloc_again", again_ok, f"{pages} pages"))
    if not again_ok:
        guest.record("alloc_contig_range over the CMA area", verdict)
        raise VerdictFailed("alloc_contig_range again", verdict, guest.revision.name)
    guest.settle()
    at_free = read_hinting_state(vm)
    set_react_delay(vm, HOLD_MS)
    try:
        cma_free(vm, pages)  # 64 order-10 blocks: a request, two batches of CMA blocks
        wait_batches(vm, ZONE, _batches(at_free) + 2, timeout_s=4 * HOLD_MS / 1000)
        got_it = cma_alloc(vm, pages)
        during = read_hinting_state(vm)
    finally:
        set_react_delay(vm, 0)
    if got_it:
        cma_free(vm, pages)
    _, again = idle_verdict(guest, "cma-during-batch")
    verdict += again
    guest.record(
        f"alloc_contig_range over the CMA area ({pages} pages); during a held batch it "
        f"{'succeeded' if got_it else 'failed'} (zone active then: "
        f"{any(z.zone == ZONE and z.active for z in during.zones)})",
        verdict,
    )
    assert verdict.passed, f"{guest.revision.name} around alloc_contig_range():\n{verdict}"


def _hinted_in(state: HintingState, migratetype: str) -> int:
    return sum(e.hinted for e in state.lists if e.migratetype == migratetype)


def test_react_failure_is_retried(isolation_guest: ScriptedGuest) -> None:
    """The next virtqueue_add_inbuf() fails (fail_function, -ENOSPC): the batch must come
    back unhinted, the driver say so, and hinting retry and complete. A revision that
    keeps v2's defect must show it (the worker waits forever: the hung task report)."""
    guest, vm = isolation_guest, isolation_guest.vm
    before = guest.settle() or read_hinting_state(vm)
    vm.ssh.check(f"echo {HUNG_TASK_SECONDS} > {HUNG_TASK_TIMEOUT}")
    known_hang = sorted(
        p for p in load_known_splats(guest.revision.series) if p.startswith("hung_task")
    )
    fail_next_calls(vm, "virtqueue_add_inbuf", FAILED_ERRNO)
    # fail_function's kprobe handler runs in int3 context, which lockdep treats as NMI, and
    # 6.1's should_fail() draws a random number there: a lockdep kernel reports one of the
    # random pool's locks once. The harness's injection causes it, not the series.
    guest.expected_splats.add(INJECTION_SPLAT)
    try:
        vm.ssh.check(f"echo | memhog {RELEASE_MIB} > /dev/null", timeout=300)
        if known_hang:
            _hang_must_show(guest, known_hang)
            return
        guest.settle()  # (raises WorkerNeverIdle, a failed check, if the retry never comes)
        left = injections_left(vm)
    finally:
        disarm_fail_function(vm)
    log = vm.ssh.check("dmesg").stdout
    obs, verdict = idle_verdict(guest, "react-failed")
    if obs.hinting is not None:
        verdict += judge_react_failure(before, obs.hinting, left, log, guest.spec)
    guest.record("react() failed once", verdict)
    assert verdict.passed, f"{guest.revision.name} after a failed react():\n{verdict}"


def _hang_must_show(guest: ScriptedGuest, patterns: list[str]) -> None:
    """The revision keeps v2's wait-forever defect: the hung task detector must report it
    (then the guest's hinting is stuck for good, which is why this step is last)."""
    found, _ = poll_until(
        lambda: splats(guest.vm),
        lambda found: any(is_known(s.id, patterns) for s in found),
        timeout=HANG_SHOWS_S,
        interval=2.0,
    )
    guest.expected_splats |= set(patterns)
    what = f"a failed react() (hung task detector, {HANG_SHOWS_S:.0f} s)"
    verdict = guest.record(
        "react() failed: the kept defect must show",
        verdict_of(judge_kept_defect_shows(found, patterns, what)),
    )
    assert verdict.passed, f"{guest.revision.name}:\n{verdict}"
