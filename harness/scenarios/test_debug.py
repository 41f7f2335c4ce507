"""The release workload on debug kernels (lockdep, PROVE_RCU, DEBUG_VM, DEBUG_LIST, KASAN).

After the release, `fdgrow` makes the kernel free high-order pages from softirq context
(an RCU callback), which is what exposes a zone->lock taken without disabling interrupts.
A splat on hinting-v2 is acceptable only if the series lists it in known-splats.txt as a
v2 defect it keeps on purpose; the lockdep one it lists must actually show (the harness
exposes it). The fixed revision lists none: any splat fails it.
"""

from __future__ import annotations

from pathlib import Path

from harness.evidence import save_console, save_json, save_measurement
from harness.known_splats import is_known, load_known_splats
from harness.revisions import Revision
from harness.scenarios.guest_checks import format_splats, splats
from harness.workloads import RETURN_FRACTION, MiB, measure_release

DEBUG_DEADLINE_S = 90.0  # lockdep and KASAN slow the guest down under TCG
DEBUG_BOOT_TIMEOUT_S = 180.0


def test_debug_kernel_log_is_clean_or_known(
    debug_revision: Revision, pipeline, evidence: Path, release_mib: int
) -> None:
    with pipeline.guest(debug_revision, evidence, boot_timeout=DEBUG_BOOT_TIMEOUT_S) as vm:
        m = measure_release(vm, release_mib, expect_return=True, deadline_s=DEBUG_DEADLINE_S)
        save_measurement(evidence, debug_revision.name, m)
        vm.ssh.check("fdgrow 8", timeout=300)
        found = splats(vm)
        save_console(evidence, vm.console_log)
    save_json(evidence / "splats.json", found)
    known = load_known_splats(debug_revision.series)
    unknown = [s for s in found if not is_known(s.id, known)]
    assert not unknown, (
        f"{debug_revision.name}: kernel log problems not listed as known v2 defects "
        f"({sorted(known) or 'none known'}):\n{format_splats(unknown)}"
    )
    lock_defects = sorted(p for p in known if p.startswith("lockdep:"))
    missed = [p for p in lock_defects if not any(is_known(s.id, [p]) for s in found)]
    assert not missed, (
        f"{debug_revision.name} keeps a locking defect that lockdep should report after "
        f"fdgrow, but the log has no {missed}: the harness failed to expose it"
    )
    assert m.returned_bytes >= RETURN_FRACTION * m.released_bytes, (
        f"{debug_revision.name}: RSS fell by {m.returned_bytes / MiB:.0f} MiB of "
        f"{m.released_bytes / MiB:.0f} MiB released within {m.watched_s:.0f} s"
    )
