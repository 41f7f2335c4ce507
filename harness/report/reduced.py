"""The reply's account of reduced verdicts: revisions built without the instrumentation.

The plugin (harness/pytest_plugin/reduced.py) gives every test of such a revision the JUnit
property `reduced`, whose value is the one line naming the overlay patch and hunk that did
not apply. report.txt says so once per revision, with how many of its test cases were
judged reduced and how many could not be judged at all.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from junitparser import Properties, Skipped, TestSuite

from harness.report.run_results import JUNIT, REDUCED_PROPERTY, read_junit

PROPERTY = REDUCED_PROPERTY
WIDTH = 80


def reduced_cases(run_dir: Path) -> dict[str, tuple[int, int]]:
    """The `reduced` lines of the run's test cases: line -> (judged reduced, not judged)."""
    xml = read_junit(run_dir / JUNIT)
    if xml is None:
        return {}
    seen: dict[tuple[str, str], tuple[str, bool]] = {}
    for suite in [xml] if isinstance(xml, TestSuite) else list(xml):
        for case in suite:
            found = case.child(Properties)
            line = next((p.value for p in (found or ()) if p.name == PROPERTY and p.value), None)
            if line is not None:
                skipped = any(isinstance(r, Skipped) for r in case.result)
                key = (case.classname or "", case.name or "")
                seen[key] = (line, skipped or seen.get(key, ("", False))[1])
    counts: dict[str, tuple[int, int]] = {}
    for line, skipped in seen.values():
        judged, not_judged = counts.get(line, (0, 0))
        counts[line] = (judged, not_judged + 1) if skipped else (judged + 1, not_judged)
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
