"""Where one session of the scenario suite writes, so that no session destroys another's.

* Default (no `--results`): the root is `./results` (or `$PHH_RESULTS`); each run writes
  `<root>/<stamp>/` and `<root>/latest` points at the last one that ran scenarios. Runs
  past the newest `KEEP_RUNS` are pruned, never the one `latest` names.
* `--results DIR`: the run writes exactly `DIR` (CI shards, the mutant campaign). An earlier
  run found there is moved aside to `DIR.<stamp>`, never deleted (past the newest
  `KEEP_RUNS` of those, the oldest go).
* A session that runs no scenario (`--collect-only`, a `-k` that selects nothing, a pytest
  session over tests/ that loads the plugin) leaves everything as it found it: the
  directory it made is removed and an earlier run it moved aside comes back.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

KEEP_RUNS = 20
LATEST = "latest"
STAMP_FORMAT = "%Y%m%d-%H%M%S"
STAMP = re.compile(r"^\d{8}-\d{6}(-\d+)?$")
# Files by which a directory is recognised as an earlier run's results.
RESULT_MARKERS = ("finished", "junit.xml", "measurements.jsonl", "verdict.txt", "bisect.json")


@dataclass(frozen=True)
class RunDir:
    """The directory one session writes; `stamped` when it is `<root>/<stamp>/`."""

    path: Path
    root: Path
    stamped: bool
    moved_aside: Path | None = None  # an earlier run at `path`, moved here by claim()


def plan(explicit: str | None, default_root: Path, now: float | None = None) -> RunDir:
    """The session's run directory (nothing is created yet)."""
    if explicit:
        path = Path(explicit).resolve()
        return RunDir(path=path, root=path.parent, stamped=False)
    root = default_root.resolve()
    stamp = time.strftime(STAMP_FORMAT, time.localtime(now))
    path, n = root / stamp, 1
    while path.exists():
        n += 1
        path = root / f"{stamp}-{n}"
    return RunDir(path=path, root=root, stamped=True)


def holds_results(path: Path) -> bool:
    return path.is_dir() and (
        any((path / marker).exists() for marker in RESULT_MARKERS)
        or any(path.glob("*/console.log"))
    )


def claim(run: RunDir) -> RunDir:
    """Make the run directory; an explicit one holding an earlier run is emptied by moving
    that run aside to `<dir>.<stamp>` (its finish time, else its last change)."""
    moved = None
    if not run.stamped and holds_results(run.path):
        moved = _aside_name(run.path)
        run.path.rename(moved)
    run.path.mkdir(parents=True, exist_ok=True)
    return RunDir(run.path, run.root, run.stamped, moved)


def _aside_name(path: Path) -> Path:
    finished = path / "finished"
    try:
        when = time.strptime(finished.read_text().strip(), "%Y-%m-%dT%H:%M:%SZ")
        stamp = time.strftime(STAMP_FORMAT, when)
    except (OSError, ValueError):
        stamp = time.strftime(STAMP_FORMAT, time.localtime(path.stat().st_mtime))
    aside, n = path.with_name(f"{path.name}.{stamp}"), 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.{stamp}-{n}")
    return aside


def finish(run: RunDir, ran_scenarios: bool) -> None:
    """After the session: keep it (point `latest` at it, prune the oldest), or, if it ran
    nothing, leave the disk as the session found it."""
    if not ran_scenarios:
        shutil.rmtree(run.path, ignore_errors=True)
        if run.moved_aside is not None and not run.path.exists():
            run.moved_aside.rename(run.path)
        if run.stamped:
            _remove_if_empty(run.root)
        return
    if run.stamped:
        _point_latest(run)
        prune(sorted(p for p in run.root.iterdir() if p.is_dir() and STAMP.match(p.name)),
              keep=run.path)  # fmt: skip
    else:
        prefix = run.path.name + "."
        asides = [p for p in run.root.glob(prefix + "*") if STAMP.match(p.name[len(prefix) :])]
        prune(sorted(asides), keep=run.path)


def prune(runs_oldest_first: list[Path], keep: Path) -> None:
    excess = len(runs_oldest_first) - KEEP_RUNS
    for old in runs_oldest_first[: max(excess, 0)]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


def _point_latest(run: RunDir) -> None:
    link = run.root / LATEST
    scratch = run.root / f".{LATEST}.{os.getpid()}"
    scratch.unlink(missing_ok=True)
    scratch.symlink_to(run.path.name)
    os.replace(scratch, link)


def _remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not empty (earlier runs), or not there
        directory.rmdir()


def resolve_run(path: Path) -> Path:
    """A run directory from what a user names: a run itself, or a root with `latest`."""
    latest = path / LATEST
    return latest.resolve() if latest.is_symlink() or latest.is_dir() else path
