"""Splats a series declares as known defects it keeps on purpose (faithful port).

`<series>/known-splats.txt` holds one shell-style pattern (fnmatch) per line over the
stable splat ids of harness.dmesg, e.g. `lockdep:inconsistent_lock_state:&zone->lock:*`;
'#' starts a comment. A series without the file (stock, the fixed revision, a user's mbox)
knows none, so every splat on it fails the run.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from pathlib import Path

KNOWN_SPLATS_FILE = "known-splats.txt"


def load_known_splats(series: Path | None) -> set[str]:
    """The patterns of `<series>/known-splats.txt` (empty when there is none)."""
    if series is None or not series.is_dir():
        return set()
    path = series / KNOWN_SPLATS_FILE
    if not path.exists():
        return set()
    patterns = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            patterns.add(line)
    return patterns


def is_known(splat_id: str, patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(splat_id, pattern) for pattern in patterns)
