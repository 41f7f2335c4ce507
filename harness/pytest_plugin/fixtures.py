"""The fixtures scenarios ask for: the pipeline, built kernels, the guest factory, evidence
directories, and `judged`, through which each verdict is recorded."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.build.kernel import BuildResult
from harness.build.revisions import Revision
from harness.core.workers import own_results_dir
from harness.drive.workloads import ReleaseMeasurement
from harness.guest.image import GuestImage
from harness.judge import (
    Verdict,
)
from harness.pipeline import GuestFactory, Pipeline
from harness.pytest_plugin.options import REVISION_PARAMS, pipeline_from_options
from harness.pytest_plugin.outcomes import guest_hang, hang_check
from harness.pytest_plugin.scheduling import SHARED_GUESTS, build_failure
from harness.pytest_plugin.stash import PREBUILD_FAILURES_KEY, SESSION_DATA, results_root


@pytest.fixture(scope="session")
def results_dir(pytestconfig: pytest.Config) -> Path:
    """Where this process's scenarios leave evidence (results/<worker>/ under xdist)."""
    path = own_results_dir(results_root(pytestconfig))
    path.mkdir(parents=True, exist_ok=True)
    return path


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


@pytest.fixture
def record_fault_rate(pytestconfig: pytest.Config):
    """Scenarios hand their page-fault benchmark result here for compare.md."""

    def record(revision: str, faults_per_second: float) -> None:
        pytestconfig.stash[SESSION_DATA].fault_rates[revision] = faults_per_second

    return record
