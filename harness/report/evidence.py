"""Saving what a scenario saw, so a failure can be read after the run."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from harness.drive.workloads import ReleaseMeasurement
from harness.observe.rss import RssSample, write_samples_csv
from harness.report.junit import plot_rss


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {
            ("/".join(map(str, k)) if isinstance(k, tuple) else str(k)): _jsonable(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def save_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(_jsonable(value), indent=1, sort_keys=True) + "\n")


def save_measurement(directory: Path, label: str, m: ReleaseMeasurement) -> None:
    """rss.csv (time series), rss.png and measurement.json (summary) for one release."""
    # t in rss.csv counts seconds from the release (negative before it)
    since_release = [RssSample(s.t - m.released_at, s.rss_bytes) for s in m.samples]
    write_samples_csv(since_release, directory / "rss.csv")
    summary = {
        "label": label,
        "mib": m.mib,
        "baseline_rss": m.baseline_rss,
        "peak_rss": m.peak_rss,
        "final_rss": m.final_rss,
        "returned_bytes": m.returned_bytes,
        "seconds_to_90pct": m.seconds_to_90pct,
        "watched_s": round(m.watched_s, 2),
        "touch_seconds": round(m.touch_seconds, 2),
    }
    save_json(directory / "measurement.json", summary)
    plot_rss({label: m.samples}, directory / "rss.png", {label: m.released_at})


def save_console(directory: Path, console_log: Path) -> None:
    target = directory / "console.log"
    if console_log.exists() and console_log.resolve() != target.resolve():
        shutil.copyfile(console_log, target)
