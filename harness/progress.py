"""Progress reporting for long steps: phase name, elapsed time, where the log is."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("harness")


@contextmanager
def step(name: str, logfile: Path | None = None) -> Iterator[None]:
    """Log the start and end (with duration) of a long step."""
    where = f" (log: {logfile})" if logfile else ""
    log.info("%s ...%s", name, where)
    start = time.monotonic()
    try:
        yield
    except BaseException:
        log.error("%s failed after %.1f s%s", name, time.monotonic() - start, where)
        raise
    log.info("%s done in %.1f s", name, time.monotonic() - start)
