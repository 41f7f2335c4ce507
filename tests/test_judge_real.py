"""The judge on a real guest: the hinting-v2 kernel under QEMU (TCG), memhog, verdict.

Builds the revision through the harness pipeline (a cache hit once built) and boots it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.build.revisions import HINTING_V2
from harness.core.units import MiB
from harness.drive.workloads import measure_release
from harness.judge import JudgeConfig, RssEvidence, Status, hinted_bytes, judge
from harness.observe.procfs import GuestObservations
from harness.pipeline import Pipeline
from harness.scenarios.guest_checks import observe

LOAD_MIB = 256
IDLE_DEADLINE_S = 60.0


def wait_until_idle(vm) -> GuestObservations:
    """Poll the debugfs dump until no zone is requested or active."""
    deadline = time.monotonic() + IDLE_DEADLINE_S
    while True:
        obs = observe(vm)
        assert obs.hinting is not None, "the hinting-v2 guest has no page_hinting/state"
        if not any(z.requested or z.active for z in obs.hinting.zones):
            return obs
        assert time.monotonic() < deadline, f"hinting not idle after {IDLE_DEADLINE_S} s"
        time.sleep(0.5)


@pytest.mark.real
def test_real_hinting_v2_guest_passes_the_judge_after_memhog(tmp_path: Path) -> None:
    pipeline = Pipeline(accel_request="tcg")
    at_peak: list[GuestObservations] = []
    with pipeline.guest(HINTING_V2, tmp_path) as vm:
        booted = wait_until_idle(vm)
        m = measure_release(
            vm,
            LOAD_MIB,
            expect_return=True,
            deadline_s=30.0,
            at_peak=lambda: at_peak.append(observe(vm)),
        )
        after = wait_until_idle(vm)
    strict = JudgeConfig(require_idle=True)
    verdict = judge(
        after,
        RssEvidence.from_measurement(m),
        hinted_before_bytes=hinted_bytes(at_peak[0]),
        config=strict,
    )
    print(verdict)
    assert judge(booted, config=strict).passed
    assert verdict.passed, str(verdict)
    assert verdict.check("idle_trigger_rule").status is Status.PASS
    since_peak = hinted_bytes(after) - hinted_bytes(at_peak[0])
    assert since_peak >= 0.8 * LOAD_MIB * MiB, f"only {since_peak / MiB:.0f} MiB hinted"
