"""The harness's instrumentation overlay (patches/instrumentation/), applied on top of a
hinting revision's series unless the tree provides it already.

The judge reads what the overlay adds to a hinting kernel: `hinted_order_<o>` lines in
/proc/zoneinfo, debugfs page_hinting/state with the per-zone activity counters, the
react_delay_ms test hook, and fail_function on virtqueue_add_inbuf(). A revision as posted
to the list has none of that, and one copy serves every revision.

Each overlay patch names what it provides in `Harness-provides: <file> <text>` trailers. A
patch whose every text is in its file after the series is *present* (a revision that carries
its own copy, or a mutant series built on the overlay) and is not applied again; the rest
are applied with `git am`, all or none. Where one does not apply (a revision that rewrote
the code it hooks), the tree is put back to the series alone and the result names the
patch and its first failing hunk in one line: the kernel is built without instrumentation
and the scenarios judge what needs none (harness/judge/reduced.py).

What happened is recorded in the worktree's series marker (kernel.SERIES_MARKER), so that a
reused worktree still knows it, and in the build's meta.json.
"""

from __future__ import annotations

import enum
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from harness.build.series import Series, apply_series, failed_hunks, load_series
from harness.build.source import run_git
from harness.core.errors import PatchApplyError, SeriesError
from harness.core.paths import PATCHES_DIR
from harness.core.progress import step

OVERLAY_DIR = PATCHES_DIR / "instrumentation"
PROVIDES = re.compile(r"^Harness-provides:[ \t]*(\S+)[ \t]+(.+?)[ \t]*$", re.MULTILINE)


class OverlayStatus(enum.Enum):
    APPLIED = "applied"  # the harness applied what the tree lacked
    PRESENT = "present"  # the tree provides all of it (the series carries it)
    FAILED = "not applied"  # a patch did not apply: built without it, judged reduced


@dataclass(frozen=True)
class Provides:
    """One `Harness-provides:` trailer: `text` occurs in `path` once the patch is in."""

    path: str
    text: str

    def found_in(self, tree: Path) -> bool:
        try:
            return self.text in (tree / self.path).read_text(errors="replace")
        except OSError:  # the file does not exist in this revision
            return False


@dataclass(frozen=True)
class OverlayPatch:
    path: Path
    provides: tuple[Provides, ...]

    @property
    def name(self) -> str:
        return self.path.name

    def present_in(self, tree: Path) -> bool:
        return all(marker.found_in(tree) for marker in self.provides)


@dataclass(frozen=True)
class Overlay:
    directory: Path
    patches: tuple[OverlayPatch, ...]
    digest: str  # of the patches' contents (series.series_digest): in the worktree marker


@dataclass(frozen=True)
class OverlayResult:
    """What the overlay did to one tree."""

    status: OverlayStatus
    applied: tuple[str, ...] = ()  # patch file names applied by the harness
    present: tuple[str, ...] = ()  # patch file names the tree provided
    failed_patch: str = ""  # FAILED: the patch that did not apply ...
    failed_hunk: str = ""  # ... and its first failing hunk ("file:line @@ ... @@ func")

    @property
    def reduced(self) -> bool:
        """The kernel has no instrumentation: judge only what needs none."""
        return self.status is OverlayStatus.FAILED

    def line(self, revision: str) -> str:
        """One line for the run's output and report."""
        if self.status is OverlayStatus.FAILED:
            where = f"hunk {self.failed_hunk}" if self.failed_hunk else "no hunk named"
            return (
                f"{revision}: instrumentation overlay not applied ({self.failed_patch}, "
                f"{where}): built without instrumentation, verdicts reduced"
            )
        if self.status is OverlayStatus.PRESENT:
            return f"{revision}: instrumentation provided by the series itself"
        kept = f" ({len(self.present)} provided by the series)" if self.present else ""
        return f"{revision}: instrumentation overlay applied: {len(self.applied)} patches{kept}"

    def to_json(self) -> dict[str, object]:
        return {
            "status": self.status.value,
            "applied": list(self.applied),
            "present": list(self.present),
            "failed_patch": self.failed_patch,
            "failed_hunk": self.failed_hunk,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> OverlayResult:
        def names(key: str) -> tuple[str, ...]:
            value = data.get(key) or []
            return tuple(str(v) for v in value) if isinstance(value, list) else ()

        return cls(
            OverlayStatus(data["status"]),
            names("applied"),
            names("present"),
            str(data.get("failed_patch") or ""),
            str(data.get("failed_hunk") or ""),
        )


class _Revision(Protocol):
    hinting: bool


def for_revision(revision: _Revision) -> Overlay | None:
    """The overlay a revision's build applies: every hinting revision gets it (where its
    tree lacks it); stock and series judged like stock do not."""
    return load_overlay() if revision.hinting else None


@functools.cache
def load_overlay(directory: Path = OVERLAY_DIR) -> Overlay:
    """The overlay's patches in `series` order, each with what it provides."""
    series = load_series(directory)
    patches = []
    for path in series.patches:
        provides = tuple(
            Provides(m.group(1), m.group(2)) for m in PROVIDES.finditer(path.read_text())
        )
        if not provides:
            raise SeriesError(
                f"overlay patch {path} has no 'Harness-provides: <file> <text>' trailer",
                "add one per file it instruments (a text it adds there) to its commit "
                "message, so that a tree that already has it is recognised",
            )
        patches.append(OverlayPatch(path, provides))
    return Overlay(directory, tuple(patches), series.digest)


def missing(tree: Path, overlay: Overlay) -> tuple[OverlayPatch, ...]:
    """The overlay patches whose instrumentation `tree` does not provide."""
    return tuple(patch for patch in overlay.patches if not patch.present_in(tree))


def apply_overlay(tree: Path, overlay: Overlay) -> OverlayResult:
    """Apply the patches `tree` lacks on top of its HEAD, all or none (see the module doc)."""
    lacking = missing(tree, overlay)
    present = tuple(p.name for p in overlay.patches if p not in lacking)
    if not lacking:
        return OverlayResult(OverlayStatus.PRESENT, present=present)
    start = run_git(["rev-parse", "HEAD"], tree).stdout.strip()
    with step(f"applying the instrumentation overlay ({len(lacking)} patches)", phase="git"):
        try:
            apply_series(tree, _as_series(overlay, lacking))
            return OverlayResult(OverlayStatus.APPLIED, tuple(p.name for p in lacking), present)
        except PatchApplyError:
            result = _diagnose(tree, overlay, lacking, present)
            run_git(["reset", "-q", "--hard", start], tree)
            return result


def _as_series(overlay: Overlay, patches: tuple[OverlayPatch, ...]) -> Series:
    files = tuple(p.path for p in patches)
    return Series(overlay.directory.name, files, overlay.digest, tuple(str(f) for f in files))


def _diagnose(
    tree: Path, overlay: Overlay, lacking: tuple[OverlayPatch, ...], present: tuple[str, ...]
) -> OverlayResult:
    """Apply the patches one by one to find the one that fails and its first hunk (the
    tree is left with the ones before it applied)."""
    for patch in lacking:
        try:
            apply_series(tree, _as_series(overlay, (patch,)))
        except PatchApplyError as error:
            hunks = failed_hunks(tree, patch.path)
            hunk = hunks[0] if hunks else error.message.splitlines()[-1]
            return OverlayResult(
                OverlayStatus.FAILED, present=present, failed_patch=patch.name, failed_hunk=hunk
            )
    # All applied one by one though not together: should not happen; say so plainly.
    return OverlayResult(
        OverlayStatus.FAILED, present=present, failed_patch=lacking[0].name, failed_hunk=""
    )


# --- the record in the worktree ---------------------------------------------------------------


def record(marker: dict[str, object], result: OverlayResult | None) -> dict[str, object]:
    """The worktree marker with the overlay's outcome (None: no overlay was asked for)."""
    return {**marker, "overlay": result.to_json() if result else None}


def recorded(marker_file: Path) -> OverlayResult | None:
    """The outcome a worktree marker records; None for no overlay (or an old marker)."""
    try:
        data = json.loads(marker_file.read_text()).get("overlay")
        return OverlayResult.from_json(data) if isinstance(data, dict) else None
    except (OSError, ValueError, KeyError):
        return None
