"""Obtain the kernel source (Debian's linux-source-6.1 or a user tree) and make worktrees.

Every tree the harness builds from is a git repository with one known commit, so that a
build is identified by (version, commit, series digest) and worktrees can be reset exactly:

* Debian: `apt-get download linux-source-6.1` into cache `debs/`, unpacked once into
  `src/<version>/linux-source-6.1` and committed once (`git add -f -A .`). The first
  worktree takes the unpacked files; the repository then keeps only the objects (bare).
* A user git tree: its HEAD commit is used; its working tree is never touched (uncommitted
  changes are ignored, with a warning). Worktrees are registered in its `.git`.
* A user tree that is not a git repo: snapshotted into a bare repository in the cache
  (`user/<sha of the path>.git`, with the user tree as its work tree). The commit is keyed
  by content: an unchanged tree gives the same commit, an edited one a new commit, and
  git's index makes re-snapshotting cheap. The user tree itself is only read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness.core.diskspace import (
    RUN_NEEDS,
    UNPACK_NEEDS,
    WORKTREE_NEEDS,
    disk_full,
    disk_full_as_error,
    output_says_disk_full,
)
from harness.core.errors import SourceError
from harness.core.fsutil import exclusive_lock, write_text_atomic
from harness.core.paths import cache_dir
from harness.core.progress import step
from harness.core.tools import explaining_lines, hint_for, run_logged, tool_failure

log = logging.getLogger("harness.build.source")

DEBIAN_PACKAGE = "linux-source-6.1"
TREE_DIRNAME = "linux-source-6.1"
COMPLETE_MARKER = ".phh-complete"  # next to the tree, records the pristine commit
HARNESS_IDENTITY = ("harness", "harness@localhost")
KERNEL_TREE_FILES = ("Makefile", "Kconfig", "mm/page_alloc.c")


@dataclass(frozen=True)
class KernelSource:
    """A kernel tree at a known commit. `git_dir` is where worktrees are made from."""

    path: Path
    version: str
    kind: Literal["debian", "user"]
    commit: str
    git_dir: Path


# A commit of the pristine tree writes ~83,000 loose objects, and git then packs them in
# a detached `gc --auto`: 70 s on both cores, under the configure and the make that follow
# (measured 2026-12-07). The harness's repositories are caches: never packed behind its back.
NO_AUTO_GC = ("-c", "gc.auto=0", "-c", "maintenance.auto=false")


def run_git(
    args: list[str],
    cwd: Path,
    *,
    git_dir: Path | None = None,
    work_tree: Path | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run git with the harness identity; stdout and stderr captured as text."""
    name, email = HARNESS_IDENTITY
    cmd = ["git", "-c", f"user.name={name}", "-c", f"user.email={email}", *NO_AUTO_GC]
    if git_dir is not None:
        cmd.append(f"--git-dir={git_dir}")
    if work_tree is not None:
        cmd.append(f"--work-tree={work_tree}")
    cmd += args
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if check and result.returncode != 0:
        output = result.stderr.strip() or result.stdout.strip()
        if output_says_disk_full(output, cwd):
            raise disk_full(cwd, f"running git {args[0]}", RUN_NEEDS)
        lines = "\n  ".join(explaining_lines(output))
        raise SourceError(
            f"git {' '.join(args)} failed in {cwd} (exit {result.returncode}):\n  {lines}",
            hint_for(output, cwd, "check that the directory is a healthy git repository"),
        )
    return result


def obtain_source(user_tree: Path | None = None) -> KernelSource:
    """The Debian linux-source-6.1 tree (default) or the validated user tree."""
    if user_tree is not None:
        return _user_source(user_tree)
    deb = _debian_package()
    version = _deb_version(deb)
    tree = _unpacked_tree(deb, version)
    commit = _head_commit(tree)
    return KernelSource(tree, version, "debian", commit, tree / ".git")


# --- Debian source -------------------------------------------------------------------------


def _debian_package() -> Path:
    """The cached .deb of the apt candidate, downloading it if needed; offline: newest cached."""
    debs = cache_dir("debs")
    candidate = _apt_candidate_version()
    if candidate is not None:
        cached = _cached_deb_for(debs, candidate)
        if cached is not None:
            return cached
        if _apt_download(debs):
            cached = _cached_deb_for(debs, candidate)
            if cached is not None:
                return cached
    newest = _newest_cached_deb(debs)
    if newest is None:
        raise SourceError(
            f"cannot obtain {DEBIAN_PACKAGE}: apt has no candidate or the download failed, "
            f"and {debs} holds no {DEBIAN_PACKAGE}_*.deb",
            "run `apt-get update` (needs network to deb.debian.org), or pass a kernel tree "
            "with --kernel-source",
        )
    log.warning("using cached %s (apt candidate unavailable)", newest.name)
    return newest


def _apt_candidate_version() -> str | None:
    result = subprocess.run(["apt-cache", "policy", DEBIAN_PACKAGE], capture_output=True, text=True)
    match = re.search(r"Candidate:\s*(\S+)", result.stdout)
    if result.returncode != 0 or match is None or match.group(1) == "(none)":
        return None
    return match.group(1)


def _cached_deb_for(debs: Path, version: str) -> Path | None:
    for deb in debs.glob(f"{DEBIAN_PACKAGE}_*.deb"):
        if _deb_version(deb) == version:
            return deb
    return None


def _apt_download(debs: Path) -> bool:
    """`apt-get download` into `debs` (apt's _apt sandbox warning as root is harmless)."""
    with step(f"apt-get download {DEBIAN_PACKAGE}", phase="fetch"):
        result = subprocess.run(
            ["apt-get", "download", DEBIAN_PACKAGE], cwd=debs, capture_output=True, text=True
        )
    if result.returncode != 0:
        log.warning("apt-get download failed: %s", result.stderr.strip())
    return result.returncode == 0


def _newest_cached_deb(debs: Path) -> Path | None:
    newest: Path | None = None
    for deb in debs.glob(f"{DEBIAN_PACKAGE}_*.deb"):
        if newest is None or _version_newer(_deb_version(deb), _deb_version(newest)):
            newest = deb
    return newest


def _version_newer(a: str, b: str) -> bool:
    result = subprocess.run(["dpkg", "--compare-versions", a, "gt", b])
    return result.returncode == 0


def _deb_version(deb: Path) -> str:
    result = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True)
    if result.returncode != 0 or not result.stdout.strip():
        raise SourceError(
            f"{deb} is not a readable Debian package: {result.stderr.strip()}",
            f"delete {deb} so that it is downloaded again",
        )
    return result.stdout.strip()


def _unpacked_tree(deb: Path, version: str) -> Path:
    """src/<version>/linux-source-6.1 as a committed git repo, unpacked once."""
    version_dir = cache_dir("src", version)
    tree = version_dir / TREE_DIRNAME
    marker = version_dir / COMPLETE_MARKER
    if marker.is_file() and (tree / ".git").is_dir():
        return tree
    with disk_full_as_error(version_dir, f"unpacking {deb.name}", UNPACK_NEEDS):
        if _is_committed_tree(tree):  # made by hand before the marker existed
            write_text_atomic(marker, _head_commit(tree) + "\n")
            return tree
        if tree.exists():
            raise SourceError(
                f"{tree} exists but is not a complete harness tree (no commit, no {marker.name})",
                f"remove {tree} so that it is unpacked again",
            )
        _unpack_and_commit(deb, version, version_dir)
        write_text_atomic(marker, _head_commit(tree) + "\n")
    return tree


def _is_committed_tree(tree: Path) -> bool:
    if not (tree / ".git").is_dir():
        return False
    result = subprocess.run(
        ["git", "log", "-1", "--format=%s"], cwd=tree, capture_output=True, text=True
    )
    return result.returncode == 0 and result.stdout.startswith(f"{TREE_DIRNAME} ")


def _unpack_and_commit(deb: Path, version: str, version_dir: Path) -> None:
    """Extract and commit in a temp dir, then rename: an interruption leaves no half tree."""
    scratch = version_dir / f".unpack-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        with step(f"unpacking {deb.name}", phase="unpack"):
            _extract_tarball(deb, scratch)
        tree = scratch / TREE_DIRNAME
        with step(f"committing pristine {version}", phase="git"):
            run_git(["init", "-q"], tree)
            run_git(["add", "-f", "-A", "."], tree)
            run_git(["commit", "-q", "-m", f"{TREE_DIRNAME} {version} (pristine)"], tree)
        tree.rename(version_dir / TREE_DIRNAME)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _extract_tarball(deb: Path, scratch: Path) -> None:
    tarball = f"./usr/src/{TREE_DIRNAME}.tar.xz"
    log = cache_dir("logs") / f"unpack-{deb.stem}.log"
    unpack = run_logged(
        f"set -o pipefail; dpkg-deb --fsys-tarfile '{deb}' | tar -x -C '{scratch}' '{tarball}'"
        f" && xz -d -c -T0 '{scratch / tarball}' | tar -x -C '{scratch}'"
        f" && rm -rf '{scratch / 'usr'}'",
        log,
        shell=True,
    )
    if unpack.returncode != 0 or not (scratch / TREE_DIRNAME).is_dir():
        raise tool_failure(
            SourceError,
            f"unpacking {deb}",
            unpack,
            log,
            scratch,
            f"the package looks damaged: delete {deb} so that it is downloaded again",
            UNPACK_NEEDS,
        )


def _head_commit(tree: Path) -> str:
    return run_git(["rev-parse", "HEAD"], tree).stdout.strip()


# --- User tree -----------------------------------------------------------------------------


def _user_source(user_tree: Path) -> KernelSource:
    tree = user_tree.expanduser().resolve()
    validate_kernel_tree(tree)
    version = makefile_version(tree)
    if _is_git_toplevel(tree):
        _warn_if_dirty(tree)
        common = run_git(["rev-parse", "--git-common-dir"], tree).stdout.strip()
        git_dir = (tree / common).resolve()
        return KernelSource(tree, version, "user", _head_commit(tree), git_dir)
    git_dir = _snapshot_repo(tree)
    commit = run_git(["rev-parse", "HEAD"], tree, git_dir=git_dir).stdout.strip()
    return KernelSource(tree, version, "user", commit, git_dir)


def validate_kernel_tree(tree: Path) -> None:
    """Raise SourceError unless `tree` has the files every kernel tree has."""
    hint = "pass the top directory of a Linux kernel source tree (the one with the Makefile)"
    if not tree.is_dir():
        raise SourceError(f"kernel tree {tree} does not exist or is not a directory", hint)
    missing = [name for name in KERNEL_TREE_FILES if not (tree / name).is_file()]
    if missing:
        raise SourceError(
            f"{tree} does not look like a kernel tree: missing {', '.join(missing)}", hint
        )
    makefile_version(tree)


def makefile_version(tree: Path) -> str:
    """VERSION.PATCHLEVEL[.SUBLEVEL][EXTRAVERSION] from the top Makefile."""
    fields: dict[str, str] = {}
    for line in (tree / "Makefile").read_text(errors="replace").splitlines()[:20]:
        match = re.match(r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)\s*=\s*(\S*)", line)
        if match:
            fields[match.group(1)] = match.group(2)
    if not fields.get("VERSION") or not fields.get("PATCHLEVEL"):
        raise SourceError(
            f"{tree / 'Makefile'} has no VERSION/PATCHLEVEL lines: not a kernel Makefile",
            "pass the top directory of a Linux kernel source tree",
        )
    version = f"{fields['VERSION']}.{fields['PATCHLEVEL']}"
    if fields.get("SUBLEVEL"):
        version += f".{fields['SUBLEVEL']}"
    return version + fields.get("EXTRAVERSION", "")


def _is_git_toplevel(tree: Path) -> bool:
    result = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], cwd=tree, capture_output=True, text=True
    )
    return result.returncode == 0 and Path(result.stdout.strip()).resolve() == tree


def _warn_if_dirty(tree: Path) -> None:
    result = run_git(["status", "--porcelain", "--untracked-files=no"], tree, check=False)
    if result.stdout.strip():
        log.warning("%s has uncommitted changes: they are ignored (HEAD is built)", tree)


def _snapshot_repo(tree: Path) -> Path:
    """Commit the current content of a non-git tree into a cache-side bare repository."""
    key = hashlib.sha256(str(tree).encode()).hexdigest()[:16]
    git_dir = cache_dir("user") / f"{key}.git"
    if not (git_dir / "HEAD").is_file():
        subprocess.run(["git", "init", "-q", "--bare", str(git_dir)], check=True)
    with step(f"snapshotting {tree}", phase="git"):
        # The tree's own .gitignore keeps build outputs out; a tree whose .gitignore hides
        # the sources themselves gets them forced in.
        snap = {"git_dir": git_dir, "work_tree": tree}
        run_git(["add", "-A", "."], tree, **snap)
        if not run_git(["ls-files", "Makefile"], tree, **snap).stdout.strip():
            run_git(["add", "-f", "-A", "."], tree, **snap)
        changed = run_git(["diff", "--cached", "--quiet"], tree, check=False, **snap)
        head = run_git(["rev-parse", "-q", "--verify", "HEAD"], tree, check=False, **snap)
        if changed.returncode != 0 or head.returncode != 0:
            run_git(["commit", "-q", "-m", f"snapshot of {tree}"], tree, **snap)
    return git_dir


# --- Worktrees -----------------------------------------------------------------------------


def worktree_path(name: str) -> Path:
    return cache_dir("work") / name


def make_worktree(source: KernelSource, name: str, *, reuse: bool = False) -> Path:
    """A worktree detached at source.commit in cache work/<name>.

    An existing worktree is reset hard to source.commit and cleaned (build outputs too),
    unless `reuse` is set, in which case it is returned as it is.
    """
    path = worktree_path(name)
    with disk_full_as_error(path.parent, f"checking out worktree {name}", WORKTREE_NEEDS):
        if _is_worktree_of(path, source):
            if not reuse:
                with step(f"resetting worktree {path}", phase="git"):
                    run_git(["reset", "-q", "--hard", source.commit], path)
                    run_git(["clean", "-q", "-f", "-d", "-x"], path)
            return path
        if path.exists():
            log.warning("removing %s: not a worktree of %s", path, source.path)
            shutil.rmtree(path)
        _add_worktree(source, path)
    return path


def remove_worktree(source: KernelSource, name: str) -> None:
    """Drop worktree `name` (about 1.5 GiB of sources and objects); builds stay cached."""
    path = worktree_path(name)
    if path.exists():
        run_git(["worktree", "remove", "--force", str(path)], path.parent,
                git_dir=source.git_dir, check=False)  # fmt: skip
        shutil.rmtree(path, ignore_errors=True)
    run_git(["worktree", "prune"], path.parent, git_dir=source.git_dir, check=False)


def _is_worktree_of(path: Path, source: KernelSource) -> bool:
    if not (path / ".git").is_file():
        return False
    result = subprocess.run(
        ["git", "rev-parse", "--git-common-dir"], cwd=path, capture_output=True, text=True
    )
    if result.returncode != 0:
        return False
    return (path / result.stdout.strip()).resolve() == source.git_dir.resolve()


def _add_worktree(source: KernelSource, path: Path) -> None:
    """Check out into a temp name, then move: an interrupted checkout leaves no half tree."""
    scratch = path.with_name(f".{path.name}.adding-{os.getpid()}")
    where = path.parent
    shutil.rmtree(scratch, ignore_errors=True)
    run_git(["worktree", "prune"], where, git_dir=source.git_dir)
    with step(f"creating worktree {path}", phase="git"):
        try:
            if not _hand_over_unpacked_files(source, scratch):
                add = ["worktree", "add", "-q", "--detach", str(scratch), source.commit]
                run_git(add, where, git_dir=source.git_dir)
            run_git(["worktree", "move", str(scratch), str(path)], where, git_dir=source.git_dir)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            run_git(["worktree", "prune"], where, git_dir=source.git_dir, check=False)
            raise


def _hand_over_unpacked_files(source: KernelSource, scratch: Path) -> bool:
    """The first worktree of a freshly unpacked Debian tree gets the unpacked files
    themselves, renamed into it with the index that describes them: checking them out
    again took 9-13 s and 1.3 GiB on the cold path (2026-12-07). The pristine repository
    keeps the objects and becomes bare (worktrees after this one are checked out of it).
    False when there is nothing to hand over: a user tree, or the files went already."""
    if source.kind != "debian":
        return False
    base = source.git_dir.parent
    with exclusive_lock(source.git_dir / "phh-handover.lock"):
        if _is_bare(source.git_dir):
            return False
        add = ["worktree", "add", "-q", "--no-checkout", "--detach", str(scratch), source.commit]
        run_git(add, scratch.parent, git_dir=source.git_dir)
        admin = Path((scratch / ".git").read_text().removeprefix("gitdir:").strip())
        shutil.copyfile(source.git_dir / "index", admin / "index")
        # Bare before the first rename: an interruption leaves a bare repository and some
        # stray files beside it, never a work tree that lacks files its index lists.
        run_git(["config", "core.bare", "true"], base, git_dir=source.git_dir)
        for entry in base.iterdir():
            if entry.name != ".git":
                entry.rename(scratch / entry.name)
    # The index's stat data still holds (a rename keeps the inodes), save the ctime of the
    # top-level files: the reset re-reads those and rewrites anything that differs, the
    # clean drops what someone left in the pristine tree.
    run_git(["reset", "-q", "--hard"], scratch)
    run_git(["clean", "-q", "-f", "-d", "-x"], scratch)
    return True


def _is_bare(git_dir: Path) -> bool:
    result = run_git(["config", "--bool", "core.bare"], git_dir, git_dir=git_dir, check=False)
    return result.stdout.strip() == "true"
