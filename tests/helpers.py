"""Small helpers shared by the harness's own tests (fixtures are in conftest.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def process_gone(pid: int) -> bool:
    """True once no process has this pid (a QEMU the harness killed)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


GIT_IDENTITY = ["-c", "user.name=Test", "-c", "user.email=test@example.org"]


def git(repo: Path, *args: str) -> str:
    """git in `repo` with a test identity; its stdout, stripped (raises on failure)."""
    result = subprocess.run(
        ["git", *GIT_IDENTITY, *args], cwd=repo, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()
