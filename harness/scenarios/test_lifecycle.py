"""Lifecycle: the series' start, stop and hotplug paths under events driven over QMP.

One guest per revision (1 GiB, room for a 512 MiB DIMM, the balloon behind a PCIe root
port) goes through the steps below in order. After each one the guest must answer over
SSH, its kernel log must stay clean, and the hinting revisions are judged at the next idle
point like every other scenario (counts agree with the flags, the idle rule, the hinted
blocks one tail block).

* out of memory: a workload asks for more than the guest has; the OOM killer acts;
* balloon inflate and deflate: 256 MiB out and back while a release runs; the balloon
  reaches each target, MemTotal follows, the host RSS falls;
* memory hotplug: a pc-dimm is added and onlined; hinting covers the new memory;
* unplug during hinting: device_del of the balloon right after a release; hinting stops
  (page_hinting_shutdown: no device, no more work, no discards); device_add brings it back
  (a second page_hinting_startup) and a release is returned to the host;
* reset: system_reset right after a release; the guest boots again and hinting restarts
  with fresh state.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.build.revisions import Revision
from harness.build.spec import load_spec
from harness.core.poll import poll_until
from harness.core.units import MiB
from harness.drive.lifecycle import add_dimm, plug_balloon, set_balloon_target, unplug_balloon
from harness.drive.workloads import (
    measure_release,
    read_hinting_state,
    set_react_delay,
)
from harness.judge import (
    RETURN_FRACTION_AFTER_EVENT,
    FreeMemory,
    JudgeConfig,
    Verdict,
    VerdictFailed,
    judge_accounting,
    judge_balloon_move,
    judge_device_gone,
    judge_hotplug,
    judge_kernel,
    judge_kernel_log,
    judge_oom,
    judge_reading_again,
    judge_restart,
    judge_returned,
    judge_rss_under_balloon,
    judge_step,
    verdict_of,
)
from harness.judge.reduced import HINTED_COUNTS, judge_files_agree, not_judged
from harness.observe import dmesg
from harness.observe.procfs import GuestObservations
from harness.observe.rss import read_rss_bytes
from harness.pipeline import GuestFactory
from harness.report.evidence import save_console, save_json
from harness.scenarios.guest_checks import splats
from harness.scenarios.scripted_guest import STOCK_SETTLE_S, ScriptedGuest

GUEST_MIB = 1024
DIMM_MIB = 512  # four 128 MiB memory blocks
SECOND_DIMM_MIB = 256
OOM_ASK_MIB = 1536  # more than the 1 GiB guest has (overcommit on, so the mmap succeeds)
RELEASE_MIB = 384
BALLOON_MIB = 512  # half the guest, as the issue asks
BALLOON_RELEASE_MIB = 256  # held while the balloon inflates: 256 + 512 of 1 GiB
# QEMU's own memory besides guest RAM (measured 100-140 MiB after boot, with the guest's
# kernel): the RSS with the balloon inflated must stay under its target plus this.
QEMU_OWN_RSS_MIB = 192
# With no balloon nobody discards: the RSS may still move a little (QEMU's own heap).
NO_DISCARD_LIMIT = 32 * MiB
RETURN_DEADLINE_S = 60.0
# Free memory after an event, against before it (see test_detection: stock's and fixed's
# noise was under 6 MiB; a lost batch is >= 4 MiB per block).
ACCOUNTING_TOLERANCE_KIB = 8 * 1024
HIGH_ORDER_TOLERANCE_KIB = 32 * 1024
OOM_REPORT = "Out of memory: Killed process"
ONLINE_S = 60.0  # hot-added memory blocks are onlined by the kernel within a second or two
UNPLUG_REACT_DELAY_MS = 200  # ~3 batches of 384 MiB: the worker is busy for ~0.7 s


@dataclass
class LifecycleGuest(ScriptedGuest):
    """The detection steps' guest (settle, observe, record) plus what lifecycle steps need."""

    def idle_verdict(self, label: str) -> tuple[GuestObservations, Verdict]:
        """Settle, observe, and judge the kernel-side checks (hinting revisions).

        The files are read one after another, and after an event (a DIMM just onlined) the
        allocator may still merge a few blocks between two reads (seen once, on hinting-v2:
        debugfs 6/235 against pagetypeinfo 4/237 order-9/10 blocks). When only the checks
        that compare two files fail, the guest is observed again (judge_reading_again):
        a race goes away, a counting defect does not."""
        return judge_reading_again(
            lambda attempt: self._judge_idle(label if attempt == 1 else f"{label}-read{attempt}"),
            lambda note: self.note(f"{label}: {note}"),
        )

    def _judge_idle(self, label: str) -> tuple[GuestObservations, Verdict]:
        self.settle()
        obs = self.observe(label)
        if not self.revision.hinting:
            return obs, Verdict(())
        if not self.instrumented:  # the free lists are all a reduced form can judge
            return obs, verdict_of(
                judge_files_agree(obs, self.spec, int(self.revision.debug)),
                not_judged("idle_trigger_rule", HINTED_COUNTS),
            )
        return obs, judge_kernel(obs, JudgeConfig(require_idle=True), self.spec)

    def wait_mem_total(self, kib: int, what: str) -> None:
        """Until MemTotal reaches `kib` (hot-added memory came online)."""
        total, online = poll_until(self.mem_total_kib, lambda t: t >= kib, timeout=ONLINE_S)
        if not online:
            detail = f"{what} did not come online within {ONLINE_S:.0f} s: MemTotal {total} KiB"
            verdict = self.record(what, verdict_of(judge_step("memory_online", False, detail)))
            raise VerdictFailed(what, verdict, self.revision.name)


def _return_bar(guest: LifecycleGuest) -> float:
    return RETURN_FRACTION_AFTER_EVENT["hinting" if guest.revision.hinting else "stock"]


def _wait_for_bytes(guest: LifecycleGuest, mib: int = RELEASE_MIB) -> int:
    """Watch the RSS until a little more than the bar has come back (not until 90 %, which
    stock never reaches here: it would always wait the whole deadline). A little: 1 %.
    With 5 %, a release after the replug that came back between 80 and 85 % kept the
    watch going for the whole 60 s deadline, and then passed (one run of four)."""
    return int((_return_bar(guest) + 0.01) * mib * MiB)


@pytest.fixture(scope="module")
def lifecycle_guest(
    revision: Revision, new_guest: GuestFactory, results_dir: Path
) -> Iterator[LifecycleGuest]:
    evidence = results_dir / f"lifecycle[{revision.name}]"
    evidence.mkdir(parents=True, exist_ok=True)
    guest = new_guest(
        revision, evidence, memory_mib=GUEST_MIB, hotplug_mib=DIMM_MIB + SECOND_DIMM_MIB
    )
    with guest as vm:
        scripted = LifecycleGuest(revision, vm, evidence, load_spec(revision.series))
        try:
            yield scripted
        finally:
            found = splats(vm)
            save_json(evidence / "splats.json", found)
            save_console(evidence, vm.console_log)
    (evidence / "initrd.img").unlink(missing_ok=True)
    kernel_log = verdict_of(judge_kernel_log(found, scripted.expected_splats))
    if not kernel_log.passed:
        raise VerdictFailed("kernel log", kernel_log, revision.name)


def oom_verdict(guest: ScriptedGuest) -> Verdict:
    """Ask for more memory than the guest has (overcommit on) and judge what the OOM killer
    did; its reports become expected splats of the guest. (Also the reduced form's.)"""
    vm = guest.vm
    vm.ssh.check("echo 1 > /proc/sys/vm/overcommit_memory")
    result = vm.ssh.run(f"echo | memhog {OOM_ASK_MIB}", timeout=300)
    vm.ssh.check("echo 0 > /proc/sys/vm/overcommit_memory")
    log = vm.ssh.check("dmesg").stdout
    found = dmesg.classify(log)
    oom_ids = {s.id for s in found if s.kind == "OOM" or s.id.startswith("OOM")}
    guest.expected_splats |= oom_ids
    others = [f"{s.kind} {s.id}" for s in found if s.id not in oom_ids]
    return judge_oom(result.exit_status, log.count(OOM_REPORT), others)


def test_oom_kills_the_workload_and_hinting_goes_on(lifecycle_guest: LifecycleGuest) -> None:
    """A workload asking for more than the guest has: the OOM killer kills it, the guest
    still answers, no other splat, and hinting is consistent at the next idle point."""
    guest = lifecycle_guest
    guest.settle()
    verdict = oom_verdict(guest)
    _, idle = guest.idle_verdict("after-oom")
    verdict = guest.record("out of memory", verdict + idle)
    assert verdict.passed, f"{guest.revision.name} after an OOM kill:\n{verdict}"


def test_balloon_inflate_and_deflate_while_releasing(lifecycle_guest: LifecycleGuest) -> None:
    """The balloon takes 512 MiB (half the guest) while a release runs and gives it back: it
    reaches both targets, MemTotal follows, the host gets the released memory back and its
    RSS stays under the balloon's target, and the hinted counts stay consistent (hinted <=
    free, flags = counts) with the balloon's pages in and out of the allocator."""
    guest, vm = lifecycle_guest, lifecycle_guest.vm
    guest.settle()
    before = guest.observe("balloon-start")
    total_before = before.meminfo["MemTotal"]
    inflate: list = []
    during: list[Verdict] = []

    def inflate_at_peak() -> None:
        inflate.append(set_balloon_target(vm, GUEST_MIB - BALLOON_MIB))
        if guest.reads_series_state:  # hinted <= free with the balloon's pages just taken
            during.append(judge_kernel(guest.observe("balloon-inflating"), spec=guest.spec))

    measured = measure_release(
        vm,
        BALLOON_RELEASE_MIB,
        expect_return=True,
        deadline_s=RETURN_DEADLINE_S,
        at_peak=inflate_at_peak,
        until_returned=_wait_for_bytes(guest, BALLOON_RELEASE_MIB),
    )
    _, inflated_verdict = guest.idle_verdict("balloon-inflated")
    rss_inflated = read_rss_bytes(vm.pid)
    total_inflated = guest.mem_total_kib()
    deflate = set_balloon_target(vm, GUEST_MIB)
    after, deflated_verdict = guest.idle_verdict("balloon-deflated")
    verdict = judge_balloon_move(
        inflate[0].target_mib, inflate[0].actual_mib, total_inflated - total_before, -BALLOON_MIB
    )
    verdict += judge_balloon_move(
        deflate.target_mib,
        deflate.actual_mib,
        after.meminfo["MemTotal"] - total_inflated,
        BALLOON_MIB,
    )
    returned = measured.returned_bytes
    verdict += Verdict(
        (
            judge_accounting(
                FreeMemory.of(before, guest.spec.min_order),
                [FreeMemory.of(after, guest.spec.min_order)],
                ACCOUNTING_TOLERANCE_KIB,
                HIGH_ORDER_TOLERANCE_KIB,
            ),
        )
    )
    verdict += Verdict(
        (judge_rss_under_balloon(rss_inflated, GUEST_MIB - BALLOON_MIB, QEMU_OWN_RSS_MIB),)
    )
    verdict += sum(during, Verdict(())) + inflated_verdict + deflated_verdict
    summary = {
        "inflate_s": inflate[0].seconds,
        "deflate_s": deflate.seconds,
        "returned_mib": returned // MiB,
    }
    save_json(guest.evidence / "balloon.json", summary)
    verdict += verdict_of(
        judge_returned(returned, BALLOON_RELEASE_MIB * MiB, measured.watched_s, _return_bar(guest))
    )
    guest.record(f"balloon inflate/deflate ({summary})", verdict)
    assert verdict.passed, f"{guest.revision.name} balloon inflate/deflate:\n{verdict}"


def test_memory_hotplug_is_hinted(lifecycle_guest: LifecycleGuest) -> None:
    """A 512 MiB pc-dimm comes online (auto-online, a zone that was empty at boot): MemTotal
    grows by its size, and the blocks freed by onlining are hinted like any others; then a
    256 MiB one joins that zone, behind its hinted blocks, and the idle checks still hold."""
    guest, vm = lifecycle_guest, lifecycle_guest.vm
    start = guest.settle()
    total_before = guest.mem_total_kib()
    add_dimm(vm, DIMM_MIB)
    guest.wait_mem_total(total_before + DIMM_MIB * 1024, "the DIMM")
    obs, verdict = guest.idle_verdict("hotplug-online")
    grown = obs.meminfo["MemTotal"] - total_before
    verdict += judge_hotplug(grown, DIMM_MIB, start, obs.hinting)
    # A second DIMM joins the zone the first one created, whose hinted blocks now sit at
    # the tails of its lists: onlining frees with FPI_TO_TAIL (the port deviation in
    # hinting-v2/NOTES.md), so the new blocks land behind them until the worker runs.
    add_dimm(vm, SECOND_DIMM_MIB, index=1)
    guest.wait_mem_total(total_before + (DIMM_MIB + SECOND_DIMM_MIB) * 1024, "the second DIMM")
    if guest.reads_series_state:
        # Evidence, not a check: the worker repairs it within one delay (see NOTES.md).
        onlined = read_hinting_state(vm)
        save_json(guest.evidence / "hotplug-second-dimm-onlined.json", onlined)
        behind = [
            f"{e.zone} order {e.order} {e.migratetype}: {e.hinted} of {e.free} hinted "
            f"from index {e.first_hinted}"
            for e in onlined.lists
            if e.hinted and not e.contiguous_tail
        ]
        guest.note(f"just after onlining: hinted blocks not at the tail: {behind}")
    _, second = guest.idle_verdict("hotplug-second-dimm")
    verdict += second
    guest.record("memory hotplug", verdict)
    assert verdict.passed, f"{guest.revision.name} after memory hotplug:\n{verdict}"


def test_balloon_unplug_during_hinting(lifecycle_guest: LifecycleGuest) -> None:
    """device_del of the balloon right after a release, while the worker is busy: the
    guest lets it go, hinting stops (no device, no work, no discards) and what was out for
    hinting comes back to the free lists; device_add brings hinting back and a release is
    returned to the host again."""
    guest, vm = lifecycle_guest, lifecycle_guest.vm
    guest.settle()
    before = guest.observe("unplug-start")
    # The series' test hook stretches each batch, so that the worker is surely in a cycle
    # (pages out in the scatterlist) when the device goes.
    stretched = guest.reads_series_state and set_react_delay(vm, UNPLUG_REACT_DELAY_MS)
    vm.ssh.check(f"echo | memhog {RELEASE_MIB} > /dev/null", timeout=300)
    at_unplug = read_hinting_state(vm) if guest.reads_series_state else None
    unplug_s = unplug_balloon(vm)
    if stretched:
        set_react_delay(vm, 0)
    unplugged = read_hinting_state(vm) if guest.reads_series_state else None
    set_up = Verdict(())
    if stretched and at_unplug is not None:
        busy = at_unplug.refcnt > 0 or any(z.requested or z.active for z in at_unplug.zones)
        set_up = verdict_of(judge_step("worker_busy_at_unplug", busy, f"{at_unplug}"))
    rss_before = read_rss_bytes(vm.pid)
    vm.ssh.check(f"echo | memhog {RELEASE_MIB} > /dev/null", timeout=300)
    time.sleep(STOCK_SETTLE_S)
    rss_fall = read_rss_bytes(vm.pid) - rss_before

    def judge_unplugged(attempt: int) -> tuple[GuestObservations, Verdict]:
        # No device, so no idle point to wait for: the files are read after a fixed settle,
        # and read again if two of them disagree (seen once in CI on hinting-v2: debugfs
        # 6/234 against pagetypeinfo 5/236 order-9/10 blocks).
        gone = guest.observe("unplugged" if attempt == 1 else f"unplugged-read{attempt}")
        verdict = Verdict(
            (
                judge_accounting(
                    FreeMemory.of(before, guest.spec.min_order),
                    [FreeMemory.of(gone, guest.spec.min_order)],
                    ACCOUNTING_TOLERANCE_KIB,
                    HIGH_ORDER_TOLERANCE_KIB,
                ),
            )
        )
        if unplugged is not None and gone.hinting is not None:
            # rss_fall < 0 means the RSS went up (the second memhog touched fresh pages)
            verdict += judge_device_gone(unplugged, gone.hinting, -rss_fall, NO_DISCARD_LIMIT)
            verdict += judge_kernel(gone, JudgeConfig(device_expected=False), guest.spec)
        return gone, verdict

    _, verdict = judge_reading_again(
        judge_unplugged,
        lambda note: guest.note(f"unplugged: {note}"),
    )
    plug_balloon(vm)
    _, replugged = guest.idle_verdict("replugged")
    measured = measure_release(
        vm,
        RELEASE_MIB,
        expect_return=True,
        deadline_s=RETURN_DEADLINE_S,
        until_returned=_wait_for_bytes(guest),
    )
    verdict = set_up + verdict + replugged
    verdict += verdict_of(
        judge_returned(
            measured.returned_bytes, RELEASE_MIB * MiB, measured.watched_s, _return_bar(guest)
        )
    )
    guest.record(f"unplug during hinting (DEVICE_DELETED after {unplug_s:.1f} s)", verdict)
    assert verdict.passed, f"{guest.revision.name} balloon unplug and replug:\n{verdict}"


def test_reset_while_hinting(lifecycle_guest: LifecycleGuest) -> None:
    """system_reset right after a release: the guest boots again, hinting starts again
    (startup flush, the idle rule) with counters from the new boot only."""
    guest, vm = lifecycle_guest, lifecycle_guest.vm
    guest.settle()
    boot_before = vm.ssh.check("cat /proc/sys/kernel/random/boot_id").stdout.strip()
    state_before = read_hinting_state(vm) if guest.reads_series_state else None
    vm.ssh.check(f"echo | memhog {RELEASE_MIB} > /dev/null", timeout=300)
    reset_s = vm.reset()
    boot_after = vm.ssh.check("cat /proc/sys/kernel/random/boot_id").stdout.strip()
    obs, verdict = guest.idle_verdict("after-reset")
    verdict += judge_restart((boot_before, boot_after), state_before, obs.hinting)
    guest.record(f"reset ({reset_s:.1f} s to SSH)", verdict)
    assert verdict.passed, f"{guest.revision.name} after system_reset:\n{verdict}"
