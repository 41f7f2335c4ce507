"""First bad patch: `python -m harness bisect --series PATH [--good N] [pytest args]`.

Given a series of N patches, find the first prefix (patches 1..k) whose verdict is red and
name the check that fails, as `git bisect run` (and 0-day's bisection) does:

1. Each prefix k is its own quilt series directory under the results directory
   (`prefixes/prefix-k/`: a `series` file naming the patch files, and the series'
   params.toml and known-splats.txt), so `harness run --series` reproduces any judgement.
2. Build check: prefixes good+1 .. N are built in order, in this process (harness.build.kernel).
   Each build takes over the worktree of the one before (build.py's donors), so a prefix
   costs its incremental make, not a cold build. The first prefix that does not build is
   bad (the reason: its build error's first line); the later ones hold the same patch and
   are not built.
3. Suite: prefixes are judged by the scenario suite, a pytest subprocess each
   (`--revisions '' --debug-revisions '' --series <prefix> -x` plus the user's pytest
   arguments), classified as the mutant campaign does (`mutants.classify`): a failed check
   is bad, all passed is good, an error (a setup error, a boot that fails, a crash outside
   the series' code) is bad too, like a non-zero exit of `git bisect run`'s script. The
   search runs between the known-good prefix (`--good N`; default 0, the base kernel, which
   needs no judging) and the bad end: the first prefix that does not build, else the full
   series, which must be red ("the series passes: nothing to bisect" otherwise). Binary
   search; linear when LINEAR_MAX or fewer prefixes are left. So a prefix that does not
   build is the first bad patch unless an earlier prefix is already red.

A prefix before the patch that adds CONFIG_PAGE_HINTING (a `+config PAGE_HINTING` line in
a Kconfig file) has no hinting to judge: its directory carries revisions.NOT_HINTING, so
it resolves to a non-hinting revision built with the stock fragments (base.config +
reporting.config), and only the build- and boot-level scenarios run on it
(NON_HINTING_FILTER, and-ed with the user's -k).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.build.kernel import BuildRequest, MakeError, build_stages
from harness.build.known_splats import KNOWN_SPLATS_FILE
from harness.build.overlay import for_revision
from harness.build.revisions import NOT_HINTING, Revision, resolve
from harness.build.series import Series, load_series, patch_subject, write_quilt_series
from harness.build.source import KernelSource, run_git
from harness.build.spec import MANIFEST_NAME
from harness.campaigns.mutants import classify, suite_command
from harness.core.errors import HarnessError, SeriesError
from harness.core.paths import REPO_ROOT
from harness.pipeline import Pipeline

LINEAR_MAX = 4  # this many prefixes left to judge, or fewer: one after the other
# What a prefix without CONFIG_PAGE_HINTING can be judged by: its kconfig, and a guest of
# it boots and returns memory like stock (the negative control too).
NON_HINTING_FILTER = "kconfig or release_returns or negative_control"
COMPANIONS = (MANIFEST_NAME, KNOWN_SPLATS_FILE)  # copied from the series into each prefix
KCONFIG_HINTING = re.compile(rb"^\+\s*config\s+PAGE_HINTING\s*$")
BASE_KCONFIG_HINTING = re.compile(r"^\s*config\s+PAGE_HINTING\s*$", re.MULTILINE)
DIFF_TARGET = re.compile(rb"^\+\+\+ (?:b/)?(\S+)")
SUBJECT_TAG = re.compile(r"^\[[^\]]*\]\s*")  # "[PATCH v2 3/9] "
# pytest's exit codes that say the suite itself could not run (interrupted or a collection
# error, an internal error, a usage error): no verdict on the kernel, a problem to report.
PYTEST_BROKEN = {2: "interrupted or a collection error", 3: "internal error", 4: "usage error"}
PYTEST_NO_TESTS = 5
BUILD, SUITE = "build", "suite"


@dataclass(frozen=True)
class PrefixVerdict:
    """What one try of prefix k said: at the build check or by the suite."""

    k: int
    phase: str  # BUILD or SUITE
    good: bool
    check: str = ""  # bad: the failing check or the build error; "" when good
    seconds: float = 0.0
    evidence: Path | None = None  # the suite's results, or the failed build's log
    note: str = ""  # e.g. that a prefix without hinting was judged by build and boot only


Judge = Callable[[int], PrefixVerdict]


@dataclass(frozen=True)
class Outcome:
    total: int  # N, patches in the series
    good: int  # the known-good prefix
    first_bad: PrefixVerdict | None  # the verdict that named the first bad prefix; None: passes
    tried: tuple[PrefixVerdict, ...]  # every build and judgement, in order


@dataclass(frozen=True)
class Request:
    series: Path  # the user's series: quilt dir, dir of *.patch, or mbox
    results: Path
    good: int = 0
    pytest_args: tuple[str, ...] = ()
    kernel_source: Path | None = None
    kconfig: tuple[Path, ...] = ()
    jobs: int = 3


# --- The search ----------------------------------------------------------------------------


def search(judge: Judge, good: int, bad: int, *, bad_known: bool) -> int | None:
    """The first bad prefix in (good, bad], judging as few as it can; None if all are good.
    `bad_known`: prefix `bad` is known bad (it did not build), else it is judged first."""
    if bad - good <= LINEAR_MAX:
        return linear_search(judge, good, bad, bad_known=bad_known)
    return binary_search(judge, good, bad, bad_known=bad_known)


def linear_search(judge: Judge, good: int, bad: int, *, bad_known: bool) -> int | None:
    last = bad - 1 if bad_known else bad
    for k in range(good + 1, last + 1):
        if not judge(k).good:
            return k
    return bad if bad_known else None


def binary_search(judge: Judge, good: int, bad: int, *, bad_known: bool) -> int | None:
    if not bad_known and judge(bad).good:
        return None
    while bad - good > 1:
        middle = (good + bad) // 2
        if judge(middle).good:
            good = middle
        else:
            bad = middle
    return bad


def build_check(build: Judge, good: int, total: int) -> int | None:
    """Build prefixes good+1 .. total in order; the first that does not build, or None."""
    for k in range(good + 1, total + 1):
        if not build(k).good:
            return k
    return None


def run_bisection(
    total: int, good: int, build: Judge, judge: Judge, report: Callable[[PrefixVerdict], None]
) -> Outcome:
    """The build check, then the suite's search below the first prefix that does not build
    (or up to the full series); `report` sees every verdict as it comes."""
    tried: list[PrefixVerdict] = []

    def recorded(try_one: Judge) -> Judge:
        def run(k: int) -> PrefixVerdict:
            verdict = try_one(k)
            tried.append(verdict)
            report(verdict)
            return verdict

        return run

    broken = build_check(recorded(build), good, total)
    first = search(recorded(judge), good, broken or total, bad_known=broken is not None)
    named = None
    if first is not None:
        named = next(v for v in reversed(tried) if v.k == first and not v.good)
    return Outcome(total, good, named, tuple(tried))


# --- Prefixes ------------------------------------------------------------------------------


def load_checked(path: Path, good: int) -> Series:
    """The series, refusing one without patches and a --good outside 0 .. N-1."""
    series = load_series(path)
    total = len(series.patches)
    if total == 0:
        raise SeriesError(f"series {path} holds no patch: nothing to bisect", "pass a series")
    if not 0 <= good < total:
        raise SeriesError(
            f"--good {good} for series {path} of {total} patches: the known-good prefix "
            f"must be 0 (the base kernel) .. {total - 1}",
            "pass the number of leading patches known to be good, fewer than the series has",
        )
    return series


def subject(patch: Path) -> str:
    """The patch's Subject without its "[PATCH v2 n/N]" tag (a plain diff: its file name)."""
    return SUBJECT_TAG.sub("", patch_subject(patch))


def prefix_name(k: int, total: int) -> str:
    return f"prefix-{k:0{len(str(total))}d}"


def materialise_prefix(
    series: Series, k: int, source: Path, directory: Path, *, hinting: bool
) -> Path:
    """`directory/prefix-k/`: a quilt series of the first k patches, with the series'
    params.toml and known-splats.txt (when `source` is a directory holding them), and the
    NOT_HINTING marker for a prefix without CONFIG_PAGE_HINTING."""
    companions = [source / n for n in COMPANIONS if source.is_dir() and (source / n).is_file()]
    target = write_quilt_series(
        [patch.resolve() for patch in series.patches[:k]],
        directory / prefix_name(k, len(series.patches)),
        companions=companions,
        header=f"patches 1..{k} of {len(series.patches)} of {source} (harness bisect)",
    )
    if not hinting:
        (target / NOT_HINTING).write_text(
            f"CONFIG_PAGE_HINTING comes later in {source}: built with the stock fragments "
            "(base.config + reporting.config), judged by build and boot only.\n"
        )
    return target


def adds_hinting_option(patch: Path) -> bool:
    """Whether the patch adds `config PAGE_HINTING` to a Kconfig file."""
    in_kconfig = False
    for line in patch.read_bytes().splitlines():
        target = DIFF_TARGET.match(line)
        if target:
            in_kconfig = Path(target.group(1).decode(errors="replace")).name.startswith("Kconfig")
        elif in_kconfig and KCONFIG_HINTING.match(line):
            return True
    return False


def hinting_from(series: Series, base_has_hinting: Callable[[], bool]) -> int | None:
    """The first prefix that carries CONFIG_PAGE_HINTING: the patch that adds it, else 0
    when the base kernel has it already, else None (no prefix has hinting)."""
    for k, patch in enumerate(series.patches, start=1):
        if adds_hinting_option(patch):
            return k
    return 0 if base_has_hinting() else None


def base_has_hinting(source: KernelSource) -> bool:
    """Whether the kernel tree itself defines PAGE_HINTING (in mm/Kconfig), read from its
    commit (the Debian tree's files move into its first worktree)."""
    kconfig = run_git(["show", f"{source.commit}:mm/Kconfig"], source.git_dir,
                      git_dir=source.git_dir, check=False)  # fmt: skip
    return kconfig.returncode == 0 and BASE_KCONFIG_HINTING.search(kconfig.stdout) is not None


def carries_hinting(k: int, first_hinting: int | None) -> bool:
    return first_hinting is not None and k >= first_hinting


# --- Judging one prefix --------------------------------------------------------------------


def build_prefix(pipeline: Pipeline, revision: Revision, k: int) -> PrefixVerdict:
    """Build prefix k's revision as the suite's pipeline would (prepare-tree, configure,
    make; make skipped for a cached build): good, or bad with the failing stage and its
    error's first line."""
    assert revision.series is not None
    started = time.monotonic()
    series = load_series(revision.series)
    request = BuildRequest(
        pipeline.source, series, revision.fragments, pipeline.jobs, overlay=for_revision(revision)
    )
    stages = build_stages(request)
    seconds = time.monotonic() - started
    last = stages[-1]
    note = "" if revision.hinting else "no PAGE_HINTING yet: stock kconfig"
    if last.error is None:
        return PrefixVerdict(k, BUILD, True, seconds=seconds, evidence=last.output, note=note)
    log = last.error.log if isinstance(last.error, MakeError) else None
    reason = f"build ({last.stage}): {build_reason(last.error)}"
    return PrefixVerdict(k, BUILD, False, reason, seconds, log, note)


def build_reason(error: HarnessError) -> str:
    """make's first compiler error; otherwise the error's first line (with the next one
    when the first only announces a list, as Kconfig's "dropped ... options:" does)."""
    if isinstance(error, MakeError):
        compiler = next((line.strip() for line in error.errors if "error:" in line), None)
        if compiler:
            return compiler
    lines = [line.strip() for line in error.message.splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if lines[0].endswith(":") and len(lines) > 1:
        return f"{lines[0]} {lines[1]}"
    return lines[0]


def split_keyword(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """The user's -k expression (the last one, as pytest takes it) and the other args."""
    keyword, rest = None, []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "-k" and index + 1 < len(args):
            keyword, index = args[index + 1], index + 2
            continue
        if arg.startswith("-k") and len(arg) > 2:
            keyword = arg[2:]
        else:
            rest.append(arg)
        index += 1
    return keyword, rest


def suite_keyword(user: str | None, hinting: bool) -> str | None:
    """-k for a prefix: the user's; a prefix without hinting runs only NON_HINTING_FILTER."""
    if hinting:
        return user
    return f"({user}) and ({NON_HINTING_FILTER})" if user else NON_HINTING_FILTER


@dataclass(frozen=True)
class Suite:
    """How each prefix's suite subprocess is run."""

    results: Path  # suite/<prefix>/ and suite/<prefix>.log go here
    keyword: str | None = None  # the user's -k
    pytest_args: tuple[str, ...] = ()  # the user's other pytest arguments
    harness_args: tuple[str, ...] = ()  # --kernel-source, --kconfig, --jobs as built

    def command(self, prefix: Path, hinting: bool) -> list[str]:
        revision_args = [
            "--revisions", "", "--debug-revisions", "", "--series", str(prefix),
            *self.harness_args,
        ]  # fmt: skip
        keyword = suite_keyword(self.keyword, hinting)
        evidence = self.results / prefix.name
        return [*suite_command(revision_args, evidence, True, keyword), *self.pytest_args]

    def reproduce(self, prefix: Path, hinting: bool) -> str:
        """The `harness run` command that judges the prefix the same way."""
        keyword = suite_keyword(self.keyword, hinting)
        return shlex.join([
            "python3", "-m", "harness", "run", "--revisions", "", "--debug-revisions", "",
            "--series", str(prefix), *self.harness_args, "-x",
            *(["-k", keyword] if keyword else []), *self.pytest_args,
        ])  # fmt: skip


def judge_prefix(suite: Suite, prefix: Path, k: int, hinting: bool) -> PrefixVerdict:
    """The suite on prefix k in a pytest subprocess, its JUnit classified."""
    evidence = suite.results / prefix.name
    log = suite.results / f"{prefix.name}.log"
    shutil.rmtree(evidence, ignore_errors=True)
    evidence.mkdir(parents=True)
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run(
            suite.command(prefix, hinting), stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT
        )
    seconds = time.monotonic() - started
    return suite_verdict(k, hinting, proc.returncode, evidence, log, seconds)


def suite_verdict(
    k: int, hinting: bool, returncode: int, evidence: Path, log: Path, seconds: float
) -> PrefixVerdict:
    """good / bad from the suite's exit code and JUnit (mutants.classify); a suite that
    could not run, or that ran nothing on a hinting prefix, is the caller's problem."""
    if returncode in PYTEST_BROKEN:
        raise HarnessError(
            f"pytest could not run the suite on {evidence.name} (exit {returncode}: "
            f"{PYTEST_BROKEN[returncode]}); its output: {log}\n{_tail(log)}",
            "check the pytest arguments given to bisect, then run it again",
        )
    status, check = "error", "no scenario ran"
    if returncode != PYTEST_NO_TESTS:
        status, check = classify(evidence / "pytest-junit.xml", returncode, clean=False)
    if status == "error" and check == "no scenario ran":
        if not hinting:
            note = "no PAGE_HINTING yet: built; no build/boot scenario selected"
            return PrefixVerdict(k, SUITE, True, "", seconds, evidence, note)
        raise HarnessError(
            f"the suite ran no scenario on {evidence.name}: the pytest arguments select none "
            f"(output: {log})",
            "widen or drop -k; `python3 -m pytest harness --collect-only -q` lists them",
        )
    note = "" if hinting else "no PAGE_HINTING yet: build and boot only"
    if status == "missed":
        return PrefixVerdict(k, SUITE, True, "", seconds, evidence, note)
    reason = check if status == "caught" else f"error: {check}"
    return PrefixVerdict(k, SUITE, False, reason, seconds, evidence, note)


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- The command ---------------------------------------------------------------------------


@dataclass
class Bisection:
    """One bisection's context: the series, its prefixes' directories and verdicts."""

    request: Request
    series: Series
    first_hinting: int | None
    subjects: tuple[str, ...]
    started: float = field(default_factory=time.monotonic)
    tried: list[PrefixVerdict] = field(default_factory=list)
    prefixes: dict[int, Path] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.series.patches)

    def prefix(self, k: int) -> Path:
        if k not in self.prefixes:
            self.prefixes[k] = materialise_prefix(
                self.series,
                k,
                self.request.series,
                self.request.results / "prefixes",
                hinting=carries_hinting(k, self.first_hinting),
            )
        return self.prefixes[k]

    def revision(self, k: int) -> Revision:
        return resolve(str(self.prefix(k))).with_extra_fragments(self.request.kconfig)

    def line(self, verdict: PrefixVerdict) -> str:
        """One line per try: phase, k/N, subject, good/bad, seconds, failing check."""
        mark = "good" if verdict.good else "bad"
        what = self.subjects[verdict.k - 1]
        what = what if len(what) <= 50 else what[:49] + "~"
        note = f"[{verdict.note}]" if verdict.note else ""
        tail = "  ".join(part for part in (verdict.check, note) if part)
        return (
            f"{verdict.phase:5} {verdict.k:>{len(str(self.total))}}/{self.total} {what:50} "
            f"{mark:4} {verdict.seconds:5.0f} s  {tail}".rstrip()
        )


def run(request: Request, series: Series, out: Callable[[str], None] = print) -> Outcome:
    """Build check and search over `series` (load_checked), reports in request.results."""
    pipeline = Pipeline(kernel_tree=request.kernel_source, jobs=request.jobs)
    first = hinting_from(series, lambda: base_has_hinting(pipeline.source))
    subjects = tuple(subject(patch) for patch in series.patches)
    state = Bisection(request, series, first, subjects)
    keyword, rest = split_keyword(request.pytest_args)
    suite = Suite(request.results / "suite", keyword, tuple(rest), harness_args(request))
    out(header(state))

    def report(verdict: PrefixVerdict) -> None:
        state.tried.append(verdict)
        out(state.line(verdict))
        write_reports(state, None, suite)

    def build(k: int) -> PrefixVerdict:
        return build_prefix(pipeline, state.revision(k), k)

    def judge(k: int) -> PrefixVerdict:
        hinting = carries_hinting(k, first)
        return judge_prefix(suite, state.prefix(k), k, hinting)

    outcome = run_bisection(state.total, request.good, build, judge, report)
    write_reports(state, outcome, suite)
    out(conclusion(state, outcome))
    out(f"total {format_seconds(time.monotonic() - state.started)}; "
        f"report: {request.results / 'bisect.md'}")  # fmt: skip
    return outcome


def harness_args(request: Request) -> tuple[str, ...]:
    """The options the in-process builds used, for the suite's own build of the prefix
    (which then finds it in the build cache)."""
    args = ["--jobs", str(request.jobs)]
    if request.kernel_source is not None:
        args += ["--kernel-source", str(request.kernel_source)]
    for fragment in request.kconfig:
        args += ["--kconfig", str(fragment)]
    return tuple(args)


def exit_code(outcome: Outcome) -> int:
    """1: a first bad patch was found; 0: the series passes."""
    return 0 if outcome.first_bad is None else 1


def header(state: Bisection) -> str:
    good = state.request.good
    known = f"prefix {good}/{state.total}" if good else "the base kernel"
    if state.first_hinting is None:
        hinting = "no patch adds CONFIG_PAGE_HINTING: every prefix is judged like stock"
    elif state.first_hinting == 0:
        hinting = "the base kernel has CONFIG_PAGE_HINTING"
    else:
        hinting = f"CONFIG_PAGE_HINTING from patch {state.first_hinting}"
    return f"bisect {state.series.name}: {state.total} patches, known good: {known}; {hinting}"


def conclusion(state: Bisection, outcome: Outcome) -> str:
    bad = outcome.first_bad
    if bad is None:
        return "the series passes: nothing to bisect"
    return f"first bad patch: {bad.k}/{state.total} {state.subjects[bad.k - 1]}: {bad.check}"


def format_seconds(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def write_reports(state: Bisection, outcome: Outcome | None, suite: Suite) -> None:
    """bisect.json and bisect.md (after every try, so a long bisection shows where it is;
    `outcome` None: still running)."""
    data = report_data(state, outcome, suite)
    results = state.request.results
    (results / "bisect.json").write_text(json.dumps(data, indent=1) + "\n")
    (results / "bisect.md").write_text(markdown(state, data))


def report_data(state: Bisection, outcome: Outcome | None, suite: Suite) -> dict[str, Any]:
    def row(verdict: PrefixVerdict) -> dict[str, Any]:
        data = asdict(verdict)
        data.update(
            subject=state.subjects[verdict.k - 1],
            verdict="good" if verdict.good else "bad",
            seconds=round(verdict.seconds, 1),
            evidence=str(verdict.evidence) if verdict.evidence else None,
        )
        del data["good"]
        return data

    first_bad = None
    if outcome is not None and outcome.first_bad is not None:
        bad = outcome.first_bad
        hinting = carries_hinting(bad.k, state.first_hinting)
        prefix = state.prefix(bad.k)
        first_bad = {
            "k": bad.k,
            "subject": state.subjects[bad.k - 1],
            "patch": str(state.series.patches[bad.k - 1]),
            "check": bad.check,
            "phase": bad.phase,
            "prefix": str(prefix),
            "reproduce": suite.reproduce(prefix, hinting) if bad.phase == SUITE else None,
        }
    status = "running" if outcome is None else ("first bad" if first_bad else "passes")
    return {
        "series": str(state.request.series),
        "name": state.series.name,
        "patches": state.total,
        "good": state.request.good,
        "hinting_from": state.first_hinting,
        "pytest_args": list(state.request.pytest_args),
        "status": status,
        "first_bad": first_bad,
        "tried": [row(v) for v in state.tried],
        "seconds": round(time.monotonic() - state.started, 1),
    }


def markdown(state: Bisection, data: dict[str, Any]) -> str:
    lines = [
        f"# First bad patch: {state.series.name}",
        "",
        header(state),
        "",
        "| phase | prefix | patch k | verdict | failing check | seconds |",
        "|---|---|---|---|---|---:|",
    ]
    for verdict in state.tried:
        note = f"({verdict.note})" if verdict.note else ""
        check = " ".join(part for part in (verdict.check, note) if part)
        lines.append(
            f"| {verdict.phase} | {verdict.k}/{state.total} | {state.subjects[verdict.k - 1]} "
            f"| {'good' if verdict.good else 'bad'} | {check.replace('|', '/')} "
            f"| {verdict.seconds:.0f} |"
        )
    lines.append("")
    first_bad = data["first_bad"]
    if data["status"] == "running":
        lines.append("(still running)")
    elif first_bad:
        lines.append(
            f"**first bad patch: {first_bad['k']}/{state.total} {first_bad['subject']}: "
            f"{first_bad['check']}**"
        )
        lines += ["", f"patch: `{first_bad['patch']}`", f"prefix: `{first_bad['prefix']}`"]
        if first_bad["reproduce"]:
            lines.append(f"reproduce: `{first_bad['reproduce']}`")
    else:
        lines.append("the series passes: nothing to bisect")
    lines += ["", f"total {format_seconds(data['seconds'])}"]
    return "\n".join(lines) + "\n"
