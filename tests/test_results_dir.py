"""The scenario suite's results directories (harness/report/rundir.py) and JUnit file
(harness.pytest_plugin):
no session destroys an earlier run's results; the JUnit is pytest's own, with properties."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.core.paths import REPO_ROOT
from harness.report import rundir

PLUGIN = "harness.pytest_plugin"


def test_an_earlier_run_in_an_explicit_directory_is_moved_aside_never_deleted(
    tmp_path: Path,
) -> None:
    results = tmp_path / "results"
    (results / "detection[stock]").mkdir(parents=True)
    (results / "junit.xml").write_text("<testsuites/>")
    (results / "measurements.jsonl").write_text('{"old": 1}\n')
    (results / "finished").write_text("2026-12-01T10:00:00Z\n")
    older = tmp_path / "results.20261130-090000"
    older.mkdir()
    run = rundir.claim(rundir.plan(str(results), tmp_path / "unused"))
    assert run.path == results and not any(results.iterdir())
    aside = tmp_path / "results.20261201-100000"
    assert run.moved_aside == aside
    assert (aside / "measurements.jsonl").read_text() == '{"old": 1}\n'
    rundir.finish(run, ran_scenarios=True)
    assert older.is_dir()  # every earlier run is kept (up to KEEP_RUNS)


def test_a_directory_that_is_not_results_is_left_alone(tmp_path: Path) -> None:
    results = tmp_path / "evidence"
    results.mkdir()
    (results / "pytest.log").write_text("campaign log")
    run = rundir.claim(rundir.plan(str(results), tmp_path))
    assert run.moved_aside is None and (results / "pytest.log").exists()


def test_default_runs_each_get_a_directory_and_latest_names_the_last(tmp_path: Path) -> None:
    root = tmp_path / "results"
    first = rundir.claim(rundir.plan(None, root, now=1_800_000_000))
    rundir.finish(first, ran_scenarios=True)
    second = rundir.claim(rundir.plan(None, root, now=1_800_000_000))  # same second
    rundir.finish(second, ran_scenarios=True)
    assert first.path != second.path and first.path.is_dir() and second.path.is_dir()
    assert (root / "latest").resolve() == second.path
    assert rundir.resolve_run(root) == second.path


def test_runs_past_the_limit_are_pruned_oldest_first(tmp_path: Path) -> None:
    root = tmp_path / "results"
    for day in range(1, rundir.KEEP_RUNS + 3):
        (root / f"202612{day:02d}-120000").mkdir(parents=True)
    run = rundir.claim(rundir.plan(None, root))
    rundir.finish(run, ran_scenarios=True)
    kept = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "latest")
    assert len(kept) == rundir.KEEP_RUNS and run.path.name in kept
    assert "20261201-120000" not in kept and "20261203-120000" not in kept


def test_a_session_that_ran_nothing_leaves_the_disk_as_it_was(tmp_path: Path) -> None:
    root = tmp_path / "results"
    run = rundir.claim(rundir.plan(None, root))
    (run.path / "junit.xml").write_text("<testsuites/>")
    rundir.finish(run, ran_scenarios=False)
    assert not root.exists()
    explicit = tmp_path / "shard"
    explicit.mkdir()
    (explicit / "junit.xml").write_text("earlier")
    run = rundir.claim(rundir.plan(str(explicit), root))
    (run.path / "junit.xml").write_text("<testsuites/>")
    rundir.finish(run, ran_scenarios=False)
    assert (explicit / "junit.xml").read_text() == "earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard"]


TINY_SUITE = "def test_one(evidence):\n    (evidence / 'console.log').write_text('x')\n"


def run_plugin(tmp_path: Path, *args: str, env_results: Path) -> subprocess.CompletedProcess[str]:
    """pytest with the scenario suite's plugin over a tiny suite, the default results root
    being `env_results` (PHH_RESULTS)."""
    test_file = tmp_path / "test_tiny.py"
    test_file.write_text(TINY_SUITE)
    env = {**os.environ, "PHH_RESULTS": str(env_results)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", PLUGIN, "-p", "no:cacheprovider",
         "--revisions", "", "--debug-revisions", "", str(test_file), *args],
        cwd=tmp_path, capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip


@pytest.mark.parametrize(
    "args", [["--collect-only"], ["-k", "no_such_test"]], ids=["collect-only", "k-selects-none"]
)
def test_sessions_that_run_no_scenario_never_touch_the_results(
    tmp_path: Path, args: list[str]
) -> None:
    """The data loss of issue 16: `pytest harness/ --collect-only` rewrote results/ with an
    empty junit.xml. Now a run's results survive any session that runs no scenario, with
    the default root and with an explicit --results."""
    root = tmp_path / "results"
    first = run_plugin(tmp_path, env_results=root)
    assert first.returncode == 0, first.stdout + first.stderr
    (run,) = [p for p in root.iterdir() if p.name != "latest"]
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    for extra in ([], ["--results", str(run)]):
        again = run_plugin(tmp_path, *args, *extra, env_results=root)
        assert again.returncode in (0, 5), again.stdout + again.stderr
        assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    assert (run / "test_one" / "console.log").read_text() == "x"


def run_scenario_plugin(tmp_path: Path, results: Path) -> subprocess.CompletedProcess[str]:
    """A tiny suite under the scenario suite's plugin (as `pytest harness/` loads it)."""
    test_file = tmp_path / "test_tiny_scenario.py"
    test_file.write_text(
        "from harness.core.errors import QemuDied\n"
        "def test_fails(evidence, record_property):\n"
        "    record_property('verdict', 'verdict: FAIL (1 of 1)')\n"
        "    assert False, 'E' * 6000\n"
        "def test_qemu_killed():\n"
        "    raise QemuDied('QEMU (pid 1) of VM x killed by signal SIGKILL (9)', 'hint')\n"
        "from harness.core.errors import GuestPanic\n"
        "def _panic(during_boot):\n"
        "    error = GuestPanic('guest kernel panicked: Oops', 'see the console')\n"
        "    error.during_boot = during_boot\n"
        "    raise error\n"
        "def test_panic_at_boot():\n"
        "    _panic(True)\n"
        "def test_panic_under_the_workload():\n"
        "    _panic(False)\n"
        "import harness.pytest_plugin.outcomes as outcomes\n"
        "from harness.guest.cmdline import VMConfig\n"
        "def _zeroed_text_panic(tmp_path, control_boots):\n"
        "    outcomes.boots_without_reporting = lambda config: control_boots\n"
        "    console = tmp_path / 'console.log'\n"
        "    console.write_text('RIP: 0010:wait_for_initramfs+0x0/0x3b\\n'\n"
        "                       'Code: 00 00 00 <00> 00 00\\n')\n"
        "    config = VMConfig(kernel=tmp_path, initrd=tmp_path, workdir=tmp_path)\n"
        "    error = GuestPanic('guest kernel failed during boot', 'see', console, config)\n"
        "    error.during_boot = True\n"
        "    raise error\n"
        "def test_panic_on_zeroed_kernel_text(tmp_path):\n"
        "    _zeroed_text_panic(tmp_path, control_boots=True)\n"
        "def test_panic_on_zeroed_text_also_without_reporting(tmp_path):\n"
        "    _zeroed_text_panic(tmp_path, control_boots=False)\n"
    )
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", PLUGIN, "-p", "no:cacheprovider",
         "-o", "junit_family=xunit1", str(test_file), "--results", str(results)],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_scenario_junit_is_pytests_own_with_properties(tmp_path: Path) -> None:
    """results/junit.xml comes from pytest's --junitxml (set by the plugin): the failure is
    whole (the old writer cut it at 4000 characters) and the evidence dir and verdict are
    properties; a second run moves the first aside."""
    results = tmp_path / "results"
    run = run_scenario_plugin(tmp_path, results)
    assert run.returncode == 1, run.stdout + run.stderr
    case = ET.parse(results / "junit.xml").getroot().find(".//testcase[@name='test_fails']")
    assert case is not None
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert properties["evidence"] == str(results / "test_fails")
    assert properties["verdict"] == "verdict: FAIL (1 of 1)"
    failure = case.find("failure")
    assert failure is not None and "E" * 6000 in (failure.text or "")
    root = ET.parse(results / "junit.xml").getroot()
    killed = root.find(".//testcase[@name='test_qemu_killed']")
    assert killed is not None and killed.find("failure") is None
    error = killed.find("error")
    assert error is not None and "killed by signal SIGKILL" in (error.text or "")
    # A guest that panics before it is up is an infrastructure fault (error); a panic under
    # the workload is what the scenario found (failure).
    at_boot = root.find(".//testcase[@name='test_panic_at_boot']")
    assert at_boot is not None and at_boot.find("error") is not None
    under_load = root.find(".//testcase[@name='test_panic_under_the_workload']")
    assert under_load is not None and under_load.find("failure") is not None
    # ...unless the judge explains the panic by the series: kernel code that reads as zeros
    # at boot is memory handed to the host while in use, a failed check, not an error.
    zeroed = root.find(".//testcase[@name='test_panic_on_zeroed_kernel_text']")
    assert zeroed is not None and zeroed.find("error") is None
    failure = zeroed.find("failure")
    assert failure is not None
    assert "[FAIL] kernel_text_intact" in (failure.get("message") or "") + (failure.text or "")
    assert "control boot" in (failure.text or "")
    # A kernel that crashes the same way with no hints taken: not hinting's doing, an error.
    unrelated = root.find(".//testcase[@name='test_panic_on_zeroed_text_also_without_reporting']")
    assert unrelated is not None and unrelated.find("error") is not None
    # the run's reply for the list and its page: failures, so no Tested-by
    reply = (results / "report.txt").read_text()
    assert "test_fails" in reply and "Tested-by" not in reply
    assert "test_fails" in (results / "index.html").read_text()
    run_scenario_plugin(tmp_path, results)
    (aside,) = tmp_path.glob("results.2*")  # the first run, moved aside by the second
    assert (aside / "junit.xml").is_file() and (results / "junit.xml").is_file()


@pytest.mark.real
@pytest.mark.parametrize("workers", [[], ["-n", "0"]], ids=["default-two-workers", "serial"])
def test_a_broken_build_is_one_setup_error_per_scenario(tmp_path: Path, workers: list[str]) -> None:
    """A series that cannot be built (this one lacks the hinting Kconfig, so kconfig drops
    CONFIG_PAGE_HINTING): every scenario of that revision is a setup *error* with the
    same message, and the build was tried once (the failure is remembered; with workers,
    the controller's prebuild tried it and the workers raise what it found)."""
    results = tmp_path / "results"
    run = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--revisions", "", "--debug-revisions", "",
         "--series", str(REPO_ROOT / "tests/fixtures/series/break-build"), *workers,
         "--results", str(results)],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    cases = ET.parse(results / "junit.xml").getroot().findall(".//testcase")
    assert len(cases) >= 10  # every scenario of the one revision
    errors = [case.find("error") for case in cases]
    assert all(error is not None for error in errors), [ET.tostring(c)[:300] for c in cases]
    last_lines = {(error.text or "").strip().splitlines()[-1] for error in errors}  # type: ignore[union-attr]
    assert len(last_lines) == 1 and "KconfigError" in last_lines.pop()
    log = run.stdout + run.stderr  # (the controller logs to stderr)
    started = re.findall(r"^\d{4}-\d\d-\d\d [\d:,]+ configuring .* \.\.\.$", log, re.M)
    assert len(started) == 1, started  # the live log: configure ran once for all


def test_parallel_workers_keep_their_own_evidence_and_the_reports_merge(tmp_path: Path) -> None:
    """`-n 2`: each xdist worker writes evidence under results/<worker>/, and the controller
    merges what the workers measured into one compare.md, measurements.jsonl and JUnit."""
    test_file = tmp_path / "test_parallel_scenarios.py"
    test_file.write_text(
        "import os, time, pytest\n"
        "@pytest.mark.parametrize('name', ['stock', 'hinting-v2', 'hinting-v2-fixed', 'x'])\n"
        "def test_release(name, evidence, record_measurement):\n"
        "    time.sleep(0.5)  # both workers get some\n"
        "    (evidence / 'console.log').write_text(os.environ['PYTEST_XDIST_WORKER'])\n"
        "    record_measurement({'revision': name, 'returned_bytes': 1 << 30,\n"
        "                        'seconds_to_90pct': 2.0, 'passed': True})\n"
    )
    results = tmp_path / "results"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", PLUGIN, "-p", "no:cacheprovider",
         "-o", "junit_family=xunit1", "-n", "2", str(test_file), "--results", str(results),
         "--revisions", "", "--debug-revisions", ""],  # nothing to prebuild
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    workers = sorted(p.name for p in results.glob("gw*") if p.is_dir())
    assert workers == ["gw0", "gw1"]
    for console in results.glob("gw*/*/console.log"):
        assert console.read_text() == console.parent.parent.name  # written by that worker
    lines = (results / "measurements.jsonl").read_text().splitlines()
    assert len(lines) == 4
    compare = (results / "compare.md").read_text()
    assert all(name in compare for name in ("stock", "hinting-v2-fixed", "| x "))
    cases = ET.parse(results / "junit.xml").getroot().findall(".//testcase")
    assert len(cases) == 4
    assert "time breakdown" in run.stdout and (results / "timing.json").is_file()


PANIC_IN_SETUP = """\
import pytest
import harness.pytest_plugin.outcomes as outcomes
from harness.core.errors import GuestPanic
from harness.guest.cmdline import VMConfig

@pytest.fixture
def booted(tmp_path):
    outcomes.boots_without_reporting = lambda config: True
    console = tmp_path / "console.log"
    console.write_text("RIP: 0010:wait_for_initramfs+0x0/0x3b\\nCode: 00 00 00 <00> 00 00\\n")
    config = VMConfig(kernel=tmp_path, initrd=tmp_path, workdir=tmp_path)
    error = GuestPanic("guest kernel failed during boot", "see", console, config)
    error.during_boot = True
    raise error

def test_boots(booted):
    pass
"""


def test_a_run_whose_only_scenario_panics_at_boot_keeps_its_results(tmp_path: Path) -> None:
    """The mutant sg-length-page-over's run: the one scenario's guest panics in a fixture,
    which the plugin reports as the call's failure (kernel_text_intact), never as a setup.
    That run ran a scenario: its results stay, with the verdict as data."""
    test_file = tmp_path / "test_panic.py"
    test_file.write_text(PANIC_IN_SETUP)
    results = tmp_path / "results"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", PLUGIN, "-p", "no:cacheprovider",
         "-o", "junit_family=xunit1", str(test_file), "--results", str(results)],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    case = ET.parse(results / "junit.xml").getroot().find(".//testcase[@name='test_boots']")
    assert case is not None and case.find("failure") is not None
    verdicts = [p.get("value") or "" for p in case.iter("property") if p.get("name") == "verdict"]
    assert any('"kernel_text_intact", "status": "FAIL"' in v for v in verdicts), verdicts
