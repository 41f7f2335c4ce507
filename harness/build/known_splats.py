"""Splats a series declares as known defects it keeps on purpose (faithful port).

`<series>/known-splats.txt` holds one shell-style pattern (fnmatch) per line over the
stable splat ids of harness.observe.dmesg, e.g. `lockdep:inconsistent_lock_state:&zone->lock:*`;
'#' starts a comment. A line is one defect: when the kernel can report it in several forms
(lockdep prints whichever of two reports it meets first), the forms go on one line,
separated by " | ". A scenario that requires a defect to show requires one of its forms.

A series without the file (stock, the fixed revision, a user's mbox) knows
none, so every splat on it fails the run.
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


def forms(pattern: str) -> list[str]:
    """The alternative patterns of one known-defect line."""
    return [form.strip() for form in pattern.split(" | ") if form.strip()]


def is_known(splat_id: str, patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(splat_id, form) for pattern in patterns for form in forms(pattern))
