"""A full disk under the scenario suite (the kernel cache or the results directory): one
clear error, never a traceback or pytest's INTERNALERROR.

* A scenario whose fixture or body hits it (a build, an evidence file) errors with the
  DiskFull text alone, and the session stops there (pytest's `Interrupted: disk full ...`,
  under xdist too): every later scenario would hit the same wall. Later writes that hit
  it (the reports at session end) say so in one line.
* At session start (the run directory, the prebuild of every kernel) and at session end
  (junit.xml, the reports), the session ends with the one message (`Exit: ...`).
* When the reports cannot be written, the run is not marked complete: its `finished`
  file (written last) is not there.

One of the modules harness/pytest_plugin/__init__.py loads.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from pathlib import Path

import pytest

from harness.core import diskspace
from harness.core.errors import DiskFull
from harness.core.paths import cache_root
from harness.pytest_plugin.stash import RUN_DIR

DISK_FULL = pytest.StashKey[DiskFull]()
EXIT_CODE = 2  # what the harness's CLI returns for a HarnessError


def as_disk_full(error: BaseException, config: pytest.Config, doing: str) -> DiskFull:
    """The DiskFull for `error` (a DiskFull, or a raw ENOSPC/EDQUOT OSError): in the
    results directory (named as such: --results, PHH_RESULTS) when the file was there, or
    when a write without a file name fails and that directory is the full one; else in
    the cache."""
    if not isinstance(error, OSError):
        return error if isinstance(error, DiskFull) else diskspace.disk_full(cache_root(), doing)
    results = _results_dir(config)
    if error.filename:
        where = Path(error.filename).parent
        in_results = results is not None and where.resolve().is_relative_to(results.resolve())
    else:
        in_results = results is not None and diskspace.is_full(results)
        where = results if in_results and results is not None else cache_root()
    needs = diskspace.RESULTS_NEEDS if in_results else diskspace.RUN_NEEDS
    return diskspace.disk_full(where, doing, needs, results=in_results)


def _results_dir(config: pytest.Config) -> Path | None:
    run = config.stash.get(RUN_DIR, None)
    return run.path if run is not None else None


def _report(config: pytest.Config, error: BaseException, doing: str, *, whole: bool = False) -> str:
    """The text for this disk-full: in full the first time in the session; a later one
    (the reports at session end hitting the same wall) in one line, after the first in
    full when `whole` (pytest's summary, which showed it, did not run)."""
    full = as_disk_full(error, config, doing)
    first = config.stash.setdefault(DISK_FULL, full)
    if first is full:
        return f"error: {full}"
    again = f"{doing} failed too: {full.message.split(' while ')[0]}"
    return f"error: {first}\n({again})" if whole else again


@pytest.hookimpl(wrapper=True)
def pytest_sessionstart(session: pytest.Session) -> Generator[None, None, None]:
    try:
        return (yield)
    except (OSError, DiskFull) as error:
        if not diskspace.is_disk_full(error):
            raise
        text = _report(session.config, error, "starting the run")
        raise pytest.exit(text, returncode=EXIT_CODE) from None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    error = call.excinfo.value if call.excinfo is not None else None
    if error is None or not diskspace.is_disk_full(error):
        return report
    text = _report(item.config, error, f"running {item.name}")
    report.longrepr = text  # the message and its hint, no traceback
    report.when = "setup"  # an error of the machine, not a failure of the kernel
    item.session.shouldstop = "disk full"
    return report


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> Generator[None, None, None]:
    """The reports at session end (junit.xml, compare.md, session data, `finished`)."""
    try:
        return (yield)
    except (OSError, DiskFull) as error:
        if not diskspace.is_disk_full(error):
            raise
        text = _report(session.config, error, "writing the run's reports", whole=True)
        raise pytest.exit(text, returncode=EXIT_CODE) from None


@pytest.hookimpl(wrapper=True)
def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> Generator[None, None, None]:
    try:
        return (yield)
    except (OSError, DiskFull) as error:
        if not diskspace.is_disk_full(error):
            raise
        terminalreporter.write_line(_report(config, error, "writing timing.json"), red=True)
        return None


@pytest.hookimpl(wrapper=True)
def pytest_unconfigure(config: pytest.Config) -> Generator[None, None, None]:
    """report.txt, index.html and the `latest` link: the last writes, after pytest's own
    output: the one message goes to stderr."""
    try:
        return (yield)
    except (OSError, DiskFull) as error:
        if not diskspace.is_disk_full(error):
            raise
        sys.stderr.write(_report(config, error, "finishing the run") + "\n")
        return None
