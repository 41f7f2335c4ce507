"""Which kernel a build request made: the request (source, series, overlay, config fragments,
toolchain) maps to the key of the build it stored, so that asking again finds the kernel
without taking over, resetting or configuring a worktree.

Without it, a request whose kernel was in the cache still took over the newest built
worktree of its family and applied its series there (1.6 s of git), and that tree then
carried sources its build outputs were not made from: the next edit that took it over
made 1165 objects again (42 s of make, where the previous edit's tree takes 6 s).

An entry is only a pointer: the build cache (kernel.cached_build) still decides whether
the kernel is there and complete; a missing or broken one sends the request down the
worktree path as before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from harness.core.fsutil import write_text_atomic
from harness.core.paths import cache_dir

INDEX_DIR = "build-requests"


def request_digest(parts: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


def _entry(digest: str) -> Path:
    return cache_dir(INDEX_DIR) / f"{digest}.json"


def remembered(digest: str) -> tuple[str, bool] | None:
    """(build key, coverage build?) a request with this digest made; None if unknown."""
    try:
        data = json.loads(_entry(digest).read_text())
        return str(data["key"]), bool(data["coverage"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember(digest: str, key: str, *, coverage: bool) -> None:
    write_text_atomic(_entry(digest), json.dumps({"key": key, "coverage": coverage}) + "\n")
