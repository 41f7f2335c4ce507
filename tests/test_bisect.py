"""`python -m harness bisect`: prefixes, the search, build failures, hinting-less prefixes."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from helpers import git

from harness import cli
from harness.build.kernel import BuildStatus, MakeError, StageResult
from harness.build.revisions import (
    BASE,
    HINTING,
    HINTING_V2_FIXED,
    NOT_HINTING,
    REPORTING,
    Revision,
    resolve,
)
from harness.build.series import load_series
from harness.build.source import KernelSource
from harness.campaigns import bisect
from harness.campaigns.bisect import BUILD, SUITE, PrefixVerdict
from harness.campaigns.mutants import MUTANTS_DIR
from harness.core.errors import HarnessError, KconfigError
from harness.core.paths import REPO_ROOT
from harness.judge import Check, Status
from harness.judge import Verdict as JudgeVerdict
from harness.pipeline import Pipeline

FAKE_SOURCE = KernelSource(Path("/linux"), "6.1", "user", "0" * 40, Path("/linux/.git"))

# --- a small series on disk ----------------------------------------------------------------

PLAIN_HUNK = "--- a/mm/{name}.c\n+++ b/mm/{name}.c\n@@ -1 +1 @@\n-old\n+new\n"
KCONFIG_HUNK = (
    "--- a/mm/Kconfig\n+++ b/mm/Kconfig\n@@ -1 +1,3 @@\n menu\n"
    '+config PAGE_HINTING\n+\tbool "hinting"\n'
)


def write_patch(directory: Path, number: int, total: int, title: str, hunk: str) -> Path:
    path = directory / f"{number:04d}-{re.sub(r'[^A-Za-z0-9]+', '-', title)[:40]}.patch"
    target = hunk.split("\n", 1)[0].removeprefix("--- a/")
    path.write_text(
        "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"
        "From: A Developer <dev@example.org>\n"
        f"Subject: [PATCH v3 {number}/{total}] {title}\n\n---\n"
        f"diff --git a/{target} b/{target}\n{hunk}"
    )
    return path


def make_series(tmp_path: Path, titles: list[str], kconfig_at: int | None = None) -> Path:
    """A quilt directory of len(titles) patches; patch `kconfig_at` adds PAGE_HINTING."""
    directory = tmp_path / "my-series"
    directory.mkdir()
    names = []
    for number, title in enumerate(titles, start=1):
        hunk = KCONFIG_HUNK if number == kconfig_at else PLAIN_HUNK.format(name=f"f{number}")
        names.append(write_patch(directory, number, len(titles), title, hunk).name)
    (directory / "series").write_text("\n".join(names) + "\n")
    (directory / "params.toml").write_text("[hinting]\nhwm = 32\n")
    (directory / "known-splats.txt").write_text("pagealloc:memory_corruption\n")
    return directory


# --- fakes ---------------------------------------------------------------------------------


def fake_judge(first_bad: int | None, phase: str, calls: list[int]) -> bisect.Judge:
    """Prefix k is bad from `first_bad` on (None: never); every call is recorded."""

    def judge(k: int) -> PrefixVerdict:
        calls.append(k)
        bad = first_bad is not None and k >= first_bad
        return PrefixVerdict(k, phase, not bad, f"check_of_{first_bad}" if bad else "")

    return judge


def bisection(
    total: int, good: int, *, build_bad: int | None = None, suite_bad: int | None = None
) -> tuple[bisect.Outcome, list[int], list[int]]:
    builds: list[int] = []
    judged: list[int] = []
    outcome = bisect.run_bisection(
        total,
        good,
        fake_judge(build_bad, BUILD, builds),
        fake_judge(suite_bad, SUITE, judged),
        lambda verdict: None,
    )
    return outcome, builds, judged


# --- prefixes ------------------------------------------------------------------------------


def test_a_prefix_is_a_quilt_series_of_the_first_k_patches(tmp_path: Path) -> None:
    source = make_series(tmp_path, ["mm: one", "mm: two", "mm: three"], kconfig_at=1)
    series = load_series(source)
    prefix = bisect.materialise_prefix(series, 2, source, tmp_path / "prefixes", hinting=True)
    assert prefix == tmp_path / "prefixes" / "prefix-2"
    assert load_series(prefix).patches == tuple(p.resolve() for p in series.patches[:2])
    assert (prefix / "params.toml").read_text() == (source / "params.toml").read_text()
    assert (prefix / "known-splats.txt").is_file()
    assert not (prefix / NOT_HINTING).exists()
    # materialised again (a new bisection in the same results): the same, nothing stale
    (prefix / "stray").write_text("x")
    again = bisect.materialise_prefix(series, 2, source, tmp_path / "prefixes", hinting=True)
    assert again == prefix and not (prefix / "stray").exists()


def test_prefix_names_sort_in_order() -> None:
    assert bisect.prefix_name(3, 9) == "prefix-3"
    assert bisect.prefix_name(3, 12) == "prefix-03"


def test_a_prefix_of_the_fixed_series_keeps_its_manifest_and_subjects(tmp_path: Path) -> None:
    assert HINTING_V2_FIXED.series is not None
    series = load_series(HINTING_V2_FIXED.series)
    prefix = bisect.materialise_prefix(series, 5, HINTING_V2_FIXED.series, tmp_path, hinting=True)
    assert len(load_series(prefix).patches) == 5
    assert (prefix / "params.toml").is_file()
    revision = resolve(str(prefix))
    assert revision.hinting and revision.fragments == (BASE, HINTING)
    assert revision.name == "user:prefix-5"
    assert bisect.subject(series.patches[0]) == "mm: Introduce Hinted pages"
    assert bisect.hinting_from(series, lambda: False) == 1  # patch 1 adds the option


# --- the search ----------------------------------------------------------------------------


def test_nine_patches_bad_from_six_by_bisection() -> None:
    outcome, builds, judged = bisection(9, 0, suite_bad=6)
    assert builds == list(range(1, 10))  # every prefix built first, in order
    assert judged == [9, 4, 6, 5]  # the full series (red), then halving
    assert outcome.first_bad is not None
    assert (outcome.first_bad.k, outcome.first_bad.phase) == (6, SUITE)
    assert outcome.first_bad.check == "check_of_6"
    assert bisect.exit_code(outcome) == 1


def test_four_patches_go_linearly() -> None:
    outcome, _, judged = bisection(4, 0, suite_bad=3)
    assert judged == [1, 2, 3]
    assert outcome.first_bad is not None and outcome.first_bad.k == 3


@pytest.mark.parametrize("total", range(1, 18))
def test_the_search_finds_every_first_bad_patch_in_few_judgements(total: int) -> None:
    for first_bad in range(1, total + 1):
        outcome, _, judged = bisection(total, 0, suite_bad=first_bad)
        assert outcome.first_bad is not None and outcome.first_bad.k == first_bad
        limit = total if total <= bisect.LINEAR_MAX else 1 + math.ceil(math.log2(total))
        assert len(judged) <= limit, (total, first_bad, judged)


def test_a_prefix_that_does_not_build_is_the_first_bad_patch() -> None:
    outcome, builds, judged = bisection(9, 0, build_bad=7)
    assert builds == [1, 2, 3, 4, 5, 6, 7]  # the later prefixes hold the broken patch
    assert judged == [3, 5, 6]  # below it, nothing red: the search ends at the build
    assert outcome.first_bad is not None
    assert (outcome.first_bad.k, outcome.first_bad.phase) == (7, BUILD)


def test_an_earlier_red_prefix_wins_over_a_later_build_failure() -> None:
    outcome, _, judged = bisection(9, 0, build_bad=7, suite_bad=4)
    assert outcome.first_bad is not None
    assert (outcome.first_bad.k, outcome.first_bad.phase) == (4, SUITE)
    assert 9 not in judged and 7 not in judged


def test_the_first_patch_not_building_needs_no_suite() -> None:
    outcome, builds, judged = bisection(9, 0, build_bad=1)
    assert builds == [1] and judged == []
    assert outcome.first_bad is not None and outcome.first_bad.phase == BUILD


def test_a_series_that_passes_has_nothing_to_bisect() -> None:
    outcome, _, judged = bisection(9, 0)
    assert outcome.first_bad is None and judged == [9]
    assert bisect.exit_code(outcome) == 0
    outcome, _, judged = bisection(3, 0)  # linear: every prefix judged
    assert outcome.first_bad is None and judged == [1, 2, 3]


def test_known_good_prefixes_are_neither_built_nor_judged() -> None:
    outcome, builds, judged = bisection(9, 5, suite_bad=6)
    assert builds == [6, 7, 8, 9]
    assert judged == [6]  # four left: linear
    assert outcome.first_bad is not None and outcome.first_bad.k == 6
    outcome, builds, judged = bisection(9, 2, suite_bad=6)
    assert builds == list(range(3, 10)) and judged == [9, 5, 7, 6]
    assert outcome.first_bad is not None and outcome.first_bad.k == 6


@pytest.mark.parametrize("good", [-1, 3, 7])
def test_a_good_count_outside_the_series_is_refused(tmp_path: Path, good: int) -> None:
    source = make_series(tmp_path, ["mm: one", "mm: two", "mm: three"])
    with pytest.raises(HarnessError, match=f"--good {good} for series .*my-series of 3"):
        bisect.load_checked(source, good)


def test_the_command_names_bad_input_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = make_series(tmp_path, ["mm: one", "mm: two", "mm: three"])
    results = tmp_path / "results"
    argv = ["bisect", "--series", str(source), "--good", "3", "--results", str(results)]
    assert cli.main(argv) == 2
    assert "--good 3" in capsys.readouterr().err
    assert cli.main(["bisect", "--series", str(tmp_path / "nope"), "--results", str(results)]) == 2
    assert str(tmp_path / "nope") in capsys.readouterr().err
    assert not results.exists()


# --- a prefix without CONFIG_PAGE_HINTING --------------------------------------------------


def test_prefixes_before_the_kconfig_option_use_the_stock_fragments(tmp_path: Path) -> None:
    source = make_series(tmp_path, ["mm: prepare", "mm: add hinting", "mm: use it"], 2)
    series = load_series(source)
    first = bisect.hinting_from(series, lambda: pytest.fail("the base need not be asked"))
    assert first == 2
    assert [bisect.carries_hinting(k, first) for k in (1, 2, 3)] == [False, True, True]
    state = bisect.Bisection(
        bisect.Request(source, tmp_path / "results"), series, first, ("a", "b", "c")
    )
    before, after = state.revision(1), state.revision(2)
    assert not before.hinting and before.fragments == (BASE, REPORTING)
    assert (state.prefix(1) / NOT_HINTING).is_file()
    assert after.hinting and after.fragments == (BASE, HINTING)
    # the suite runs only the build- and boot-level scenarios on it (with the user's -k)
    suite = bisect.Suite(tmp_path / "suite", "release", ("-n", "0"))
    command = suite.command(state.prefix(1), hinting=False)
    keyword = command[command.index("-k") + 1]
    assert keyword == f"(release) and ({bisect.NON_HINTING_FILTER})"
    assert command[-2:] == ["-n", "0"] and "-x" in command
    series_arg = command[command.index("--series") + 1]
    assert series_arg == str(state.prefix(1))
    assert command[command.index("--revisions") + 1] == ""
    assert command[command.index("--debug-revisions") + 1] == ""
    hinting = suite.command(state.prefix(2), hinting=True)
    assert hinting[hinting.index("-k") + 1] == "release"
    assert "-k" not in bisect.Suite(tmp_path).command(state.prefix(2), hinting=True)


def test_a_user_series_marked_not_hinting_is_judged_like_stock(tmp_path: Path) -> None:
    (tmp_path / NOT_HINTING).write_text("no hinting here\n")
    revision = resolve(str(tmp_path))
    assert not revision.hinting and revision.fragments == (BASE, REPORTING)
    assert revision.name == f"user:{tmp_path.name}"


def test_without_a_patch_adding_the_option_the_base_kernel_decides(tmp_path: Path) -> None:
    source = make_series(tmp_path, ["mm: one", "mm: two"])
    series = load_series(source)
    assert bisect.hinting_from(series, lambda: True) == 0
    assert bisect.hinting_from(series, lambda: False) is None
    assert not bisect.carries_hinting(2, None)
    tree = tmp_path / "linux"
    (tree / "mm").mkdir(parents=True)
    git(tree, "init", "-q")

    def committed(kconfig: str) -> KernelSource:
        (tree / "mm" / "Kconfig").write_text(kconfig)
        git(tree, "add", "mm/Kconfig")
        git(tree, "commit", "-q", "-m", "k")
        return KernelSource(tree, "6.1", "user", git(tree, "rev-parse", "HEAD"), tree / ".git")

    reporting = committed("config PAGE_REPORTING\n\tbool\n")
    hinting = committed("config PAGE_HINTING\n\tbool\n")
    (tree / "mm" / "Kconfig").unlink()  # read from the commit, not the files
    assert not bisect.base_has_hinting(reporting)
    assert bisect.base_has_hinting(hinting)


def test_only_a_kconfig_file_can_add_the_option(tmp_path: Path) -> None:
    doc = "--- a/Documentation/x.rst\n+++ b/Documentation/x.rst\n@@ -1 +1,2 @@\n a\n+config PAGE_HINTING\n"  # noqa: E501
    assert not bisect.adds_hinting_option(write_patch(tmp_path, 1, 1, "doc: x", doc))
    assert bisect.adds_hinting_option(write_patch(tmp_path, 2, 2, "mm: k", KCONFIG_HUNK))


def test_the_non_hinting_filter_selects_the_build_and_boot_scenarios() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "harness", "--collect-only", "-q",
         "-p", "no:cacheprovider", "-p", "no:xdist", "--revisions", "stock",
         "--debug-revisions", "", "-k", bisect.NON_HINTING_FILTER],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if "::" in line]
    tests = {line.split("::")[-1].split("[")[0] for line in lines}
    assert tests == {
        "test_kconfig_has_the_mechanism",
        "test_release_returns_memory_to_host",
        "test_negative_control_feature_off",
    }


# --- one prefix's verdict ------------------------------------------------------------------


def junit(evidence: Path, body: str) -> None:
    evidence.mkdir(parents=True, exist_ok=True)
    (evidence / "pytest-junit.xml").write_text(
        f'<?xml version="1.0"?><testsuites><testsuite name="pytest">{body}</testsuite></testsuites>'
    )


VERDICT = JudgeVerdict((Check("counts_match_model[at]", Status.FAIL, "33 != 32"),))
PASSED = '<testcase classname="s" name="test_a" time="1"/>'
FAILED = (
    '<testcase classname="s" name="test_threshold"><properties><property name="verdict" '
    f'value="{escape(VERDICT.to_json("threshold at"), {chr(34): "&quot;"})}"/></properties>'
    '<failure message="AssertionError">E   AssertionError: user:prefix-6</failure></testcase>'
)
SETUP_ERROR = (
    '<testcase classname="s" name="test_a"><error message="GuestNotReady: no PHH-READY '
    'in 60 s">console tail</error></testcase>'
)


def test_the_suite_verdict_of_a_prefix(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("pytest said things\n")
    junit(tmp_path / "good", PASSED)
    assert bisect.suite_verdict(4, True, 0, tmp_path / "good", log, 90).good
    junit(tmp_path / "bad", PASSED + FAILED)
    bad = bisect.suite_verdict(6, True, 1, tmp_path / "bad", log, 60)
    assert not bad.good and bad.check == "counts_match_model[at]"
    junit(tmp_path / "err", SETUP_ERROR)
    error = bisect.suite_verdict(6, True, 1, tmp_path / "err", log, 60)
    assert not error.good and error.check.startswith("error: GuestNotReady")


def test_a_suite_that_ran_nothing(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("no tests ran\n")
    quiet = bisect.suite_verdict(1, False, 5, tmp_path / "none", log, 3)
    assert quiet.good and "no PAGE_HINTING" in quiet.note
    with pytest.raises(HarnessError, match="ran no scenario on none"):
        bisect.suite_verdict(3, True, 5, tmp_path / "none", log, 3)
    with pytest.raises(HarnessError, match="exit 4: usage error"):
        bisect.suite_verdict(3, True, 4, tmp_path / "none", log, 3)


def test_the_user_keyword_is_taken_out_of_the_pytest_arguments() -> None:
    assert bisect.split_keyword(["-k", "detection", "-x"]) == ("detection", ["-x"])
    assert bisect.split_keyword(["-kdetection", "-n", "2"]) == ("detection", ["-n", "2"])
    assert bisect.split_keyword(["-k", "a", "-k", "b"]) == ("b", [])
    assert bisect.split_keyword(["--lf"]) == (None, ["--lf"])


def test_a_build_failure_is_named_by_its_first_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make = MakeError(
        "make bzImage failed in /w (exit 2); log: /l\n  CC mm/page_hinting.o\n"
        "mm/page_hinting.c:12:5: error: 'x' undeclared",
        "fix it",
        ["  CC mm/page_hinting.o", "mm/page_hinting.c:12:5: error: 'x' undeclared"],
        tmp_path / "build.log",
    )
    assert bisect.build_reason(make) == "mm/page_hinting.c:12:5: error: 'x' undeclared"
    kconfig = KconfigError(
        "Kconfig dropped 1 requested option(s) from hinting.config:\n"
        "  CONFIG_PAGE_HINTING: requested y, got n",
        "fix",
    )
    assert bisect.build_reason(kconfig) == (
        "Kconfig dropped 1 requested option(s) from hinting.config: "
        "CONFIG_PAGE_HINTING: requested y, got n"
    )
    source = make_series(tmp_path, ["mm: one", "mm: two"], kconfig_at=1)
    prefix = bisect.materialise_prefix(load_series(source), 2, source, tmp_path, hinting=True)
    stages = (
        StageResult("prepare-tree", BuildStatus.SUCCESS, 1.0, tmp_path),
        StageResult("configure", BuildStatus.SUCCESS, 1.0, tmp_path / ".config"),
        StageResult("make", BuildStatus.FAILURE, 3.0, error=make),
    )
    monkeypatch.setattr(bisect, "build_stages", lambda request: stages)
    pipeline = Pipeline(_source=FAKE_SOURCE)
    verdict = bisect.build_prefix(pipeline, resolve(str(prefix)), 2)
    assert not verdict.good and verdict.phase == BUILD
    assert verdict.check == "build (make): mm/page_hinting.c:12:5: error: 'x' undeclared"
    assert verdict.evidence == tmp_path / "build.log"


# --- the command, its output and reports (builds and suite faked) ---------------------------


def fake_bisection(
    monkeypatch: pytest.MonkeyPatch, build_bad: int | None, suite_bad: int | None
) -> list[tuple[int, str | None, bool]]:
    """build_prefix and judge_prefix replaced; the judged prefixes and how, recorded."""
    seen: list[tuple[int, str | None, bool]] = []

    def build(pipeline: Pipeline, revision: Revision, k: int) -> PrefixVerdict:
        bad = build_bad is not None and k >= build_bad
        note = "" if revision.hinting else f"no PAGE_HINTING yet: {revision.fragments[-1].name}"
        return PrefixVerdict(
            k, BUILD, not bad, "build (make): error: x" if bad else "", 12.0, None, note
        )

    def judge(suite: bisect.Suite, prefix: Path, k: int, hinting: bool) -> PrefixVerdict:
        assert (prefix / "series").is_file()
        seen.append((k, suite.keyword, hinting))
        bad = suite_bad is not None and k >= suite_bad
        return PrefixVerdict(k, SUITE, not bad, "counts_match_model[at]" if bad else "", 80.0)

    monkeypatch.setattr(bisect, "build_prefix", build)
    monkeypatch.setattr(bisect, "judge_prefix", judge)
    return seen


def test_the_command_prints_each_try_and_names_the_first_bad_patch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    titles = [f"mm: change {n}" for n in range(1, 10)]
    source = make_series(tmp_path, titles, kconfig_at=2)
    seen = fake_bisection(monkeypatch, None, suite_bad=6)
    results = tmp_path / "results"
    argv = ["bisect", "--series", str(source), "--results", str(results), "-k", "detection"]
    assert cli.main(argv) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("bisect my-series: 9 patches, known good: the base kernel")
    assert "CONFIG_PAGE_HINTING from patch 2" in out[0]
    builds = [line for line in out if line.startswith("build")]
    assert len(builds) == 9 and "1/9 mm: change 1" in builds[0]
    suite = [line for line in out if line.startswith("suite")]
    assert [line.split()[1] for line in suite] == ["9/9", "4/9", "6/9", "5/9"]
    assert "bad" in suite[0] and "counts_match_model[at]" in suite[0] and " s " in suite[0]
    assert "first bad patch: 6/9 mm: change 6: counts_match_model[at]" in out
    assert out[-1].startswith("total ") and "bisect.md" in out[-1]
    assert seen == [(9, "detection", True), (4, "detection", True),
                    (6, "detection", True), (5, "detection", True)]  # fmt: skip
    data = json.loads((results / "bisect.json").read_text())
    assert data["status"] == "first bad" and data["first_bad"]["k"] == 6
    assert data["first_bad"]["check"] == "counts_match_model[at]"
    assert data["first_bad"]["subject"] == "mm: change 6"
    assert "--series" in data["first_bad"]["reproduce"]
    assert [t["k"] for t in data["tried"]] == [*range(1, 10), 9, 4, 6, 5]
    assert data["hinting_from"] == 2 and data["pytest_args"] == ["-k", "detection"]
    report = (results / "bisect.md").read_text()
    assert "**first bad patch: 6/9 mm: change 6: counts_match_model[at]**" in report
    assert "(no PAGE_HINTING yet: reporting.config)" in report  # prefix 1: stock kconfig
    assert (results / "prefixes" / "prefix-6" / "series").is_file()
    assert (results / "prefixes" / "prefix-1" / NOT_HINTING).is_file()


def test_the_command_says_when_the_series_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = make_series(tmp_path, ["mm: a", "mm: b", "mm: c"], kconfig_at=1)
    seen = fake_bisection(monkeypatch, None, None)
    results = tmp_path / "results"
    assert cli.main(["bisect", "--series", str(source), "--results", str(results)]) == 0
    assert "the series passes: nothing to bisect" in capsys.readouterr().out
    assert [k for k, _, _ in seen] == [1, 2, 3]
    data = json.loads((results / "bisect.json").read_text())
    assert data["status"] == "passes" and data["first_bad"] is None


def test_the_command_names_a_build_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = make_series(tmp_path, ["mm: a", "mm: b", "mm: c"], kconfig_at=1)
    seen = fake_bisection(monkeypatch, build_bad=2, suite_bad=None)
    results = tmp_path / "results"
    argv = ["bisect", "--series", str(source), "--good", "1", "--results", str(results)]
    assert cli.main(argv) == 1
    assert "first bad patch: 2/3 mm: b: build (make): error: x" in capsys.readouterr().out
    assert seen == []  # prefix 1 known good, prefix 2 does not build
    # a second bisection into the same directory moves the first one aside
    assert cli.main(argv) == 1
    assert len(list(tmp_path.glob("results.*"))) == 1


# --- the real thing ------------------------------------------------------------------------


@pytest.mark.real
def test_real_bisect_names_a_seeded_defect_in_the_middle_of_the_series(tmp_path: Path) -> None:
    """hinting-v2-fixed's 7 patches with the mutant trigger-off-by-one inserted after patch
    5 (it applies there with `git am` on the 6.1 base, and patches 6-7 apply on top of it),
    so 8 patches: bisect must name patch 6, the mutant, with the check that fails.

    `--good 3 -k detection`: under the whole suite this series is red long before the
    mutant (its first patches are v2's, whose offline BUG and react-failure hang only
    patches 4 and 7 fix, and whose known-splats.txt belongs to hinting-v2). Every prefix
    from patch 1 on gets the harness's instrumentation overlay, so the detection steps pass
    without the mutant; the mutant fails them (counts_match_model[at]). Expected: 5
    incremental builds (prefixes 4-8), then the suite on prefixes 8, 5, 6 (8 and 6 red,
    stopped at the first failure by -x): about 10 minutes warm."""
    assert HINTING_V2_FIXED.series is not None
    fixed = load_series(HINTING_V2_FIXED.series).patches
    mutant = MUTANTS_DIR / "04-trigger-off-by-one.patch"
    series = tmp_path / "seeded"
    series.mkdir()
    patches = [*fixed[:5], mutant, *fixed[5:]]
    (series / "series").write_text("\n".join(str(p.resolve()) for p in patches) + "\n")
    shutil.copy2(HINTING_V2_FIXED.series / "params.toml", series / "params.toml")
    results = tmp_path / "results"
    run = subprocess.run(
        [sys.executable, "-m", "harness", "bisect", "--series", str(series), "--good", "3",
         "--results", str(results), "-k", "detection"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    said = run.stdout[-4000:] + run.stderr[-4000:]
    assert run.returncode == 1, said
    data = json.loads((results / "bisect.json").read_text())
    first_bad = data["first_bad"]
    assert first_bad["k"] == 6 and first_bad["phase"] == SUITE, said
    assert "trigger-off-by-one" in first_bad["subject"]
    assert first_bad["check"] and not first_bad["check"].startswith(("error", "build")), said

    def tried(phase: str) -> list[int]:
        return [t["k"] for t in data["tried"] if t["phase"] == phase]

    assert tried(BUILD) == list(range(4, 9))
    assert tried(SUITE) == [8, 5, 6]
    assert f"first bad patch: 6/8 {first_bad['subject']}: {first_bad['check']}" in run.stdout
    assert (results / "bisect.md").is_file()
    assert (results / "suite" / "prefix-6" / "pytest-junit.xml").is_file()  # 8: one digit
