"""atomic_directory (harness.core.fsutil): all or nothing, one rename."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.fsutil import atomic_directory


def test_the_directory_appears_whole(tmp_path: Path) -> None:
    target = tmp_path / "artifacts"
    with atomic_directory(target) as scratch:
        (scratch / "bzImage").write_text("kernel")
        assert not target.exists()  # nothing visible until the block ends
    assert (target / "bzImage").read_text() == "kernel"
    assert [p.name for p in tmp_path.iterdir()] == ["artifacts"]


def test_a_failure_leaves_the_old_one_and_no_scratch(tmp_path: Path) -> None:
    target = tmp_path / "artifacts"
    target.mkdir()
    (target / "old").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(target) as scratch:
        (scratch / "half").write_text("half")
        raise RuntimeError("make failed")
    assert [p.name for p in target.iterdir()] == ["old"]
    assert [p.name for p in tmp_path.iterdir()] == ["artifacts"]


def test_replace_or_keep_an_existing_one(tmp_path: Path) -> None:
    target = tmp_path / "split"
    target.mkdir()
    (target / "first").write_text("")
    with atomic_directory(target, replace=False) as scratch:
        (scratch / "second").write_text("")
    assert [p.name for p in target.iterdir()] == ["first"]  # the first writer's stays
    with atomic_directory(target) as scratch:
        (scratch / "third").write_text("")
    assert [p.name for p in target.iterdir()] == ["third"]
    assert [p.name for p in tmp_path.iterdir()] == ["split"]
