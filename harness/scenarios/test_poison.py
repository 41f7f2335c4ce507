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
from harness.pipeline import GuestFactory
from harness.report.evidence import save_console, save_json
from harness.scenarios.guest_checks import format_splats, observe, splats

CORRUPTION = "pagealloc:memory_corruption"
POISON_BOOT_TIMEOUT_S = 240.0  # poisoning writes every free page at boot, under TCG
# One vCPU: v2 prints dozens of corruption reports here, and with two CPUs their lines
# interleave on the console until the classifier cannot tell whose stack is whose.
POISON_SMP = 1


def test_poisoned_guest_hints_only_if_the_defect_is_known(
    debug_revision: Revision, new_guest: GuestFactory, evidence: Path
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
    assert obs.hinting is not None, "debugfs page_hinting/state is missing"
    known = load_known_splats(debug_revision.series)
    unknown = [s for s in found if not is_known(s.id, known)]
    assert not unknown, f"{debug_revision.name}: unexpected problems:\n{format_splats(unknown)}"
    if is_known(CORRUPTION, known):
        assert any(s.id == CORRUPTION for s in found), (
            f"{debug_revision.name} hints poisoned pages (a kept v2 defect) but no "
            f"'pagealloc: memory corruption' was logged: the harness failed to expose it"
        )
    else:
        assert not obs.hinting.device, (
            f"{debug_revision.name}: page hinting is active on a poisoned guest whose host "
            f"does not know the poison value (capacity {obs.hinting.capacity})"
        )
