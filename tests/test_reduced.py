"""Reduced verdicts, the parts that need no guest: each reduced form takes fixtures its
scenario has, a quiet point from the free lists, and report.txt's section."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from harness.build.overlay import OverlayResult, OverlayStatus


def test_each_reduced_form_takes_fixtures_its_scenario_has() -> None:
    import importlib

    import harness.scenarios.reduced  # noqa: F401  (registers the forms)
    from harness.pytest_plugin import reduced

    assert reduced.FORMS, "no reduced form registered"
    for name, form in reduced.FORMS.items():
        module, test = name.split("::")
        scenario = getattr(importlib.import_module(f"harness.scenarios.{module}"), test)
        wanted = set(inspect.signature(form).parameters)
        assert wanted <= set(inspect.signature(scenario).parameters), name
    assert not reduced.has_forms("test_batches_out") and reduced.has_forms("test_build")
    assert "react_delay_ms" in reduced.NEEDS["test_batches_out"]


class _Result:
    def __init__(self, stdout: str) -> None:
        self.stdout = stdout


class _QuietVM:
    """buddyinfo changes `changes` times, then stays; meminfo stays."""

    def __init__(self, changes: int) -> None:
        self.reads = 0
        self.changes = changes
        self.ssh = self

    def check(self, command: str, timeout: float = 60) -> _Result:
        if "meminfo" in command:
            return _Result("MemTotal: 2000000 kB\nMemFree: 1500000 kB\n")
        self.reads += 1
        top = 491 - min(self.reads, self.changes)
        counts = "11 16 10 16 10 12 10 7 6 3"
        return _Result(f"Node 0, zone    DMA32 {counts} {top}\n")


def test_a_quiet_point_is_three_equal_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.drive import quiet

    monkeypatch.setattr(quiet, "QUIET_POLL_S", 0.1)
    vm = _QuietVM(changes=2)
    counts, mem_free = quiet.wait_quiet(vm, min_order=9, settle_s=0, timeout_s=5)
    assert vm.reads == 4 and mem_free == 1500000
    assert counts == (((0, "DMA32"), (3, 489)),)
    with pytest.raises(quiet.NeverQuiet, match="still changed") as raised:
        quiet.wait_quiet(_QuietVM(changes=10**6), min_order=9, settle_s=0, timeout_s=0.5)
    assert raised.value.check == "free_counts_settle"


def test_the_report_names_each_reduced_revision_once(tmp_path: Path) -> None:
    from harness.report.reduced import reduced_section

    line = OverlayResult(
        OverlayStatus.FAILED, failed_patch="0002-x.patch", failed_hunk="mm/page_hinting.c:151 @@"
    ).line("user:reworded")

    def case(name: str, extra: str = "") -> str:
        prop = f'<properties><property name="reduced" value="{line}"/></properties>'
        return f'<testcase classname="s" name="{name}" time="1">{prop}{extra}</testcase>'

    (tmp_path / "junit.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">'
        + case("test_a[user:reworded]")
        + case("test_b[user:reworded]", '<skipped message="reduced: not judged"/>')
        + '<testcase classname="s" name="test_c[stock]" time="1"/>'
        + "</testsuite></testsuites>"
    )
    lines = reduced_section(tmp_path)
    assert lines[0].startswith("reduced verdicts")
    assert " ".join(" ".join(lines[1:-1]).split()) == line
    assert lines[-1].strip() == "1 test cases judged reduced, 1 not judged"
    assert all(len(text) <= 80 for text in lines)
    assert reduced_section(tmp_path / "nowhere") == []
