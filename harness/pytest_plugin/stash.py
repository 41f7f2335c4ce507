"""What the plugin's modules share through pytest's stash and xdist's workerinput: the
run directory, the session data, the prebuild's results."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.report import rundir
from harness.report.session_data import SessionData

# What the scenarios hand to the session-end reports (compare.md, compare-rss.png, timing).
SESSION_DATA = pytest.StashKey[SessionData]()


RUN_DIR = pytest.StashKey[rundir.RunDir]()


RUN_DIR_KEY = "phh_run_dir"  # in each worker's workerinput


RAN_SCENARIOS = pytest.StashKey[bool]()


RUN_PAGES = pytest.StashKey[tuple[Path, Path]]()


def results_root(config: pytest.Config) -> Path:
    """This run's results directory (workers write into <run>/<worker>/ below it):
    `--results DIR`, or a new `results/<stamp>/` (harness/report/rundir.py)."""
    return config.stash[RUN_DIR].path


def is_controller(config: pytest.Config) -> bool:
    """The process that writes the session-end reports: a serial run, or xdist's controller."""
    return not hasattr(config, "workerinput")


SESSION_STARTED = pytest.StashKey[float]()


PREBUILD_SECONDS = pytest.StashKey[float]()  # the controller's kernel builds under xdist


PREBUILD_FAILURES = pytest.StashKey[dict[str, dict[str, str]]]()


PREBUILD_FAILURES_KEY = "phh_prebuild_failures"  # in each worker's workerinput


# In a worker's time_spent: its whole session, so that the controller can tell the
# scenarios' share of the workers' time from the phases'.
WORKER_SESSION_KEY = "worker_session"
