"""The run's time breakdown (harness.core.progress): steps count towards their phase."""

from __future__ import annotations

import pytest

from harness.core import progress


def test_steps_count_towards_their_phase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "_spent", progress.defaultdict(float))
    with progress.step("make bzImage", phase="make"):
        pass
    progress.add_time("make", 60.0)
    progress.add_time("boot", 5.0)
    with pytest.raises(RuntimeError), progress.step("broken", phase="git"):
        raise RuntimeError("a failed step still counts")
    spent = progress.time_spent()
    assert list(spent) == list(progress.PHASES)
    assert 60.0 <= spent["make"] < 61.0 and spent["boot"] == 5.0 and spent["git"] >= 0.0
    line = progress.format_breakdown(100.0)
    assert line.startswith("fetch 0.0 s, unpack 0.0 s, git 0.0 s")
    assert line.endswith("scenarios 35.0 s (of 100.0 s)")
