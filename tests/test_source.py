"""Kernel source: Debian package unpacking, user trees, worktrees."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import git

from harness.build import source as source_mod
from harness.build.source import KernelSource, make_worktree, makefile_version, obtain_source
from harness.core.errors import SourceError

MAKEFILE = "# SPDX\nVERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 999\nEXTRAVERSION = -test\n"


def make_fake_kernel(tree: Path) -> Path:
    (tree / "mm").mkdir(parents=True)
    (tree / "Makefile").write_text(MAKEFILE)
    (tree / "Kconfig").write_text('mainmenu "Linux"\n')
    (tree / "mm/page_alloc.c").write_text("int x;\n")
    (tree / ".gitignore").write_text("*.o\n")
    return tree


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("PHH_CACHE", str(root))
    return root


# --- Debian package (a small fake .deb, real dpkg-deb/tar/git) -------------------------------


def make_fake_deb(tmp_path: Path, version: str) -> Path:
    """A linux-source-6.1 .deb holding usr/src/linux-source-6.1.tar.xz like Debian's."""
    staging = tmp_path / f"staging-{version}"
    make_fake_kernel(staging / "linux-source-6.1")
    # Debian's tarball ignores everything in its .gitignore: `git add -f` must cope.
    (staging / "linux-source-6.1/.gitignore").write_text("*\n")
    package = tmp_path / f"pkg-{version}"
    (package / "DEBIAN").mkdir(parents=True)
    (package / "usr/src").mkdir(parents=True)
    (package / "DEBIAN/control").write_text(
        f"Package: linux-source-6.1\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: Test <test@example.org>\nDescription: fake kernel source\n"
    )
    subprocess.run(
        [
            "tar",
            "-cJf",
            str(package / "usr/src/linux-source-6.1.tar.xz"),
            "-C",
            str(staging),
            "linux-source-6.1",
        ],
        check=True,
    )
    deb = tmp_path / f"linux-source-6.1_{version}_all.deb"
    subprocess.run(
        ["dpkg-deb", "-Zxz", "--build", str(package), str(deb)], check=True, capture_output=True
    )
    return deb


def put_in_cache(cache: Path, deb: Path) -> Path:
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    target = debs / deb.name
    target.write_bytes(deb.read_bytes())
    return target


def test_debian_package_is_unpacked_and_committed_once(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_in_cache(cache, make_fake_deb(tmp_path, "6.1.999-1"))
    monkeypatch.setattr(source_mod, "_apt_candidate_version", lambda: "6.1.999-1")

    src = obtain_source()

    assert src.kind == "debian"
    assert src.version == "6.1.999-1"
    assert src.path == cache / "src/6.1.999-1/linux-source-6.1"
    assert git(src.path, "log", "--format=%an <%ae> %s") == (
        "harness <harness@localhost> linux-source-6.1 6.1.999-1 (pristine)"
    )
    assert git(src.path, "ls-files", "mm/page_alloc.c") == "mm/page_alloc.c"
    assert (cache / "src/6.1.999-1/.phh-complete").read_text().strip() == src.commit
    assert not list((cache / "src/6.1.999-1").glob(".unpack-*"))

    def no_unpacking(*args: object) -> None:
        raise AssertionError("unpacked a second time")

    monkeypatch.setattr(source_mod, "_unpack_and_commit", no_unpacking)
    assert obtain_source() == src


def test_the_first_worktree_takes_the_unpacked_files_and_the_next_ones_check_out(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cold path's saving: the unpacked files are renamed into the first worktree (same
    inodes, so its index needs no rehash) and the pristine repository becomes bare."""
    put_in_cache(cache, make_fake_deb(tmp_path, "6.1.999-1"))
    monkeypatch.setattr(source_mod, "_apt_candidate_version", lambda: "6.1.999-1")
    src = obtain_source()
    inode = (src.path / "mm/page_alloc.c").stat().st_ino
    (src.path / "mm/page_alloc.o").write_text("left in the pristine tree by hand")

    first = make_worktree(src, "first")

    assert (first / "mm/page_alloc.c").stat().st_ino == inode  # moved, not checked out
    assert git(first, "status", "--porcelain", "--ignored") == ""
    assert git(first, "rev-parse", "HEAD") == src.commit
    assert sorted(p.name for p in src.path.iterdir()) == [".git"]
    assert git(src.path, "config", "--bool", "core.bare") == "true"
    second = make_worktree(src, "second")  # checked out of the objects
    assert (second / "mm/page_alloc.c").read_text() == "int x;\n"
    assert git(second, "status", "--porcelain", "--ignored") == ""
    assert obtain_source() == src  # the bare repository is still the complete source
    git(first, "worktree", "remove", "--force", str(first))
    assert make_worktree(src, "third").joinpath("Makefile").read_text() == MAKEFILE


def test_interrupted_unpack_leaves_nothing(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_in_cache(cache, make_fake_deb(tmp_path, "6.1.999-1"))
    monkeypatch.setattr(source_mod, "_apt_candidate_version", lambda: "6.1.999-1")
    real_run_git = source_mod.run_git

    def failing_commit(args: list[str], cwd: Path, **kwargs: object):
        if args[0] == "commit":
            raise KeyboardInterrupt
        return real_run_git(args, cwd, **kwargs)

    monkeypatch.setattr(source_mod, "run_git", failing_commit)
    with pytest.raises(KeyboardInterrupt):
        obtain_source()
    assert list((cache / "src/6.1.999-1").iterdir()) == []
    monkeypatch.setattr(source_mod, "run_git", real_run_git)
    assert obtain_source().version == "6.1.999-1"


def test_offline_uses_newest_cached_package(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_in_cache(cache, make_fake_deb(tmp_path, "6.1.999-1"))
    put_in_cache(cache, make_fake_deb(tmp_path, "6.1.1000-1"))
    monkeypatch.setattr(source_mod, "_apt_candidate_version", lambda: None)
    assert obtain_source().version == "6.1.1000-1"


def test_no_package_anywhere_is_a_clear_error(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source_mod, "_apt_candidate_version", lambda: None)
    with pytest.raises(SourceError, match=r"cannot obtain linux-source-6\.1") as caught:
        obtain_source()
    assert "--kernel-source" in caught.value.hint


# --- user trees ------------------------------------------------------------------------------


def test_user_tree_must_exist_and_look_like_a_kernel(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist") as caught:
        obtain_source(tmp_path / "nowhere")
    assert "top directory of a Linux kernel" in caught.value.hint
    tree = make_fake_kernel(tmp_path / "tree")
    (tree / "mm/page_alloc.c").unlink()
    with pytest.raises(SourceError, match=r"tree does not look like a kernel tree: missing mm/"):
        obtain_source(tree)
    (tree / "mm/page_alloc.c").write_text("")
    (tree / "Makefile").write_text("all:\n")
    with pytest.raises(SourceError, match="no VERSION/PATCHLEVEL"):
        obtain_source(tree)


def test_makefile_version(tmp_path: Path) -> None:
    assert makefile_version(make_fake_kernel(tmp_path / "t")) == "6.1.999-test"


def test_user_git_tree_uses_head_and_stays_untouched(cache: Path, tmp_path: Path) -> None:
    tree = make_fake_kernel(tmp_path / "linux")
    git(tree, "init", "-q", "-b", "work")
    git(tree, "add", ".")
    git(tree, "commit", "-q", "-m", "mine")
    (tree / "mm/page_alloc.c").write_text("int uncommitted;\n")

    src = obtain_source(tree)

    assert (src.kind, src.version) == ("user", "6.1.999-test")
    assert src.commit == git(tree, "rev-parse", "HEAD")
    work = make_worktree(src, "user-test")
    assert work == cache / "work/user-test"
    assert (work / "mm/page_alloc.c").read_text() == "int x;\n"  # HEAD, not the edit
    assert (tree / "mm/page_alloc.c").read_text() == "int uncommitted;\n"
    assert git(tree, "rev-parse", "--abbrev-ref", "HEAD") == "work"


def test_non_git_user_tree_is_snapshotted_by_content(cache: Path, tmp_path: Path) -> None:
    tree = make_fake_kernel(tmp_path / "plain")
    (tree / "mm/page_alloc.o").write_text("object file\n")  # ignored by the tree's .gitignore
    first = obtain_source(tree)
    assert obtain_source(tree).commit == first.commit
    assert not (tree / ".git").exists()
    work = make_worktree(first, "plain")
    assert (work / "mm/page_alloc.c").read_text() == "int x;\n"
    assert not (work / "mm/page_alloc.o").exists()
    (tree / "mm/page_alloc.c").write_text("int y;\n")
    assert obtain_source(tree).commit != first.commit


def test_worktree_is_reset_unless_reused(cache: Path, tmp_path: Path) -> None:
    tree = make_fake_kernel(tmp_path / "linux")
    git(tree, "init", "-q")
    git(tree, "add", ".")
    git(tree, "commit", "-q", "-m", "base")
    src = obtain_source(tree)
    work = make_worktree(src, "w")
    (work / "mm/page_alloc.c").write_text("edited\n")
    (work / "built.o").write_text("")
    assert make_worktree(src, "w", reuse=True) == work
    assert (work / "mm/page_alloc.c").read_text() == "edited\n"
    make_worktree(src, "w")
    assert (work / "mm/page_alloc.c").read_text() == "int x;\n"
    assert not (work / "built.o").exists()
    assert git(work, "rev-parse", "HEAD") == src.commit


def test_stray_directory_in_place_of_worktree_is_replaced(cache: Path, tmp_path: Path) -> None:
    tree = make_fake_kernel(tmp_path / "linux")
    git(tree, "init", "-q")
    git(tree, "add", ".")
    git(tree, "commit", "-q", "-m", "base")
    src = obtain_source(tree)
    stray = cache / "work/w"
    stray.mkdir(parents=True)
    (stray / "junk").write_text("")
    work = make_worktree(src, "w")
    assert git(work, "rev-parse", "HEAD") == src.commit
    assert not (work / "junk").exists()


# --- real Debian tree ------------------------------------------------------------------------


@pytest.mark.real
def test_real_debian_source_is_found_without_unpacking(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_unpacking(*args: object) -> None:
        raise AssertionError("the pristine tree was unpacked again")

    monkeypatch.setattr(source_mod, "_unpack_and_commit", no_unpacking)
    src = obtain_source()
    assert src.kind == "debian"
    assert src.version.startswith("6.1.")
    assert src.path.name == "linux-source-6.1"
    assert src.commit == git(src.path, "rev-parse", "HEAD")
    assert git(src.path, "log", "-1", "--format=%s").endswith("(pristine)")
    # Offline: the same tree comes from the newest cached package.
    monkeypatch.setattr(source_mod, "_apt_candidate_version", lambda: None)
    assert obtain_source() == src
    assert isinstance(src, KernelSource)
