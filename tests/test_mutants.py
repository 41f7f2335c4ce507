"""The mutant campaign's bookkeeping: the catalogue, the series it builds, and how a
suite's JUnit report becomes caught / missed / error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from harness.build.overlay import load_overlay
from harness.build.series import load_series
from harness.build.spec import V2_SPEC, load_spec
from harness.campaigns import mutants
from harness.core.errors import HarnessError
from harness.core.paths import REPO_ROOT
from harness.judge import Check, Status, Verdict, judge_crash

CLASSES = {
    "params", "trigger", "prediction", "work", "accounting",
    "counting", "boundary", "integrity", "concurrency", "lifecycle", "interface",
    "isolation", "react", "offline", "hang",
}  # fmt: skip


def test_the_catalogue_has_a_dozen_mutants_covering_each_class() -> None:
    catalogue = mutants.discover()
    assert len(catalogue) >= 12
    assert {m.defect_class for m in catalogue} == CLASSES
    assert all(m.subject.startswith("mutant ") for m in catalogue)
    debug = [m.id for m in catalogue if m.needs_debug]
    assert debug == ["irq-unsafe-lock", "reset-keeps-freed-counts"]


def test_unknown_ids_are_named() -> None:
    with pytest.raises(HarnessError, match="no-such-mutant"):
        mutants.discover(["no-such-mutant"])


def test_a_materialised_mutant_is_the_instrumented_fixed_series_plus_one_patch(
    tmp_path: Path,
) -> None:
    mutant = mutants.discover(["hwm-16"])[0]
    series = load_series(mutants.materialise(mutant, tmp_path))
    fixed = load_series(mutants.HINTING_V2_FIXED.series)
    overlay = tuple(patch.path for patch in load_overlay().patches)
    assert series.patches == (*fixed.patches, *overlay, mutant.patch)
    assert load_spec(tmp_path / "hwm-16") == V2_SPEC


def _junit(path: Path, *cases: str) -> Path:
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">'
        + "".join(cases)
        + "</testsuite></testsuites>"
    )
    return path


PASS = '<testcase classname="s" name="ok" time="1"/>'


def _fail(message: str, *checks: Check, tag: str = "failure", name: str = "t") -> str:
    """A test case that failed, with the verdicts it recorded as data (JUnit properties)."""
    quoted = {'"': "&quot;"}
    props = "".join(
        f'<property name="verdict" value="{escape(Verdict((c,)).to_json("step"), quoted)}"/>'
        for c in checks
    )
    return (
        f'<testcase classname="s" name="{name}" time="1"><properties>{props}</properties>'
        f'<{tag} message="{escape(message)}">the prose is not read</{tag}></testcase>'
    )


def test_a_failed_judge_check_is_a_catch(tmp_path: Path) -> None:
    check = Check("counts_match_model[at]", Status.FAIL, "x")
    passed = Check("hinting_present", Status.PASS, "y")
    junit = _junit(tmp_path / "j.xml", PASS, _fail("AssertionError", passed, check))
    assert mutants.classify(junit, 1, clean=False) == ("caught", "counts_match_model[at]")


def test_the_prose_of_a_failure_is_not_read(tmp_path: Path) -> None:
    """A failure whose message says "[FAIL] x" but recorded no failed check is no catch:
    the campaign reads the verdicts as data."""
    junit = _junit(tmp_path / "n.xml", _fail("AssertionError: [FAIL] counts_match_model: x"))
    assert mutants.classify(junit, 1, clean=False)[0] == "error"


def test_all_passing_is_a_miss_and_setup_errors_are_errors(tmp_path: Path) -> None:
    assert mutants.classify(_junit(tmp_path / "a.xml", PASS), 0, clean=False)[0] == "missed"
    error = _fail("BuildError: make failed", tag="error")
    status, why = mutants.classify(_junit(tmp_path / "b.xml", error), 1, clean=False)
    assert (status, why) == ("error", "BuildError: make failed")
    assert mutants.classify(tmp_path / "none.xml", 2, clean=False)[0] == "error"


def test_an_exception_that_records_no_check_is_an_error(tmp_path: Path) -> None:
    """Seen on drain-before-react's first try: the guest stopped answering SSH mid-step;
    that is a hang, not a catch."""
    gone = _fail("harness.core.errors.SSHError: not connected to guest root@127.0.0.1:5")
    status, why = mutants.classify(_junit(tmp_path / "g.xml", gone), 1, clean=False)
    assert status == "error" and "not connected" in why


def test_a_kernel_log_problem_counts_only_in_the_series_code_path(tmp_path: Path) -> None:
    ours = Check("kernel_log", Status.FAIL, "BUG bug:foo (line 3):\n page_hinting_cycle+0x12/0x80")
    theirs = Check("kernel_log", Status.FAIL, "BUG bug:foo (line 3):\n ext4_fill_super+0x1/0x2")
    assert mutants.classify(_junit(tmp_path / "o.xml", _fail("x", ours)), 1, clean=False) == (
        "caught",
        "kernel_log: BUG bug:foo",
    )
    theirs_junit = _junit(tmp_path / "t.xml", _fail("x", theirs))
    assert mutants.classify(theirs_junit, 1, clean=False)[0] == "error"


def test_a_crash_in_the_series_code_is_a_check() -> None:
    """A guest that died with the series' code on a stack (a boot that stalls in the
    worker): the plugin records crash_in_series_code, which catches the mutant."""
    stall = "GuestNotReady: no PHH-READY\n[ 21.8] RIP: 0010:page_hinting_process+0x2cf/0x33f"
    check = judge_crash(stall)
    assert check is not None and check.name == "crash_in_series_code"
    assert "page_hinting_process" in check.detail
    assert judge_crash("GuestNotReady\n[ 21.8] RIP: 0010:ext4_iget+0x2/0x3") is None


def test_the_clean_revision_must_pass(tmp_path: Path) -> None:
    assert mutants.classify(_junit(tmp_path / "p.xml", PASS), 0, clean=True)[0] == "passed"
    failing = _junit(tmp_path / "f.xml", _fail("AssertionError: boom"))
    assert mutants.classify(failing, 1, clean=True) == ("failed", "boom")


def test_the_campaign_runs_every_detection_step() -> None:
    """The campaign's -k filter keeps every step of both detection guests (a step left out
    cannot catch its mutant) and no negative control (it cannot catch one)."""

    def collected(target: str, *selection: str) -> set[str]:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", target, "--collect-only",
             "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *selection],
            cwd=REPO_ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return {line.split("[")[0] for line in done.stdout.splitlines() if "::" in line}

    selected = collected("harness", "-k", mutants.SCENARIO_FILTER)
    for module in ("test_detection.py", "test_batches_out.py", "test_lifecycle.py"):
        every = collected(f"harness/scenarios/{module}")
        assert every and every <= selected, f"{module}: {sorted(every - selected)} left out"
    assert not any("negative_control" in test for test in selected)
