"""Disk full anywhere (unpack, worktree, build, results): one DiskFull naming the
directory, what the step needs and PHH_CACHE, raised without a traceback chain; each step
writes into a scratch place first (harness.core.fsutil), so what was half written is gone.

A write fails with ENOSPC/EDQUOT (an OSError), or a tool run by the harness says so in
its output (tar's "Cannot write: No space left on device", git's "unable to write").
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.core.errors import DiskFull

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
DISK_FULL_OUTPUT = re.compile(
    r"No space left on device|Disk quota exceeded|ENOSPC|Wrote only \d+ of"
)
LOW_SPACE_BYTES = 16 << 20  # a file system with less free than this after a failure is full

# What each step writes, measured on Debian's linux-source-6.1 (6.1.192, 2026-12-06).
UNPACK_NEEDS = "about 1.9 GiB (the tree 1.4 GiB, its git objects 0.3 GiB, the tarball)"
WORKTREE_NEEDS = "about 1.5 GiB per worktree, 2 GiB once built"
BUILD_NEEDS = "about 0.6 GiB of objects in the worktree, 5 MiB per kernel, ccache up to 1 GiB"
RESULTS_NEEDS = "a few MiB per scenario (console logs, observations, plots)"
RUN_NEEDS = "about 12 GiB for a cold main job (3 GiB for one revision)"


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, DiskFull) or (
        isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS
    )


def is_full(where: Path) -> bool:
    """The file system of `where` has (nearly) no room left."""
    return _free_bytes(where) < LOW_SPACE_BYTES


def output_says_disk_full(output: str, where: Path) -> bool:
    """A tool's output names a full disk, or the file system it wrote to is (nearly) full."""
    return bool(DISK_FULL_OUTPUT.search(output)) or _free_bytes(where) < LOW_SPACE_BYTES


def disk_full(
    where: Path, doing: str, needs: str = RUN_NEEDS, *, results: bool = False
) -> DiskFull:
    """The one error: the directory, its free space, what `doing` needs, and what to do
    (for the results directory: write them elsewhere; else: PHH_CACHE elsewhere)."""
    cache = os.environ.get("PHH_CACHE") or f"{Path.home()}/.cache/phh"
    if results:
        elsewhere = (
            "or write the results elsewhere (--results DIR, or PHH_RESULTS); the caches "
            f"are under PHH_CACHE ({cache}: {RUN_NEEDS}); then run again: this run's "
            "results are incomplete"
        )
    else:
        elsewhere = (
            f"or point PHH_CACHE (now {cache}) at a larger file system ({RUN_NEEDS}); "
            "then run again: what was half written has been removed"
        )
    return DiskFull(
        f"no space left on the file system of {where} ({_free_text(where)} free now) while {doing}",
        f"{doing} needs {needs}: free space there (df -h {where}), {elsewhere}",
    )


def from_os_error(error: OSError, fallback: Path, doing: str = "writing") -> DiskFull:
    """DiskFull for a raw ENOSPC/EDQUOT from a write nobody guarded: at its file's directory."""
    where = Path(error.filename).parent if error.filename else fallback
    return disk_full(where, doing)


@contextmanager
def disk_full_as_error(
    where: Path, doing: str, needs: str = RUN_NEEDS, *, results: bool = False
) -> Iterator[None]:
    """A write in the block that fails for lack of space, or a tool that said so (a
    DiskFull from inside), raises DiskFull for `where` and this step (`from None`: the
    user sees one error, not the OSError's traceback)."""
    try:
        yield
    except (OSError, DiskFull) as error:
        if not is_disk_full(error):
            raise
        full = disk_full(where, doing, needs, results=results)
        if isinstance(error, DiskFull) and "\n" in error.message:  # a tool's lines, its log
            full = DiskFull(f"{full.message}:\n{error.message.split(chr(10), 1)[1]}", full.hint)
        raise full from None


def _existing(path: Path) -> Path:
    """The nearest existing directory at or above `path` (a scratch dir may be gone)."""
    path = Path(path)
    while not path.is_dir() and path != path.parent:
        path = path.parent
    return path


def _free_bytes(where: Path) -> int:
    try:
        return shutil.disk_usage(_existing(where)).free
    except OSError:
        return LOW_SPACE_BYTES  # cannot tell: do not claim a full disk


def _free_text(where: Path) -> str:
    try:
        free = shutil.disk_usage(_existing(where)).free
    except OSError:
        return "unknown"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if free >= size:
            return f"{free / size:.1f} {unit}"
    return f"{free} bytes"
