"""Patch coverage report: the lines a series changes, and which of them ran.

gcov (gcc's) reads each guest's counters against the build's gcno files, through gcovr,
which writes one tracefile per guest and merges them into Cobertura XML. diff-cover maps that
XML onto the series' diff (pristine..HEAD): the executable changed lines of each file and
the ones that never ran. This module only lays the files out for them and writes the
results as people read them:

* coverage.md: a table per changed file and every changed line that never ran, with its
  code and the function it is in (the function from gcov's line data);
* coverage.xml: Cobertura, of the changed files (CI systems render it);
* coverage.json: the same figures as data; coverage.txt: the one-line total.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.build.gcov_objects import DIFF, overlay_lines, read_manifest
from harness.core.errors import HarnessError
from harness.observe.gcov import KERNEL, MISSING

log = logging.getLogger("harness.coverage")


class CoverageError(HarnessError):
    """The coverage report cannot be made (no counters, a tool failed)."""


@dataclass(frozen=True)
class UncoveredLine:
    file: str
    line: int
    function: str
    code: str


@dataclass(frozen=True)
class FileCoverage:
    file: str
    executable: int
    ran: int

    @property
    def percent(self) -> float:
        return 100.0 * self.ran / self.executable if self.executable else 100.0


@dataclass
class PatchCoverage:
    """What ran of the executable lines a series adds or changes."""

    label: str
    files: list[FileCoverage]
    uncovered: list[UncoveredLine]
    guests: int  # collections that contributed counters
    silent: list[str] = field(default_factory=list)  # collections that could not be read
    not_profiled: list[str] = field(default_factory=list)  # changed C files not profiled

    @property
    def executable(self) -> int:
        return sum(f.executable for f in self.files)

    @property
    def ran(self) -> int:
        return sum(f.ran for f in self.files)

    @property
    def percent(self) -> float:
        return 100.0 * self.ran / self.executable if self.executable else 100.0

    def total_line(self) -> str:
        return (
            f"patch coverage of {self.label}: {self.ran} of {self.executable} executable "
            f"lines the series adds or changes ran ({self.percent:.1f} %), "
            f"counters from {self.guests} guest boots"
        )


# --- laying out and running the tools --------------------------------------------------------


def _run(tool: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(tool, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise CoverageError(
            f"{what} failed (exit {result.returncode}) in {cwd}:\n{tail}",
            "run the command again by hand with --verbose to see why: " + " ".join(tool),
        )
    return result


def gcovr(*args: str, cwd: Path, what: str) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-m", "gcovr", *args], cwd, what)


def _changed_files_filter(src: Path, files: list[str]) -> list[str]:
    """gcovr --filter for each changed file (absolute: gcovr matches real paths)."""
    args = []
    for name in files:
        args += ["--filter", re.escape(str((src / name).resolve())) + "$"]
    return args


def tracefile(collection: Path, bundle: Path, files: list[str], out: Path) -> Path:
    """gcovr's JSON of one collection: its gcda files beside the bundle's gcno files."""
    work = out / "objects"
    shutil.rmtree(work, ignore_errors=True)
    for gcda in collection.rglob("*.gcda"):
        rel = gcda.relative_to(collection)
        gcno = bundle / "gcno" / rel.with_suffix(".gcno")
        if not gcno.is_file():
            continue
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(gcda, work / rel)
        os.symlink(gcno, (work / rel).with_suffix(".gcno"))
    trace = out / "trace.json"
    src = bundle / "src"
    gcovr(
        "--root", str(src), *_changed_files_filter(src, files),
        # the gcno files name every header their object includes; only the changed files
        # are in the bundle, and only they are reported
        "--gcov-ignore-errors=source_not_found", "--gcov-ignore-errors=no_working_dir_found",
        "--json", str(trace), str(work),
        cwd=src, what=f"gcovr on {collection}",
    )  # fmt: skip
    return trace


def merge(traces: list[Path], src: Path, out: Path) -> tuple[Path, Path]:
    """One Cobertura XML and one gcovr JSON from every guest's tracefile."""
    xml, merged = out / "coverage.xml", out / "gcovr.json"
    adds = [arg for trace in traces for arg in ("--add-tracefile", str(trace))]
    # A release and a debug build inline differently: one function can start on another
    # line in each (free_pcp_prepare: 1550 and 1570). Lines are what is merged here.
    merge_functions = "--merge-mode-functions=merge-use-line-min"
    gcovr("--root", str(src), *adds, merge_functions, "--cobertura", str(xml),
          "--cobertura-pretty", "--json", str(merged),
          cwd=src, what="gcovr merging the guests' tracefiles")  # fmt: skip
    return xml, merged


def diff_cover(xml: Path, diff: Path, sources: Path, out: Path) -> dict:
    """diff-cover's figures for the diff: per file, covered and violation (never ran) lines.

    diff-cover reads the sources relative to a git work tree: `sources` is made one."""
    if not (sources / ".git").exists():
        subprocess.run(["git", "init", "-q", str(sources)], check=True)
    report = out / "diff-cover.json"
    _run(
        [sys.executable, "-m", "diff_cover.diff_cover_tool", str(xml), "--diff-file", str(diff),
         "--format", f"json:{report},markdown:{out / 'diff-cover.md'}"],
        sources, "diff-cover",
    )  # fmt: skip
    return json.loads(report.read_text())


def without_lines(stats: dict, dropped: dict[str, set[int]]) -> dict:
    """diff-cover's figures less the `dropped` lines of each file (the instrumentation
    overlay's: patch coverage counts the series' own lines); a file left with no line
    goes."""
    if not dropped:
        return stats
    kept = {}
    for name, figures in stats.get("src_stats", {}).items():
        drop = dropped.get(name, set())
        covered = [n for n in figures.get("covered_lines", []) if n not in drop]
        missing = [n for n in figures.get("violation_lines", []) if n not in drop]
        if covered or missing:
            kept[name] = {**figures, "covered_lines": covered, "violation_lines": missing}
    return {**stats, "src_stats": kept}


# --- the report ------------------------------------------------------------------------------


def line_functions(gcovr_json: Path) -> dict[tuple[str, int], str]:
    data = json.loads(gcovr_json.read_text())
    return {
        (f["file"], line["line_number"]): line.get("function_name") or "?"
        for f in data.get("files", [])
        for line in f.get("lines", [])
    }


def patch_coverage(
    label: str, stats: dict, functions: dict[tuple[str, int], str], sources: Path
) -> PatchCoverage:
    files, uncovered = [], []
    for name, figures in sorted(stats.get("src_stats", {}).items()):
        ran = len(figures.get("covered_lines", []))
        missing = sorted(figures.get("violation_lines", []))
        files.append(FileCoverage(name, ran + len(missing), ran))
        text = (sources / name).read_text(errors="replace").splitlines()
        for number in missing:
            code = text[number - 1].strip() if number <= len(text) else ""
            uncovered.append(UncoveredLine(name, number, functions.get((name, number), "?"), code))
    return PatchCoverage(label, files, uncovered, guests=0)


def find_collections(results: Path) -> dict[Path, list[Path]]:
    """gcov-N directories under a run's results, by the bundle they belong to."""
    found: dict[Path, list[Path]] = {}
    for marker in sorted(results.rglob(f"gcov-*/{KERNEL}")):
        bundle = Path(json.loads(marker.read_text())["bundle"])
        found.setdefault(bundle, []).append(marker.parent)
    return found


def build_report(label: str, collections: dict[Path, list[Path]], out: Path) -> PatchCoverage:
    """Every step from the guests' counters to coverage.md, .xml, .json and .txt in `out`.

    `collections`: bundle -> its gcov-N directories. Several bundles are builds of one
    series in several flavours (release, debug): their guests' counters add up, line by
    line, against the one diff."""
    out.mkdir(parents=True, exist_ok=True)
    first = next(iter(collections))
    sources = out / "sources"
    shutil.rmtree(sources, ignore_errors=True)
    shutil.copytree(first / "src", sources)
    files = [str(p.relative_to(sources)) for p in sources.rglob("*") if p.is_file()]
    traces, silent, index = [], [], 0
    for bundle, found in collections.items():
        _same_series(first, bundle)
        for collection in found:
            missing = collection / MISSING
            if missing.exists() or not any(collection.rglob("*.gcda")):
                reason = missing.read_text().strip() if missing.exists() else "no gcda files"
                silent.append(f"{collection}: {reason}")
                continue
            index += 1
            work = out / "guests" / f"{index:03d}"
            work.mkdir(parents=True, exist_ok=True)
            (work / "from.txt").write_text(f"{collection}\n")
            traces.append(tracefile(collection, bundle, files, work))
    if not traces:
        count = sum(len(found) for found in collections.values())
        raise CoverageError(
            f"no guest of {label} left gcov counters ({count} collections)",
            "see missing.txt in the gcov-N directories of the run's evidence",
        )
    xml, merged = merge(traces, first / "src", out)
    stats = without_lines(diff_cover(xml, first / DIFF, sources, out), overlay_lines(first))
    result = patch_coverage(label, stats, line_functions(merged), sources)
    result.guests, result.silent = len(traces), silent
    result.not_profiled = list(read_manifest(first).get("refused", []))  # type: ignore[arg-type]
    write_outputs(result, out)
    return result


def _same_series(first: Path, other: Path) -> None:
    if (first / DIFF).read_bytes() != (other / DIFF).read_bytes():
        raise CoverageError(
            f"the coverage builds {first.parent.name[:12]} and {other.parent.name[:12]} carry "
            "different series: their counters cannot be added up",
            "report one revision at a time (python3 -m harness coverage --revision NAME)",
        )


def write_outputs(result: PatchCoverage, out: Path) -> None:
    (out / "coverage.md").write_text(markdown(result))
    (out / "coverage.txt").write_text(result.total_line() + "\n")
    data = {
        "label": result.label,
        "executable": result.executable,
        "ran": result.ran,
        "percent": round(result.percent, 2),
        "guests": result.guests,
        "files": [f.__dict__ for f in result.files],
        "uncovered": [u.__dict__ for u in result.uncovered],
        "silent": result.silent,
        "not_profiled": result.not_profiled,
    }
    (out / "coverage.json").write_text(json.dumps(data, indent=1) + "\n")


def markdown(result: PatchCoverage) -> str:
    lines = [
        f"# Patch coverage: {result.label}",
        "",
        result.total_line() + ".",
        "",
        "| file | executable changed lines | ran | % |",
        "|---|---:|---:|---:|",
    ]
    for f in result.files:
        lines.append(f"| {f.file} | {f.executable} | {f.ran} | {f.percent:.1f} |")
    lines.append(f"| **total** | {result.executable} | {result.ran} | {result.percent:.1f} |")
    lines += ["", "## Changed lines that never ran", ""]
    if not result.uncovered:
        lines.append("None.")
    for file in sorted({u.file for u in result.uncovered}):
        lines += [f"### {file}", "", "| line | function | code |", "|---:|---|---|"]
        for u in (u for u in result.uncovered if u.file == file):
            code = u.code.replace("|", "\\|").replace("`", "'")
            lines.append(f"| {u.line} | {u.function} | `{code}` |")
        lines.append("")
    if result.not_profiled:
        lines += ["", "## Changed C files not profiled (a same-named file opts out)", ""]
        lines += [f"- {name}" for name in result.not_profiled]
    if result.silent:
        lines += ["", "## Guest boots that left no counters", ""]
        lines += [f"- {text}" for text in result.silent]
    return "\n".join(lines) + "\n"
