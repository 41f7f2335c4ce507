"""Build a bzImage for (source, series, fragments), with a content-keyed artifact cache.

Worktree: cache work/<name>, one per (source commit, series digest, fragments digest),
reused while its marker says that series is applied (so rebuilds are incremental).
Cache key: sha256 over source version + commit, the git tree the series produced, the final
.config, the compiler version and extra make variables; a hit returns without running make.
"""

from __future__ import annotations

import enum
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from harness.build import gcov_objects as coverage_objects
from harness.build import overlay as instrumentation
from harness.build import requests as build_requests
from harness.build.gcov_objects import is_coverage_config, objects_to_profile
from harness.build.kconfig import configure, merge_fragments
from harness.build.series import Series, apply_series
from harness.build.source import KernelSource, make_worktree, run_git, worktree_path
from harness.core.diskspace import (
    BUILD_NEEDS,
    WORKTREE_NEEDS,
    disk_full,
    disk_full_as_error,
    from_os_error,
    is_disk_full,
    output_says_disk_full,
)
from harness.core.errors import BuildError, DiskFull, HarnessError
from harness.core.fsutil import atomic_directory, exclusive_lock, write_text_atomic
from harness.core.paths import KCONFIG_DIR, cache_dir, cache_root
from harness.core.progress import step

log = logging.getLogger("harness.build.kernel")

SERIES_MARKER = ".phh-series.json"  # in the worktree: which series was applied on top
# ... and which one its build outputs are of: a copy of the series marker, written when a
# make in the tree succeeds. A tree whose series was applied but not built (the kernel was
# in the cache) has build outputs of another series, maybe of another .config.
BUILT_MARKER = ".phh-built.json"
NOTHING_BUILT = "{}\n"  # BUILT_MARKER of a fresh worktree, or of one whose make did not finish
MAKE_STARTED = "make_started"  # BUILT_MARKER: when that make began (seconds since the epoch)
BEFORE_MAKE_SECONDS = 2.0  # a source dated back is this much older than its make's start
BUILD_TIMESTAMP = "2019-07-24"  # fixed: identical inputs give identical images
PROGRESS_INTERVAL = 30.0
MAX_ERROR_LINES = 30
ERROR_CONTEXT = 2
DEFAULT_FRAGMENTS = (KCONFIG_DIR / "base.config", KCONFIG_DIR / "reporting.config")
# The kernel's compiler: gcc through ccache (depend mode, see make_env), except a source
# with an .incbin directive. Depend mode hashes a source and the headers in its dependency
# file, and an .incbin input is not among them: arch/x86/boot/compressed/piggy.S carries
# the compressed kernel that way, so an incremental build whose compressed kernel kept its
# size got the previous kernel back from the cache (found by the mutant campaign: hwm-16
# booted a kernel reporting hwm 32). Such sources are compiled by gcc directly.
COMPILER_WRAPPER = """#!/bin/sh
# Written by the page-hinting harness (harness/build/kernel.py, COMPILER_WRAPPER).
for arg; do src=$arg; done  # kbuild names the source last
case $src in
    *.c|*.S|*.s) [ -f "$src" ] && grep -q '[.]incbin' "$src" && exec gcc "$@" ;;
esac
exec ccache gcc "$@"
"""
# System.map: symbolizing where a stuck vCPU is (hang triage) needs the build's symbols.
ARTIFACTS = ("bzImage", ".config", "build.log", "meta.json", "System.map")


class MakeError(BuildError):
    """make failed: `errors` are the compiler's error lines (with context), `log` the full log.

    (Subclass kept here until errors.BuildError itself carries these fields.)
    """

    def __init__(self, message: str, hint: str, errors: list[str], log: Path) -> None:
        super().__init__(message, hint)
        self.errors = errors
        self.log = log


class BuildStatus(enum.Enum):
    """How a stage (or the whole build) ended, in kunit_tool's manner."""

    SUCCESS = "success"  # done now
    CACHED = "cached"  # make: same key built before, artifacts from the cache, make not run
    FAILURE = "failure"  # the stage's `error` says why; later stages did not run


@dataclass(frozen=True)
class BuildRequest:
    source: KernelSource
    series: Series
    fragments: tuple[Path, ...] = DEFAULT_FRAGMENTS
    jobs: int = 3
    name: str | None = None  # worktree name; default derived from commit + series digest
    # the harness's instrumentation, applied after the series where the tree lacks it
    # (harness/build/overlay.py); None: the series alone
    overlay: instrumentation.Overlay | None = None


@dataclass(frozen=True)
class StageResult:
    """One stage of a build: prepare-tree (worktree + series), configure (.config), make."""

    stage: str
    status: BuildStatus
    seconds: float
    output: Path | None = None  # the worktree, the .config, the artifacts directory
    error: HarnessError | None = None

    @property
    def ok(self) -> bool:
        return self.status is not BuildStatus.FAILURE


@dataclass(frozen=True)
class BuildResult:
    status: BuildStatus
    bzimage: Path
    config: Path
    log: Path
    key: str
    duration: float
    stages: tuple[StageResult, ...] = ()
    overlay: instrumentation.OverlayResult | None = None  # None: no overlay was asked for

    @property
    def system_map(self) -> Path:
        return self.bzimage.with_name("System.map")


def _stage(name: str, work: Callable[[], tuple[BuildStatus, Path]]) -> StageResult:
    """Run one stage; a HarnessError becomes its FAILURE result instead of propagating.
    A full disk is no verdict on the input (bisect would call the prefix bad): DiskFull
    propagates, a raw ENOSPC from an unguarded write as DiskFull too."""
    started = time.monotonic()
    try:
        status, output = work()
    except DiskFull:
        raise
    except HarnessError as error:
        return StageResult(name, BuildStatus.FAILURE, time.monotonic() - started, error=error)
    except OSError as error:
        if not is_disk_full(error):
            raise
        raise from_os_error(error, cache_root(), f"the {name} stage") from None
    return StageResult(name, status, time.monotonic() - started, output)


def prepare_tree_stage(req: BuildRequest, name: str) -> StageResult:
    return _stage(
        "prepare-tree",
        lambda: (
            BuildStatus.SUCCESS,
            prepare_worktree(req.source, req.series, name, req.overlay),
        ),
    )


def configure_stage(req: BuildRequest, tree: Path) -> StageResult:
    def work() -> tuple[BuildStatus, Path]:
        env = make_env(tree)
        with disk_full_as_error(tree, f"configuring {tree.name}", BUILD_NEEDS):
            config = configure(tree, req.fragments, make_args=make_variables(), env=env)
        return BuildStatus.SUCCESS, config

    return _stage("configure", work)


def make_stage(req: BuildRequest, tree: Path, config: Path) -> StageResult:
    """The cached artifacts for the key (CACHED), or make and store them (SUCCESS)."""

    def work() -> tuple[BuildStatus, Path]:
        profiled = None
        if is_coverage_config(config):
            profiled = objects_to_profile(tree, req.source.commit)
        extra = profiled.make_variables() if profiled else ()
        key = build_key(req.source, tree_id(tree), config, extra)
        cached = cached_build(key, coverage=profiled is not None)
        if cached is not None:
            log.info("build %s: cache hit (%s)", key[:12], cached)
            return BuildStatus.CACHED, cached
        logfile = cache_dir("logs") / f"build-{tree.name}-{key[:12]}.log"
        started = time.monotonic()
        if profiled:
            log.info("coverage build: profiling %s", ", ".join(profiled.objects) or "nothing")
        building = f"building in {tree.name} (make bzImage)"
        with (
            step(f"make bzImage in {tree}", logfile, phase="make"),
            disk_full_as_error(tree, building, BUILD_NEEDS),
        ):
            make_started = _mark_building(tree)
            _run_make(tree, req.jobs, logfile, extra)
            _mark_built(tree, make_started)
        builds = cache_dir("builds")
        with disk_full_as_error(builds, f"storing the kernel built in {tree.name}", BUILD_NEEDS):
            artifacts = _store_artifacts(
                req, tree, key, logfile, time.monotonic() - started, profiled
            )
        return BuildStatus.SUCCESS, artifacts

    return _stage("make", work)


def build_stages(req: BuildRequest) -> tuple[StageResult, ...]:
    """prepare-tree -> configure -> make, stopping at the first failure (its result last)."""
    name = req.name or worktree_name(req.source, req.series, req.fragments)
    with _worktree_lock(name):
        prepared = prepare_tree_stage(req, name)
        if not prepared.ok or prepared.output is None:
            return (prepared,)
        configured = configure_stage(req, prepared.output)
        if not configured.ok or configured.output is None:
            return prepared, configured
        return prepared, configured, make_stage(req, prepared.output, configured.output)


def build_kernel(req: BuildRequest) -> BuildResult:
    """The three stages; the failing stage's error is raised (it names the input). A
    request made before whose kernel is still cached is answered without a worktree."""
    digest = build_requests.request_digest(_request_parts(req))
    known = _known_build(digest)
    if known is not None:
        return known
    stages = build_stages(req)
    last = stages[-1]
    if last.error is not None:
        raise last.error
    assert last.output is not None  # the make stage: the only one with output
    artifacts = last.output
    tree = stages[0].output
    build_requests.remember(
        digest, artifacts.name, coverage=is_coverage_config(artifacts / ".config")
    )
    return _result(
        artifacts,
        last.status,
        sum(stage.seconds for stage in stages),
        stages,
        instrumentation.recorded(tree / SERIES_MARKER) if tree else None,
    )


def _result(
    artifacts: Path,
    status: BuildStatus,
    duration: float,
    stages: tuple[StageResult, ...],
    overlay: instrumentation.OverlayResult | None,
) -> BuildResult:
    return BuildResult(
        status=status,
        bzimage=artifacts / "bzImage",
        config=artifacts / ".config",
        log=artifacts / "build.log",
        key=artifacts.name,
        duration=duration,
        stages=stages,
        overlay=overlay,
    )


def _request_parts(req: BuildRequest) -> tuple[str, ...]:
    """What decides the kernel a request makes: the source, the series, the overlay, the
    merged config options, the toolchain (its versions are in the .config too) and make's
    variables. Not the worktree's name nor the job count."""
    return (
        req.source.version,
        req.source.commit,
        req.series.digest,
        req.overlay.digest if req.overlay is not None else "no overlay",
        fragments_digest(req.fragments),
        compiler_version(),
        linker_version(),
        COMPILER_WRAPPER,
        *make_variables(),
    )


def _known_build(digest: str) -> BuildResult | None:
    remembered = build_requests.remembered(digest)
    if remembered is None:
        return None
    key, coverage = remembered
    artifacts = cached_build(key, coverage=coverage)
    if artifacts is None:
        return None
    log.info("build %s: cache hit (the same request as before: no worktree)", key[:12])
    # meta.json records the overlay's outcome under the same key as a worktree marker
    overlay = instrumentation.recorded(artifacts / "meta.json")
    return _result(artifacts, BuildStatus.CACHED, 0.0, (), overlay)


@contextmanager
def _worktree_lock(name: str) -> Iterator[None]:
    """One build per worktree at a time (two makes in one tree corrupt it)."""
    waiting = f"waiting for another build in worktree {name}"
    with exclusive_lock(cache_dir("locks") / f"{name}.lock", waiting):
        yield


def worktree_name(source: KernelSource, series: Series, fragments: tuple[Path, ...]) -> str:
    """<source commit>-<series digest>-<fragments digest>: one worktree per configuration,
    so that switching between e.g. the stock and the debug config does not rebuild all."""
    return f"{source.commit[:12]}-{series.digest[:12]}-{fragments_digest(fragments)[:8]}"


def fragments_digest(fragments: tuple[Path, ...]) -> str:
    """Over the merged options, so that comments and paths do not matter."""
    options = sorted(merge_fragments(fragments).items())
    return hashlib.sha256(json.dumps(options).encode()).hexdigest()


def prepare_worktree(
    source: KernelSource,
    series: Series,
    name: str,
    overlay: instrumentation.Overlay | None = None,
) -> Path:
    """Worktree `name` with `series` (then what `overlay` adds) applied: reused when its
    marker matches; else taken over from a built worktree of the same source and config (an
    incremental rebuild: make redoes only what the series changes), else made fresh."""
    marker = _series_marker(source, series, overlay)
    path = worktree_path(name)
    if _marker_matches(path, marker):
        return make_worktree(source, name, reuse=True)
    # A full disk part way: the marker is written last, so the next run starts over.
    with disk_full_as_error(path.parent, f"preparing worktree {name}", WORKTREE_NEEDS):
        donor = None if path.exists() else take_over_donor(source, name, series.name)
        if donor is not None:
            return _apply_incrementally(source, series, path, donor, marker, overlay)
        tree = make_worktree(source, name)  # reset hard + clean: the old marker goes too
        write_text_atomic(tree / BUILT_MARKER, NOTHING_BUILT)
        if series.patches:
            with step(
                f"applying {len(series.patches)} patches of {series.name} to {tree}", phase="git"
            ):
                apply_series(tree, series)
        _write_marker(tree, marker, _instrument(tree, overlay))
    return tree


def _instrument(
    tree: Path, overlay: instrumentation.Overlay | None
) -> instrumentation.OverlayResult | None:
    """The overlay on top of the series (None: not asked for); where it does not apply the
    tree keeps the series alone (the caller names the revision in its one-line warning)."""
    if overlay is None:
        return None
    result = instrumentation.apply_overlay(tree, overlay)
    log.info("%s", result.line(f"worktree {tree.name}"))
    return result


def _write_marker(
    tree: Path, marker: dict[str, str], overlay: instrumentation.OverlayResult | None = None
) -> None:
    head = run_git(["rev-parse", "HEAD"], tree).stdout.strip()
    recorded = instrumentation.record({**marker, "head": head}, overlay)
    write_text_atomic(tree / SERIES_MARKER, json.dumps(recorded, indent=1) + "\n")


def take_over_donor(source: KernelSource, name: str, series_name: str = "") -> str | None:
    """Move a built worktree of the same source and fragments (another series) to `name`
    and return its HEAD; None if there is none free. The donor's own build stays cached.
    `series_name`: the series about to be applied (a tree of the same name is preferred)."""
    parts = name.split("-")
    if len(parts) != 3:  # a name of the caller's choosing: no family to take over from
        return None
    commit, _, fragments = parts
    family = [c for c in cache_dir("work").glob(f"{commit}-*-{fragments}") if c.name != name]
    for candidate in donors_newest_first(family, series_name):
        with (cache_dir("locks") / f"{candidate.name}.lock").open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # being built right now
            head = run_git(["rev-parse", "HEAD"], candidate, check=False)
            if head.returncode != 0:
                continue
            log.info("taking over built worktree %s for %s (incremental build)", candidate, name)
            target = worktree_path(name)
            run_git(["worktree", "move", str(candidate), str(target)],
                    candidate.parent, git_dir=source.git_dir)  # fmt: skip
            _repoint_build_paths(target, candidate)
            return head.stdout.strip()
    return None


def donors_newest_first(worktrees: list[Path], series_name: str = "") -> list[Path]:
    """Built worktrees, the one whose series was applied last first: in the maintainer's
    loop that is the previous edit of the same series, the fewest files away (measured: a
    hinting-v2 donor for an edited hinting-v2-fixed recompiled for 40 s, the previous
    edit's tree 6 s). Before recency: a tree whose build outputs are of the series named
    `series_name` (after a bisect, the series' own tree rather than a prefix's), then a
    tree whose outputs are of the series it carries (not one applied and then found in the
    cache: one edit after such a tree made 1165 objects again, 42 s).
    """

    def rank(tree: Path) -> tuple[bool, bool, float]:
        marker = tree / SERIES_MARKER
        applied_at = marker.stat().st_mtime if marker.is_file() else 0.0
        outputs_of = tree / BUILT_MARKER if (tree / BUILT_MARKER).is_file() else marker
        same_series = bool(series_name) and _series_name(outputs_of) == series_name
        return same_series, not applied_since_built(tree), applied_at

    built = [tree for tree in worktrees if (tree / ".config").is_file()]
    return sorted(built, key=rank, reverse=True)


def _series_name(marker: Path) -> str:
    try:
        return str(json.loads(marker.read_text()).get("series", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def applied_since_built(tree: Path) -> bool:
    """The tree's last successful make was of another series than the one it carries now
    (False when that is not known: a tree built before BUILT_MARKER existed)."""
    try:
        built = json.loads((tree / BUILT_MARKER).read_text())
    except (OSError, ValueError):
        return False
    try:
        applied = json.loads((tree / SERIES_MARKER).read_text())
    except (OSError, ValueError):
        return True
    built.pop(MAKE_STARTED, None)
    return built != applied


def _keep_what_was_built(tree: Path) -> None:
    """Before a taken-over tree gets another series: a tree built before BUILT_MARKER
    existed records its old series marker as what its outputs are of (the best there is)."""
    if not (tree / BUILT_MARKER).is_file():
        old = tree / SERIES_MARKER
        write_text_atomic(tree / BUILT_MARKER, old.read_text() if old.is_file() else NOTHING_BUILT)


def _mark_building(tree: Path) -> float:
    """Before make: until it succeeds, the outputs are of no series (a failed make leaves
    objects of the new sources beside the old). Returns when make starts."""
    write_text_atomic(tree / BUILT_MARKER, NOTHING_BUILT)
    return time.time()


def _mark_built(tree: Path, make_started: float) -> None:
    marker = tree / SERIES_MARKER
    if marker.is_file():
        built = {**json.loads(marker.read_text()), MAKE_STARTED: make_started}
        write_text_atomic(tree / BUILT_MARKER, json.dumps(built, indent=1) + "\n")


def _built_from(tree: Path) -> tuple[str, float] | None:
    """The commit the tree's outputs were built from and when that make began; None when
    not known (never built, a make that did not finish, a marker from before either was
    recorded, or the commit is gone)."""
    try:
        built = json.loads((tree / BUILT_MARKER).read_text())
        head, started = str(built["head"]), float(built[MAKE_STARTED])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    exists = run_git(["cat-file", "-e", f"{head}^{{commit}}"], tree, check=False)
    return (head, started) if exists.returncode == 0 else None


def _repoint_build_paths(tree: Path, old: Path) -> None:
    """objtool is built with absolute paths (tools/objtool/.*.cmd, .*.d): after a move its
    recorded commands name the old directory, make would rebuild objtool, and every object
    depends on objtool. Rewriting the recorded paths keeps the rebuild incremental."""
    old_bytes, new_bytes = str(old).encode(), str(tree).encode()
    for pattern in (".*.cmd", ".*.d"):
        for recorded in (tree / "tools").rglob(pattern):
            content = recorded.read_bytes()
            if old_bytes in content:
                stamp = recorded.stat()
                recorded.write_bytes(content.replace(old_bytes, new_bytes))
                os.utime(recorded, (stamp.st_atime, stamp.st_mtime))


def _apply_incrementally(
    source: KernelSource,
    series: Series,
    tree: Path,
    donor_head: str,
    marker: dict[str, str],
    overlay: instrumentation.Overlay | None = None,
) -> Path:
    """Reset the taken-over tree to the source (build outputs stay), apply `series`, and
    date back files whose content is what the tree's outputs were built from, so that make
    recompiles only what really changed (a header the series touches the same way would
    otherwise rebuild most of the kernel)."""
    built = _built_from(tree)
    times: dict[str, tuple[float, float]] = {}  # no record of the build: the donor's mtimes
    if built is None:
        touched = _changed_files(tree, source.commit, donor_head)
        times = {f: (st.st_atime, st.st_mtime) for f in touched if (st := _stat(tree / f))}
    with step(f"applying {len(series.patches)} patches of {series.name} to {tree}", phase="git"):
        run_git(["reset", "-q", "--hard", source.commit], tree)
        _keep_what_was_built(tree)
        (tree / SERIES_MARKER).unlink(missing_ok=True)
        if series.patches:
            apply_series(tree, series)
        result = _instrument(tree, overlay)
    if built is not None:
        really_changed = _date_back_what_was_built(tree, source.commit, donor_head, built)
    else:  # what the donor carried is the best guess of what its outputs were made from
        really_changed = _changed_files(tree, donor_head, "HEAD")
        for name, stamp in times.items():
            if name not in really_changed and (tree / name).exists():
                os.utime(tree / name, stamp)
    _write_marker(tree, marker, result)
    log.info("incremental: %d files differ from the sources of the tree's build",
             len(really_changed))  # fmt: skip
    return tree


def _date_back_what_was_built(
    tree: Path, source_commit: str, donor_head: str, built: tuple[str, float]
) -> set[str]:
    """Every file git may have written since the tree's last make (the donor's series, the
    built series, the new one) whose content is the same as at that make is dated back to
    the source commit (or just before that make, if earlier). That is older than every
    output the tree has, so make keeps them all; and it is safe however old: after a
    successful make, every output agrees with the sources of that make. Just before that
    make would not do: a Kconfig file newer than an earlier make's auto.conf re-syncs the
    config, and every object is made again (1032 objects, 35 s). Returns the files that
    differ from the build's sources."""
    built_head, make_started = built
    really_changed = _changed_files(tree, built_head, "HEAD")
    written = (
        _changed_files(tree, source_commit, built_head)
        | _changed_files(tree, source_commit, donor_head)
        | _changed_files(tree, source_commit, "HEAD")
    )
    committed = float(run_git(["log", "-1", "--format=%ct", source_commit], tree).stdout)
    older_than_outputs = min(committed, make_started - BEFORE_MAKE_SECONDS)
    for name in written - really_changed:
        stat = _stat(tree / name)
        if stat is not None and stat.st_mtime > older_than_outputs:
            os.utime(tree / name, (stat.st_atime, older_than_outputs))
    return really_changed


def _changed_files(tree: Path, old: str, new: str) -> set[str]:
    diff = run_git(["diff", "--name-only", old, new], tree).stdout
    return {line for line in diff.splitlines() if line}


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:
        return None


def _series_marker(
    source: KernelSource, series: Series, overlay: instrumentation.Overlay | None = None
) -> dict[str, str]:
    marker = {"source_commit": source.commit, "series": series.name, "digest": series.digest}
    if overlay is not None:  # (only then: a tree built before the overlay existed is reused)
        marker["overlay_digest"] = overlay.digest
    return marker


def _marker_matches(tree: Path, expected: dict[str, str]) -> bool:
    try:
        recorded = json.loads((tree / SERIES_MARKER).read_text())
    except (OSError, ValueError):
        return False
    if any(recorded.get(field) != value for field, value in expected.items()):
        return False
    head = run_git(["rev-parse", "HEAD"], tree, check=False).stdout.strip()
    return head == recorded.get("head")


def compiler_version() -> str:
    result = subprocess.run(["gcc", "--version"], capture_output=True, text=True, check=True)
    return result.stdout.splitlines()[0].strip()


def linker_version() -> str:
    result = subprocess.run(["ld", "--version"], capture_output=True, text=True, check=False)
    return (result.stdout.splitlines() or [""])[0].strip()


def tree_id(tree: Path) -> str:
    """The git tree the series produced: the same patches from another mbox (a cover
    letter, other subject prefixes, other dates) give the same tree, hence the same build."""
    return run_git(["rev-parse", "HEAD^{tree}"], tree).stdout.strip()


def build_key(
    source: KernelSource, tree: str, config: Path, make_extra: tuple[str, ...] = ()
) -> str:
    """sha256 over the source, the tree the series produced, the final .config, the
    compiler and the make variables."""
    digest = hashlib.sha256()
    # the wrapper's text too: a build made through another wrapper (or plain ccache, whose
    # depend mode could return a stale piggy.o) is not reused
    recipe = (compiler_version(), COMPILER_WRAPPER, *make_extra)
    for part in (source.version, source.commit, tree, *recipe):
        digest.update(part.encode() + b"\0")
    digest.update(config.read_bytes())
    return digest.hexdigest()


def cached_build(key: str, *, coverage: bool = False) -> Path | None:
    directory = cache_dir("builds") / key
    wanted = [directory / name for name in ARTIFACTS]
    if coverage:
        wanted.append(directory / coverage_objects.BUNDLE / coverage_objects.MANIFEST)
    if not all(path.is_file() for path in wanted):
        return None
    if coverage and not coverage_objects.is_current(directory / coverage_objects.BUNDLE):
        return None  # made before the bundle listed the overlay's lines: made again
    return directory


# --- make ----------------------------------------------------------------------------------


def compiler_wrapper() -> Path:
    """COMPILER_WRAPPER, installed in the cache: kbuild records the compiler's path in
    every object's command, and one path for every clone keeps their builds incremental."""
    path = cache_dir("tools") / "ccache-gcc"
    if not path.is_file() or path.read_text() != COMPILER_WRAPPER:
        scratch = path.with_name(f".{path.name}.{os.getpid()}")
        scratch.write_text(COMPILER_WRAPPER)
        scratch.chmod(0o755)
        os.replace(scratch, path)
    return path


def make_variables() -> tuple[str, ...]:
    return (
        f"CC={compiler_wrapper()}",
        "HOSTCC=ccache gcc",
        "KBUILD_BUILD_USER=harness",
        "KBUILD_BUILD_HOST=harness",
        f"KBUILD_BUILD_TIMESTAMP={BUILD_TIMESTAMP}",
    )


def make_command(jobs: int, extra: tuple[str, ...] = ()) -> list[str]:
    return ["nice", "-n", "10", "make", f"-j{jobs}", *make_variables(), *extra, "bzImage"]


def make_env(tree: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CCACHE_DIR": str(cache_dir("ccache")),
        "CCACHE_BASEDIR": str(tree),
        # Depend mode: the cache key comes from the compiler's own dependency file (kbuild
        # always asks for one), so a miss does not run the preprocessor a second time.
        # Measured on the stock config, cold, make -j3: no ccache 214 s, ccache's default
        # mode 328 s, depend mode 238 s; warm from depend mode 43 s (96 % hits).
        "CCACHE_DEPEND": "1",
        "LC_ALL": "C",
    }


def _run_make(tree: Path, jobs: int, logfile: Path, extra: tuple[str, ...] = ()) -> None:
    """make bzImage with output to `logfile` only; progress lines every ~30 s. A make that
    failed for lack of space is DiskFull, not a compile error of the series."""
    env = make_env(tree)
    started = time.monotonic()
    with logfile.open("w") as out:
        proc = subprocess.Popen(
            make_command(jobs, extra),
            cwd=tree,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,  # its own process group, so that it can be stopped whole
        )
        tracker = _OutputTracker(proc, out)
        tracker.start()
        try:
            while True:
                try:
                    proc.wait(timeout=PROGRESS_INTERVAL)
                    break
                except subprocess.TimeoutExpired:
                    log.info("make: %.0f s, %s", time.monotonic() - started, tracker.last_step)
        except BaseException:
            _stop(proc)
            raise
        finally:
            tracker.join()
    if proc.returncode != 0:
        output = tracker.tail() if tracker.write_error else logfile.read_text(errors="replace")
        if tracker.write_error is not None or output_says_disk_full(output, tree):
            raise disk_full(tree, "make bzImage", BUILD_NEEDS)
        errors = error_lines(output.splitlines())
        raise MakeError(
            f"make bzImage failed in {tree} (exit {proc.returncode}); log: {logfile}\n"
            + "\n".join(errors),
            f"fix the errors above (full output in {logfile}) and build again",
            errors,
            logfile,
        )


class _OutputTracker(threading.Thread):
    """Copies make's output into the log and remembers the last build step it printed.
    When the log cannot be written (a full disk) it keeps reading, so that make never
    blocks on a full pipe, and keeps the last lines in memory instead."""

    def __init__(self, proc: subprocess.Popen[str], out: TextIO) -> None:
        super().__init__(daemon=True)
        self.proc, self.out = proc, out
        self.last_step = "starting"
        self.write_error: OSError | None = None
        self._tail: deque[str] = deque(maxlen=200)

    def run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._tail.append(line)
            self._write(line)
            if re.match(r"^\s+(CC|LD|AR|AS|OBJCOPY|GEN|HOSTCC)\s", line):
                self.last_step = line.strip()
        self._write(None)

    def _write(self, line: str | None) -> None:
        if self.write_error is not None:
            return
        try:
            if line is None:
                self.out.flush()
            else:
                self.out.write(line)
        except OSError as error:
            self.write_error = error

    def tail(self) -> str:
        return "".join(self._tail)


def _stop(proc: subprocess.Popen[str]) -> None:
    """Terminate make and every compiler it started (its process group)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def error_lines(lines: list[str]) -> list[str]:
    """Lines with 'error:' (and make's 'Error N'), with a little context, at most ~30."""
    hits = [i for i, line in enumerate(lines) if re.search(r"error:|\*\*\* .*Error \d+", line)]
    wanted: list[int] = []
    for hit in hits:
        for index in range(max(0, hit - ERROR_CONTEXT), min(len(lines), hit + ERROR_CONTEXT + 1)):
            if index not in wanted:
                wanted.append(index)
    if not wanted:
        wanted = list(range(max(0, len(lines) - 10), len(lines)))
    return [lines[i] for i in sorted(wanted)][:MAX_ERROR_LINES]


# --- artifacts -----------------------------------------------------------------------------


def _store_artifacts(
    req: BuildRequest,
    tree: Path,
    key: str,
    logfile: Path,
    duration: float,
    profiled: coverage_objects.Profiled | None = None,
) -> Path:
    """Copy bzImage, .config, System.map, build.log, meta.json (and a coverage build's gcov bundle)
    into builds/<key> (temp dir + rename)."""
    target = cache_dir("builds") / key
    # replace: an existing one is a concurrent build's complete copy, or a broken one
    with atomic_directory(target) as scratch:
        shutil.copy2(tree / "arch/x86/boot/bzImage", scratch / "bzImage")
        shutil.copy2(tree / ".config", scratch / ".config")
        shutil.copy2(tree / "System.map", scratch / "System.map")
        shutil.copy2(logfile, scratch / "build.log")
        if profiled is not None:
            bundle = scratch / coverage_objects.BUNDLE
            coverage_objects.write_bundle(
                tree, req.source.commit, profiled, bundle, _overlay_commits(tree)
            )
        meta = _meta(req, tree, key, duration, profiled.make_variables() if profiled else ())
        (scratch / "meta.json").write_text(json.dumps(meta, indent=1))
    return target


def _overlay_commits(tree: Path) -> int:
    """How many commits the harness's instrumentation overlay put on top of the series."""
    result = instrumentation.recorded(tree / SERIES_MARKER)
    if result is None or result.status is not instrumentation.OverlayStatus.APPLIED:
        return 0
    return len(result.applied)


def _recorded_overlay(tree: Path) -> dict[str, object] | None:
    result = instrumentation.recorded(tree / SERIES_MARKER)
    return result.to_json() if result else None


def _meta(
    req: BuildRequest, tree: Path, key: str, duration: float, extra: tuple[str, ...]
) -> dict[str, object]:
    return {
        "key": key,
        "source": {
            "kind": req.source.kind,
            "version": req.source.version,
            "commit": req.source.commit,
            "path": str(req.source.path),
        },
        "series": {
            "name": req.series.name,
            "digest": req.series.digest,
            "patches": [str(p) for p in req.series.patches],
        },
        "fragments": [str(f) for f in req.fragments],
        "overlay": _recorded_overlay(tree),
        "compiler": compiler_version(),
        "worktree": str(tree),
        "make": make_command(req.jobs, extra),
        "duration_s": round(duration, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
