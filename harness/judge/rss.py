"""The host side: QEMU's RSS must fall by what the guest hinted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from harness.build.spec import V2_SPEC, HintingSpec
from harness.core.errors import HarnessError
from harness.core.units import PAGE_SIZE
from harness.judge.snapshot import JudgeConfig, judge_kernel
from harness.judge.verdict import Check, Status, Verdict
from harness.judge.verdict import mib as _mib
from harness.observe.procfs import (
    GuestObservations,
)


class ReleaseFigures(Protocol):
    """What harness.drive.workloads.ReleaseMeasurement carries (duck-typed: no import cycle)."""

    baseline_rss: int
    peak_rss: int
    final_rss: int


@dataclass(frozen=True)
class RssEvidence:
    """QEMU process RSS in bytes: before the load, its maximum, and at the end."""

    baseline: int
    peak: int
    final: int

    @classmethod
    def from_samples(cls, samples: Sequence[tuple[float, int]]) -> RssEvidence:
        """(time, rss_bytes) samples: first is the baseline, max the peak, last the end."""
        if not samples:
            raise HarnessError("no RSS samples to judge", "sample the QEMU RSS during the run")
        values = [rss for _, rss in sorted(samples)]
        return cls(baseline=values[0], peak=max(values), final=values[-1])

    @classmethod
    def from_measurement(cls, measurement: ReleaseFigures) -> RssEvidence:
        return cls(measurement.baseline_rss, measurement.peak_rss, measurement.final_rss)


def judge_rss(
    hinted_after_bytes: int,
    rss: RssEvidence,
    hinted_before_bytes: int = 0,
    config: JudgeConfig | None = None,
) -> Check:
    """The RSS drop from the peak must cover the newly hinted bytes, minus a tolerance.

    Newly hinted = hinted now - `hinted_before_bytes`, the hinted bytes just before the
    release, while the load holds its memory (read them at the peak:
    `measure_release(..., at_peak=...)`). Measuring before the *load* instead is
    wrong: the load allocates hinted pages and the release hints them again, so the count
    before and after can be equal while hundreds of MiB went through the host. Pages
    hinted since the peak were resident at the peak; only what the load made resident
    can leave, so the expectation is capped by peak - baseline. Tolerance: max(abs,
    rel * expected).
    """
    config = config or JudgeConfig()
    newly_hinted = max(0, hinted_after_bytes - hinted_before_bytes)
    expected = min(newly_hinted, max(0, rss.peak - rss.baseline))
    tolerance = max(config.rss_abs_tolerance, round(config.rss_rel_tolerance * expected))
    drop = rss.peak - rss.final
    status = Status.PASS if drop >= expected - tolerance else Status.FAIL
    detail = (
        f"RSS drop {_mib(drop)} (peak {_mib(rss.peak)} -> final {_mib(rss.final)}, "
        f"baseline {_mib(rss.baseline)}); expected >= {_mib(expected)} - {_mib(tolerance)} "
        f"(hinted since the peak {_mib(newly_hinted)}, growth {_mib(rss.peak - rss.baseline)})"
    )
    return Check("rss_drop_covers_hinted", status, detail)


def hinted_bytes(obs: GuestObservations) -> int:
    """Bytes the zoneinfo hinted_order_<o> counts stand for, all zones."""
    return sum(
        count * (PAGE_SIZE << order)
        for zone in obs.zoneinfo
        for order, count in zone.hinted.items()
    )


def judge(
    obs: GuestObservations,
    rss: RssEvidence | Sequence[tuple[float, int]] | None = None,
    *,
    hinted_before_bytes: int = 0,
    config: JudgeConfig | None = None,
    spec: HintingSpec = V2_SPEC,
) -> Verdict:
    """Kernel-side consistency plus, when RSS is given, the host-side release check."""
    config = config or JudgeConfig()
    verdict = judge_kernel(obs, config, spec)
    if rss is not None:
        evidence = rss if isinstance(rss, RssEvidence) else RssEvidence.from_samples(rss)
        verdict += Verdict((judge_rss(hinted_bytes(obs), evidence, hinted_before_bytes, config),))
    return verdict
