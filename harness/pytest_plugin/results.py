"""The run's results: its own directory (never another run's), the time breakdown, the
session-end reports, report.txt and index.html."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from harness.core.errors import (
    HarnessError,
)
from harness.core.paths import default_results_dir
from harness.core.progress import format_breakdown, format_guest_cpu, time_spent
from harness.core.workers import own_results_dir
from harness.pipeline import tested_with
from harness.pytest_plugin.options import pipeline_from_options, selected_revisions
from harness.pytest_plugin.scheduling import prebuild_kernels
from harness.pytest_plugin.stash import (
    PREBUILD_FAILURES,
    PREBUILD_SECONDS,
    RAN_SCENARIOS,
    RUN_DIR,
    RUN_DIR_KEY,
    RUN_PAGES,
    SESSION_DATA,
    SESSION_STARTED,
    WORKER_SESSION_KEY,
    is_controller,
    results_root,
)
from harness.report import junit as report
from harness.report import rundir
from harness.report.index_page import write_index
from harness.report.reply import ReplyContext, write_reply
from harness.report.session_data import SessionData, gather_worker_data, write_session_data

log = logging.getLogger(__name__)


@pytest.hookimpl(tryfirst=True)  # before pytest's junitxml plugin reads the option
def pytest_configure(config: pytest.Config) -> None:
    chosen = getattr(config, "workerinput", {}).get(RUN_DIR_KEY)
    if chosen is not None:  # an xdist worker: the controller chose the run directory
        config.stash[RUN_DIR] = rundir.RunDir(Path(chosen), Path(chosen).parent, stamped=False)
    else:
        explicit = config.getoption("--results", None)
        config.stash[RUN_DIR] = rundir.plan(explicit, default_results_dir())
    config.stash[RAN_SCENARIOS] = False
    config.pluginmanager.register(_ScenarioCounter(config), "phh-scenario-counter")
    if not config.option.xmlpath and not config.option.collectonly:
        config.option.xmlpath = str(results_root(config) / "junit.xml")
    if getattr(config.option, "numprocesses", None) and config.option.dist in ("no", "load"):
        # Tests sharing a per-revision guest must stay on one worker (xdist_group marks).
        config.option.dist = "loadgroup"
        # Hand the work out in the suite's order (the debug kernels' scenarios first), not
        # xdist's "most tests first", which put the four debug scenarios (37-74 s each)
        # after every guest group: one worker ran 355 s, the other 276 s.
        config.option.loadscopereorder = False
    if hasattr(config, "workerinput"):
        # An xdist worker parses the command line again, where `-n 2` alone leaves --dist
        # at "no": it must still tag the groups (node id "...@group") for the controller.
        config.option.loadgroup = True
    config.addinivalue_line("markers", "hinting: only for revisions that carry the series")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config.stash[SESSION_DATA] = SessionData()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Where the run's time went (fetch, unpack, git, configure, make, image, probe, boot,
    and the scenarios themselves), on the terminal and in results/timing.json."""
    started = config.stash.get(SESSION_STARTED, None)
    if started is None or config.option.collectonly or not is_controller(config):
        return
    total = time.monotonic() - started
    spent = dict(config.stash[SESSION_DATA].time_spent)
    busy = spent.pop(WORKER_SESSION_KEY, None)  # the workers' session seconds, summed
    terminalreporter.write_sep("-", "time breakdown")
    if busy is None:
        terminalreporter.write_line(format_breakdown(total, spent))
    else:
        terminalreporter.write_line(
            f"summed over the workers: {format_breakdown(busy, spent)}; wall time {total:.1f} s"
        )
    guest_cpu = format_guest_cpu(spent, total)
    if guest_cpu:
        terminalreporter.write_line(guest_cpu)
    out = results_root(config)
    if out.is_dir() and config.stash.get(RAN_SCENARIOS, False):
        timing = {**spent, "total": total, **({"workers_busy": busy} if busy else {})}
        if PREBUILD_SECONDS in config.stash:  # the controller's builds, before the workers
            timing["prebuild"] = config.stash[PREBUILD_SECONDS]
        (out / "timing.json").write_text(json.dumps(timing, indent=1) + "\n")
        terminalreporter.write_line(f"results: {out}")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Each run writes a directory of its own; an earlier run's results are never appended
    to nor destroyed (harness/report/rundir.py)."""
    config = session.config
    config.stash[SESSION_STARTED] = time.monotonic()
    if not is_controller(config) or config.option.collectonly:
        return  # workers write below the controller's run directory
    config.stash[RUN_DIR] = rundir.claim(config.stash[RUN_DIR])
    # (this runs before xdist's own sessionstart, which starts the workers: trylast)
    if getattr(config.option, "numprocesses", None) and runs_the_whole_suite(config):
        config.stash[PREBUILD_SECONDS], config.stash[PREBUILD_FAILURES] = prebuild_kernels(config)


def runs_the_whole_suite(config: pytest.Config) -> bool:
    """No -k, -m, file or node selection (nor --collect-only): then every kernel of the
    matrix is needed. With a selection the controller cannot tell which kernels it needs
    (it does not collect under xdist), so the workers build what their scenarios use."""
    option = config.option
    narrowed = any(arg.endswith(".py") or "::" in arg for arg in config.args)
    return not (option.collectonly or option.keyword or option.markexpr or narrowed)


class _ScenarioCounter:
    """Notes that a scenario started (in this process, or in a worker: xdist reports it
    to the controller too)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logstart(self, nodeid: str, location: tuple[str, int, str]) -> None:
        # (not a "setup" report: outcomes.py reports a panic in a fixture as the call's)
        self.config.stash[RAN_SCENARIOS] = True


def pytest_unconfigure(config: pytest.Config) -> None:
    """After pytest's junitxml has written its file: the reply for the list (report.txt)
    and the run's page (index.html); then keep the run (`results/latest` points at it) or,
    if it ran no scenario, leave the results as they were."""
    if not is_controller(config) or RUN_DIR not in config.stash or config.option.collectonly:
        return
    ran = config.stash.get(RAN_SCENARIOS, False)
    if ran:
        write_run_pages(config, results_root(config))
    rundir.finish(config.stash[RUN_DIR], ran)


def write_run_pages(config: pytest.Config, run: Path) -> None:
    """report.txt and index.html; a failure there is logged, never the run's verdict."""
    try:
        reply = write_reply(run, reply_context(config))
        page = write_index(run)
    except (OSError, ValueError, HarnessError) as error:
        log.warning("could not write report.txt / index.html in %s: %s", run, error)
        return
    config.stash[RUN_PAGES] = (reply, page)


def reply_context(config: pytest.Config) -> ReplyContext:
    """What the reply says was tested: the user's series (else the last hinting revision),
    the base kernel, QEMU and the accelerator."""
    users = [Path(p).resolve() for p in config.getoption("--series")]
    hinting = [r.series for r in selected_revisions(config) if r.hinting and r.series]
    series = users[0] if users else (hinting[-1] if hinting else None)
    return tested_with(pipeline_from_options(config), series)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Every process keeps its session data (results/session-data.json, or
    results/<worker>/ under xdist); the controller merges the workers' and writes the
    reports."""
    config = session.config
    data = config.stash[SESSION_DATA]
    data.time_spent = time_spent()
    root = results_root(config)
    if not is_controller(config):
        started = config.stash.get(SESSION_STARTED, time.monotonic())
        data.time_spent[WORKER_SESSION_KEY] = time.monotonic() - started
        write_session_data(data, own_results_dir(root))
        return
    if not config.stash.get(RAN_SCENARIOS, False):
        return
    if getattr(config.option, "numprocesses", None):
        # the controller's prebuild counts as busy time beside the workers' sessions
        data.time_spent[WORKER_SESSION_KEY] = config.stash.get(PREBUILD_SECONDS, 0.0)
        data.merge(gather_worker_data(root))
        report.write_measurements(data.measurements, root)
    write_session_data(data, root)
    report.write_session_reports(data, root)
    (root / "finished").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + "\n")
