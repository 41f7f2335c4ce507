"""poll_until (harness.core.poll): the last value and whether it held, no tight spinning."""

from __future__ import annotations

import time

import pytest

from harness.core.poll import poll_until


def test_returns_as_soon_as_done() -> None:
    values = iter([1, 2, 3, 4])
    value, done = poll_until(lambda: next(values), lambda v: v >= 3, timeout=5, interval=0.1)
    assert (value, done) == (3, True)


def test_gives_up_at_the_deadline_with_the_last_value() -> None:
    calls = []
    started = time.monotonic()
    value, done = poll_until(lambda: calls.append(1) or len(calls), lambda v: False,
                             timeout=0.5, interval=0.01)  # fmt: skip
    elapsed = time.monotonic() - started
    assert not done and value == len(calls)
    assert 0.5 <= elapsed < 1.5
    assert len(calls) <= 7  # at least 0.1 s between probes, whatever the interval asked


def test_a_wait_that_returns_early_is_called_between_rounds() -> None:
    """`sleep` replaces time.sleep: it is asked for the round's pause (never below 0.1 s,
    never past the deadline) and may return early when there is news."""
    asked: list[float] = []
    values = iter([0, 0, 1])
    value, done = poll_until(lambda: next(values), bool, timeout=60, interval=5.0,
                             sleep=asked.append)  # fmt: skip
    assert (value, done) == (1, True)
    assert len(asked) == 2 and all(0.1 <= seconds <= 5.0 for seconds in asked)


def test_a_wait_that_raises_ends_the_poll() -> None:
    class Hung(Exception):
        pass

    def hung(seconds: float) -> None:
        raise Hung

    with pytest.raises(Hung):
        poll_until(lambda: 0, bool, timeout=60, sleep=hung)
