"""Reduced forms of the scenarios, for a hinting kernel built without the instrumentation.

Where the harness's instrumentation overlay does not apply to a revision (it rewrote the
code the overlay hooks: harness/build/overlay.py), its kernel has no hinted counts, no
debugfs page_hinting/state, no activity counters and no test hooks. The plugin
(harness/pytest_plugin/reduced.py) then runs, in a scenario's place and with the same
fixtures, its reduced form registered here: the same workload, judged on what needs no
instrumentation (free counts from buddyinfo and pagetypeinfo against the count model, the
host RSS, meminfo, the kernel log, data integrity; harness/judge/reduced.py), with quiet
points found from the free lists (harness/drive/quiet.py). The scenarios of the modules
named in `module_needs` below have no such form: they are skipped as not judged.

harness/conftest.py loads this module, which registers the forms.
"""

from __future__ import annotations

from pathlib import Path

from harness.build.known_splats import is_known, load_known_splats
from harness.build.revisions import Revision
from harness.build.spec import HintingSpec, load_spec
from harness.core.errors import StepTestedNothing
from harness.drive.lifecycle import add_dimm, remove_dimm
from harness.drive.quiet import wait_quiet
from harness.drive.workloads import (
    NR_HUGEPAGES,
    cma_alloc,
    cma_free,
    cma_pages,
    measure_release,
    run_pattern,
    set_hugepages,
    tmpfs_checksum,
)
from harness.judge import (
    CORRUPTION,
    FreeMemory,
    Verdict,
    VerdictFailed,
    judge_accounting,
    judge_feature_off,
    judge_hotplug,
    judge_integrity,
    judge_kept_defect_shows,
    judge_kernel_log,
    judge_offline,
    judge_reading_again,
    judge_returned,
    judge_step,
    verdict_of,
)
from harness.judge.reduced import (
    HINTED_COUNTS,
    REDUCED_LABEL,
    free_counts,
    judge_files_agree,
    judge_free_prediction,
    judge_zones_present,
    not_judged,
)
from harness.model.counts import FreeBlock, MergeFree, OrderCounts, predict_idle
from harness.model.params import Params
from harness.observe import dmesg
from harness.observe.procfs import GuestObservations
from harness.pipeline import GuestFactory
from harness.pytest_plugin.reduced import module_needs, reduced_form, runs_as_is
from harness.report.evidence import save_console, save_json, save_measurement
from harness.scenarios import test_debug as debug
from harness.scenarios import test_detection as detection
from harness.scenarios import test_lifecycle as lifecycle
from harness.scenarios import test_offline as offline
from harness.scenarios import test_poison as poison
from harness.scenarios import test_release as release
from harness.scenarios.guest_checks import observe, splats
from harness.scenarios.scripted_guest import ScriptedGuest

runs_as_is("test_build", "test_kconfig_has_the_mechanism")
module_needs("test_batches_out", "the react_delay_ms test hook and the activity counters")
module_needs(
    "test_isolation",
    "the react_delay_ms test hook, fail_function on virtqueue_add_inbuf() and debugfs "
    "page_hinting/state",
)


def reduced(label: str) -> str:
    return f"{label} ({REDUCED_LABEL})"


def settle(vm, spec: HintingSpec) -> None:
    """A quiet point: three worker delays, then the free lists unchanged for a second."""
    wait_quiet(vm, min_order=spec.min_order, settle_s=3 * spec.delay_s)


def agreeing_files(guest: ScriptedGuest, label: str) -> tuple[GuestObservations, Verdict]:
    """Settle, observe and compare the files; read again (judge_reading_again) while they
    disagree: after memory comes online the allocator may still merge a block in between."""

    def read_and_judge(attempt: int) -> tuple[GuestObservations, Verdict]:
        guest.settle()
        obs = guest.observe(label if attempt == 1 else f"{label}-read{attempt}")
        return obs, verdict_of(judge_files_agree(obs, guest.spec, int(guest.revision.debug)))

    return judge_reading_again(read_and_judge, lambda note: guest.note(f"{label}: {note}"))


# --- test_release ------------------------------------------------------------------------


@reduced_form("test_release", "test_release_returns_memory_to_host")
def release_returns_memory(
    revision: Revision,
    new_guest: GuestFactory,
    evidence: Path,
    release_mib: int,
    record_measurement,
    judged,
) -> None:
    with new_guest(revision, evidence) as vm:
        m = measure_release(
            vm,
            release_mib,
            expect_return=True,
            deadline_s=release.deadline_for(revision),
            passing_bytes=release.passing_bytes(release_mib),
            settle_s=release.settle_for(revision),
        )
        save_measurement(evidence, revision.name, m)
        obs = observe(vm)
        save_json(evidence / "observations.json", obs)
        found = splats(vm)
        save_console(evidence, vm.console_log)
    returned = judge_returned(m.returned_bytes, m.released_bytes, m.watched_s)
    record_measurement(
        {
            "revision": revision.name,
            "released_bytes": m.released_bytes,
            "returned_bytes": m.returned_bytes,
            "seconds_to_90pct": m.seconds_to_90pct,
            "touch_seconds": round(m.touch_seconds, 2),
            "passed": returned.passed,
        },
        m,
    )
    verdict = verdict_of(
        judge_kernel_log(found),
        returned,
        judge_files_agree(obs, load_spec(revision.series)),
        not_judged("pages_hinted", HINTED_COUNTS),
        not_judged("rss_drop_covers_hinted", HINTED_COUNTS),
    )
    judged(reduced("release"), verdict)
    assert verdict.passed, f"{revision.name} ({REDUCED_LABEL}):\n{verdict}"


@reduced_form("test_release", "test_negative_control_feature_off")
def negative_control(
    revision: Revision, new_guest: GuestFactory, evidence: Path, release_mib: int, judged
) -> None:
    with new_guest(revision, evidence, free_page_reporting=False) as vm:
        m = measure_release(
            vm, release_mib, expect_return=False, deadline_s=release.negative_window_for(revision)
        )
        save_measurement(evidence, f"{revision.name} (feature off)", m)
        found = splats(vm)
        save_console(evidence, vm.console_log)
    verdict = verdict_of(judge_kernel_log(found)) + judge_feature_off(m.returned_bytes, None)
    verdict += verdict_of(not_judged("no_hinting_when_off", HINTED_COUNTS))
    judged(reduced("feature off"), verdict)
    assert verdict.passed, f"{revision.name} ({REDUCED_LABEL}):\n{verdict}"


# --- test_detection ------------------------------------------------------------------------


@reduced_form("test_detection", "test_boot_idle_point")
def boot_quiet_point(guest: ScriptedGuest) -> None:
    settle(guest.vm, guest.spec)
    obs = guest.observe("boot")
    # the zone the threshold step works in: the one holding most top-order blocks
    guest.zone = max(obs.buddyinfo.free.items(), key=lambda kv: kv[1][-1])[0][1]
    verdict = verdict_of(
        judge_files_agree(obs, guest.spec, int(guest.revision.debug)),
        not_judged("idle_trigger_rule", HINTED_COUNTS),
        not_judged("parameters_match_spec", "debugfs page_hinting/state"),
    )
    guest.record(reduced("boot"), verdict)
    assert verdict.passed, f"{guest.revision.name} after boot ({REDUCED_LABEL}):\n{verdict}"


@reduced_form("test_detection", "test_threshold_below_at_above")
def threshold_free_counts(guest: ScriptedGuest) -> None:
    """The threshold steps, with the free counts at each quiet point against the model's
    (they do not depend on what was hinted: every block taken for hinting comes back)."""
    spec, vm = guest.spec, guest.vm
    params = Params(min_order=spec.min_order, hwm=spec.hwm, capacity=spec.capacity)
    top = params.top_order
    settle(vm, spec)
    start = guest.observe("threshold-start")
    zone_key = next(k for k in start.pagetypeinfo.free if k[1] == guest.zone and k[2] == "Movable")
    held = start.pagetypeinfo.free[zone_key][spec.min_order]
    filled = set_hugepages(vm, held)
    steps = verdict_of(judge_step("hugetlb_pool_filled", filled == held, f"{filled} of {held}"))
    guest.record(reduced("threshold set-up"), steps)
    assert steps.passed, f"{guest.revision.name}:\n{steps}"
    verdicts = Verdict(())
    for label, pairs in (("below", spec.hwm - 1), ("at", spec.hwm), ("above", spec.hwm + 8)):
        settle(vm, spec)
        reached = set_hugepages(vm, held + 2 * pairs)
        steps = verdict_of(
            judge_step(f"hugetlb_pool_grew[{label}]", reached == held + 2 * pairs, f"{reached}")
        )
        if not steps.passed:
            verdicts += guest.record(reduced(f"threshold {label} set-up"), steps)
            break
        settle(vm, spec)
        allocated = guest.observe(f"threshold-{label}-allocated")
        free = free_counts(allocated, guest.zone, params.hinting_orders)
        set_hugepages(vm, held)
        events = [FreeBlock(top - 1), MergeFree(top)] * pairs
        prediction = predict_idle({o: OrderCounts(n, 0) for o, n in free.items()}, events, params)
        settle(vm, spec)
        after = guest.observe(f"threshold-{label}-freed")
        verdict = verdict_of(
            judge_free_prediction(label, prediction, after, guest.zone),
            judge_files_agree(after, spec, int(guest.revision.debug)),
            not_judged(f"work_matches_model[{label}]", "the activity counters"),
        )
        verdicts += guest.record(reduced(f"threshold {label}: {pairs} pairs"), verdict)
    set_hugepages(vm, 0)
    assert verdicts.passed, f"{guest.revision.name} ({REDUCED_LABEL}):\n{verdicts}"


@reduced_form("test_detection", "test_free_memory_returns")
def free_memory_returns(guest: ScriptedGuest) -> None:
    settle(guest.vm, guest.spec)
    min_order = guest.spec.min_order
    baseline = FreeMemory.of(guest.observe("accounting-start"), min_order)
    after = []
    for cycle in range(1, detection.ACCOUNTING_CYCLES + 1):
        guest.vm.ssh.check(f"echo | memhog {detection.ACCOUNTING_MIB} > /dev/null", timeout=600)
        settle(guest.vm, guest.spec)
        after.append(FreeMemory.of(guest.observe(f"accounting-{cycle}"), min_order))
    accounting = judge_accounting(
        baseline, after, detection.ACCOUNTING_TOLERANCE_KIB, detection.HIGH_ORDER_TOLERANCE_KIB
    )
    verdict = verdict_of(accounting, not_judged("work_within_model", "the activity counters"))
    guest.record(reduced("accounting"), verdict)
    assert verdict.passed, f"{guest.revision.name} ({REDUCED_LABEL}):\n{verdict}"


@reduced_form("test_detection", "test_memory_keeps_its_contents")
def memory_keeps_its_contents(guest: ScriptedGuest) -> None:
    vm = guest.vm
    vm.ssh.check(
        f"dd if=/dev/urandom of={detection.TMPFS_FILE} bs=1M "
        f"count={detection.TMPFS_FILE_MIB} 2>/dev/null",
        timeout=300,
    )
    before = tmpfs_checksum(vm, detection.TMPFS_FILE)
    output = run_pattern(
        vm, detection.PATTERN_HOLD_MIB, detection.PATTERN_CHURN_MIB, detection.PATTERN_ROUNDS, 900
    )
    settle(vm, guest.spec)
    after = tmpfs_checksum(vm, detection.TMPFS_FILE)
    vm.ssh.check(f"rm -f {detection.TMPFS_FILE}")
    (guest.evidence / "pattern.out").write_text(output)
    verdict = guest.record(
        reduced("integrity"), verdict_of(judge_integrity(output, [(before, after)]))
    )
    assert verdict.passed, f"{guest.revision.name} ({REDUCED_LABEL}):\n{verdict}"


@reduced_form("test_detection", "test_page_fault_cost")
def page_fault_cost(guest: ScriptedGuest, record_fault_rate) -> None:
    settle(guest.vm, guest.spec)
    command = f"faultbench {detection.FAULTBENCH_MIB} {detection.FAULTBENCH_S}"
    out = guest.vm.ssh.check(command, timeout=300).stdout
    (guest.evidence / "faultbench.out").write_text(out)
    fields = dict(zip(out.split()[::2], out.split()[1::2], strict=False))
    rate = float(fields["per_s"])
    record_fault_rate(guest.revision.name, rate)
    verdict = guest.record(
        reduced("page fault cost"), verdict_of(judge_step("faults_counted", rate > 0, out))
    )
    assert verdict.passed, f"{guest.revision.name}:\n{verdict}"


@reduced_form("test_detection", "test_two_zones")
def two_zones(revision: Revision, new_guest: GuestFactory, results_dir: Path, judged) -> None:
    """Both zones' memory comes back after a release from both (free memory and the free
    blocks of the hinting orders), and the files agree."""
    evidence = results_dir / f"two-zones[{revision.name}]"
    evidence.mkdir(parents=True, exist_ok=True)
    spec = load_spec(revision.series)
    with new_guest(revision, evidence, memory_mib=detection.TWO_ZONE_GUEST_MIB) as vm:
        settle(vm, spec)
        before = observe(vm)
        vm.ssh.check(f"echo | memhog {detection.TWO_ZONE_RELEASE_MIB} > /dev/null", timeout=900)
        settle(vm, spec)
        obs = observe(vm)
        found = splats(vm)
        save_json(evidence / "observations.json", obs)
        save_console(evidence, vm.console_log)
    (evidence / "initrd.img").unlink(missing_ok=True)
    verdict = verdict_of(
        judge_kernel_log(found),
        judge_zones_present(obs, 2),
        judge_accounting(
            FreeMemory.of(before, spec.min_order),
            [FreeMemory.of(obs, spec.min_order)],
            detection.ACCOUNTING_TOLERANCE_KIB,
            detection.HIGH_ORDER_TOLERANCE_KIB,
        ),
        judge_files_agree(obs, spec),
        not_judged("zones_cycled", "the per-zone activity counters"),
    )
    judged(reduced("two zones"), verdict)
    assert verdict.passed, f"{revision.name} ({REDUCED_LABEL}):\n{verdict}"


# --- test_lifecycle ------------------------------------------------------------------------
# The lifecycle steps run as they are, on a guest told it has no instrumentation
# (ScriptedGuest.instrumented): quiet points from the free lists, idle points judged on
# them, no debugfs read, no react delay (what stock gets, plus the free lists). What each
# step then leaves out is recorded as not judged.
LIFECYCLE_NOT_JUDGED = {
    "test_oom_kills_the_workload_and_hinting_goes_on": (),
    "test_balloon_inflate_and_deflate_while_releasing": (
        ("hinted_le_free_while_inflating", HINTED_COUNTS),
    ),
    "test_memory_hotplug_is_hinted": (
        ("hinting_covers_new_memory", "the per-zone activity counters"),
    ),
    "test_balloon_unplug_during_hinting": (
        ("worker_busy_at_unplug", "the react_delay_ms test hook"),
        ("device_gone_in_debugfs", "debugfs page_hinting/state"),
        ("no_hinting_without_device", "the activity counters"),
    ),
    "test_reset_while_hinting": (
        ("hinting_restarts", "debugfs page_hinting/state"),
        ("no_state_across_reset", "the activity counters"),
    ),
}


def _lifecycle_form(name: str):
    step = getattr(lifecycle, name)

    def form(lifecycle_guest: lifecycle.LifecycleGuest) -> None:
        lifecycle_guest.instrumented = False
        step(lifecycle_guest)
        left_out = [not_judged(check, needs) for check, needs in LIFECYCLE_NOT_JUDGED[name]]
        if left_out:
            lifecycle_guest.record(f"{name}: not judged", Verdict(tuple(left_out)))

    form.__name__ = f"reduced_{name}"
    return form


for _name in LIFECYCLE_NOT_JUDGED:
    reduced_form("test_lifecycle", _name)(_lifecycle_form(_name))


# --- test_isolation -----------------------------------------------------------------------


@reduced_form("test_isolation", "test_contig_alloc_isolates_hinted_blocks")
def contig_alloc_over_the_cma_area(isolation_guest: ScriptedGuest) -> None:
    """alloc_contig_range() over the CMA area at a quiet point (the boot flush hinted it),
    freed, and again right after the free (the cycle that hints it again races the
    isolation, instead of a held batch): each allocation gets the whole area, and at the
    quiet points the free lists agree and free memory is back."""
    guest, vm = isolation_guest, isolation_guest.vm
    guest.instrumented = False
    pages = cma_pages(vm)
    if not pages:
        raise StepTestedNothing(
            "the guest has no CMA area (debugfs cma/reserved)", "boot it with cma=SIZE"
        )
    start, verdict = agreeing_files(guest, "cma-start")
    got = cma_alloc(vm, pages)
    verdict += verdict_of(judge_step("contig_alloc", got, f"{pages} pages of the idle area"))
    if got:
        cma_free(vm, pages)
        again = cma_alloc(vm, pages)  # the free just requested a cycle over the area
        verdict += verdict_of(
            judge_step("contig_alloc_again", again, f"{pages} pages right after the free")
        )
        if again:
            cma_free(vm, pages)
    end, agree = agreeing_files(guest, "cma-freed")
    verdict += agree + verdict_of(
        judge_accounting(
            FreeMemory.of(start, guest.spec.min_order),
            [FreeMemory.of(end, guest.spec.min_order)],
            detection.ACCOUNTING_TOLERANCE_KIB,
            detection.HIGH_ORDER_TOLERANCE_KIB,
        ),
        not_judged("contig_alloc_takes_hinted_blocks", HINTED_COUNTS),
        not_judged("contig_alloc_during_a_held_batch", "the react_delay_ms test hook"),
    )
    guest.record(f"alloc_contig_range over the CMA area ({pages} pages)", verdict)
    assert verdict.passed, f"{guest.revision.name} ({REDUCED_LABEL}):\n{verdict}"


# --- test_offline -------------------------------------------------------------------------


@reduced_form("test_offline", "test_memory_offline_while_a_batch_is_out")
def memory_offline_right_after_a_release(offline_guest: ScriptedGuest) -> None:
    """The offline step without the react delay hook: the DIMM is removed right after a
    release into its zone (the worker starts one delay after the request, so the cycle
    races the isolation instead of holding a batch out). Judged: the offline completes,
    MemTotal and free memory come back, the writer's pattern survives the migration, the
    free lists agree, a new DIMM comes online. A revision that keeps v2's offline BUG may
    show it (allowed; it cannot be provoked for sure without the hook)."""
    guest, vm = offline_guest, offline_guest.vm
    guest.instrumented = False
    known_bug = sorted(
        p for p in load_known_splats(guest.revision.series) if p.startswith("kernel_BUG")
    )
    guest.expected_splats |= set(known_bug)
    guest.settle()
    before = guest.observe("before-dimm")
    total_before = before.meminfo["MemTotal"]
    dimm = add_dimm(vm, offline.DIMM_MIB)
    grown = guest.mem_total_reaching(total_before + offline.DIMM_MIB * 1024) - total_before
    _, agree = agreeing_files(guest, "dimm-online")
    verdict = judge_hotplug(grown, offline.DIMM_MIB, None, None) + agree
    writer = vm.ssh.start(f"pattern --hold-until-line {offline.PATTERN_MIB}")
    writer.expect_line(f"filled {offline.PATTERN_MIB}", timeout=300)
    guest.settle()
    vm.ssh.check(f"echo | memhog {offline.RELEASE_MIB} > /dev/null", timeout=300)
    vm.forget_qmp_events()
    remove_dimm(vm, dimm)
    deleted, problems = offline.wait_offline(guest, dimm)
    if not deleted:
        guest.wedged = bool(problems)
        found = dmesg.classify(vm.console_text())
        if known_bug and found and all(is_known(s.id, known_bug) for s in found):
            verdict += verdict_of(judge_kept_defect_shows(found, known_bug, "the offline"))
            guest.record("memory offline right after a release: the kept BUG showed", verdict)
            assert verdict.passed, f"{guest.revision.name} ({REDUCED_LABEL}):\n{verdict}"
            return
        verdict += judge_offline(False, 0, 0, None, offline.ZONE, problems)
        guest.record("memory offline right after a release: no DEVICE_DELETED", verdict)
        assert verdict.passed, f"{guest.revision.name} ({REDUCED_LABEL}):\n{verdict}"
    writer.write_line()
    pattern = writer.wait(timeout=300).stdout
    (guest.evidence / "pattern-offline.out").write_text(pattern)
    total_after = guest.mem_total_reaching(total_before)
    gone, agree = agreeing_files(guest, "dimm-removed")
    tolerances = offline.DEBUG_TOLERANCES_KIB if guest.revision.debug else offline.TOLERANCES_KIB
    verdict += judge_offline(True, total_before, total_after, gone, offline.ZONE)
    verdict += verdict_of(
        judge_integrity(pattern, []),
        judge_accounting(
            FreeMemory.of(before, guest.spec.min_order),
            [FreeMemory.of(gone, guest.spec.min_order)],
            *tolerances,
        ),
    )
    verdict += agree
    add_dimm(vm, offline.DIMM_MIB, index=1)
    regrown = guest.mem_total_reaching(total_before + offline.DIMM_MIB * 1024) - total_before
    _, agree = agreeing_files(guest, "dimm-replugged")
    verdict += judge_hotplug(regrown, offline.DIMM_MIB, None, None) + agree
    verdict += verdict_of(
        not_judged("batch_out_at_offline", "the react_delay_ms test hook"),
        not_judged("isolated_blocks_unhinted", HINTED_COUNTS),
        not_judged("hinting_covers_new_memory", "the per-zone activity counters"),
    )
    guest.record("memory offline right after a release, then a new DIMM", verdict)
    assert verdict.passed, f"{guest.revision.name} ({REDUCED_LABEL}):\n{verdict}"


# --- test_debug, test_poison -------------------------------------------------------------


@reduced_form("test_debug", "test_debug_kernel_log_is_clean_or_known")
def debug_kernel_log(
    debug_revision: Revision, new_guest: GuestFactory, evidence: Path, release_mib: int, judged
) -> None:
    """The release with a concurrent pattern on the second vCPU, fdgrow, and frees on both
    CPUs while the worker runs; judged on the log, integrity, the files and the RSS."""
    spec = load_spec(debug_revision.series)
    with new_guest(debug_revision, evidence, boot_timeout=debug.DEBUG_BOOT_TIMEOUT_S) as vm:
        cpus = int(vm.ssh.check("nproc").stdout)
        concurrent = vm.ssh.start(debug.CONCURRENT_PATTERN)
        m = measure_release(vm, release_mib, expect_return=True, deadline_s=debug.DEBUG_DEADLINE_S)
        pattern = concurrent.wait(timeout=600)
        (evidence / "pattern.out").write_text(pattern.stdout)
        save_measurement(evidence, debug_revision.name, m)
        vm.ssh.check("fdgrow 8", timeout=300)
        _free_on_both_cpus(vm, spec)
        obs = observe(vm)
        save_json(evidence / "observations.json", obs)
        found = splats(vm)
        save_console(evidence, vm.console_log)
    save_json(evidence / "splats.json", found)
    known = load_known_splats(debug_revision.series)
    verdict = verdict_of(
        judge_step("debug_guest_has_two_cpus", cpus >= 2, f"{cpus} CPUs"),
        judge_integrity(pattern.stdout, []),
        judge_kernel_log(found, known, sorted(p for p in known if p.startswith("lockdep:"))),
        judge_files_agree(obs, spec, tolerance=1),
        judge_returned(m.returned_bytes, m.released_bytes, m.watched_s),
        not_judged("idle_trigger_rule", HINTED_COUNTS),
    )
    judged(reduced("debug kernel"), verdict)
    assert verdict.passed, f"{debug_revision.name} ({REDUCED_LABEL}):\n{verdict}"


def _free_on_both_cpus(vm, spec: HintingSpec) -> None:
    """test_debug's frees on both CPUs while the worker runs (a hugetlb shrink on CPU 0, a
    release on CPU 1), with quiet points from the free lists."""
    settle(vm, spec)
    set_hugepages(vm, debug.OVERLAP_HUGEPAGES)
    hog = vm.ssh.start(f"taskset -c 1 memhog {debug.OVERLAP_MIB}")
    touched = hog.read_line(timeout=600)
    if not touched.startswith("touched"):
        detail = f"memhog on CPU 1 said {touched!r} {hog.stderr_so_far}"
        raise VerdictFailed(
            "free on both CPUs", verdict_of(judge_step("memhog_ran", False, detail))
        )
    settle(vm, spec)
    vm.ssh.check(f"taskset -c 0 sh -c 'echo 0 > {NR_HUGEPAGES}'", timeout=120)
    hog.write_line("")
    hog.read_line(timeout=120)
    hog.wait(timeout=120)
    settle(vm, spec)


@reduced_form("test_poison", "test_poisoned_guest_hints_only_if_the_defect_is_known")
def poisoned_guest(
    debug_revision: Revision, new_guest: GuestFactory, evidence: Path, judged
) -> None:
    """A series that hints poisoned pages makes the allocator report corruption: the log
    must be clean, or show what the series lists as kept (whether hinting refused to start
    cannot be read without debugfs)."""
    with new_guest(
        debug_revision,
        evidence,
        balloon_page_poison=False,
        extra_cmdline="page_poison=1",
        boot_timeout=poison.POISON_BOOT_TIMEOUT_S,
        smp=poison.POISON_SMP,
    ) as vm:
        vm.ssh.check("echo | memhog 512", timeout=300)
        found = splats(vm)
        save_console(evidence, vm.console_log)
    save_json(evidence / "splats.json", found)
    known = load_known_splats(debug_revision.series)
    keeps_defect = is_known(CORRUPTION, known)
    verdict = verdict_of(
        judge_kernel_log(found, known, [CORRUPTION] if keeps_defect else []),
        not_judged("no_hinting_of_poisoned_pages", "debugfs page_hinting/state"),
    )
    judged(reduced("poisoned guest"), verdict)
    assert verdict.passed, f"{debug_revision.name} ({REDUCED_LABEL}):\n{verdict}"
