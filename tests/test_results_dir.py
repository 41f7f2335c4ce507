"""An earlier run's results are moved aside, never appended to (harness.plugin)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from harness.plugin import pytest_sessionstart


def session_for(results: Path) -> SimpleNamespace:
    config = SimpleNamespace(getoption=lambda name: str(results) if name == "--results" else None)
    return SimpleNamespace(config=config)


def test_previous_run_is_moved_aside(tmp_path: Path) -> None:
    results = tmp_path / "results"
    (results / "detection[stock]").mkdir(parents=True)
    (results / "junit.xml").write_text("<testsuites/>")
    (results / "measurements.jsonl").write_text('{"old": 1}\n')
    (tmp_path / "results.previous").mkdir()
    (tmp_path / "results.previous" / "older").write_text("x")
    pytest_sessionstart(session_for(results))  # type: ignore[arg-type]
    assert not results.exists()
    previous = tmp_path / "results.previous"
    assert (previous / "measurements.jsonl").read_text() == '{"old": 1}\n'
    assert not (previous / "older").exists()  # only one earlier run is kept


def test_a_directory_that_is_not_results_is_left_alone(tmp_path: Path) -> None:
    results = tmp_path / "evidence"
    results.mkdir()
    (results / "pytest.log").write_text("campaign log")
    pytest_sessionstart(session_for(results))  # type: ignore[arg-type]
    assert (results / "pytest.log").exists()
