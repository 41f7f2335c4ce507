"""Poll until a deadline: the one helper for "ask again until it holds or time is up"."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
MIN_INTERVAL_S = 0.1  # no tight spinning on a 2-core host that also runs the guest


def poll_until(
    probe: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout: float,
    interval: float = 0.5,
    sleep: Callable[[float], object] = time.sleep,
) -> tuple[T, bool]:
    """Call `probe` every `interval` seconds until `done(value)` or `timeout` has passed;
    returns the last value and whether it was done (the caller names the failure).

    `sleep(seconds)` passes the time between two rounds (at least MIN_INTERVAL_S, at most
    `interval` and what is left): time.sleep by default, or a wait that returns early when
    there is news (select() on an SSH channel, a QMP event arriving). It runs once per
    round, so it is also where a wait looks at the world around it: one that raises (a
    dead or hung guest) ends the poll with that error."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value, True
        if time.monotonic() >= deadline:
            return value, False
        sleep(max(MIN_INTERVAL_S, min(interval, deadline - time.monotonic())))
