"""One booted guest per revision that a module's steps drive in order, and its idle points.

The detection steps run on two such guests (test_detection.py, test_batches_out.py), so
that under xdist two workers share them: each is a module fixture built by
`scripted_guest`, and each step judges its idle point with `idle_verdict`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness.build.known_splats import is_known, load_known_splats
from harness.build.revisions import Revision
from harness.build.spec import HintingSpec, load_spec
from harness.core.poll import poll_until
from harness.drive.quiet import wait_quiet
from harness.drive.workloads import read_meminfo, set_react_delay, wait_hinting_idle
from harness.judge import (
    JudgeConfig,
    Verdict,
    VerdictFailed,
    judge_kernel,
    judge_kernel_log,
    judge_reading_again,
    judge_step,
    verdict_of,
)
from harness.judge.reduced import REDUCED_LABEL
from harness.observe import dmesg
from harness.observe.procfs import GuestObservations, HintingState
from harness.pipeline import GuestFactory
from harness.report.evidence import save_console, save_json
from harness.scenarios.guest_checks import observe, splats

# Stock 6.1 reporting has no idle indicator; its worker runs 2 s after a request (and
# reporting does not change MemFree: reported pages stay on the free lists).
STOCK_SETTLE_S = 3.0
DEBUG_BOOT_TIMEOUT_S = 180.0
MEM_TOTAL_S = 60.0  # hot-added memory comes online within a second or two


@dataclass
class ScriptedGuest:
    """A booted guest of one revision and what the steps learnt so far."""

    revision: Revision
    vm: object
    evidence: Path
    spec: HintingSpec
    zone: str = ""
    first_state: HintingState | None = None
    verdicts: list[tuple[str, Verdict]] = field(default_factory=list)  # (step, its verdict)
    notes: list[str] = field(default_factory=list)  # verdict.txt: verdicts, reads again
    # known-splats patterns a step showed on purpose (a defect the revision keeps)
    expected_splats: set[str] = field(default_factory=set)
    # a step left the guest unable to answer on purpose (a kept defect that wedges it):
    # the end of the module reads its console only
    wedged: bool = False
    # False for a hinting revision built without the harness's instrumentation (a reduced
    # form drives the guest: harness/scenarios/reduced.py): quiet points come from the free
    # lists, the steps read no debugfs state, counters or hooks, verdicts are marked reduced
    instrumented: bool = True

    @property
    def reads_series_state(self) -> bool:
        """Whether the steps can read the series' debugfs state, its counters and hooks."""
        return self.revision.hinting and self.instrumented

    def settle(self) -> HintingState | None:
        """Wait until hinting is idle (stock: until its reporting pass is surely over; a
        kernel without instrumentation: until its free lists stop changing); the first idle
        state is kept as `first_state`, where the whole run's work bound starts."""
        if not self.revision.hinting:
            time.sleep(STOCK_SETTLE_S)
            return None
        if not self.instrumented:
            wait_quiet(self.vm, min_order=self.spec.min_order, settle_s=3 * self.spec.delay_s)
            return None
        state = wait_hinting_idle(self.vm, settle_s=3 * self.spec.delay_s)
        if self.first_state is None:
            self.first_state = state
        return state

    def judge_config(self, *, require_idle: bool = False) -> JudgeConfig:
        """With two vCPUs (debug kernels) the allocator may move a block between two file
        reads (each `cat` allocates and frees): one block of slack in the cross-file free
        counts, as in the debug scenario."""
        return JudgeConfig(require_idle=require_idle, free_tolerance=int(self.revision.debug))

    def mem_total_kib(self) -> int:
        return read_meminfo(self.vm)["MemTotal"]

    def mem_total_reaching(self, kib: int) -> int:
        """MemTotal once it reaches `kib` (hot-added memory online, removed memory gone),
        or where it got to within MEM_TOTAL_S."""
        total, _ = poll_until(self.mem_total_kib, lambda t: t == kib, timeout=MEM_TOTAL_S)
        return total

    def observe(self, label: str) -> GuestObservations:
        obs = observe(self.vm)
        save_json(self.evidence / f"{label}.json", obs)
        return obs

    def record(self, label: str, verdict: Verdict) -> Verdict:
        """A verdict a step asserts: data for the step's test (the plugin makes it a JUnit
        property) and a note in verdict.txt."""
        if not self.instrumented:
            label = f"{label} ({REDUCED_LABEL})"
        self.verdicts.append((label, verdict))
        self.note(f"{label}\n{verdict}")
        return verdict

    def note(self, text: str) -> None:
        """Add to the evidence's verdict.txt (every idle point, and each read again)."""
        self.notes.append(f"== {text}")
        (self.evidence / "verdict.txt").write_text("\n".join(self.notes) + "\n")


@contextmanager
def scripted_guest(
    revision: Revision, new_guest: GuestFactory, evidence: Path, **guest_options: object
) -> Iterator[ScriptedGuest]:
    """For a module fixture: boot, hand the guest to the steps, then fail the module's last
    step on any kernel-log problem (the console and splats go to `evidence`), except the
    defects the series keeps on purpose (its known-splats.txt: hinting-v2's lockdep report
    shows on any debug guest) and what a step caused on purpose
    (`ScriptedGuest.expected_splats`)."""
    evidence.mkdir(parents=True, exist_ok=True)
    if revision.debug:  # lockdep and KASAN under TCG: boot takes longer
        guest_options.setdefault("boot_timeout", DEBUG_BOOT_TIMEOUT_S)
    with new_guest(revision, evidence, **guest_options) as vm:
        scripted = ScriptedGuest(revision, vm, evidence, load_spec(revision.series))
        try:
            yield scripted
        finally:
            seen = dmesg.classify(vm.console_text()) if scripted.wedged else splats(vm)
            allowed = scripted.expected_splats | load_known_splats(revision.series)
            save_json(evidence / "splats.json", [s for s in seen if not is_known(s.id, allowed)])
            save_console(evidence, vm.console_log)
    (evidence / "initrd.img").unlink(missing_ok=True)
    kernel_log = Verdict((judge_kernel_log(seen, allowed),))
    if not kernel_log.passed:
        raise VerdictFailed("kernel log", kernel_log, revision.name)


def snapshot_verdict(guest: ScriptedGuest, label: str) -> tuple[GuestObservations, Verdict]:
    """Judge the kernel-side checks now, busy or not (no settling): the counts must agree
    with the flags at any moment. Read again while only cross-file checks fail, as at an
    idle point (two vCPUs move a block between two file reads)."""

    def read_and_judge(attempt: int) -> tuple[GuestObservations, Verdict]:
        obs = guest.observe(label if attempt == 1 else f"{label}-read{attempt}")
        return obs, judge_kernel(obs, guest.judge_config(), guest.spec)

    return judge_reading_again(read_and_judge, lambda note: guest.note(f"{label}: {note}"))


def idle_verdict(guest: ScriptedGuest, label: str) -> tuple[GuestObservations, Verdict]:
    """Judge an idle point: every kernel-side check, and the zone must be idle. A
    disagreement between two files read a moment apart is read again (judge_reading_again);
    a counting defect (a count at the wrong order) disagrees on every read."""

    def read_and_judge(attempt: int) -> tuple[GuestObservations, Verdict]:
        guest.settle()
        obs = guest.observe(label if attempt == 1 else f"{label}-read{attempt}")
        return obs, judge_kernel(obs, guest.judge_config(require_idle=True), guest.spec)

    obs, verdict = judge_reading_again(read_and_judge, lambda note: guest.note(f"{label}: {note}"))
    return obs, guest.record(label, verdict)


def hold_batches(guest: ScriptedGuest, delay_ms: int, why: str) -> None:
    """Make the worker hold each batch `delay_ms` before react() (the series' test hook,
    debugfs page_hinting/react_delay_ms); a revision without the hook fails the check
    `react_delay_hook`, naming what the step then cannot do."""
    took = set_react_delay(guest.vm, delay_ms)
    verdict = verdict_of(
        judge_step(
            "react_delay_hook", took, f"debugfs page_hinting/react_delay_ms {delay_ms}: {why}"
        )
    )
    if not took:
        guest.record("holding batches out", verdict)
        raise VerdictFailed("holding batches out", verdict, guest.revision.name)
