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
# Beside the wall-time phases: the host CPU the guests' QEMU processes used, summed over
# guests ("guests" counts them). TCG guests are CPU-bound, so this says how close a run's
# wall time is to what the host's cores can give; the host kernel's share is mostly the
# host faulting in guest memory that hinting gave back.
GUEST_CPU = ("qemu_user", "qemu_system", "guests")
_spent: defaultdict[str, float] = defaultdict(float)


def add_time(phase: str, seconds: float) -> None:
    """Count `seconds` towards `phase` (one of PHASES) for this process's breakdown."""
    _spent[phase] += seconds


def add_guest_cpu(user: float, system: float) -> None:
    """Count one guest's QEMU process: `user` and `system` CPU seconds over its life."""
    _spent["qemu_user"] += user
    _spent["qemu_system"] += system
    _spent["guests"] += 1


def time_spent() -> dict[str, float]:
    """Seconds per phase so far, in PHASES order (phases that took no time included),
    then the guests' CPU (GUEST_CPU)."""
    return {key: _spent.get(key, 0.0) for key in (*PHASES, *GUEST_CPU)}


def format_guest_cpu(spent: dict[str, float], wall: float) -> str | None:
    """ "8 guests' QEMU used 110.0 s of CPU (78.0 s user, 32.0 s host kernel): 1.80 cores
    over the 61.0 s run"; None when no guest ran."""
    guests = int(spent.get("guests", 0))
    if not guests:
        return None
    user, system = spent.get("qemu_user", 0.0), spent.get("qemu_system", 0.0)
    cores = (user + system) / wall if wall > 0 else 0.0
    whose = "guests'" if guests != 1 else "guest's"
    return (
        f"{guests} {whose} QEMU used {user + system:.1f} s of CPU "
        f"({user:.1f} s user, {system:.1f} s host kernel): {cores:.2f} cores over the "
        f"{wall:.1f} s run"
    )


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
