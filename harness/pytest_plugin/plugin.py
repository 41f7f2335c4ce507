"""pytest plugin behind `pytest harness/`: options, session fixtures, evidence, reports.

Loaded by harness/conftest.py as a plugin (`pytest_plugins`). The scenario suite in
harness/scenarios/ asks for `pipeline`, `revision` (parametrised from --revisions) and
`evidence` (a per-test results directory) and gets cached builds and fresh VMs.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.build.kernel import BuildResult
from harness.build.revisions import Revision, resolve
from harness.core import errors
from harness.core.errors import (
    GuestHung,
    GuestPanic,
    HarnessError,
    QemuDied,
    StepTestedNothing,
    VMError,
)
from harness.core.paths import default_results_dir
from harness.core.progress import format_breakdown, time_spent
from harness.core.workers import own_results_dir
from harness.drive.workloads import ReleaseMeasurement
from harness.guest.image import GuestImage
from harness.guest.vm import boots_without_reporting
from harness.judge import (
    Check,
    Status,
    Verdict,
    VerdictFailed,
    judge_crash,
    judge_kernel_text,
    judge_stalled,
)
from harness.observe.dmesg import zero_filled_code
from harness.pipeline import GuestFactory, Pipeline, tested_with
from harness.report import junit as report
from harness.report import rundir
from harness.report.index_page import write_index
from harness.report.reply import ReplyContext, write_reply
from harness.report.session_data import SessionData, gather_worker_data, write_session_data

log = logging.getLogger(__name__)

DEFAULT_REVISIONS = "stock,hinting-v2,hinting-v2-fixed"
# What the scenarios hand to the session-end reports (compare.md, compare-rss.png, timing).
SESSION_DATA = pytest.StashKey[SessionData]()
DEFAULT_DEBUG_REVISIONS = "hinting-v2,hinting-v2-fixed"
# The parameters a scenario takes its kernel from: release revisions, debug revisions, and
# the hinting revisions in both flavours.
REVISION_PARAMS = ("revision", "debug_revision", "hinting_revision")


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
    if "hinting_revision" in metafunc.fixturenames:
        # scenarios judged on the release and the debug kernels of the hinting revisions
        revs = [r for r in selected_revisions(metafunc.config) if r.hinting]
        revs += [r for r in selected_debug_revisions(metafunc.config) if r.hinting]
        metafunc.parametrize("hinting_revision", revs, ids=[r.name for r in revs], scope="session")


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop tests whose revision list the user emptied (e.g. --debug-revisions ''), so
    they are not reported as skips that look like gaps."""
    keep, drop = [], []
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        params = getattr(getattr(item, "callspec", None), "params", {})
        wanted = [n for n in REVISION_PARAMS if n in fixtures]
        ok = all(isinstance(params.get(n), Revision) for n in wanted)
        (keep if ok else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    # The debug kernels' scenarios are the longest (60-75 s each under TCG): first, so that
    # under xdist they do not end the run on one worker while the other idles. A stable
    # sort: every other scenario (and each guest group's steps) keeps its order.
    items.sort(key=lambda item: "debug_revision" not in getattr(item, "fixturenames", ()))
    for fixture in SHARED_GUESTS:
        _group_by_revision(items, fixture)
    _join_guest_groups(items)


# Module-scoped guests of the scenario suite (one per revision, driven by a module's steps
# in order): each keeps an evidence dir and a verdict list, and stays on one xdist worker.
SHARED_GUESTS = ("guest", "lifecycle_guest", "isolation_guest", "offline_guest")

# Scenarios of one guest each that join a guest group of their revision under xdist:
# each revision's three groups then take about as long (seconds with three workers: the
# detection steps 32 + the negative control 14; the batches-out steps 35 + two zones 10-13;
# the lifecycle steps 34 + the release 7-11). Left to xdist, they went to whichever worker
# first had two steps left, and the lifecycle worker ran all three: 54-57 s against 37-45.
JOIN_GUEST_GROUP = {  # scenario -> (guest fixture, the module that drives the guest)
    "test_negative_control_feature_off": ("guest", "test_detection"),
    "test_two_zones": ("guest", "test_batches_out"),
    "test_release_returns_memory_to_host": ("lifecycle_guest", "test_lifecycle"),
}


def _group_name(fixture: str, module: str, revision: str) -> str:
    """One xdist group per guest: the same fixture name in two modules is two guests.
    (no "]" in the name: xdist takes a node id ending in "]" as having no group)"""
    return f"{fixture}-{module.removeprefix('test_')}-{revision}"


def _join_guest_groups(items: list[pytest.Item]) -> None:
    """Put each JOIN_GUEST_GROUP scenario in its revision's group, when that group runs."""
    groups = {
        mark.args[0] for item in items for mark in item.iter_markers("xdist_group") if mark.args
    }
    for item in items:
        name = getattr(item, "originalname", None) or item.name.split("[")[0]
        params = getattr(getattr(item, "callspec", None), "params", {})
        if name not in JOIN_GUEST_GROUP or "revision" not in params:  # release joins
            continue
        group = _group_name(*JOIN_GUEST_GROUP[name], params["revision"].name)
        if group in groups:
            item.add_marker(pytest.mark.xdist_group(group))


def _revision_of(item: pytest.Item) -> Revision:
    params = item.callspec.params  # type: ignore[attr-defined]
    return next(params[name] for name in REVISION_PARAMS if name in params)


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
        revision = _revision_of(item).name
        rank.setdefault(revision, len(rank))
        # Under `-n 2` (--dist loadgroup) one worker runs them all, in this order.
        module = Path(item.location[0]).stem
        item.add_marker(pytest.mark.xdist_group(_group_name(fixture, module, revision)))

    def key(item: pytest.Item) -> tuple[int, str, int]:
        revision = _revision_of(item).name
        path, line, _ = item.location
        return rank[revision], path, line or 0  # definition order within a revision

    ordered = iter(sorted(shared, key=key))
    positions = {id(i) for i in shared}
    items[:] = [next(ordered) if id(i) in positions else i for i in items]


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
    out = results_root(config)
    if out.is_dir() and config.stash.get(RAN_SCENARIOS, False):
        timing = {**spent, "total": total, **({"workers_busy": busy} if busy else {})}
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

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "setup":
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


@pytest.fixture(scope="session")
def results_dir(pytestconfig: pytest.Config) -> Path:
    """Where this process's scenarios leave evidence (results/<worker>/ under xdist)."""
    path = own_results_dir(results_root(pytestconfig))
    path.mkdir(parents=True, exist_ok=True)
    return path


def pipeline_from_options(config: pytest.Config) -> Pipeline:
    tree = config.getoption("--kernel-source")
    return Pipeline(
        kernel_tree=Path(tree).resolve() if tree else None,
        accel_request=config.getoption("--accel"),
        memory_mib=config.getoption("--guest-mem"),
        jobs=config.getoption("--jobs"),
    )


@pytest.fixture(scope="session")
def pipeline(pytestconfig: pytest.Config) -> Pipeline:
    """The session's pipeline; in an xdist worker it knows the builds that failed in the
    controller's prebuild, and raises their error (same class, message and hint) for every
    use of that revision's kernel instead of trying again."""
    pipeline = pipeline_from_options(pytestconfig)
    failed = getattr(pytestconfig, "workerinput", {}).get(PREBUILD_FAILURES_KEY, {})
    for name, failure in failed.items():
        pipeline.remember_failure(name, build_failure(failure))
    return pipeline


def prebuild_kernels(config: pytest.Config) -> tuple[float, dict[str, dict[str, str]]]:
    """Under xdist, build every kernel of the run's matrix in the controller, one after the
    other, before the workers start: a make -j3 in one worker beside the other worker's
    TCG guests slows both, and pushes timing checks over their bounds. Returns the seconds
    it took and the failed builds (revision name -> error class, message, hint), which the
    workers raise as their scenarios' setup error instead of trying again."""
    started = time.monotonic()
    failures: dict[str, dict[str, str]] = {}
    pipeline = pipeline_from_options(config)
    for rev in [*selected_revisions(config), *selected_debug_revisions(config)]:
        try:
            pipeline.build(rev)
        except HarnessError as error:
            log.warning("build of %s failed (its scenarios report it): %s", rev.name, error)
            failures[rev.name] = {
                "type": type(error).__name__,
                "message": error.message,
                "hint": error.hint,
            }
    return time.monotonic() - started, failures


@pytest.hookimpl(optionalhook=True)  # an xdist hook: absent under -p no:xdist
def pytest_configure_node(node) -> None:
    """Hand each worker the builds that failed in the controller's prebuild."""
    node.workerinput[PREBUILD_FAILURES_KEY] = node.config.stash.get(PREBUILD_FAILURES, {})
    node.workerinput[RUN_DIR_KEY] = str(results_root(node.config))


def build_failure(failure: dict[str, str]) -> HarnessError:
    """The error a build raised in the controller, rebuilt from what the worker was sent (a
    class name that is no harness error becomes a plain HarnessError)."""
    error_class = getattr(errors, failure["type"], HarnessError)
    if not (isinstance(error_class, type) and issubclass(error_class, HarnessError)):
        error_class = HarnessError
    return error_class(failure["message"], failure["hint"])


@pytest.fixture(scope="session")
def release_mib(pytestconfig: pytest.Config) -> int:
    return int(pytestconfig.getoption("--release-mib"))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_")


@pytest.fixture
def evidence(request: pytest.FixtureRequest, results_dir: Path) -> Iterator[Path]:
    """A fresh directory under the results dir for this test's console log, CSV, JSON."""
    # (under xdist --dist loadgroup a node id ends in "@group": not part of the name)
    path = results_dir / _safe(request.node.nodeid.split("::", 1)[-1].split("@", 1)[0])
    path.mkdir(parents=True, exist_ok=True)
    request.node.user_properties.append(("evidence", str(path)))
    for old in path.iterdir():
        if old.is_file():
            old.unlink()
    yield path
    # The per-run initrd is a copy of the cached image plus a key: not evidence.
    (path / "initrd.img").unlink(missing_ok=True)


@pytest.fixture
def judged(request: pytest.FixtureRequest, evidence: Path) -> Callable[[str, Verdict], Verdict]:
    """`judged(label, verdict)`: a scenario hands each verdict it asserts here. It travels as
    data (a JUnit property "verdict" holding `Verdict.to_json(label)`, which the reports and
    the mutant campaign read) and as text in the evidence's verdict.txt."""

    def record(label: str, verdict: Verdict) -> Verdict:
        request.node.user_properties.append(("verdict", verdict.to_json(label)))
        with (evidence / "verdict.txt").open("a") as out:
            out.write(f"== {label}\n{verdict}\n")
        return verdict

    return record


@pytest.fixture
def record_measurement(
    pytestconfig: pytest.Config, results_dir: Path, record_property: Callable[[str, object], None]
):
    """Scenarios hand their release measurements here for the revision comparison (and the
    numbers go into the JUnit file as the test's properties)."""

    def record(row: dict, measurement: ReleaseMeasurement | None = None) -> None:
        for key, value in row.items():
            record_property(key, value)
        data = pytestconfig.stash[SESSION_DATA]
        data.measurements.append(row)
        if measurement is not None:
            data.release_series[row["revision"]] = measurement
        with (results_dir / "measurements.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")

    return record


@pytest.fixture(scope="session")
def built_kernel(revision: Revision, pipeline: Pipeline) -> BuildResult:
    """The revision's kernel, built once per session (a failure is cached by pytest too)."""
    return pipeline.build(revision)


@pytest.fixture(scope="session")
def accel(pipeline: Pipeline) -> str:
    """ "kvm" or "tcg" for every guest of the session: probed once, before any build (the
    probe runs its own tiny program, not a revision's kernel)."""
    return pipeline.accel


@pytest.fixture(scope="session")
def guest_image(pipeline: Pipeline) -> GuestImage:
    """The busybox + dropbear + workloads initramfs, built once (cached by content)."""
    return pipeline.image


@pytest.fixture(scope="session")
def new_guest(pipeline: Pipeline, accel: str, guest_image: GuestImage) -> GuestFactory:
    """The guest factory: `new_guest(revision, workdir, **options)` is a not-yet-started VM
    (a context manager) of the revision's kernel."""
    return pipeline.guest


@pytest.fixture(autouse=True)
def _kernel_built_first(request: pytest.FixtureRequest) -> None:
    """Build before a scenario starts: a broken build (a patch that does not apply, a
    dropped option, a compile error) is then a setup *error* of each scenario of that
    revision, raised once and reported with the same message, not a failure of each."""
    for param in REVISION_PARAMS:
        if param in request.fixturenames:
            request.getfixturevalue("pipeline").build(request.getfixturevalue(param))
    if "new_guest" in request.fixturenames:  # the probe and the image: errors, not failures
        request.getfixturevalue("new_guest")


@pytest.fixture(autouse=True)
def _shared_guest_properties(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test on a shared guest gets its evidence dir and the verdicts it recorded as JUnit
    properties. Once a step found the guest hung (GuestHung: the VM was killed), the
    guest's later steps are skipped as blocked, naming that step, instead of each failing
    on a guest that is gone."""
    name = next((n for n in SHARED_GUESTS if n in request.fixturenames), None)
    if name is None:
        yield
        return
    guest = request.getfixturevalue(name)
    if (hang := guest_hang(guest)) is not None:
        pytest.skip(f"blocked: guest hung in {hang.step or 'an earlier step'}")
    seen = len(guest.verdicts)
    request.node.user_properties.append(("evidence", str(guest.evidence)))
    yield
    if (hang := guest_hang(guest)) is not None and hang.step is None:
        hang.step = request.node.name
        guest.record(hang.step, Verdict((hang_check(hang),)))
        guest.note(f"registers: {hang.registers}")
    for label, verdict in guest.verdicts[seen:]:
        request.node.user_properties.append(("verdict", verdict.to_json(label)))


def guest_hang(guest: object) -> GuestHung | None:
    """The hang a shared guest's VM was killed for, if it was."""
    return getattr(getattr(guest, "vm", None), "hang", None)


def hang_check(error: GuestHung) -> Check:
    return Check(GuestHung.check_name, Status.FAIL, error.detail)


@pytest.fixture
def record_fault_rate(pytestconfig: pytest.Config):
    """Scenarios hand their page-fault benchmark result here for compare.md."""

    def record(revision: str, faults_per_second: float) -> None:
        pytestconfig.stash[SESSION_DATA].fault_rates[revision] = faults_per_second

    return record


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Infrastructure faults are errors, defects of the series failures: QEMU dying under a
    scenario (killed from outside), or a guest that did not come up (QEMU refused to
    start, no ready marker, a panic at boot, SSH refused) is reported as an error, the
    way pytest reports a failing fixture, in the terminal and in the JUnit file. A guest
    that hangs once up fails the check `guest_responsive`."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if call.excinfo is None:
        return
    if isinstance(failed := call.excinfo.value, VerdictFailed):  # raised, not asserted
        item.user_properties.append(("verdict", failed.verdict.to_json(failed.label)))
    elif (stalled := judge_stalled(call.excinfo.value)) is not None:
        item.user_properties.append(("verdict", Verdict((stalled,)).to_json(call.when)))
        report.longrepr = f"{stalled}\n\n{report.longreprtext}"
    if call.when == "teardown":
        return
    if (check := panic_verdict(call.excinfo) or hang_verdict(call.excinfo)) is not None:
        # A panic the judge can attribute to the series, or a guest that stopped making
        # progress once it was up, is a failure of that check (recorded as data, which
        # the mutant campaign and the reports read).
        item.user_properties.append(("verdict", Verdict((check,)).to_json(call.when)))
        report.when = "call"
        report.longrepr = f"{check}\n\n{report.longreprtext}"
        return
    if isinstance(call.excinfo.value, HarnessError) and (
        crash := judge_crash(str(call.excinfo.value))
    ):
        item.user_properties.append(("verdict", Verdict((crash,)).to_json(call.when)))
    if call.when == "call" and is_infrastructure_fault(call.excinfo):
        report.when = "setup"


def panic_verdict(excinfo: pytest.ExceptionInfo[BaseException]) -> Check | None:
    """The failed judge check that explains a guest panic, if one does: kernel code read
    as zeros, on a kernel that boots when the balloon takes no hints (a control boot)."""
    error = excinfo.value
    if not isinstance(error, GuestPanic) or error.console_log is None:
        return None
    try:
        console = error.console_log.read_text(errors="replace")
    except OSError:
        return None
    if not zero_filled_code(console):
        return None
    config = error.vm_config
    if config is None or not (config.balloon and config.free_page_reporting):
        return None  # no hints were taken: the host did not zero that memory
    check = judge_kernel_text(console, boots_without_reporting(config))
    return None if check.passed else check


def hang_verdict(excinfo: pytest.ExceptionInfo[BaseException]) -> Check | None:
    """The failed check `guest_responsive` of a guest found hung after it was up (a hang
    during the boot stays a boot failure)."""
    error = excinfo.value
    if not isinstance(error, GuestHung) or error.during_boot:
        return None
    return hang_check(error)


def is_infrastructure_fault(excinfo: pytest.ExceptionInfo[BaseException]) -> bool:
    error = excinfo.value
    return isinstance(error, QemuDied | StepTestedNothing) or (
        isinstance(error, VMError) and error.during_boot
    )


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
