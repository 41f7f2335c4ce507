"""The release workload on debug kernels (lockdep, PROVE_RCU, DEBUG_VM, DEBUG_LIST).

A splat on hinting-v2 is acceptable only if it is a defect of v2 that the port keeps on
purpose and lists in its series' known-splats.txt (ids from harness.dmesg); the fixed
revision must produce none of those, nor anything else.
"""

from __future__ import annotations

from pathlib import Path

from harness.evidence import save_console, save_json, save_measurement
from harness.known_splats import load_known_splats
from harness.revisions import Revision
from harness.scenarios.guest_checks import format_splats, splats
from harness.workloads import measure_release

DEBUG_DEADLINE_S = 90.0  # lockdep and DEBUG_VM slow the guest down under TCG


def test_debug_kernel_log_is_clean_or_known(
    debug_revision: Revision, pipeline, evidence: Path, release_mib: int
) -> None:
    with pipeline.guest(debug_revision, evidence) as vm:
        m = measure_release(vm, release_mib, expect_return=True, deadline_s=DEBUG_DEADLINE_S)
        save_measurement(evidence, debug_revision.name, m)
        found = splats(vm)
        save_console(evidence, vm.console_log)
    known = load_known_splats(debug_revision.series)
    save_json(evidence / "splats.json", found)
    unknown = [s for s in found if s.id not in known]
    assert not unknown, (
        f"{debug_revision.name}: kernel log problems not listed as known v2 defects "
        f"({len(known)} known):\n{format_splats(unknown)}"
    )
