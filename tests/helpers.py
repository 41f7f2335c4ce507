"""Small helpers shared by the harness's own tests (fixtures are in conftest.py)."""

from __future__ import annotations

import os


def process_gone(pid: int) -> bool:
    """True once no process has this pid (a QEMU the harness killed)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False
