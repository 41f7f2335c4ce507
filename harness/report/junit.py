"""Reports: JUnit reading and merging (junitparser), RSS plots (matplotlib, Agg) and the
revision comparison.

The scenario suite's JUnit is written by pytest itself (--junitxml, with the verdicts,
evidence paths and numbers as record_property properties); this module reads and merges
such files, e.g. for the mutant campaign or several runs.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path

from junitparser import Error, Failure, JUnitXml, Skipped, TestCase

from harness.core.errors import HarnessError
from harness.core.status import Status
from harness.core.units import MiB as MIB
from harness.observe.rss import RssSample, time_to_fraction
from harness.report.session_data import (
    SESSION_DATA_FILE,
    SessionData,
    gather_session_data,
    write_session_data,
)


class ReportError(HarnessError):
    """A report could not be written or an input report could not be read."""


# --- JUnit -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestResult:
    suite: str
    name: str
    status: Status  # harness.core.status: PASS, FAIL, ERROR, SKIPPED
    duration: float  # seconds
    message: str = ""  # why it failed / errored / was skipped
    system_out: str = ""  # e.g. the guest console tail

    __test__ = False  # not a pytest test class


def _status_of(case: TestCase) -> tuple[Status, str]:
    for entry in case.result:
        status = {Failure: Status.FAIL, Error: Status.ERROR, Skipped: Status.SKIPPED}[type(entry)]
        return status, entry.text or entry.message or ""
    return Status.PASS, ""


def read_junit(path: Path) -> list[TestResult]:
    """The results of a JUnit file (ours or pytest's), in file order."""
    try:
        xml = JUnitXml.fromfile(str(path))
    except Exception as exc:  # ParseError, OSError, JUnitXmlError: all mean "unreadable"
        raise ReportError(f"{path}: not a readable JUnit XML file ({exc})", "") from exc
    results = []
    for suite in xml:
        for case in suite:
            status, message = _status_of(case)
            results.append(
                TestResult(
                    suite=case.classname or suite.name or "",
                    name=case.name or "",
                    status=status,
                    duration=case.time or 0.0,
                    message=message,
                    system_out=case.system_out or "",
                )
            )
    return results


def merge_junit(paths: Iterable[Path], out: Path) -> Path:
    """All suites of several JUnit files (e.g. one per revision) in one file, totals updated."""
    merged = JUnitXml()
    for path in paths:
        try:
            source = JUnitXml.fromfile(str(path))
        except Exception as exc:
            raise ReportError(
                f"{path}: not a readable JUnit XML file ({exc})", "re-run the step that wrote it"
            ) from exc
        for suite in source:
            merged.append(deepcopy(suite))  # append: same-named suites stay apart
    merged.update_statistics()
    out.parent.mkdir(parents=True, exist_ok=True)
    merged.write(str(out), pretty=True)
    return out


# --- plots -----------------------------------------------------------------------------------


def plot_rss(
    series_by_label: Mapping[str, Sequence[RssSample]],
    path: Path,
    marks: Mapping[str, float],
    title: str = "QEMU process RSS",
) -> Path:
    """RSS in MiB against time, one line per label, as a PNG.

    `marks[label]` is that series' release instant (on its samples' clock). Each marked
    series is drawn against seconds since its release, so every release sits at x = 0 under
    one dashed line; an unmarked series is drawn from its first sample.
    """
    # Imported here: matplotlib costs 0.4 s to import, and only the controller plots
    # (every xdist worker imports this module).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for label, samples in series_by_label.items():
        if not samples:
            continue
        origin = marks.get(label, samples[0].t)
        axes.plot(
            [s.t - origin for s in samples],
            [s.rss_bytes / MIB for s in samples],
            label=label,
            linewidth=1.5,
            drawstyle="steps-post",  # a sample holds until the next one: no invented slopes
        )
    if any(label in marks for label in series_by_label):
        axes.axvline(0.0, color="black", linestyle="--", linewidth=1, label="release")
        axes.set_xlabel("seconds since release")
    else:
        axes.set_xlabel("seconds")
    axes.set_ylabel("RSS (MiB)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    if series_by_label:
        axes.legend(loc="best")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


# --- revision comparison ---------------------------------------------------------------------


@dataclass(frozen=True)
class RevisionRow:
    revision: str
    bytes_returned: int | None  # peak RSS minus the lowest RSS after the release
    seconds_to_90: float | None  # release until 90% of (peak - baseline) came back
    verdict: str
    touch_seconds: float | None = None  # guest time to allocate and touch the workload


def release_row(
    revision: str,
    samples: Sequence[RssSample],
    release_t: float,
    baseline: int,
    verdict: str,
) -> RevisionRow:
    """Summarise one run's RSS series around the release instant."""
    before = [s.rss_bytes for s in samples if s.t <= release_t]
    after = [s.rss_bytes for s in samples if s.t >= release_t]
    if not before or not after:
        return RevisionRow(revision, None, None, verdict)
    peak = max(before)
    return RevisionRow(
        revision=revision,
        bytes_returned=max(peak - min(after), 0),
        seconds_to_90=time_to_fraction(list(samples), release_t, baseline, peak, 0.9),
        verdict=verdict,
    )


RowLike = RevisionRow | Mapping[str, object]

# Mapping keys accepted for each field (the scenarios record dicts with the second names).
_ROW_KEYS = {
    "bytes_returned": ("bytes_returned", "returned_bytes"),
    "seconds_to_90": ("seconds_to_90", "seconds_to_90pct"),
    "touch_seconds": ("touch_seconds",),
}


def _lookup(row: Mapping[str, object], field_name: str) -> object:
    return next((row[key] for key in _ROW_KEYS[field_name] if key in row), None)


def as_revision_row(row: RowLike) -> RevisionRow:
    """A RevisionRow, or a dict as the scenarios record it (verdict may be `passed: bool`)."""
    if isinstance(row, RevisionRow):
        return row
    if "revision" not in row:
        raise ReportError(
            f"comparison row without a revision: {dict(row)!r}",
            "record a 'revision' key with every measurement",
        )
    verdict = row.get("verdict")
    if verdict is None and "passed" in row:
        verdict = "pass" if row["passed"] else "fail"
    returned = _lookup(row, "bytes_returned")
    seconds = _lookup(row, "seconds_to_90")
    touch = _lookup(row, "touch_seconds")
    return RevisionRow(
        revision=str(row["revision"]),
        bytes_returned=None if returned is None else int(returned),
        seconds_to_90=None if seconds is None else float(seconds),
        verdict="" if verdict is None else str(verdict),
        touch_seconds=None if touch is None else float(touch),
    )


COMPARE_COLUMNS = ("revision", "bytes returned", "seconds to 90%", "seconds to touch", "verdict")
CSV_COLUMNS = ("revision", "bytes_returned", "seconds_to_90", "touch_seconds", "verdict")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _bytes_cell(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,} ({value / MIB:.1f} MiB)"


def _seconds_cell(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f}"


def compare_revisions(rows: Iterable[RowLike]) -> str:
    """A markdown table, one line per revision."""
    lines = [
        "| " + " | ".join(COMPARE_COLUMNS) + " |",
        "|---|---:|---:|---:|---|",
    ]
    for row in map(as_revision_row, rows):
        cells = (
            _cell(row.revision),
            _bytes_cell(row.bytes_returned),
            _seconds_cell(row.seconds_to_90),
            "n/a" if row.touch_seconds is None else f"{row.touch_seconds:.2f}",
            _cell(row.verdict),
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_compare_csv(rows: Iterable[RowLike], path: Path) -> Path:
    """Raw numbers, one line per revision; an empty cell means "none"."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for row in map(as_revision_row, rows):
            writer.writerow(
                [
                    row.revision,
                    "" if row.bytes_returned is None else row.bytes_returned,
                    "" if row.seconds_to_90 is None else repr(row.seconds_to_90),
                    "" if row.touch_seconds is None else repr(row.touch_seconds),
                    row.verdict,
                ]
            )
    return path


def write_comparison(rows: Iterable[RowLike], results_dir: Path) -> tuple[Path, Path]:
    """results_dir/compare.md (the table) and results_dir/compare.csv."""
    rows = list(rows)
    results_dir.mkdir(parents=True, exist_ok=True)
    markdown = results_dir / "compare.md"
    markdown.write_text(compare_revisions(rows))
    return markdown, write_compare_csv(rows, results_dir / "compare.csv")


def fault_benchmark_section(rates: dict[str, float], baseline: str = "stock") -> str:
    """Markdown: page faults per second per revision, and the ratio to `baseline` measured
    in the same run (none when the baseline did not run). Under TCG it is a rough figure,
    reported and not asserted."""
    base = rates.get(baseline)
    lines = [
        "",
        "## Page-fault cost (faultbench: mmap, touch every page, munmap; page_fault1 style)",
        "",
        f"| revision | faults per second | ratio to {baseline} |",
        "|---|---:|---:|",
    ]
    for revision, rate in rates.items():
        ratio = "n/a" if not base else f"{rate / base:.2f}"
        lines.append(f"| {_cell(revision)} | {rate:,.0f} | {ratio} |")
    return "\n".join(lines) + "\n"


# --- the session-end reports -----------------------------------------------------------------


def write_session_reports(data: SessionData, out: Path) -> None:
    """compare.md and compare.csv (release rows, then the page-fault benchmark) and the RSS
    plot: from one run, its xdist workers, or several CI shards."""
    out.mkdir(parents=True, exist_ok=True)
    rows, fault_rates = data.measurements, data.fault_rates
    if rows or fault_rates:
        markdown, _ = write_comparison(rows, out)
        if fault_rates:
            with markdown.open("a") as f:
                f.write(fault_benchmark_section(fault_rates))
    series = data.release_series
    if series:
        plot_rss(
            {label: m.samples for label, m in series.items()},
            out / "compare-rss.png",
            {label: m.released_at for label, m in series.items()},
            title="QEMU RSS after the guest releases memory, by revision",
        )


def merge_shards(shards: Iterable[Path], out: Path) -> SessionData:
    """The results of several runs (e.g. CI shards of the revision x flavour matrix) as one:
    out/junit.xml, out/session-data.json and the session-end reports."""
    shards = list(shards)
    missing = [s for s in shards if not (s / "junit.xml").is_file()]
    if missing:
        raise ReportError(
            f"no junit.xml in {', '.join(map(str, missing))}",
            "pass the results directories of finished runs (python3 -m harness run --results)",
        )
    merge_junit([s / "junit.xml" for s in shards], out / "junit.xml")
    data = gather_session_data(
        [s / SESSION_DATA_FILE for s in shards if (s / SESSION_DATA_FILE).is_file()]
    )
    write_session_data(data, out)
    write_measurements(data.measurements, out)
    write_session_reports(data, out)
    return data


def write_measurements(rows: Sequence[Mapping[str, object]], out: Path) -> None:
    """measurements.jsonl of merged runs (a single run appends to its own as it goes)."""
    (out / "measurements.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
