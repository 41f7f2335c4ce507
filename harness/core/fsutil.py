"""Files written atomically (a scratch directory or file, then one rename), and an exclusive
lock on a file."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


@contextmanager
def atomic_directory(target: Path, *, replace: bool = True) -> Iterator[Path]:
    """Yield a scratch directory beside `target`; when the block ends without an exception
    it becomes `target` in one rename, so a reader never sees a half-written one.

    An existing `target` is replaced (`replace`), or kept when another writer got there
    first (`replace=False`, for content-keyed caches). On an exception the scratch goes
    and `target` is untouched."""
    scratch = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        yield scratch
        if target.exists():
            if not replace:
                return
            retired = target.with_name(f".{target.name}.{os.getpid()}.old")
            target.rename(retired)
            shutil.rmtree(retired, ignore_errors=True)
        try:
            scratch.rename(target)
        except OSError:
            if not target.exists():  # not a concurrent writer's win: a real failure
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def write_text_atomic(path: Path, text: str) -> None:
    """`path` holds `text` whole or keeps what it held (a full disk leaves no stub)."""
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        scratch.write_text(text)
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)


@contextmanager
def exclusive_lock(path: Path, waiting: str | None = None) -> Iterator[None]:
    """Hold an flock on `path` (created if missing); when another process holds it, log
    `waiting` and wait."""
    with path.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                log.info("%s", waiting)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield
