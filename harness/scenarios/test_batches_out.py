"""Detection, second guest: the steps that hold batches out or watch the worker idle.

The detection steps run on two guests per revision, so that two workers share them under
xdist (the first guest: test_detection.py). Each step here starts from an idle point of
this guest (its boot idle point is judged on the first guest):

* integrity with a slow device: the series' test hook holds each batch before react();
  while one is out, a pattern writer takes nearly all free memory, and is verified after
  the host is done: pages put back before the device has them read back as zeros;
* migratetype moves: compaction and hugetlb churn move free blocks between types; the
  hinted-tail and count checks must still hold;
* merges in the drain: hugetlb pairs given back one buddy half at a time, the second half
  while the first is held in a batch: every held block merges in the drain and must come
  back unhinted;
* frees during react: with the series' test hook holding each batch out 50 ms longer, a
  release 1 MiB at a time frees pages while batches are out (merges in the drain, frees
  behind the boundary); counts and flags must agree and the hinted blocks stay one tail
  block;
* quiet: an idle guest does no hinting work, and the work over this guest's whole run
  stays within the model's bounds.

Every step here needs the series (its debugfs and test hook): stock has no such guest.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.build.revisions import Revision
from harness.core.errors import StepTestedNothing
from harness.drive.workloads import (
    read_hinting_state,
    read_meminfo,
    set_hugepages,
    set_react_delay,
    wait_batch_out,
)
from harness.judge import Verdict, judge_integrity, judge_quiet, judge_work
from harness.observe.procfs import HintingState
from harness.pipeline import GuestFactory
from harness.scenarios.scripted_guest import (
    ScriptedGuest,
    hold_batches,
    idle_verdict,
    scripted_guest,
)

QUIET_WINDOW_S = 3.0  # 30 times the worker's start delay
# The series' test hook holds each batch this long before react(), zone unlocked: memhog's
# release (same vCPU) then frees while batches are out, which a fast device never allows.
REACT_DELAY_MS = 50
OVERLAP_RELEASE_MIB = 768
# Integrity with a slow device: a holder leaves SLOW_FREE_MIB free, a release of
# SLOW_RELEASE_MIB (64 top-order blocks, past HWM: two batches) starts a cycle, and while
# the first batch is held SLOW_DELAY_MS the hugetlb pool takes every free block of order
# >= 9 (a batch put back early sits at the lists' tails: only taking them all reaches it,
# and nothing else in the guest gets those pages) and a pattern writer fills the pool.
# Pool and fill (~450 MiB) took 1.2 s under TCG.
SLOW_DELAY_MS = 2000
SLOW_RELEASE_MIB = 256
SLOW_FREE_MIB = 576
# Blocks (2 MiB) the pool leaves free: taking them all left the guest under its watermarks
# and dropbear was OOM-killed. An early-returned batch at the tails is 64 blocks, so the
# pool still takes most of it.
SLOW_LEFT_FREE_BLOCKS = 16
# Guest shell: size the pool to the free blocks of orders >= 9 outside ZONE_DMA (which
# its lowmem reserve keeps from user allocations), buddyinfo's order-9 and order-10 columns
# (MAX_ORDER 11 on x86-64) in 2 MiB units, less SLOW_LEFT_FREE_BLOCKS. Then fill the pool
# with the pattern.
TAKE_HIGH_ORDER_BLOCKS = (
    f"n=$(awk '$4 != \"DMA\" {{s += $14 + 2 * $15}} END {{print s - {SLOW_LEFT_FREE_BLOCKS}}}' "
    "/proc/buddyinfo); echo $n > /proc/sys/vm/nr_hugepages; "
    "exec pattern --hold-until-line --hugetlb $((2 * $(cat /proc/sys/vm/nr_hugepages)))"
)
# Merges in the drain: the pool leaves this many 2 MiB blocks free (the watermarks), and
# the first batch is held this long while the upper halves are given back.
MERGE_LEFT_FREE_BLOCKS = 64
MERGE_DELAY_MS = 2000
TRICKLE_MS = 5  # between two 1 MiB munmaps: a steady stream of frees over a few seconds


@pytest.fixture(scope="module")
def guest(
    revision: Revision, new_guest: GuestFactory, results_dir: Path
) -> Iterator[ScriptedGuest]:
    evidence = results_dir / f"batches-out[{revision.name}]"
    # (no settling here: a worker that never goes idle must fail the first step, not be a
    # setup error; the boot idle point itself is judged on the first detection guest)
    with scripted_guest(revision, new_guest, evidence) as scripted:
        yield scripted


@pytest.mark.hinting
def test_memory_keeps_its_contents_with_a_slow_device(guest: ScriptedGuest) -> None:
    """While a batch is out (the series' test hook holds it SLOW_DELAY_MS before react(),
    as a slow host would), the hugetlb pool takes every free block of order >= 9 and a
    pattern writer fills it; once the host is done with every batch the pattern must be
    intact. A revision that returns pages to the free lists before the device has them
    lets the writer have them, and the host's discard then zeroes what it wrote. Under TCG
    the device acts inside the notification, so without the hook the window is too short
    to show."""
    vm = guest.vm
    guest.settle()
    free_mib = read_meminfo(vm)["MemFree"] // 1024
    holder = vm.ssh.start(f"memhog {free_mib - SLOW_FREE_MIB}")
    holder.expect_line(f"touched {free_mib - SLOW_FREE_MIB}", timeout=600)
    hold_batches(guest, SLOW_DELAY_MS, "cannot hold a batch out")
    try:
        vm.ssh.check(f"echo | memhog {SLOW_RELEASE_MIB} > /dev/null", timeout=300)
        wait_batch_out(vm, timeout_s=10)
        started = time.monotonic()
        writer = vm.ssh.start(TAKE_HIGH_ORDER_BLOCKS)
        filled = writer.read_line(timeout=300)
        fill_s = time.monotonic() - started
        during = read_hinting_state(vm)
        set_react_delay(vm, 0)  # the held batch keeps its sleep; the cycle's next ones do not
        guest.settle()  # every batch reported: the host is done with them
        writer.write_line()
        output = filled + "\n" + writer.wait(timeout=300).stdout
    finally:
        set_react_delay(vm, 0)
    set_hugepages(vm, 0)
    holder.write_line()
    holder.wait(timeout=300)
    (guest.evidence / "pattern-slow-device.out").write_text(output)
    if not any(z.active for z in during.zones):
        raise StepTestedNothing(
            f"the pattern writer took {fill_s:.1f} s, longer than the held batch "
            f"({SLOW_DELAY_MS} ms): no batch was out when it finished writing",
            "raise SLOW_DELAY_MS in harness/scenarios/test_detection.py",
        )
    verdict = Verdict((judge_integrity(output, []),))
    verdict = guest.record(f"integrity, slow device (writer filled in {fill_s:.1f} s)", verdict)
    assert verdict.passed, f"{guest.revision.name}:\n{verdict}"


@pytest.mark.hinting
def test_migratetype_moves_keep_the_tail_block(guest: ScriptedGuest) -> None:
    """Compaction and hugetlb churn move free blocks between migratetypes (6.1's
    move_to_free_list): the hinted blocks must stay one block at each list's tail and the
    counts must agree, at the next idle point."""
    vm = guest.vm
    vm.ssh.check("echo | memhog 512 > /dev/null", timeout=600)
    vm.ssh.check("echo 1 > /proc/sys/vm/compact_memory", timeout=300)
    set_hugepages(vm, 256)
    vm.ssh.check("echo 1 > /proc/sys/vm/compact_memory", timeout=300)
    set_hugepages(vm, 0)
    _, verdict = idle_verdict(guest, "migratetype-moves")
    assert verdict.passed, f"{guest.revision.name} after compaction:\n{verdict}"


@pytest.mark.hinting
def test_merges_in_the_drain(guest: ScriptedGuest) -> None:
    """Blocks held out in a batch merge in the drain with buddies freed meanwhile, every
    time: `hugepairs` holds the hugetlb pool (all free blocks of order >= 9 but
    MERGE_LEFT_FREE_BLOCKS) and gives back the lower halves of its order-10 pairs first,
    lone order-9 blocks whose buddies it still holds: past HWM, a cycle starts. While the
    first batch is held (the test hook), the upper halves follow. Each held lower half then
    merges in the drain and must come back unhinted: counts and flags must agree at the
    next idle point (a revision that marks a merged page hinted fails
    zoneinfo_hinted_matches_debugfs), and the hinted blocks stay one tail block."""
    vm = guest.vm
    before = guest.settle()
    buddy = guest.observe("merges-start").buddyinfo.free
    blocks = sum(f[9] + 2 * f[10] for (_, zone), f in buddy.items() if zone != "DMA")
    pool = set_hugepages(vm, blocks - MERGE_LEFT_FREE_BLOCKS)
    holder = vm.ssh.start(f"hugepairs {pool}")
    mapped = holder.read_line(timeout=300).split()  # mapped N lower L upper U
    lower, upper = int(mapped[3]), int(mapped[5])
    if lower < 2 * guest.spec.hwm or upper < guest.spec.capacity:
        raise StepTestedNothing(
            f"hugepairs held {pool} pages, {lower} lower and {upper} upper halves: too few "
            "pairs to start a cycle and merge a batch",
            "give the detection guest more memory",
        )
    hold_batches(guest, MERGE_DELAY_MS, "cannot hold a batch out")
    try:
        holder.write_line()
        holder.expect_line(f"unmapped lower {lower}", timeout=120)
        set_hugepages(vm, pool - lower)  # the lower halves, to the buddy allocator
        wait_batch_out(vm, timeout_s=10)
        holder.write_line()
        holder.expect_line(f"unmapped upper {upper}", timeout=120)
        set_hugepages(vm, 0)  # their buddies, while the batch is held
        holder.wait(timeout=120)
    finally:
        set_react_delay(vm, 0)
        set_hugepages(vm, 0)
    obs, verdict = idle_verdict(guest, "merges-in-drain")
    if before is not None and obs.hinting is not None:
        guest.record("merges in the drain", verdict)
    assert verdict.passed, f"{guest.revision.name} after merges in the drain:\n{verdict}"
    merged = _returned_unhinted(obs.hinting) - _returned_unhinted(before)
    if merged <= 0:
        raise StepTestedNothing(
            "no block of the held batch merged in the drain (reported == hinted)",
            f"raise MERGE_DELAY_MS ({MERGE_DELAY_MS} ms) in harness/scenarios/test_detection.py",
        )
    guest.note(f"merges in the drain: {merged} blocks came back merged")


def _returned_unhinted(state: HintingState) -> int:
    """Blocks handed to react() that came back unhinted (merged in the drain), all zones."""
    return sum(z.activity.reported - z.activity.hinted for z in state.zones if z.activity)


@pytest.mark.hinting
def test_frees_during_react(guest: ScriptedGuest) -> None:
    """Frees while batches are out: with the series' test hook each react() keeps the zone
    unlocked REACT_DELAY_MS longer, and memhog gives 768 MiB back 1 MiB at a time, so that
    frees keep landing while batches are out, also during each cycle's last one (on one
    vCPU they run in the worker's sleeps). Pages freed during react() merge with returning
    ones in the drain and land behind the boundary. At the next idle point the counts must
    match the flags and the hinted blocks must still be one block at each list's tail."""
    vm = guest.vm
    before = guest.settle()
    hold_batches(guest, REACT_DELAY_MS, "cannot make frees land during react()")
    try:
        vm.ssh.check(
            f"echo | memhog --trickle-ms {TRICKLE_MS} {OVERLAP_RELEASE_MIB} > /dev/null",
            timeout=600,
        )
        guest.settle()
    finally:
        set_react_delay(vm, 0)
    obs, verdict = idle_verdict(guest, "frees-during-react")
    if before is not None and obs.hinting is not None:
        verdict += judge_work(before, obs.hinting, guest.spec)
    guest.record("frees during react", verdict)
    assert verdict.passed, f"{guest.revision.name} after frees during react():\n{verdict}"


@pytest.mark.hinting
def test_no_work_while_idle(guest: ScriptedGuest) -> None:
    """Over a window of 30 worker delays with nothing to do, no counter moves; over the
    whole run, the work stays within the model's bounds."""
    first = guest.settle() or read_hinting_state(guest.vm)
    time.sleep(QUIET_WINDOW_S)
    last = read_hinting_state(guest.vm)
    verdict = Verdict((judge_quiet(first, last, QUIET_WINDOW_S),))
    if guest.first_state is not None:
        verdict += judge_work(guest.first_state, last, guest.spec)
    guest.record("quiet", verdict)
    assert verdict.passed, f"{guest.revision.name}:\n{verdict}"
