"""Splats a series declares as known defects it keeps on purpose (faithful port)."""

from __future__ import annotations

from pathlib import Path

KNOWN_SPLATS_FILE = "known-splats.txt"


def load_known_splats(series: Path | None) -> set[str]:
    """Stable splat ids (harness.dmesg) from `<series>/known-splats.txt`; '#' comments.

    A series without the file (stock, the fixed revision, a user's mbox) knows none.
    """
    if series is None or not series.is_dir():
        return set()
    path = series / KNOWN_SPLATS_FILE
    if not path.exists():
        return set()
    ids = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            ids.add(line)
    return ids
