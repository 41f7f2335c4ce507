"""Revision resolution and known-splat lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import SeriesError
from harness.known_splats import load_known_splats
from harness.revisions import DEBUG, HINTING, REPORTING, resolve


def test_builtin_revisions_use_their_fragments() -> None:
    assert resolve("stock").fragments[-1] == REPORTING
    assert resolve("stock").series is None
    v2 = resolve("hinting-v2")
    assert v2.hinting and v2.fragments[-1] == HINTING
    assert v2.series is not None and v2.series.name == "hinting-v2"


def test_debug_suffix_adds_the_debug_fragment_once() -> None:
    rev = resolve("hinting-v2-fixed+debug")
    assert rev.debug and rev.name == "hinting-v2-fixed+debug"
    assert rev.fragments[-1] == DEBUG
    assert rev.with_debug() is rev


def test_user_series_path_becomes_a_hinting_revision(tmp_path: Path) -> None:
    series = tmp_path / "my-series"
    series.mkdir()
    rev = resolve(str(series))
    assert rev.name == "user:my-series" and rev.series == series and rev.hinting


def test_unknown_revision_names_the_input() -> None:
    with pytest.raises(SeriesError, match="no-such-thing"):
        resolve("no-such-thing")
    with pytest.raises(SeriesError, match="unknown suffix"):
        resolve("stock+kasan")


def test_known_splats_file(tmp_path: Path) -> None:
    (tmp_path / "known-splats.txt").write_text("# comment\nLOCKDEP:inconsistent  # why\n\n")
    assert load_known_splats(tmp_path) == {"LOCKDEP:inconsistent"}
    assert load_known_splats(None) == set()
    assert load_known_splats(tmp_path / "missing") == set()
