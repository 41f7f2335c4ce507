"""Checks for a hinting kernel built without the harness's instrumentation ("reduced").

Where the instrumentation overlay does not apply (harness/build/overlay.py), the kernel has
no hinted counts in /proc/zoneinfo, no debugfs page_hinting/state, no activity counters
and no test hooks. What a scenario can still judge needs none of them: the free counts of
/proc/buddyinfo and /proc/pagetypeinfo against the count model (hinting takes blocks off
the free lists and puts every one back, so at a quiet point the free counts are the
model's whatever was hinted), the host's RSS, /proc/meminfo, the kernel log and the data
integrity workloads. These are the checks of the first kind; the others are the judge's
own, which read no instrumentation either. A check a scenario makes on an instrumented
kernel and cannot make here is listed as not judged (N/A), saying what it needs.

Every verdict judged this way is marked reduced: REDUCED_LABEL in its label, and the test's
JUnit property `reduced` (harness/pytest_plugin/reduced.py).
"""

from __future__ import annotations

from harness.build.spec import HintingSpec
from harness.judge.verdict import Check, Status, result
from harness.model.counts import CountPrediction
from harness.observe.procfs import GuestObservations

REDUCED_LABEL = "reduced (no instrumentation)"
HINTED_COUNTS = "the hinted counts (zoneinfo hinted_order_N, debugfs page_hinting/state)"


def free_counts(obs: GuestObservations, zone: str, orders: range) -> dict[int, int]:
    """Free blocks per order of one zone, from /proc/buddyinfo."""
    free = next((f for (_, z), f in obs.buddyinfo.free.items() if z == zone), ())
    return {order: free[order] if order < len(free) else 0 for order in orders}


def judge_free_prediction(
    step: str, prediction: CountPrediction, after: GuestObservations, zone: str
) -> Check:
    """`free_counts_match_model[step]`: the free blocks of `zone` per hinting order at the
    quiet point after a scripted step are the count model's, exactly (what was hinted
    cannot be read; it does not change the free counts at a quiet point)."""
    orders = range(min(prediction.counts), max(prediction.counts) + 1)
    observed = free_counts(after, zone, orders)
    problems = [
        f"{zone} order {order}: free {observed[order]}, model {want.free}"
        for order, want in sorted(prediction.counts.items())
        if observed[order] != want.free
    ]
    detail = "; ".join(f"order {o} free {c.free}" for o, c in sorted(prediction.counts.items()))
    return result(f"free_counts_match_model[{step}]", problems, detail)


def judge_files_agree(obs: GuestObservations, spec: HintingSpec, tolerance: int = 0) -> Check:
    """`buddyinfo_matches_pagetypeinfo`: per zone and hinting order, /proc/buddyinfo's free
    blocks equal the sum over the migratetypes of /proc/pagetypeinfo's (the files are read
    one after another: blocks moved in between differ by up to `tolerance`)."""
    problems = []
    compared = 0
    for (node, zone), free in sorted(obs.buddyinfo.free.items()):
        for order in range(spec.min_order, len(free)):
            typed = sum(
                counts[order] if order < len(counts) else 0
                for (n, z, _), counts in obs.pagetypeinfo.free.items()
                if (n, z) == (node, zone)
            )
            compared += 1
            if abs(typed - free[order]) > tolerance:
                problems.append(
                    f"node {node} {zone} order {order}: buddyinfo {free[order]} != "
                    f"pagetypeinfo {typed} (tolerance {tolerance})"
                )
    detail = f"{compared} zone orders >= {spec.min_order}"
    return result("buddyinfo_matches_pagetypeinfo", problems, detail)


def judge_zones_present(obs: GuestObservations, want: int) -> Check:
    """`zones_present`: the guest has at least `want` zones with memory (buddyinfo)."""
    zones = sorted({zone for (_, zone) in obs.buddyinfo.free})
    problems = [] if len(zones) >= want else [f"only zones {zones}, wanted {want}"]
    return result("zones_present", problems, f"zones {zones}")


def not_judged(name: str, needs: str) -> Check:
    """A check the scenario makes on an instrumented kernel, left out here."""
    return Check(name, Status.NOT_APPLICABLE, f"{REDUCED_LABEL}: needs {needs}")
