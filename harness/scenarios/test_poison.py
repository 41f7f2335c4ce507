"""Hinting with page poisoning on, and a host that was not told the poison value.

The guest boots with `page_poison=1` (debug kernels build PAGE_POISONING in) and the
balloon with `page-poison=off`. The host zero-fills what it discards, so a hinted page
comes back without its poison pattern. v2 hints anyway, and the allocator reports
"pagealloc: memory corruption" (a defect hinting-v2 keeps and lists in known-splats.txt:
the harness must expose it). The fixed revision must refuse to hint: debugfs shows no
device, and the log stays clean.
"""

from __future__ import annotations

from pathlib import Path

from harness.build.known_splats import is_known, load_known_splats
from harness.build.revisions import Revision
from harness.judge import CORRUPTION, judge_kernel_log, judge_poisoned_guest, verdict_of
from harness.pipeline import GuestFactory
from harness.report.evidence import save_console, save_json
from harness.scenarios.guest_checks import observe, splats

POISON_BOOT_TIMEOUT_S = 240.0  # poisoning writes every free page at boot, under TCG
# One vCPU: v2 prints dozens of corruption reports here, and with two CPUs their lines
# interleave on the console until the classifier cannot tell whose stack is whose.
POISON_SMP = 1


def test_poisoned_guest_hints_only_if_the_defect_is_known(
    debug_revision: Revision, new_guest: GuestFactory, evidence: Path, judged
) -> None:
    with new_guest(
        debug_revision,
        evidence,
        balloon_page_poison=False,
        extra_cmdline="page_poison=1",
        boot_timeout=POISON_BOOT_TIMEOUT_S,
        smp=POISON_SMP,
    ) as vm:
        # Allocating memory takes pages the startup flush hinted: their poison is gone.
        vm.ssh.check("echo | memhog 512", timeout=300)
        obs = observe(vm)
        found = splats(vm)
        save_json(evidence / "observations.json", obs)
        save_console(evidence, vm.console_log)
    save_json(evidence / "splats.json", found)
    known = load_known_splats(debug_revision.series)
    keeps_defect = is_known(CORRUPTION, known)
    # v2 keeps the defect: the corruption report must show (the harness exposes it)
    verdict = verdict_of(
        judge_kernel_log(found, known, [CORRUPTION] if keeps_defect else []),
        judge_poisoned_guest(obs.hinting, keeps_defect),
    )
    judged("poisoned guest", verdict)
    assert verdict.passed, f"{debug_revision.name}:\n{verdict}"
