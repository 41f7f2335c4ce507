"""The first failing check is printed when it fails, before the scenarios after it run
(issue 15: a broken revision says why at once, not at the end)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

PLUGIN = "harness.pytest_plugin.first_failure"

SUITE = textwrap.dedent(
    """
    from harness.judge import Check, Status, Verdict

    def test_a_passes():
        pass

    def test_b_fails_a_check():
        verdict = Verdict((Check("worker_starts", Status.PASS, "ok"),
                           Check("counts_match_model[at]", Status.FAIL, "order 9: unhinted 1"),
                           Check("idle_trigger_rule", Status.FAIL, "U[10] 40 > 37")))
        assert verdict.passed, str(verdict)

    def test_c_runs_after():
        print("C-RAN")

    def test_d_fails_too():
        assert False, "second failure"
    """
)


def test_the_first_failing_check_is_printed_before_the_next_scenario_runs(
    tmp_path: Path,
) -> None:
    (tmp_path / "test_suite.py").write_text(SUITE)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", PLUGIN, "-p", "no:cacheprovider", "-s", "-v",
         str(tmp_path / "test_suite.py")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 1, out
    first = out.index("FIRST FAILURE: test_suite.py::test_b_fails_a_check")
    assert out.index("counts_match_model[at]: order 9: unhinted 1", first) < out.index("C-RAN")
    assert out.count("FIRST FAILURE") == 1  # the second failure waits for the summary


def test_a_verdict_property_that_is_not_json_does_not_break_the_line(tmp_path: Path) -> None:
    """Another plugin's `verdict` property (plain text) is skipped: the error's last line."""
    (tmp_path / "test_prop.py").write_text(
        "def test_x(record_property):\n"
        "    record_property('verdict', 'verdict: FAIL (1 of 1)')\n"
        "    assert 1 == 2, 'the reason'\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", PLUGIN, "-p", "no:cacheprovider",
         str(tmp_path / "test_prop.py")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1 and "INTERNALERROR" not in result.stdout, result.stdout
    assert "FIRST FAILURE: test_prop.py::test_x" in result.stdout
    assert "AssertionError: the reason" in result.stdout
