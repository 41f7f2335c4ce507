"""A broken revision's first failing check, printed the moment it fails.

pytest -v prints FAILED beside the test id as it happens, but the reason only in the
summary at the end, after every other scenario ran. A maintainer waiting on an edited
patch wants the reason at once: the controller (which sees every worker's reports) prints
the first failed scenario's first failing check, or the last line of its error.
"""

from __future__ import annotations

import re

import pytest

from harness.judge import Status, Verdict

# How a failed verdict reads in an assertion message (Verdict.__str__): "  [FAIL] name: ..."
FAIL_LINE = re.compile(r"\[FAIL\] (.+)")


def first_failing_check(report: pytest.TestReport) -> str:
    """The first [FAIL] line of the scenario's error, else the first FAIL check of the
    verdicts it recorded, else its error's last `E` line, else pytest's head line."""
    text = report.longreprtext
    if match := FAIL_LINE.search(text):
        return match.group(1).strip()
    for name, value in report.user_properties:
        if name != "verdict":
            continue
        try:
            _, verdict = Verdict.from_json(str(value))
        except (ValueError, KeyError, TypeError):  # a property some other code wrote
            continue
        failed = next((c for c in verdict.checks if c.status is Status.FAIL), None)
        if failed is not None:
            return f"{failed.name}: {failed.detail}"
    errors = [line for line in text.splitlines() if line.startswith("E ")]
    if errors:
        return errors[-1][1:].strip()
    return report.head_line or report.outcome


class FirstFailure:
    """Prints the run's first failure once, in the process that writes the terminal."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.shown = False

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.shown or not report.failed:
            return
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is None:
            return
        self.shown = True
        when = "" if report.when == "call" else f" (in {report.when})"
        terminal.write_line("")
        terminal.write_line(f"FIRST FAILURE{when}: {report.nodeid}", red=True, bold=True)
        terminal.write_line(f"  {first_failing_check(report)}", red=True)


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller or a serial run: not a worker
        config.pluginmanager.register(FirstFailure(config), "phh-first-failure")
