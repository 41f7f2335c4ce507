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
    assert list(spent) == [*progress.PHASES, *progress.GUEST_CPU]
    assert 60.0 <= spent["make"] < 61.0 and spent["boot"] == 5.0 and spent["git"] >= 0.0
    line = progress.format_breakdown(100.0)
    assert line.startswith("fetch 0.0 s, unpack 0.0 s, git 0.0 s")
    assert line.endswith("scenarios 35.0 s (of 100.0 s)")


def test_the_guests_cpu_is_summed_and_said_beside_the_breakdown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(progress, "_spent", progress.defaultdict(float))
    assert progress.format_guest_cpu(progress.time_spent(), 60.0) is None
    progress.add_guest_cpu(50.0, 20.0)
    progress.add_guest_cpu(28.0, 12.0)
    spent = progress.time_spent()
    assert (spent["qemu_user"], spent["qemu_system"], spent["guests"]) == (78.0, 32.0, 2)
    assert progress.format_breakdown(100.0, spent).endswith("scenarios 100.0 s (of 100.0 s)")
    assert progress.format_guest_cpu(spent, 55.0) == (
        "2 guests' QEMU used 110.0 s of CPU (78.0 s user, 32.0 s host kernel): "
        "2.00 cores over the 55.0 s run"
    )
