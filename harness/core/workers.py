"""The scenario suite on several pytest-xdist workers (`python3 -m harness run -n 2`).

Each worker is a separate process with its own Pipeline: builds are still done once,
because `build_kernel` holds a per-worktree file lock and the second worker finds the first
one's artifacts in the cache. What has to be kept apart is per worker: host ports (each
worker picks SSH forward ports from its own range) and results (results/<worker>/). The
controller merges what the workers leave behind (harness/report/session_data.py) into the
session-end reports.
"""

from __future__ import annotations

import os
from pathlib import Path

# Ports 20000-29999 are below Linux's ephemeral range (32768-60999), so a port picked here is
# not taken a moment later by some outgoing connection; each worker has its own thousand.
PORT_BASE = 20000
PORTS_PER_WORKER = 1000
MAX_WORKERS = 10


def worker_id() -> str | None:
    """ "gw0", "gw1", ... inside an xdist worker; None in a serial run or the controller."""
    return os.environ.get("PYTEST_XDIST_WORKER") or None


def worker_index() -> int:
    worker = worker_id()
    if worker is None or not worker.startswith("gw") or not worker[2:].isdigit():
        return 0
    return int(worker[2:]) % MAX_WORKERS


def worker_port_range() -> range | None:
    """This worker's SSH forward ports, or None outside xdist (any free port will do)."""
    if worker_id() is None:
        return None
    start = PORT_BASE + worker_index() * PORTS_PER_WORKER
    return range(start, start + PORTS_PER_WORKER)


def own_results_dir(root: Path) -> Path:
    """Where this process writes evidence: the run's results dir, or results/<worker>/."""
    worker = worker_id()
    return root / worker if worker else root
