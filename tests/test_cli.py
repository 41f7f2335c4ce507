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
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # run sets it: restored after
    assert cli.main(["run", "--revisions", "stock", "-x"]) == 0
    assert seen[0][:2] == ["-p", "xdist"]  # the one plugin loaded besides its own
    assert seen[0][2].endswith("harness")
    assert seen[0][-3:] == ["--revisions", "stock", "-x"]


def test_build_with_a_bad_revision_is_a_clear_error(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["build", "--revision", "/no/such/series"]) == 2
    err = capsys.readouterr().err
    assert "/no/such/series" in err and "->" in err


def test_build_rejects_stray_arguments() -> None:
    with pytest.raises(SystemExit):
        cli.main(["build", "--bogus"])


def test_cli_exits_non_zero_naming_a_missing_kernel_tree(tmp_path) -> None:
    """The real entry point, in a subprocess: bad input -> exit 2 and an actionable message."""
    import subprocess
    import sys

    missing = tmp_path / "no-such-linux"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "build",
            "--revision",
            "stock",
            "--kernel-source",
            str(missing),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert str(missing) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_full_disk_is_one_clear_error_naming_the_directory(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Disk full while the source is unpacked (a raw OSError from a write deep inside):
    exit 2, the directory, the space a run needs and PHH_CACHE; no traceback."""
    import errno

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/cache/src/6.1/.unpack-1")

    monkeypatch.setattr("harness.pipeline.source.obtain_source", full)
    assert cli.main(["build", "--revision", "stock"]) == 2
    err = capsys.readouterr().err
    assert "no space left on the file system of /cache/src/6.1 (" in err
    assert "PHH_CACHE" in err and "GiB" in err and "Traceback" not in err
