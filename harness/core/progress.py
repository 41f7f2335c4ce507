"""Progress reporting for long steps: phase name, elapsed time, where the log is; and the
time each phase of a run took (fetch, unpack, git, configure, make, image, probe, boot),
for the breakdown printed at the end of a run."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("harness")

PHASES = ("fetch", "unpack", "git", "configure", "make", "image", "probe", "boot")
_spent: defaultdict[str, float] = defaultdict(float)


def add_time(phase: str, seconds: float) -> None:
    """Count `seconds` towards `phase` (one of PHASES) for this process's breakdown."""
    _spent[phase] += seconds


def time_spent() -> dict[str, float]:
    """Seconds per phase so far, in PHASES order (phases that took no time included)."""
    return {phase: _spent.get(phase, 0.0) for phase in PHASES}


def format_breakdown(total: float, spent: dict[str, float] | None = None) -> str:
    """ "fetch 0.0 s, ..., boot 12.3 s, scenarios 210.0 s (of 300.1 s)"; `spent` defaults to
    this process's phases (a parallel run passes the sum over its workers)."""
    spent = time_spent() if spent is None else {p: spent.get(p, 0.0) for p in PHASES}
    rest = max(0.0, total - sum(spent.values()))
    parts = [f"{phase} {seconds:.1f} s" for phase, seconds in spent.items()]
    return ", ".join([*parts, f"scenarios {rest:.1f} s"]) + f" (of {total:.1f} s)"


@contextmanager
def step(name: str, logfile: Path | None = None, phase: str | None = None) -> Iterator[None]:
    """Log the start and end (with duration) of a long step; count it towards `phase`."""
    where = f" (log: {logfile})" if logfile else ""
    log.info("%s ...%s", name, where)
    start = time.monotonic()
    try:
        yield
    except BaseException:
        log.error("%s failed after %.1f s%s", name, time.monotonic() - start, where)
        raise
    finally:
        if phase is not None:
            add_time(phase, time.monotonic() - start)
    log.info("%s done in %.1f s", name, time.monotonic() - start)
