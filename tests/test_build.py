"""build_kernel(): worktree reuse, artifact cache, make output handling; real kernel builds."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from pathlib import Path

import pytest
from helpers import git

from harness.build import kernel as build_mod
from harness.build.kconfig import read_config
from harness.build.kernel import (
    BuildRequest,
    BuildStatus,
    build_kernel,
    build_stages,
    error_lines,
    make_command,
    prepare_worktree,
)
from harness.build.series import load_series
from harness.build.source import obtain_source, remove_worktree, worktree_path
from harness.core.errors import BuildError
from harness.core.paths import cache_dir

FIXTURES = Path(__file__).parent / "fixtures" / "series"

# A 'kernel' whose make targets are shell lines: enough for everything but the compiler.
FAKE_MAKEFILE = """\
VERSION = 6
PATCHLEVEL = 1
SUBLEVEL = 0
EXTRAVERSION =
tinyconfig:
\tprintf 'CONFIG_BASE=y\\n' > .config
olddefconfig:
\tsort -o .config .config
bzImage:
\techo '  CC      init/main.o'
\techo built >> built.o
\tmkdir -p arch/x86/boot && cat .config built.o > arch/x86/boot/bzImage
\techo 'ffffffff81000000 T _text' > System.map
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("PHH_CACHE", str(root))
    return root


@pytest.fixture
def fake_kernel(tmp_path: Path) -> Path:
    tree = tmp_path / "linux"
    (tree / "mm").mkdir(parents=True)
    (tree / "Makefile").write_text(FAKE_MAKEFILE)
    (tree / "Kconfig").write_text("")
    (tree / "mm/page_alloc.c").write_text("int x;\n")
    (tree / ".gitignore").write_text("*.o\n/arch/x86/boot/bzImage\n.config*\n.phh-*\nSystem.map\n")
    git(tree, "init", "-q")
    git(tree, "add", ".")
    git(tree, "commit", "-q", "-m", "fake kernel")
    return tree


@pytest.fixture
def fragment(tmp_path: Path) -> Path:
    path = tmp_path / "extra.config"
    path.write_text("CONFIG_EXTRA=y\n")
    return path


def one_patch_series(tree: Path, out: Path) -> Path:
    """A series of one patch editing mm/page_alloc.c; the tree is left as it was."""
    (tree / "mm/page_alloc.c").write_text("int x;\nint hinted;\n")
    git(tree, "commit", "-q", "-am", "mm: add hinted")
    out.mkdir()
    git(tree, "format-patch", "-q", "-o", str(out), "HEAD~1")
    git(tree, "reset", "-q", "--hard", "HEAD~1")
    return out


def forbid_make(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_make(*args: object, **kwargs: object) -> None:
        raise AssertionError("make was run")

    monkeypatch.setattr(build_mod, "_run_make", no_make)


def test_build_then_cache_hit_without_make(
    cache: Path, fake_kernel: Path, fragment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = BuildRequest(obtain_source(fake_kernel), load_series(None), (fragment,))
    first = build_kernel(request)
    assert first.status is BuildStatus.SUCCESS
    assert first.bzimage == cache / "builds" / first.key / "bzImage"
    assert read_config(first.config) == {"BASE": "y", "EXTRA": "y"}
    assert "CC      init/main.o" in first.log.read_text()
    meta = json.loads((first.bzimage.parent / "meta.json").read_text())
    assert meta["key"] == first.key
    assert meta["series"]["name"] == "stock"

    forbid_make(monkeypatch)
    second = build_kernel(request)
    assert second.status is BuildStatus.CACHED
    assert (second.key, second.bzimage) == (first.key, first.bzimage)


def test_stages_report_each_status_and_stop_at_the_first_failure(
    cache: Path, fake_kernel: Path, fragment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kunit_tool style: prepare-tree, configure and make each return a result with a status;
    a failing stage carries its error and the stages after it do not run."""
    src = obtain_source(fake_kernel)
    request = BuildRequest(src, load_series(None), (fragment,))
    stages = build_stages(request)
    assert [(s.stage, s.status) for s in stages] == [
        ("prepare-tree", BuildStatus.SUCCESS),
        ("configure", BuildStatus.SUCCESS),
        ("make", BuildStatus.SUCCESS),
    ]
    assert all(s.seconds >= 0 and s.error is None for s in stages)
    forbid_make(monkeypatch)
    assert build_stages(request)[-1].status is BuildStatus.CACHED

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "0001-x.patch").write_text(
        "From 1 Mon Sep 17 00:00:00 2001\nFrom: A <a@b.c>\nSubject: [PATCH] mm: x\n\n---\n"
        "--- a/mm/nothere.c\n+++ b/mm/nothere.c\n@@ -1 +1 @@\n-a\n+b\n"
    )
    failed = build_stages(BuildRequest(src, load_series(broken), (fragment,)))
    assert [(s.stage, s.status) for s in failed] == [("prepare-tree", BuildStatus.FAILURE)]
    assert failed[0].error is not None and "mm: x" in str(failed[0].error)
    with pytest.raises(type(failed[0].error), match="mm: x"):
        build_kernel(BuildRequest(src, load_series(broken), (fragment,)))


def test_key_depends_on_series_and_config(
    cache: Path, fake_kernel: Path, fragment: Path, tmp_path: Path
) -> None:
    src = obtain_source(fake_kernel)
    stock = build_kernel(BuildRequest(src, load_series(None), (fragment,)))
    patched_series = load_series(one_patch_series(fake_kernel, tmp_path / "series"))
    patched = build_kernel(BuildRequest(src, patched_series, (fragment,)))
    other = tmp_path / "other.config"
    other.write_text("CONFIG_OTHER=m\n")
    reconfigured = build_kernel(BuildRequest(src, load_series(None), (other,)))
    assert len({stock.key, patched.key, reconfigured.key}) == 3
    tree = cache / "work" / build_mod.worktree_name(src, patched_series, (fragment,))
    assert "int hinted;" in (tree / "mm/page_alloc.c").read_text()
    assert git(tree, "log", "-1", "--format=%s") == "mm: add hinted"


def test_the_same_patches_from_another_mbox_reuse_the_build(
    cache: Path, fake_kernel: Path, fragment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The build is keyed by the tree the series produces: the same patch sent again as
    "[PATCH v3 1/1]" behind a cover letter is another input (another series digest, another
    worktree) but the same tree, so the kernel comes from the cache without make."""
    src = obtain_source(fake_kernel)
    directory = one_patch_series(fake_kernel, tmp_path / "series")
    first = build_kernel(BuildRequest(src, load_series(directory), (fragment,)))
    patch = next(directory.glob("*.patch")).read_text()
    cover = (
        "From 0 Mon Sep 17 00:00:00 2001\nFrom: A <a@b.c>\nDate: Sun, 6 Dec 2026 10:00:00 +0000\n"
        "Subject: [PATCH v3 0/1] mm: hinting, again\n\nThe cover letter.\n\n"
    )
    mbox = tmp_path / "v3.mbx"
    mbox.write_text(cover + patch.replace("[PATCH]", "[PATCH v3 1/1]"))
    resent = load_series(mbox)
    assert resent.digest != load_series(directory).digest
    forbid_make(monkeypatch)
    again = build_kernel(BuildRequest(src, resent, (fragment,)))
    assert again.status is BuildStatus.CACHED and again.key == first.key


def test_worktree_with_same_series_is_reused_for_incremental_builds(
    cache: Path, fake_kernel: Path, fragment: Path, tmp_path: Path
) -> None:
    src = obtain_source(fake_kernel)
    series = load_series(one_patch_series(fake_kernel, tmp_path / "series"))
    first = build_kernel(BuildRequest(src, series, (fragment,)))
    tree = prepare_worktree(src, series, build_mod.worktree_name(src, series, (fragment,)))
    assert (tree / "built.o").read_text() == "built\n"  # build output survived
    assert git(tree, "log", "-1", "--format=%s") == "mm: add hinted"  # applied once
    # Forget the artifacts: make runs again, in the same tree (built.o grows).
    subprocess.run(["rm", "-rf", str(first.bzimage.parent)], check=True)
    second = build_kernel(BuildRequest(src, series, (fragment,)))
    assert second.status is BuildStatus.SUCCESS
    assert (tree / "built.o").read_text() == "built\nbuilt\n"


def test_a_request_made_before_is_answered_from_the_cache_without_a_worktree(
    cache: Path, fake_kernel: Path, fragment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same request again (same source, series, overlay, fragments, toolchain) finds its
    kernel without taking over or applying in any worktree: the tree a later edit takes over
    keeps the sources its outputs were made from. A kernel gone from the cache sends the
    request down the worktree path again."""
    src = obtain_source(fake_kernel)
    series = load_series(one_patch_series(fake_kernel, tmp_path / "series"))
    request = BuildRequest(src, series, (fragment,))
    first = build_kernel(request)
    assert first.status is BuildStatus.SUCCESS
    name = build_mod.worktree_name(src, series, (fragment,))
    tree = worktree_path(name)
    assert (tree / build_mod.BUILT_MARKER).is_file()
    assert not build_mod.applied_since_built(tree)
    remove_worktree(src, name)  # no worktree to find it through
    make = build_mod._run_make
    forbid_make(monkeypatch)
    again = build_kernel(request)
    assert again.status is BuildStatus.CACHED and again.key == first.key
    assert again.stages == () and not tree.exists()
    assert again.overlay == first.overlay

    monkeypatch.setattr(build_mod, "_run_make", make)
    subprocess.run(["rm", "-rf", str(first.bzimage.parent)], check=True)
    rebuilt = build_kernel(request)
    assert rebuilt.status is BuildStatus.SUCCESS and tree.is_dir()


def test_a_tree_applied_and_not_built_since_says_so(
    cache: Path, fake_kernel: Path, fragment: Path, tmp_path: Path
) -> None:
    """A fresh worktree has nothing built; a make records the series its outputs are of;
    a taken-over tree, even one built before that record existed, carries a series its
    outputs are not of until its next make (donors_newest_first puts it last)."""
    src = obtain_source(fake_kernel)
    stock = load_series(None)
    edited = load_series(one_patch_series(fake_kernel, tmp_path / "series"))
    first = prepare_worktree(src, stock, build_mod.worktree_name(src, stock, (fragment,)))
    assert build_mod.applied_since_built(first)  # fresh: nothing built yet
    (first / ".config").write_text("")  # configured: a donor candidate
    build_mod._mark_built(first, time.time())
    assert not build_mod.applied_since_built(first)
    (first / build_mod.BUILT_MARKER).unlink()  # as a tree built before the record existed
    taken = prepare_worktree(src, edited, build_mod.worktree_name(src, edited, (fragment,)))
    assert not first.exists()  # it was taken over
    assert build_mod.applied_since_built(taken)
    build_mod._mark_built(taken, time.time())
    assert not build_mod.applied_since_built(taken)


def two_patch_series(tree: Path, out: Path, new_c: str = "int y;\n") -> Path:
    """The one-patch series' patch, then one adding mm/new.c; the tree is left as it was."""
    (tree / "mm/page_alloc.c").write_text("int x;\nint hinted;\n")
    git(tree, "commit", "-q", "-am", "mm: add hinted")
    (tree / "mm/new.c").write_text(new_c)
    git(tree, "add", "mm/new.c")
    git(tree, "commit", "-q", "-m", "mm: add new.c")
    out.mkdir()
    git(tree, "format-patch", "-q", "-o", str(out), "HEAD~2")
    git(tree, "reset", "-q", "--hard", "HEAD~2")
    return out


def test_a_taken_over_tree_keeps_what_its_last_make_built_older_than_its_outputs(
    cache: Path, fake_kernel: Path, fragment: Path, tmp_path: Path
) -> None:
    """The tree is built with series A, then given another series without a make (a
    request the build cache answered), then taken over for a series that has A's content
    in page_alloc.c and adds new.c. page_alloc.c must look older than every output of the
    tree, including one an earlier make left (auto.conf: a Kconfig file newer than it
    re-syncs the config); new.c newer than the make. Measured before this: the first edit
    after `pytest tests/` recompiled 1032 objects (35 s) for files in this situation."""
    day = 86400
    subprocess.run(  # a source committed a day ago, as an unpacked linux-source is
        ["git", "commit", "-q", "--amend", "--no-edit", f"--date=@{int(time.time()) - day}"],
        cwd=fake_kernel, check=True,
        env={**os.environ, "GIT_COMMITTER_DATE": f"@{int(time.time()) - day}"},
    )  # fmt: skip
    src = obtain_source(fake_kernel)
    built = load_series(one_patch_series(fake_kernel, tmp_path / "a"))
    build_kernel(BuildRequest(src, built, (fragment,)))
    tree_a = worktree_path(build_mod.worktree_name(src, built, (fragment,)))
    make_started = json.loads((tree_a / build_mod.BUILT_MARKER).read_text())[build_mod.MAKE_STARTED]
    earlier = make_started - 3600  # an output this make did not need to write again
    os.utime(tree_a / "built.o", (earlier, earlier))
    stock = load_series(None)
    taken = prepare_worktree(src, stock, build_mod.worktree_name(src, stock, (fragment,)))
    assert build_mod.applied_since_built(taken)  # carries stock, outputs of A
    time.sleep(0.05)
    edit = load_series(two_patch_series(fake_kernel, tmp_path / "c"))
    tree = prepare_worktree(src, edit, build_mod.worktree_name(src, edit, (fragment,)))
    assert tree != taken and not taken.exists()  # taken over again
    assert (tree / "mm/page_alloc.c").read_text() == "int x;\nint hinted;\n"
    assert (tree / "mm/page_alloc.c").stat().st_mtime < (tree / "built.o").stat().st_mtime
    assert (tree / "mm/new.c").stat().st_mtime > make_started


def test_a_make_that_does_not_finish_leaves_outputs_of_no_series(
    cache: Path, fake_kernel: Path, fragment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Until make succeeds the outputs are a mix: nothing may be dated back against them."""
    src = obtain_source(fake_kernel)
    series = load_series(one_patch_series(fake_kernel, tmp_path / "series"))

    def failing_make(tree: Path, *args: object) -> None:
        (tree / "half.o").write_text("")
        raise BuildError("make failed", "fix the series")

    monkeypatch.setattr(build_mod, "_run_make", failing_make)
    with pytest.raises(BuildError):
        build_kernel(BuildRequest(src, series, (fragment,)))
    tree = worktree_path(build_mod.worktree_name(src, series, (fragment,)))
    assert (tree / build_mod.BUILT_MARKER).read_text() == build_mod.NOTHING_BUILT
    assert build_mod._built_from(tree) is None and build_mod.applied_since_built(tree)


def test_the_donor_is_the_tree_whose_series_was_applied_last(tmp_path: Path) -> None:
    """The maintainer's loop: the previous edit's tree (applied last) is taken over, not
    the first name in sort order; a tree never configured is no donor; a tree applied and
    then found in the build cache (its outputs are of an older series, maybe of another
    .config) comes after every tree built as it is applied; before both, a tree whose
    outputs are of the series about to be applied (after a bisect: not a prefix's tree)."""
    trees = {}
    for name, applied in (
        ("a-v2", 100), ("b-edit1", 300), ("c-fixed", 200), ("d-new", 400), ("e-cached", 500)
    ):  # fmt: skip
        tree = tmp_path / name
        tree.mkdir()
        if name != "d-new":
            (tree / ".config").write_text("")
        marker = tree / build_mod.SERIES_MARKER
        marker.write_text(json.dumps({"series": name}))
        if name != "e-cached":
            (tree / build_mod.BUILT_MARKER).write_text(marker.read_text())
        else:
            (tree / build_mod.BUILT_MARKER).write_text(json.dumps({"series": "one-line"}))
        os.utime(marker, (applied, applied))
        trees[name] = tree
    ordered = build_mod.donors_newest_first(sorted(trees.values()))
    assert [t.name for t in ordered] == ["b-edit1", "c-fixed", "a-v2", "e-cached"]
    assert build_mod.applied_since_built(trees["e-cached"])
    named = build_mod.donors_newest_first(sorted(trees.values()), series_name="c-fixed")
    assert [t.name for t in named] == ["c-fixed", "b-edit1", "a-v2", "e-cached"]
    # e-cached carries another series, but its outputs are of one-line: the donor for it
    outputs = build_mod.donors_newest_first(sorted(trees.values()), series_name="one-line")
    assert [t.name for t in outputs] == ["e-cached", "b-edit1", "c-fixed", "a-v2"]
    (trees["e-cached"] / build_mod.BUILT_MARKER).unlink()  # built before the marker: unknown
    assert not build_mod.applied_since_built(trees["e-cached"])
    assert [t.name for t in build_mod.donors_newest_first(sorted(trees.values()))] == [
        "e-cached", "b-edit1", "c-fixed", "a-v2"
    ]  # fmt: skip


def test_worktree_is_rebuilt_when_its_head_moved(
    cache: Path, fake_kernel: Path, fragment: Path
) -> None:
    src = obtain_source(fake_kernel)
    tree = prepare_worktree(src, load_series(None), "w")
    (tree / "stray.c").write_text("")
    git(tree, "add", "-f", "stray.c")
    git(tree, "commit", "-q", "-m", "someone committed here")
    assert prepare_worktree(src, load_series(None), "w") == tree
    assert git(tree, "rev-parse", "HEAD") == src.commit
    assert not (tree / "stray.c").exists()


def make_failing_tree(tree: Path, recipe: str) -> None:
    tree.mkdir(parents=True)
    (tree / "Makefile").write_text(f"bzImage:\n{recipe}")


def test_make_failure_reports_compiler_errors_and_log(
    tmp_path: Path, cache: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    tree = tmp_path / "tree"
    recipe = "".join(f"\t@echo '  CC      file{n}.o'\n" for n in range(50))
    recipe += '\t@echo "init/main.c:3:2: error: #error boom" >&2\n\t@exit 1\n'
    make_failing_tree(tree, recipe)
    logfile = tmp_path / "build.log"
    with pytest.raises(BuildError) as caught:
        build_mod._run_make(tree, 3, logfile)
    message = str(caught.value)
    assert "init/main.c:3:2: error: #error boom" in message
    assert str(logfile) in message
    assert "Error 1" in message
    assert "CC      file48.o" in message  # context before the error
    assert "CC      file10.o" not in message
    assert "CC      file10.o" in logfile.read_text()
    assert caught.value.log == logfile
    assert "init/main.c:3:2: error: #error boom" in caught.value.errors
    assert capfd.readouterr().out == ""  # make's output goes to the log only


def test_progress_lines_name_the_last_step(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tree = tmp_path / "tree"
    make_failing_tree(tree, "\t@echo '  CC      kernel/fork.o'\n\t@sleep 1\n")
    monkeypatch.setattr(build_mod, "PROGRESS_INTERVAL", 0.2)
    with caplog.at_level(logging.INFO, logger="harness.build.kernel"):
        build_mod._run_make(tree, 1, tmp_path / "build.log")
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("make:")]
    assert progress
    assert "CC      kernel/fork.o" in progress[-1]


def test_error_lines_are_capped_with_context() -> None:
    lines = [f"  CC      f{n}.o" for n in range(100)]
    for n in range(20, 100, 5):
        lines[n] = f"f{n}.c:1:1: error: bad {n}"
    picked = error_lines(lines)
    assert len(picked) == 30
    assert picked[0] == "  CC      f18.o"
    assert "f20.c:1:1: error: bad 20" in picked
    assert error_lines(["a", "b", "c"]) == ["a", "b", "c"]  # no error: the tail


def test_make_command_is_niced_and_uses_ccache(cache: Path) -> None:
    command = make_command(3)
    assert command[:3] == ["nice", "-n", "10"]
    assert "-j3" in command
    wrapper = cache / "tools" / "ccache-gcc"
    assert f"CC={wrapper}" in command and "HOSTCC=ccache gcc" in command
    assert os.access(wrapper, os.X_OK) and "exec ccache gcc" in wrapper.read_text()
    assert command[-1] == "bzImage"


def _compile(compiler: list[str], source: str, cwd: Path, env: dict[str, str]) -> bytes:
    obj = cwd / "out.o"
    subprocess.run([*compiler, "-Wp,-MMD,.out.o.d", "-c", "-o", str(obj), source],
                   cwd=cwd, env=env, check=True)  # fmt: skip
    return obj.read_bytes()


def test_an_incbin_source_is_not_served_stale_by_ccache(cache: Path, tmp_path: Path) -> None:
    """piggy.S carries the compressed kernel with .incbin, an input ccache's depend mode
    does not see: plain ccache hands back the old object when only the blob changed (same
    size), the harness's compiler compiles it again; C sources still go through ccache."""
    env = {**os.environ, "CCACHE_DIR": str(tmp_path / "ccache"), "CCACHE_DEPEND": "1",
           "CCACHE_BASEDIR": str(tmp_path)}  # fmt: skip
    (tmp_path / "piggy.S").write_text('.section .rodata\n.incbin "blob.bin"\n')
    (tmp_path / "a.c").write_text("int a = 1;\n")
    results = {}
    for name, compiler in (
        ("ccache", ["ccache", "gcc"]),
        ("harness", [str(build_mod.compiler_wrapper())]),
    ):
        (tmp_path / "blob.bin").write_bytes(b"hwm=32")
        first = _compile(compiler, "piggy.S", tmp_path, env)
        (tmp_path / "blob.bin").write_bytes(b"hwm=16")
        results[name] = (first, _compile(compiler, "piggy.S", tmp_path, env))
    assert results["ccache"][0] == results["ccache"][1], "plain ccache: stale object (the defect)"
    assert b"hwm=16" in results["harness"][1] and b"hwm=32" not in results["harness"][1]
    wrapper = [str(build_mod.compiler_wrapper())]
    subprocess.run(["ccache", "-z"], env=env, check=True, capture_output=True)
    _compile(wrapper, "a.c", tmp_path, env)
    _compile(wrapper, "a.c", tmp_path, env)
    stats = subprocess.run(["ccache", "--print-stats"], env=env, check=True,
                           capture_output=True, text=True).stdout  # fmt: skip
    hits = dict(line.split("\t") for line in stats.splitlines() if "\t" in line)
    assert int(hits["direct_cache_hit"]) == 1, stats


# --- real kernel -----------------------------------------------------------------------------


@pytest.mark.real
def test_real_stock_build_and_cache_hit(monkeypatch: pytest.MonkeyPatch) -> None:
    request = BuildRequest(obtain_source(), load_series(None))
    first = build_kernel(request)
    assert first.status in (BuildStatus.SUCCESS, BuildStatus.CACHED)
    image = first.bzimage.read_bytes()
    assert image[0x202:0x206] == b"HdrS"  # x86 boot protocol header
    config = read_config(first.config)
    assert config["PAGE_REPORTING"] == "y"
    assert config["VIRTIO_BALLOON"] == "y"
    assert config["SLUB"] == "y"

    forbid_make(monkeypatch)
    second = build_kernel(request)
    assert second.status is BuildStatus.CACHED
    assert second.key == first.key
    assert second.bzimage.read_bytes() == image


@pytest.mark.real
def test_real_build_failure_names_error_and_log() -> None:
    series = load_series(FIXTURES / "break-build")
    request = BuildRequest(obtain_source(), series)
    with pytest.raises(BuildError) as caught:
        build_kernel(request)
    message = str(caught.value)
    assert "kernel/bounds.c:2:2: error: #error harness-induced build failure" in message
    log_path = Path(message.split("log: ", 1)[1].split()[0])
    assert log_path == caught.value.log
    assert log_path.is_file()
    assert "harness-induced build failure" in log_path.read_text()


@pytest.mark.real
def test_real_incremental_build_takes_over_a_built_tree(caplog: pytest.LogCaptureFixture) -> None:
    """A new series on a source and config that were built before: the built worktree is
    taken over, and make redoes the one changed object and the link, not the kernel."""
    source = obtain_source()
    build_kernel(BuildRequest(source, load_series(None)))  # stock: a built tree to take over
    series = load_series(FIXTURES / "one-line")
    name = build_mod.worktree_name(source, series, build_mod.DEFAULT_FRAGMENTS)
    remove_worktree(source, name)  # as if this revision were new
    for key_dir in cache_dir("builds").iterdir():
        meta = key_dir / "meta.json"
        if meta.is_file() and series.digest in meta.read_text():
            subprocess.run(["rm", "-rf", str(key_dir)], check=True)  # force make to run
    with caplog.at_level(logging.INFO, logger="harness"):
        result = build_kernel(BuildRequest(source, series))
    assert result.status is BuildStatus.SUCCESS
    assert "taking over built worktree" in caplog.text
    compiled = [line for line in result.log.read_text().splitlines() if line.startswith("  CC ")]
    assert 0 < len(compiled) < 20, compiled[:30]
    assert any("mm/page_reporting.o" in line for line in compiled)
