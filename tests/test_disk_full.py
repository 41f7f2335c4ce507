"""Disk full anywhere (issue 16): unpack, worktree, build, artifacts, results, the pytest
path. One DiskFull naming the directory, the space needed and PHH_CACHE; no traceback;
nothing half-written; the next run after freeing space is clean.

The tests that fill a disk do it for real, on a small tmpfs (mounted as root; skipped
where mounting is not allowed), unmounted in teardown."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import git

from harness.build import kernel as build_mod
from harness.build import source as source_mod
from harness.build.kernel import BuildRequest, BuildStatus, build_kernel
from harness.build.series import load_series
from harness.build.source import make_worktree, obtain_source
from harness.core import diskspace
from harness.core.errors import DiskFull, SourceError
from harness.core.paths import REPO_ROOT
from harness.core.tools import run_logged, tool_failure

Mount = Callable[[Path, str], Path]


@pytest.fixture
def tiny_fs() -> Iterator[Mount]:
    """mount(DIR, "4m"): a tmpfs of that size at DIR; all unmounted after the test."""
    mounted: list[Path] = []

    def mount(path: Path, size: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


def grow(path: Path, size: str) -> None:
    """Free space, as a user would: here by making the tmpfs larger."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def assert_names_the_fix(error: DiskFull, where: Path) -> None:
    text = str(error)
    assert f"no space left on the file system of {where} " in text, text
    assert "PHH_CACHE" in text and "GiB" in text and "needs" in text
    assert error.__cause__ is None and error.__suppress_context__


# --- the error and the helpers ---------------------------------------------------------------


def test_disk_full_names_directory_free_space_needs_and_phh_cache(tmp_path: Path) -> None:
    error = diskspace.disk_full(tmp_path, "unpacking x.deb", diskspace.UNPACK_NEEDS)
    assert error.message.startswith(f"no space left on the file system of {tmp_path} (")
    assert "free now) while unpacking x.deb" in error.message
    assert error.hint.startswith("unpacking x.deb needs about 1.9 GiB")
    assert f"df -h {tmp_path}" in error.hint and "PHH_CACHE" in error.hint
    results = diskspace.disk_full(tmp_path, "writing", diskspace.RESULTS_NEEDS, results=True)
    assert "--results DIR" in results.hint and "PHH_CACHE" in results.hint


def test_a_write_that_fails_for_space_becomes_one_disk_full(tmp_path: Path) -> None:
    guard = diskspace.disk_full_as_error(tmp_path, "unpacking", diskspace.UNPACK_NEEDS)
    with pytest.raises(DiskFull) as caught, guard:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "f"))
    assert_names_the_fix(caught.value, tmp_path)
    # not a full disk: untouched
    with pytest.raises(PermissionError), diskspace.disk_full_as_error(tmp_path, "unpacking"):
        raise PermissionError(errno.EACCES, "Permission denied")
    inner = DiskFull("no space left on ... while running git add:\n  fatal: x\nfull output: L", "")
    # the step around it names itself
    guard = diskspace.disk_full_as_error(tmp_path, "unpacking x.deb")
    with pytest.raises(DiskFull) as caught, guard:
        raise inner
    assert "while unpacking x.deb:\n  fatal: x\nfull output: L" in caught.value.message


def test_a_tool_that_says_the_disk_is_full_is_disk_full(tmp_path: Path) -> None:
    result = run_logged(
        "echo 'tar: linux/mm/x.c: Cannot write: No space left on device'; exit 2",
        tmp_path / "logs" / "x.log",
        shell=True,
    )
    error = tool_failure(SourceError, "unpacking x.deb", result, tmp_path / "log", tmp_path, "")
    assert isinstance(error, DiskFull)
    assert "while unpacking x.deb" in error.message


def test_a_build_stage_lets_disk_full_through(monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk is no verdict on the input: bisect must not call the prefix bad."""

    def full() -> tuple[BuildStatus, Path]:
        raise OSError(errno.ENOSPC, "No space left on device", "/cache/work/x/mm/a.o")

    with pytest.raises(DiskFull, match="no space left on the file system of /cache/work/x/mm"):
        build_mod._stage("make", full)


def test_make_output_keeps_draining_when_the_log_cannot_be_written(tmp_path: Path) -> None:
    """make writes more than a pipe holds; a log that fails (ENOSPC) must not stop the
    reader, or make would block forever."""

    class FullLog:
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

    proc = subprocess.Popen(
        [sys.executable, "-c", "print('  CC      x.o\\n' * 50000); print('last')"],
        stdout=subprocess.PIPE,
        text=True,
    )
    tracker = build_mod._OutputTracker(proc, FullLog())  # type: ignore[arg-type]
    tracker.start()
    assert proc.wait(timeout=60) == 0
    tracker.join(timeout=60)
    assert tracker.write_error is not None and tracker.write_error.errno == errno.ENOSPC
    assert tracker.tail().rstrip().endswith("last")


# --- unpack, worktree, build on a real full file system ----------------------------------------

MAKEFILE = "VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 999\n"


def fake_kernel(tree: Path, payload_bytes: int) -> Path:
    """A tiny 'kernel' with an incompressible file of `payload_bytes`."""
    (tree / "mm").mkdir(parents=True)
    (tree / "Makefile").write_text(MAKEFILE)
    (tree / "Kconfig").write_text('mainmenu "Linux"\n')
    (tree / "mm/page_alloc.c").write_text("int x;\n")
    (tree / "firmware.bin").write_bytes(os.urandom(payload_bytes))
    return tree


def fake_deb(tmp_path: Path, version: str, payload_bytes: int) -> Path:
    staging = tmp_path / "staging"
    fake_kernel(staging / "linux-source-6.1", payload_bytes)
    package = tmp_path / "pkg"
    (package / "DEBIAN").mkdir(parents=True)
    (package / "usr/src").mkdir(parents=True)
    (package / "DEBIAN/control").write_text(
        f"Package: linux-source-6.1\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: Test <test@example.org>\nDescription: fake kernel source\n"
    )
    tarball = package / "usr/src/linux-source-6.1.tar.xz"
    subprocess.run(
        ["tar", "-cJf", str(tarball), "-C", str(staging), "linux-source-6.1"], check=True
    )
    deb = tmp_path / f"linux-source-6.1_{version}_all.deb"
    subprocess.run(["dpkg-deb", "-Zxz", "--build", str(package), str(deb)], check=True,
                   capture_output=True)  # fmt: skip
    return deb


def test_unpack_into_a_full_cache_leaves_nothing_and_the_next_run_is_clean(
    tmp_path: Path, tiny_fs: Mount, monkeypatch: pytest.MonkeyPatch
) -> None:
    debs = tmp_path / "debs"  # the package outside the small file system
    debs.mkdir()
    fake_deb(tmp_path, "6.1.999-1", 6 << 20).rename(debs / "linux-source-6.1_6.1.999-1_all.deb")
    cache = tiny_fs(tmp_path / "cache", "4m")
    (cache / "debs").symlink_to(debs)
    monkeypatch.setenv("PHH_CACHE", str(cache))
    monkeypatch.setattr(source_mod, "_apt_candidate_version", lambda: "6.1.999-1")
    version_dir = cache / "src" / "6.1.999-1"

    with pytest.raises(DiskFull) as caught:
        obtain_source()

    assert_names_the_fix(caught.value, version_dir)
    assert "while unpacking linux-source-6.1_6.1.999-1_all.deb" in caught.value.message
    assert "needs about 1.9 GiB" in caught.value.hint
    assert list(version_dir.iterdir()) == []  # no scratch, no tree, no marker
    grow(cache, "64m")
    source = obtain_source()
    assert (version_dir / ".phh-complete").read_text().strip() == source.commit
    assert git(source.path, "ls-files", "firmware.bin") == "firmware.bin"


def test_a_worktree_on_a_full_disk_leaves_nothing_and_the_next_run_is_clean(
    tmp_path: Path, tiny_fs: Mount, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = fake_kernel(tmp_path / "linux", 6 << 20)
    git(tree, "init", "-q")
    git(tree, "add", ".")
    git(tree, "commit", "-q", "-m", "base")
    cache = tmp_path / "cache"
    monkeypatch.setenv("PHH_CACHE", str(cache))
    work = tiny_fs(cache / "work", "4m")
    source = obtain_source(tree)

    with pytest.raises(DiskFull) as caught:
        make_worktree(source, "w")

    assert_names_the_fix(caught.value, work)
    assert "while checking out worktree w" in caught.value.message
    assert list(work.iterdir()) == []  # no half checkout under any name
    assert git(tree, "worktree", "list", "--porcelain").count("worktree ") == 1
    grow(work, "64m")
    made = make_worktree(source, "w")
    assert git(made, "rev-parse", "HEAD") == source.commit
    assert (made / "firmware.bin").stat().st_size == 6 << 20


# make writes a bzImage of $(BZ_BYTES) bytes (from the environment).
BUILD_MAKEFILE = MAKEFILE + (
    ".DELETE_ON_ERROR:\n"
    "tinyconfig:\n\tprintf 'CONFIG_BASE=y\\n' > .config\n"
    "olddefconfig:\n\tsort -o .config .config\n"
    "bzImage: arch/x86/boot/bzImage\n\techo 'ffffffff81000000 T _text' > System.map\n"
    "FORCE:\n"
    "arch/x86/boot/bzImage: FORCE\n\tmkdir -p arch/x86/boot\n"
    "\thead -c $(BZ_BYTES) /dev/urandom > $@\n"
)


@pytest.fixture
def buildable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BuildRequest:
    tree = tmp_path / "linux"
    (tree / "mm").mkdir(parents=True)
    (tree / "Makefile").write_text(BUILD_MAKEFILE)
    (tree / "Kconfig").write_text("")
    (tree / "mm/page_alloc.c").write_text("int x;\n")
    (tree / ".gitignore").write_text("/arch/x86/boot/\n.config*\n.phh-*\nSystem.map\n")
    git(tree, "init", "-q")
    git(tree, "add", ".")
    git(tree, "commit", "-q", "-m", "fake kernel")
    monkeypatch.setenv("PHH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BZ_BYTES", str(6 << 20))
    fragment = tmp_path / "f.config"
    fragment.write_text("CONFIG_BASE=y\n")
    return BuildRequest(obtain_source(tree), load_series(None), (fragment,), jobs=1)


def test_make_on_a_full_disk_is_disk_full_not_a_compile_error(
    tmp_path: Path, tiny_fs: Mount, buildable: BuildRequest
) -> None:
    work = tiny_fs(tmp_path / "cache" / "work", "4m")
    with pytest.raises(DiskFull) as caught:
        build_kernel(buildable)
    (tree,) = work.iterdir()
    assert_names_the_fix(caught.value, tree)
    assert "(make bzImage)" in caught.value.message
    assert not (tree / "arch/x86/boot/bzImage").exists()  # make deleted its partial output
    assert not list((tmp_path / "cache" / "builds").iterdir())
    grow(work, "64m")
    assert build_kernel(buildable).status is BuildStatus.SUCCESS


def test_storing_a_kernel_on_a_full_disk_leaves_no_artifact_dir(
    tmp_path: Path, tiny_fs: Mount, buildable: BuildRequest
) -> None:
    builds = tiny_fs(tmp_path / "cache" / "builds", "4m")
    with pytest.raises(DiskFull) as caught:
        build_kernel(buildable)
    assert_names_the_fix(caught.value, builds)
    assert "while storing the kernel built in" in caught.value.message
    assert list(builds.iterdir()) == []  # no builds/<key>, no scratch
    grow(builds, "64m")
    result = build_kernel(buildable)
    assert result.status is BuildStatus.SUCCESS
    assert result.bzimage.stat().st_size == 6 << 20


# --- the pytest path -----------------------------------------------------------------------------

SUITE = """\
import pytest
from harness.core import diskspace

@pytest.fixture
def built_kernel(tmp_path):  # what a build that fills the cache raises
    raise diskspace.disk_full(tmp_path, "building in w (make bzImage)", diskspace.BUILD_NEEDS)

def test_a_build(built_kernel):
    pass

def test_evidence_fills_the_results(evidence):
    (evidence / "console.log").write_bytes(b"x" * (8 << 20))

def test_after(evidence):
    pass
"""


def run_suite(tmp_path: Path, results: Path, *select: str) -> subprocess.CompletedProcess[str]:
    """The tiny suite under the scenario suite's plugins, as harness/conftest.py loads them."""
    suite = tmp_path / "suite"
    suite.mkdir(exist_ok=True)
    (suite / "conftest.py").write_text((REPO_ROOT / "harness" / "conftest.py").read_text())
    (suite / "test_full.py").write_text(SUITE)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist",
         "--revisions", "", "--debug-revisions", "", "--results", str(results),
         str(suite / "test_full.py"), *select],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_a_fixture_that_hits_a_full_disk_is_one_error_and_stops_the_session(
    tmp_path: Path,
) -> None:
    run = run_suite(tmp_path, tmp_path / "results")
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "ERROR at setup of test_a_build" in output
    # pytest repeats the message in its short summary (in full when $CI is set): count
    # the reports before it
    reports = output.split("short test summary info")[0]
    assert reports.count("error: no space left on the file system of") == 1, output
    assert "Interrupted: disk full" in output
    assert "test_after" not in reports.split("ERRORS")[0]
    assert "Traceback" not in output and "INTERNALERROR" not in output
    assert "raise diskspace.disk_full" not in output  # no source listing either


def test_a_results_dir_that_fills_is_one_error_and_the_run_is_not_complete(
    tmp_path: Path, tiny_fs: Mount
) -> None:
    results = tiny_fs(tmp_path / "results", "2m")
    run = run_suite(tmp_path, results, "-k", "evidence or after")
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "test_full.py E" in output  # an error, not a failure of the kernel
    assert f"error: no space left on the file system of {results} " in output, output
    assert "--results DIR" in output and "PHH_CACHE" in output
    assert "test_after" not in output  # the session stopped
    # the reports at session end hit the same wall: said in one line, not again in full
    assert output.count("error: no space left on the file system of") == 1, output
    assert "(writing the run's reports failed too: no space left" in output
    assert "this run's results are incomplete" in output
    assert "Traceback" not in output and "INTERNALERROR" not in output, output
    assert not (results / "finished").exists()


# --- the command line, on the real Debian package ------------------------------------------------


@pytest.mark.real
def test_real_build_into_a_tiny_cache_is_one_error_and_the_next_unpack_is_clean(
    tmp_path: Path, tiny_fs: Mount, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python3 -m harness build` with PHH_CACHE on 20 MiB: exit 2, one error naming the
    directory, the space needed and PHH_CACHE, no traceback; with room, the same cache
    unpacks the real tree completely."""
    shared_debs = Path.home() / ".cache" / "phh" / "debs"
    if not any(shared_debs.glob("linux-source-6.1_*.deb")):
        obtain_source()  # downloads it into the shared cache
    cache = tiny_fs(tmp_path / "cache", "20m")
    (cache / "debs").symlink_to(shared_debs)  # the package is read, never written
    env = {**os.environ, "PHH_CACHE": str(cache)}
    run = subprocess.run(
        [sys.executable, "-m", "harness", "build", "--revision", "stock"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    (version_dir,) = (cache / "src").iterdir()
    assert f"error: no space left on the file system of {version_dir} (" in run.stderr
    assert "while unpacking linux-source-6.1_" in run.stderr
    assert "needs about 1.9 GiB" in run.stderr and "PHH_CACHE" in run.stderr
    assert list(version_dir.iterdir()) == []
    grow(cache, "3g")
    monkeypatch.setenv("PHH_CACHE", str(cache))
    source = obtain_source()
    assert (version_dir / ".phh-complete").read_text().strip() == source.commit
    assert git(source.path, "status", "--porcelain") == ""
