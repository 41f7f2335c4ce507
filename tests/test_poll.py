"""poll_until (harness.core.poll): the last value and whether it held, no tight spinning."""

from __future__ import annotations

import time

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
