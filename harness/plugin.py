"""pytest plugin behind `pytest harness/`: options, session fixtures, evidence, reports.

Loaded by harness/conftest.py as a plugin (`pytest_plugins`). The scenario suite in
harness/scenarios/ asks for `pipeline`, `revision` (parametrised from --revisions) and
`evidence` (a per-test results directory) and gets cached builds and fresh VMs.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import report
from harness.build import BuildResult
from harness.errors import QemuDied
from harness.paths import default_results_dir
from harness.pipeline import Pipeline
from harness.progress import format_breakdown, time_spent
from harness.revisions import Revision, resolve
from harness.workloads import ReleaseMeasurement

DEFAULT_REVISIONS = "stock,hinting-v2,hinting-v2-fixed"
# What the scenarios hand to the session-end reports (compare.md, compare-rss.png).
MEASUREMENTS = pytest.StashKey[list[dict]]()
RELEASE_SERIES = pytest.StashKey[dict[str, ReleaseMeasurement]]()
FAULT_RATES = pytest.StashKey[dict[str, float]]()
DEFAULT_DEBUG_REVISIONS = "hinting-v2,hinting-v2-fixed"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "page hinting harness")
    group.addoption(
        "--kernel-source",
        default=None,
        metavar="PATH",
        help="kernel tree to build (default: Debian's linux-source-6.1)",
    )
    group.addoption(
        "--series",
        action="append",
        default=[],
        metavar="PATH",
        help="a user's series (quilt dir, dir of *.patch, or mbox) to validate "
        "beside the built-in revisions; repeatable",
    )
    group.addoption(
        "--revisions",
        default=DEFAULT_REVISIONS,
        metavar="LIST",
        help=f"comma-separated revisions to validate (default: {DEFAULT_REVISIONS})",
    )
    group.addoption(
        "--debug-revisions",
        default=DEFAULT_DEBUG_REVISIONS,
        metavar="LIST",
        help="revisions also built with kconfigs/debug.config ('' for none)",
    )
    group.addoption(
        "--kconfig",
        action="append",
        default=[],
        metavar="FRAGMENT",
        help="extra kconfig fragment merged after the revision's own; repeatable",
    )
    group.addoption(
        "--accel",
        default="auto",
        choices=("auto", "kvm", "tcg"),
        help="QEMU accelerator (auto: prove KVM by booting, else TCG)",
    )
    group.addoption(
        "--guest-mem",
        type=int,
        default=2048,
        metavar="MIB",
        help="guest memory in MiB (default 2048)",
    )
    group.addoption(
        "--release-mib",
        type=int,
        default=1200,
        metavar="MIB",
        help="memory the release workload allocates and frees (default 1200)",
    )
    group.addoption(
        "--results", default=None, metavar="DIR", help="results directory (default: ./results)"
    )
    group.addoption("--jobs", type=int, default=3, help="make -j for kernel builds")


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def selected_revisions(config: pytest.Config) -> list[Revision]:
    extra = tuple(Path(p).resolve() for p in config.getoption("--kconfig"))
    revs = [resolve(name) for name in _split(config.getoption("--revisions"))]
    revs += [resolve(str(Path(p).resolve())) for p in config.getoption("--series")]
    return [r.with_extra_fragments(extra) for r in revs]


def selected_debug_revisions(config: pytest.Config) -> list[Revision]:
    extra = tuple(Path(p).resolve() for p in config.getoption("--kconfig"))
    names = _split(config.getoption("--debug-revisions"))
    return [resolve(name).with_debug().with_extra_fragments(extra) for name in names]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "revision" in metafunc.fixturenames:
        revs = selected_revisions(metafunc.config)
        hinting_only = metafunc.definition.get_closest_marker("hinting") is not None
        if hinting_only:
            revs = [r for r in revs if r.hinting]
        metafunc.parametrize("revision", revs, ids=[r.name for r in revs], scope="session")
    if "debug_revision" in metafunc.fixturenames:
        revs = selected_debug_revisions(metafunc.config)
        metafunc.parametrize("debug_revision", revs, ids=[r.name for r in revs], scope="session")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop tests whose revision list the user emptied (e.g. --debug-revisions ''), so
    they are not reported as skips that look like gaps."""
    keep, drop = [], []
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        params = getattr(getattr(item, "callspec", None), "params", {})
        wanted = [n for n in ("revision", "debug_revision") if n in fixtures]
        ok = all(isinstance(params.get(n), Revision) for n in wanted)
        (keep if ok else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    _group_by_revision(items, "guest")
    _group_by_revision(items, "lifecycle_guest")


def _group_by_revision(items: list[pytest.Item], fixture: str) -> None:
    """Tests sharing a per-revision module fixture (one guest per revision) run revision by
    revision: pytest keeps one instance of a module fixture at a time, and tests that
    exist only for hinting revisions would otherwise interleave with the others and boot
    the same revision twice."""
    shared = [i for i in items if fixture in getattr(i, "fixturenames", ())]
    if not shared:
        return
    rank: dict[str, int] = {}
    for item in shared:
        rank.setdefault(item.callspec.params["revision"].name, len(rank))  # type: ignore[attr-defined]

    def key(item: pytest.Item) -> tuple[int, str, int]:
        revision = item.callspec.params["revision"].name  # type: ignore[attr-defined]
        path, line, _ = item.location
        return rank[revision], path, line or 0  # definition order within a revision

    ordered = iter(sorted(shared, key=key))
    positions = {id(i) for i in shared}
    items[:] = [next(ordered) if id(i) in positions else i for i in items]


@pytest.hookimpl(tryfirst=True)  # before pytest's junitxml plugin reads the option
def pytest_configure(config: pytest.Config) -> None:
    if not config.option.xmlpath:
        results = Path(config.getoption("--results") or default_results_dir())
        config.option.xmlpath = str(results / "junit.xml")
    config.addinivalue_line("markers", "hinting: only for revisions that carry the series")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config.stash[MEASUREMENTS] = []
    config.stash[RELEASE_SERIES] = {}
    config.stash[FAULT_RATES] = {}


# Files by which a directory is recognised as an earlier run's results.
RESULT_MARKERS = ("finished", "junit.xml", "measurements.jsonl", "verdict.txt")


SESSION_STARTED = pytest.StashKey[float]()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Where the run's time went (fetch, unpack, git, configure, make, image, probe, boot,
    and the scenarios themselves), on the terminal and in results/timing.json."""
    started = config.stash.get(SESSION_STARTED, None)
    if started is None or config.option.collectonly:
        return
    total = time.monotonic() - started
    terminalreporter.write_sep("-", "time breakdown")
    terminalreporter.write_line(format_breakdown(total))
    out = Path(config.getoption("--results") or default_results_dir())
    if out.is_dir():
        spent = {**time_spent(), "total": total}
        (out / "timing.json").write_text(json.dumps(spent, indent=1) + "\n")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Each run starts without an earlier run's results: they are moved aside to
    `<dir>.previous` (one kept), never appended to."""
    session.config.stash[SESSION_STARTED] = time.monotonic()
    out = Path(session.config.getoption("--results") or default_results_dir())
    if not out.is_dir():
        return
    if not any((out / marker).exists() for marker in RESULT_MARKERS) and not any(
        out.glob("*/console.log")
    ):
        return  # not an earlier run's results (e.g. the mutant campaign's pytest.log)
    previous = out.with_name(out.name + ".previous")
    shutil.rmtree(previous, ignore_errors=True)
    out.rename(previous)


@pytest.fixture(scope="session")
def results_dir(pytestconfig: pytest.Config) -> Path:
    path = Path(pytestconfig.getoption("--results") or default_results_dir())
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def pipeline(pytestconfig: pytest.Config) -> Pipeline:
    tree = pytestconfig.getoption("--kernel-source")
    return Pipeline(
        kernel_tree=Path(tree).resolve() if tree else None,
        accel_request=pytestconfig.getoption("--accel"),
        memory_mib=pytestconfig.getoption("--guest-mem"),
        jobs=pytestconfig.getoption("--jobs"),
    )


@pytest.fixture(scope="session")
def release_mib(pytestconfig: pytest.Config) -> int:
    return int(pytestconfig.getoption("--release-mib"))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_")


@pytest.fixture
def evidence(request: pytest.FixtureRequest, results_dir: Path) -> Iterator[Path]:
    """A fresh directory under the results dir for this test's console log, CSV, JSON."""
    path = results_dir / _safe(request.node.nodeid.split("::", 1)[-1])
    path.mkdir(parents=True, exist_ok=True)
    request.node.user_properties.append(("evidence", str(path)))
    for old in path.iterdir():
        if old.is_file():
            old.unlink()
    yield path
    # The per-run initrd is a copy of the cached image plus a key: not evidence.
    (path / "initrd.img").unlink(missing_ok=True)


@pytest.fixture
def record_measurement(
    pytestconfig: pytest.Config, results_dir: Path, record_property: Callable[[str, object], None]
):
    """Scenarios hand their release measurements here for the revision comparison (and the
    numbers go into the JUnit file as the test's properties)."""

    def record(row: dict, measurement: ReleaseMeasurement | None = None) -> None:
        for key, value in row.items():
            record_property(key, value)
        pytestconfig.stash[MEASUREMENTS].append(row)
        if measurement is not None:
            pytestconfig.stash[RELEASE_SERIES][row["revision"]] = measurement
        with (results_dir / "measurements.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")

    return record


@pytest.fixture(scope="session")
def built_kernel(revision: Revision, pipeline: Pipeline) -> BuildResult:
    """The revision's kernel, built once per session (a failure is cached by pytest too)."""
    return pipeline.build(revision)


@pytest.fixture(scope="session")
def built_debug_kernel(debug_revision: Revision, pipeline: Pipeline) -> BuildResult:
    return pipeline.build(debug_revision)


@pytest.fixture(autouse=True)
def _kernel_built_first(request: pytest.FixtureRequest) -> None:
    """Build before a scenario starts: a broken build (a patch that does not apply, a
    dropped option, a compile error) is then a setup *error* of each scenario of that
    revision, raised once and reported with the same message, not a failure of each."""
    for param, fixture in (("revision", "built_kernel"), ("debug_revision", "built_debug_kernel")):
        if param in request.fixturenames:
            request.getfixturevalue(fixture)


# Module-scoped guests of the scenario suite: each keeps an evidence dir and a verdict list.
SHARED_GUESTS = ("guest", "lifecycle_guest")


@pytest.fixture(autouse=True)
def _shared_guest_properties(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test on a shared guest gets its evidence dir and the verdicts it recorded as JUnit
    properties."""
    name = next((n for n in SHARED_GUESTS if n in request.fixturenames), None)
    if name is None:
        yield
        return
    guest = request.getfixturevalue(name)
    seen = len(guest.verdicts)
    request.node.user_properties.append(("evidence", str(guest.evidence)))
    yield
    for text in guest.verdicts[seen:]:
        request.node.user_properties.append(("verdict", text))


@pytest.fixture
def record_fault_rate(pytestconfig: pytest.Config):
    """Scenarios hand their page-fault benchmark result here for compare.md."""

    def record(revision: str, faults_per_second: float) -> None:
        pytestconfig.stash[FAULT_RATES][revision] = faults_per_second

    return record


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """QEMU dying under a scenario (killed from outside) is an infrastructure fault, not a
    defect of the series: it is reported as an error, the way pytest reports a failing
    fixture, in the terminal and in the JUnit file."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if call.when == "call" and call.excinfo is not None and call.excinfo.errisinstance(QemuDied):
        report.when = "setup"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if not session.testscollected:
        return
    out = Path(config.getoption("--results") or default_results_dir())
    out.mkdir(parents=True, exist_ok=True)
    rows = config.stash.get(MEASUREMENTS, [])
    fault_rates = config.stash.get(FAULT_RATES, {})
    if rows or fault_rates:
        markdown, _ = report.write_comparison(rows, out)
        if fault_rates:
            with markdown.open("a") as f:
                f.write(report.fault_benchmark_section(fault_rates))
    series = config.stash.get(RELEASE_SERIES, {})
    if series:
        report.plot_rss(
            {label: m.samples for label, m in series.items()},
            out / "compare-rss.png",
            {label: m.released_at for label, m in series.items()},
            title="QEMU RSS after the guest releases memory, by revision",
        )
    (out / "finished").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + "\n")
