"""Where scenarios run: guest groups kept on one xdist worker, the worker count, and the
kernels built in the controller before the workers start."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from harness.build.revisions import Revision
from harness.core import errors
from harness.core.errors import (
    DiskFull,
    HarnessError,
)
from harness.pipeline import Pipeline
from harness.pytest_plugin.options import (
    REVISION_PARAMS,
    pipeline_from_options,
    selected_debug_revisions,
    selected_revisions,
)
from harness.pytest_plugin.stash import (
    PREBUILD_FAILURES,
    PREBUILD_FAILURES_KEY,
    RUN_DIR_KEY,
    results_root,
)

log = logging.getLogger(__name__)


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
    if selected_debug_revisions(config):  # two workers: see JOIN_GUEST_GROUP
        _join_guest_groups(items)


# Module-scoped guests of the scenario suite (one per revision, driven by a module's steps
# in order): each keeps an evidence dir and a verdict list, and stays on one xdist worker.
SHARED_GUESTS = ("guest", "lifecycle_guest", "isolation_guest", "offline_guest")


# Scenarios of one guest each that join a guest group of their revision, when the run has
# fewer workers than guests (the main job's two): each revision's three groups then take
# about as long (seconds with three workers: the detection steps 32 + the negative control
# 14; the batches-out steps 35 + two zones 10-13; the lifecycle steps 34 + the release
# 7-11). Left to xdist, they went to whichever worker first had two steps left, and the
# lifecycle worker ran all three: 54-57 s against 37-45. With a worker per guest group
# (no debug revision: WORKERS_WITHOUT_DEBUG_GUESTS) they are left free, and go to the first
# worker whose group is done (offline, isolation) instead of waiting behind the longest.
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


def prebuild_kernels(config: pytest.Config) -> tuple[float, dict[str, dict[str, str]]]:
    """Under xdist, build every kernel of the run's matrix in the controller, one after the
    other, before the workers start: a make -j3 in one worker beside the other worker's
    TCG guests slows both, and pushes timing checks over their bounds. Returns the seconds
    it took and the failed builds (revision name -> error class, message, hint), which the
    workers raise as their scenarios' setup error instead of trying again."""
    started = time.monotonic()
    failures: dict[str, dict[str, str]] = {}
    pipeline = pipeline_from_options(config)
    # The guest image and the KVM probe (7 s cold) need no kernel: made beside the makes,
    # they are in the cache when the workers ask for them.
    beside = threading.Thread(target=_image_and_accel, args=(pipeline,), daemon=True)
    beside.start()
    for rev in [*selected_revisions(config), *selected_debug_revisions(config)]:
        try:
            pipeline.build(rev)
        except DiskFull:
            raise  # not the revision's fault: the session ends with it (disk_full.py)
        except HarnessError as error:
            log.warning("build of %s failed (its scenarios report it): %s", rev.name, error)
            failures[rev.name] = {
                "type": type(error).__name__,
                "message": error.message,
                "hint": error.hint,
            }
    beside.join()
    return time.monotonic() - started, failures


def _image_and_accel(pipeline: Pipeline) -> None:
    """Warm the image and accel caches; an error here is the workers' to report (each
    makes them again and fails its scenarios with the error's own words)."""
    try:
        pipeline.image  # noqa: B018 (reading the property builds the image)
        pipeline.accel  # noqa: B018
    except Exception as error:
        log.warning("preparing the guest image or accelerator beside the builds: %s", error)


# Workers for `-n auto` (what `python3 -m harness run` passes): one TCG guest per core of a
# 2-core laptop (measured: the warm default suite 583 s serially, 342 s on two workers).
# Without the debug kernels (2 vCPUs each) one worker per guest group of a revision (five:
# detection, batches out, lifecycle, isolation, offline): the single-vCPU guests wait on
# SSH, QMP and react delays often enough that five share two cores better than three. One
# edited patch's full verdict (2026-12-07): 93-94 s on three workers, 79-81 s on five; the
# scenarios then use both cores (~140 s of CPU in 80 s). Each takes up to a 3 GiB guest.
DEFAULT_WORKERS = 2
WORKERS_WITHOUT_DEBUG_GUESTS = 5
GUEST_MEMORY_PER_WORKER_KIB = 3 * 1024 * 1024


@pytest.hookimpl(optionalhook=True)  # an xdist hook: absent under -p no:xdist
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """How many workers `-n auto` starts: 2; up to 5 when no debug revision is selected
    (as many 3 GiB guests as the host's available memory holds); none (a serial run) on a
    machine with fewer CPUs than 2."""
    if (os.cpu_count() or 1) < DEFAULT_WORKERS:
        return 0
    if selected_debug_revisions(config):
        return DEFAULT_WORKERS
    fit = available_memory_kib() // GUEST_MEMORY_PER_WORKER_KIB
    return max(DEFAULT_WORKERS, min(WORKERS_WITHOUT_DEBUG_GUESTS, fit))


def available_memory_kib() -> int:
    """The host's MemAvailable (what the guests' RAM can take without swapping)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 0


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
