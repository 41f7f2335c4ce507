"""Revision resolution and known-splat lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.build.known_splats import is_known, load_known_splats
from harness.build.revisions import DEBUG, HINTING, REPORTING, resolve
from harness.core.errors import SeriesError


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


def test_known_splat_patterns_match_ids() -> None:
    patterns = {"lockdep:inconsistent_lock_state:&zone->lock:*", "pagealloc:memory_corruption"}
    assert is_known("lockdep:inconsistent_lock_state:&zone->lock:__free_pages_ok", patterns)
    assert is_known("pagealloc:memory_corruption", patterns)
    assert not is_known("lockdep:inconsistent_lock_state:&other->lock:f", patterns)
    assert not is_known("WARNING:__free_one_page", patterns)


def test_one_known_defect_may_have_several_forms() -> None:
    defect = "lockdep:inconsistent_lock_state:*&zone->lock:* | lockdep:irq_inversion:*&zone->lock"
    assert is_known("lockdep:irq_inversion:SOFTIRQ-unsafe:&zone->lock", [defect])
    assert is_known("lockdep:inconsistent_lock_state:{X}:&zone->lock:f", [defect])
    assert not is_known("lockdep:irq_inversion:SOFTIRQ-unsafe:&base->lock", [defect])


def test_the_v2_series_declares_its_kept_defects() -> None:
    from harness.build.revisions import HINTING_V2, HINTING_V2_FIXED

    real_id = (  # as harness.observe.dmesg named the splat on the real hinting-v2+debug guest
        "lockdep:inconsistent_lock_state:{SOFTIRQ-ON-W}->{IN-SOFTIRQ-W}:&zone->lock:"
        "__rmqueue_pcplist"
    )
    assert is_known(real_id, load_known_splats(HINTING_V2.series))
    assert load_known_splats(HINTING_V2_FIXED.series) == set()
