"""The reply's account of reduced verdicts: revisions built without the instrumentation.

The plugin (harness/pytest_plugin/reduced.py) gives every test of such a revision the JUnit
property `reduced`, whose value is the one line naming the overlay patch and hunk that did
not apply. report.txt says so once per revision, with how many of its test cases were
judged reduced and how many could not be judged at all.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from harness.report.run_results import read_cases

WIDTH = 80


def reduced_cases(run_dir: Path) -> dict[str, tuple[int, int]]:
    """The `reduced` lines of the run's test cases: line -> (judged reduced, not judged)."""
    counts: dict[str, tuple[int, int]] = {}
    for case in read_cases(run_dir) or []:
        if case.reduced:
            judged, not_judged = counts.get(case.reduced, (0, 0))
            skipped = case.outcome == "skipped"
            counts[case.reduced] = (judged, not_judged + 1) if skipped else (judged + 1, not_judged)
    return counts


def reduced_section(run_dir: Path) -> list[str]:
    """Lines for report.txt (at most WIDTH columns); none when nothing was reduced."""
    counts = reduced_cases(run_dir)
    if not counts:
        return []
    lines = ["reduced verdicts (the harness's instrumentation did not apply):"]
    for line, (judged, not_judged) in counts.items():
        lines += textwrap.wrap(
            line, WIDTH, initial_indent="  ", subsequent_indent="    ", break_on_hyphens=False
        )
        lines.append(f"    {judged} test cases judged reduced, {not_judged} not judged")
    return lines
