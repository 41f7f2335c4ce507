"""The command line: argument handling and errors a user can act on."""

from __future__ import annotations

import pytest

from harness import cli


def test_run_passes_unknown_options_to_pytest(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        seen.append(argv)
        return 0

    monkeypatch.setattr("pytest.main", fake_main)
    assert cli.main(["run", "--revisions", "stock", "-x"]) == 0
    assert seen[0][0].endswith("harness")
    assert seen[0][-3:] == ["--revisions", "stock", "-x"]


def test_build_with_a_bad_revision_is_a_clear_error(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["build", "--revision", "/no/such/series"]) == 2
    err = capsys.readouterr().err
    assert "/no/such/series" in err and "->" in err


def test_build_rejects_stray_arguments() -> None:
    with pytest.raises(SystemExit):
        cli.main(["build", "--bogus"])
