"""What a run hands to the session-end reports (compare.md, the RSS plot, the time
breakdown), kept as results/session-data.json. xdist workers leave theirs in
results/<worker>/ for the controller; CI shards leave theirs for `python3 -m harness report`,
which merges them the same way.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.drive.workloads import ReleaseMeasurement
from harness.observe.rss import RssSample

SESSION_DATA_FILE = "session-data.json"


@dataclass
class SessionData:
    """What one process hands to the session-end reports."""

    measurements: list[dict] = field(default_factory=list)
    release_series: dict[str, ReleaseMeasurement] = field(default_factory=dict)
    fault_rates: dict[str, float] = field(default_factory=dict)
    time_spent: dict[str, float] = field(default_factory=dict)

    def merge(self, other: SessionData) -> None:
        self.measurements += other.measurements
        self.release_series.update(other.release_series)
        self.fault_rates.update(other.fault_rates)
        for phase, seconds in other.time_spent.items():
            self.time_spent[phase] = self.time_spent.get(phase, 0.0) + seconds


def write_session_data(data: SessionData, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SESSION_DATA_FILE
    path.write_text(json.dumps(asdict(data)) + "\n")
    return path


def read_session_data(path: Path) -> SessionData:
    raw = json.loads(path.read_text())
    series = {}
    for label, m in raw.pop("release_series", {}).items():
        samples = [RssSample(**sample) for sample in m.pop("samples")]
        series[label] = ReleaseMeasurement(**m, samples=samples)
    return SessionData(**raw, release_series=series)


def gather_session_data(paths: list[Path]) -> SessionData:
    """The session data of several runs (xdist workers, CI shards) merged, in that order."""
    merged = SessionData()
    for path in paths:
        merged.merge(read_session_data(path))
    return merged


def gather_worker_data(root: Path) -> SessionData:
    """Everything the xdist workers of this run left under `root` (<root>/gw*/)."""
    return gather_session_data(sorted(root.glob(f"gw*/{SESSION_DATA_FILE}")))
