"""The release workload: the host gets back what the guest released (or, with the feature
off, does not), and the series counted what it hinted."""

from __future__ import annotations

from harness.core.units import MiB
from harness.judge.verdict import Check, Status, Verdict, mib, result
from harness.observe.procfs import GuestObservations

RETURN_FRACTION = 0.8  # of the released memory the host must get back (the bar)
NEGATIVE_CONTROL_LIMIT = 50 * MiB  # feature off: the RSS may not fall by more than this
# What a release must give back to the host after a lifecycle event. Stock 6.1 reporting
# gets less back in that small, fragmented guest (it reports orders >= 9 only, a budget
# per pass): 62 to 65 % measured after the balloon and unplug events; hinting 97 %.
RETURN_FRACTION_AFTER_EVENT = {"hinting": 0.8, "stock": 0.5}


def judge_returned(
    returned_bytes: int,
    released_bytes: int,
    watched_s: float,
    fraction: float = RETURN_FRACTION,
    name: str = "rss_returns_released",
) -> Check:
    """`rss_returns_released`: within the watch, the QEMU RSS fell by at least `fraction`
    of what the guest released."""
    want = fraction * released_bytes
    detail = (
        f"QEMU RSS fell {mib(returned_bytes)} within {watched_s:.0f} s of releasing "
        f"{mib(released_bytes)}; needed >= {mib(round(want))} ({fraction:.0%})"
    )
    return Check(name, Status.PASS if returned_bytes >= want else Status.FAIL, detail)


def hinted_blocks(obs: GuestObservations) -> list[tuple[str, int, int]]:
    """(zone, order, hinted) for every zone and order the series counts in zoneinfo."""
    return [
        (zone.zone, order, hinted)
        for zone in obs.zoneinfo
        for order, hinted in sorted(zone.hinted.items())
    ]


def judge_pages_hinted(obs: GuestObservations) -> Check:
    """`pages_hinted`: zoneinfo has the series' hinted_order_N lines and they count some
    blocks after a release (hinted <= free per order is `hinted_le_free_per_order`)."""
    rows = hinted_blocks(obs)
    total = sum(h for _, _, h in rows)
    problems = []
    if not rows:
        problems.append("the series' hinted_order_N lines are missing from /proc/zoneinfo")
    elif total == 0:
        problems.append(f"no page was hinted: {rows}")
    return result("pages_hinted", problems, f"{total} blocks hinted")


def judge_feature_off(
    returned_bytes: int, obs: GuestObservations | None, limit: int = NEGATIVE_CONTROL_LIMIT
) -> Verdict:
    """The negative control: with free-page-reporting off the host gets nothing back and,
    on a hinting revision (`obs` given), nothing is hinted."""
    checks = [
        result(
            "no_return_when_off",
            []
            if returned_bytes <= limit
            else [f"QEMU RSS still fell by {mib(returned_bytes)} with free-page-reporting=off"],
            f"RSS fell {mib(returned_bytes)} (limit {mib(limit)})",
        )
    ]
    if obs is not None:
        hinted = [row for row in hinted_blocks(obs) if row[2]]
        checks.append(
            result(
                "no_hinting_when_off",
                [f"pages were hinted with the feature off: {hinted}"] if hinted else [],
                "nothing hinted",
            )
        )
    return Verdict(tuple(checks))
