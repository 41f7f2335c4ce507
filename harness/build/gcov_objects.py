"""What a coverage build profiles, and what it keeps for the report.

A coverage kernel (kconfigs/coverage.config: CONFIG_GCOV_KERNEL) profiles only the objects
whose C files the series changes: make gets `GCOV_PROFILE_<name>.o=y` for each, so the
rest of the kernel runs at full speed under TCG. kbuild matches that variable by the
object's base name, in every directory: a name that another C file of the tree shares is
profiled only when that other file's directory does not opt out of profiling (boot code,
the vDSO and gcov itself say `GCOV_PROFILE := n`).

Inline functions of a changed header run inside the objects that include it: the header's
lines are counted wherever a profiled object uses them.

The bundle (builds/<key>/gcov/) makes the report independent of the worktree, which the next
build may take over: every profiled object's .gcno, the series' diff (pristine..HEAD) and
the changed files as the series left them. When the harness applied its instrumentation
overlay on top, the lines the overlay added (in HEAD's numbering) are listed apart, so that
the report counts the series' own lines only.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from harness.build.source import run_git

ARCH = "x86"  # the guest kernel's SRCARCH
BUNDLE = "gcov"
MANIFEST = "manifest.json"
DIFF = "series.diff"
OVERLAY_LINES = "overlay-lines.json"  # file -> lines the instrumentation overlay added
HUNK_HEADER = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")


@dataclass(frozen=True)
class Profiled:
    """The objects a coverage build profiles, and the changed C files it could not."""

    objects: tuple[str, ...]  # tree-relative object paths, e.g. mm/page_alloc.o
    refused: tuple[str, ...] = ()  # C files whose base name a no-profiling directory shares

    def make_variables(self) -> tuple[str, ...]:
        return tuple(f"GCOV_PROFILE_{Path(obj).name}=y" for obj in self.objects)


def is_coverage_config(config: Path) -> bool:
    return "CONFIG_GCOV_KERNEL=y" in config.read_text().splitlines()


def changed_files(tree: Path, base: str) -> list[str]:
    """Files the series changes (added or modified; not deleted), tree-relative."""
    out = run_git(["diff", "--name-only", "--diff-filter=AM", base, "HEAD"], tree).stdout
    return sorted(line for line in out.splitlines() if line)


def objects_to_profile(tree: Path, base: str) -> Profiled:
    objects, refused = [], []
    for source in changed_files(tree, base):
        if not source.endswith(".c"):
            continue
        name = Path(source).name
        others = [p for p in _files_named(tree, name) if p != source and _built_here(p)]
        if any(_opts_out_of_profiling(tree / Path(p).parent) for p in others):
            refused.append(source)
        else:
            objects.append(source[:-2] + ".o")
    return Profiled(tuple(objects), tuple(refused))


def _built_here(path: str) -> bool:
    """Not in another architecture's directory (the guest kernel is x86-64)."""
    return not path.startswith("arch/") or path.startswith(f"arch/{ARCH}/")


def _files_named(tree: Path, name: str) -> list[str]:
    out = run_git(["ls-files", "--", name, f"*/{name}"], tree).stdout
    return [line for line in out.splitlines() if line]


def _opts_out_of_profiling(directory: Path) -> bool:
    makefile = directory / "Makefile"
    return makefile.is_file() and "GCOV_PROFILE" in makefile.read_text(errors="replace")


def write_bundle(
    tree: Path, base: str, profiled: Profiled, target: Path, overlay_commits: int = 0
) -> None:
    """gcno files, the series' diff and the changed files, into `target` (a new directory)."""
    for obj in profiled.objects:
        gcno = tree / (obj[:-2] + ".gcno")
        if not gcno.is_file():  # an object kbuild did not build (its option is off)
            continue
        (target / "gcno" / gcno.relative_to(tree)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(gcno, target / "gcno" / gcno.relative_to(tree))
    for name in changed_files(tree, base):
        (target / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(tree / name, target / "src" / name)
    diff = run_git(["diff", "--no-color", "--no-ext-diff", base, "HEAD"], tree).stdout
    (target / DIFF).write_text(diff)
    if overlay_commits:  # the harness's own commits on top of the series
        series_head = run_git(["rev-parse", f"HEAD~{overlay_commits}"], tree).stdout.strip()
        overlay = run_git(["diff", "-U0", "--no-color", "--no-ext-diff", series_head, "HEAD"], tree)
        (target / OVERLAY_LINES).write_text(json.dumps(added_lines(overlay.stdout)) + "\n")
    manifest = {
        "tree": str(tree),
        "base": base,
        "head": run_git(["rev-parse", "HEAD"], tree).stdout.strip(),
        "overlay_commits": overlay_commits,
        "objects": list(profiled.objects),
        "refused": list(profiled.refused),
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


def is_current(bundle: Path) -> bool:
    """Whether the bundle says how many overlay commits it left out (older ones did not)."""
    try:
        return "overlay_commits" in read_manifest(bundle)
    except (OSError, ValueError):
        return False


def read_manifest(bundle: Path) -> dict[str, object]:
    return json.loads((bundle / MANIFEST).read_text())


def added_lines(diff: str) -> dict[str, list[int]]:
    """The new-side line numbers each file gains in a `git diff -U0` (no context lines:
    every line a hunk spans on the new side is an added one)."""
    added: dict[str, list[int]] = {}
    name: str | None = None
    for line in diff.splitlines():
        if line.startswith("+++ "):
            name = None if line == "+++ /dev/null" else line.removeprefix("+++ b/")
        elif name is not None and (hunk := HUNK_HEADER.match(line)):
            start, count = int(hunk[1]), int(hunk[2] if hunk[2] is not None else 1)
            added.setdefault(name, []).extend(range(start, start + count))
    return added


def overlay_lines(bundle: Path) -> dict[str, set[int]]:
    """The lines the instrumentation overlay added, by file (none: no overlay applied)."""
    path = bundle / OVERLAY_LINES
    if not path.is_file():
        return {}
    return {name: set(lines) for name, lines in json.loads(path.read_text()).items()}
