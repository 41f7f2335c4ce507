"""Find quoted C lines in the seed patch, so tests can cite the line they mirror.

The seed is a mail whose line breaks were lost: quoted lines run together, each prefixed
with "> " and the diff's "+"/"-". Both the seed and a citation are normalised the same way
(markers dropped, whitespace collapsed) before searching.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

from harness.core.errors import HarnessError

# A copy of shared/seed's mail (public list archive), so the citation tests run anywhere.
DEFAULT_SEED = (
    Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "seed" / "000_4fa911e06f5d5833.txt"
)
_QUOTE_MARKER = re.compile(r"(?:^|\s)>\s[+-]?")


def seed_path() -> Path:
    return Path(os.environ.get("PHH_SEED", DEFAULT_SEED))


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", _QUOTE_MARKER.sub(" ", text)).strip()


@cache
def _seed_text(path: Path) -> str:
    try:
        return normalise(path.read_text(encoding="utf-8", errors="replace"))
    except OSError as exc:
        raise HarnessError(
            f"cannot read the seed patch {path}: {exc.strerror}",
            "set PHH_SEED to the v2 'mm: Introduce Hinted pages' mail",
        ) from exc


def locate(citation: str, path: Path | None = None) -> int:
    """Offset of `citation` in the normalised seed; HarnessError if it is not there."""
    path = path or seed_path()
    offset = _seed_text(path).find(normalise(citation))
    if offset < 0:
        raise HarnessError(
            f"citation not found in seed {path}: {citation!r}",
            "copy the C line exactly as the seed patch has it",
        )
    return offset
