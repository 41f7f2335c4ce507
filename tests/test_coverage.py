"""Patch coverage (harness/coverage/): what a coverage build profiles, the guests' counters,
and the mapping of gcov's line data onto a series' diff, on a real gcc --coverage build."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.build.gcov_objects import (
    Profiled,
    added_lines,
    objects_to_profile,
    overlay_lines,
    write_bundle,
)
from harness.observe import gcov as collect
from harness.report import coverage as report

PRISTINE = {
    "main.c": """#include "lib/util.h"
int main(int argc, char **argv)
{
	int x = 0;
	if (argc > 5)
		x = 1;
	return twice(x);
}
""",
    "lib/util.h": "int twice(int x);\n",
    "lib/util.c": """#include "util.h"
int twice(int x)
{
	return 2 * x;
}
""",
}
# The series: a new function in main.c (its early return never runs), a new branch in
# util.c (never taken), and an unchanged line that does not run (main.c 12: not the series').
SERIES = {
    "main.c": """#include "lib/util.h"
static int helper(int y)
{
	if (y > 100)
		return -1;
	return y + 1;
}
int main(int argc, char **argv)
{
	int x = 0;
	if (argc > 5)
		x = 1;
	x = helper(x);
	if (argc > 7) {
		x = helper(x + 200);
	}
	return twice(x) ? 0 : 1;
}
""",
    "lib/util.c": """#include "util.h"
int twice(int x)
{
	if (x < 0)
		return 0;
	return 2 * x;
}
""",
}


def git(tree: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=tree, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def write(tree: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(text)


def make_tree(tree: Path, pristine: dict[str, str], series: dict[str, str]) -> tuple[Path, str]:
    """A git tree: a pristine commit, then the series on top; (tree, pristine commit)."""
    tree.mkdir()
    git(tree, "init", "-q")
    write(tree, pristine)
    git(tree, "add", "-A")
    git(tree, "commit", "-qm", "pristine")
    base = git(tree, "rev-parse", "HEAD").strip()
    write(tree, series)
    git(tree, "commit", "-qam", "series")
    return tree, base


@pytest.fixture
def series_tree(tmp_path: Path) -> tuple[Path, str]:
    return make_tree(tmp_path / "tree", PRISTINE, SERIES)


def test_the_objects_the_series_changes_are_profiled(series_tree: tuple[Path, str]) -> None:
    tree, base = series_tree
    profiled = objects_to_profile(tree, base)
    assert profiled.objects == ("lib/util.o", "main.o")
    assert profiled.make_variables() == ("GCOV_PROFILE_util.o=y", "GCOV_PROFILE_main.o=y")


def test_a_name_shared_with_a_directory_that_opts_out_is_not_profiled(tmp_path: Path) -> None:
    """kbuild matches GCOV_PROFILE_<name>.o in every directory: boot code that says
    GCOV_PROFILE := n must not be profiled because the series changed a same-named file."""
    boot = {
        "boot/main.c": "int boot;\n",
        "boot/Makefile": "GCOV_PROFILE := n\n",
        # another architecture's directory is never built for the x86-64 guest
        "arch/arm64/util.c": "int other;\n",
        "arch/arm64/Makefile": "GCOV_PROFILE := n\n",
    }
    tree, base = make_tree(tmp_path / "tree", {**PRISTINE, **boot}, SERIES)
    profiled = objects_to_profile(tree, base)
    assert profiled.objects == ("lib/util.o",)
    assert profiled.refused == ("main.c",)


def test_gcda_files_are_read_from_the_dump_and_placed_by_object(tmp_path: Path) -> None:
    dump = "".join(
        f"@@ ./root/.cache/phh/work/x/{name}\n{base64.encodebytes(data).decode()}"
        for name, data in (("mm/page_alloc.gcda", b"\x01" * 100), ("kernel/other.gcda", b"o"))
    )
    files = collect.parse_dump(dump)
    placed = collect.place(files, ["mm/page_alloc.o", "mm/page_hinting.o"])
    assert placed == {"mm/page_alloc.gcda": b"\x01" * 100}


class FakeSSH:
    def __init__(self, output: str | Exception) -> None:
        self.output = output

    def check(self, command: str, timeout: float = 60.0):
        if isinstance(self.output, Exception):
            raise self.output
        return type("Result", (), {"stdout": self.output})()


def test_a_guest_that_cannot_be_read_says_why(tmp_path: Path) -> None:
    from harness.core.errors import SSHError

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps({"objects": ["mm/page_alloc.o"]}))
    target = collect.next_collection(tmp_path / "guest")
    assert collect.collect(FakeSSH(SSHError("guest gone", "hint")), bundle, target) == 0
    assert "guest gone" in (target / collect.MISSING).read_text()
    assert collect.next_collection(tmp_path / "guest").name == "gcov-2"


@pytest.mark.real
def test_changed_lines_that_never_ran_are_named_with_their_function(
    series_tree: tuple[Path, str], tmp_path: Path
) -> None:
    """A real gcc --coverage build of the two-file series, run so that a known set of lines
    executes; the report must name exactly the changed lines that did not run (with their
    function and code), count the executable changed lines per file, and leave out the
    unchanged line that did not run. An off-by-one in the mapping fails it."""
    tree, base = series_tree
    for source in ("main.c", "lib/util.c"):
        subprocess.run(["gcc", "--coverage", "-c", source, "-o", source[:-2] + ".o"],
                       cwd=tree, check=True)  # fmt: skip
    subprocess.run(["gcc", "--coverage", "main.o", "lib/util.o", "-o", "prog"], cwd=tree,
                   check=True)  # fmt: skip
    subprocess.run([str(tree / "prog")], cwd=tree, check=False)  # argc 1: x = helper(0) = 1
    bundle = tmp_path / "bundle"
    write_bundle(tree, base, objects_to_profile(tree, base), bundle)
    collection = tmp_path / "evidence" / "gcov-1"
    for gcda in ("main.gcda", "lib/util.gcda"):
        (collection / gcda).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(tree / gcda, collection / gcda)
    (collection / collect.KERNEL).write_text(json.dumps({"bundle": str(bundle)}))
    shutil.rmtree(tree)  # the report needs only the bundle (the worktree gets taken over)

    found = report.find_collections(tmp_path / "evidence")
    assert found == {bundle: [collection]}
    out = tmp_path / "report"
    result = report.build_report("toy", found, out)

    missing = {(u.file, u.line, u.function, u.code) for u in result.uncovered}
    assert missing == {
        ("lib/util.c", 5, "twice", "return 0;"),
        ("main.c", 5, "helper", "return -1;"),
        ("main.c", 15, "main", "x = helper(x + 200);"),
    }
    by_file = {f.file: (f.executable, f.ran) for f in result.files}
    # util.c: lines 4, 5 changed and executable; main.c: 2, 4, 5, 6, 13, 14, 15, 17
    assert by_file == {"lib/util.c": (2, 1), "main.c": (8, 6)}
    assert (result.executable, result.ran, result.guests) == (10, 7, 1)
    assert "7 of 10 executable lines" in (out / "coverage.txt").read_text()
    markdown = (out / "coverage.md").read_text()
    assert "| 15 | main | `x = helper(x + 200);` |" in markdown
    assert 'filename="main.c"' in (out / "coverage.xml").read_text()


def test_no_counters_at_all_is_a_clear_error(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "src").mkdir(parents=True)
    (bundle / "manifest.json").write_text(json.dumps({"objects": []}))
    (bundle / "series.diff").write_text("")
    collection = tmp_path / "gcov-1"
    collection.mkdir()
    (collection / collect.MISSING).write_text("guest panicked\n")
    with pytest.raises(report.CoverageError, match="no guest of toy left gcov counters"):
        report.build_report("toy", {bundle: [collection]}, tmp_path / "out")


def test_a_profiled_set_without_objects_makes_no_variables() -> None:
    assert Profiled(()).make_variables() == ()


def test_the_overlays_lines_are_not_the_series_lines(tmp_path: Path) -> None:
    """A bundle built with the instrumentation overlay on top lists the lines the overlay
    added (HEAD's numbering), and the report drops them: patch coverage is the series'."""
    tree = tmp_path / "tree"
    (tree / "mm").mkdir(parents=True)
    run = {"cwd": tree, "check": True, "capture_output": True}
    subprocess.run(["git", "init", "-q"], **run)
    ident = ["-c", "user.name=t", "-c", "user.email=t@t"]

    def commit(text: str) -> str:
        (tree / "mm" / "hint.c").write_text(text)
        subprocess.run(["git", "add", "-A"], **run)
        subprocess.run(["git", *ident, "commit", "-q", "-m", "c"], **run)
        return subprocess.run(["git", "rev-parse", "HEAD"], **run, text=True).stdout.strip()

    base = commit("a\nb\n")
    commit("a\nseries1\nb\nseries2\n")  # the series: lines 2 and 4
    commit("a\nseries1\noverlay1\noverlay2\nb\nseries2\n")  # the overlay: lines 3-4
    target = tmp_path / "bundle"
    target.mkdir()
    write_bundle(tree, base, Profiled(()), target, overlay_commits=1)
    assert overlay_lines(target) == {"mm/hint.c": {3, 4}}
    assert overlay_lines(tmp_path) == {}  # a bundle without the overlay
    stats = {"src_stats": {
        "mm/hint.c": {"covered_lines": [2, 3], "violation_lines": [4, 6]},
        "mm/debugfs.c": {"covered_lines": [], "violation_lines": [7]},
    }}  # fmt: skip
    kept = report.without_lines(stats, {**overlay_lines(target), "mm/debugfs.c": {7}})
    assert kept["src_stats"] == {"mm/hint.c": {"covered_lines": [2], "violation_lines": [6]}}
    assert report.without_lines(stats, {}) == stats
    assert added_lines("+++ /dev/null\n@@ -1,2 +0,0 @@\n") == {}
    assert added_lines("+++ b/x.c\n@@ -3 +4 @@\n@@ -9,0 +11,2 @@\n") == {"x.c": [4, 11, 12]}
