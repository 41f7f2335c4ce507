"""The mutant campaign: does the suite fail a revision with one seeded defect?

Each `patches/mutants/NN-<id>.patch` is one small defect on top of hinting-v2-fixed with
the harness's instrumentation (patches/instrumentation/) applied; its commit message names
the check that must catch it and carries a `Caught-by-class:` trailer (params, trigger,
prediction, work, accounting, counting, boundary, integrity, concurrency, lifecycle). For
each mutant the campaign writes a quilt series (hinting-v2-fixed's patches, the
instrumentation's, then the mutant) with hinting-v2-fixed's params.toml, and runs the
scenario suite on it in a pytest subprocess: release kernels, plus the debug kernel for
the concurrency class. The clean hinting-v2-fixed runs the same way first and must pass.

Outcome of a mutant, from the subprocess's JUnit (read with junitparser):
* caught: a scenario *failed* (an assertion: a named judge check, or a kernel log problem
  whose report names the series' code: page_hinting, hinted pages, the balloon's hinting);
* missed: every scenario passed;
* error: the mutant did not apply or build, the guest did not boot, or the kernel crashed
  outside the series' code path (setup errors and unexplained crashes are not catches).

"In the series' code path" is decided from the kernel's own report: a stack frame or RIP
(`name+0x..`) of a function the series adds (page_hinting_*, get_unhinted_page,
put_hinted_page, virtballoon_page_hinting_*). A guest that hangs at boot with such a frame
in its console (a soft lockup or RCU stall in the worker) is caught that way; a guest that
hangs at boot without one is an error. A guest that stops making progress once it is up (no
heartbeat for 30 s: harness/guest/hang.py) fails the check `guest_responsive`, whose detail says
where its vCPUs were: a catch like any other named check.

One crash outside the series' functions is attributed to it, by an experiment rather than
a frame: an oops whose instruction bytes at RIP are all zeros (kernel text is never zero;
the host's discard leaves zeros) on a kernel that boots cleanly when the balloon takes no
hints (a control boot with free-page-reporting=off, run by the plugin). That is the judge's
`kernel_text_intact` failing, so it reaches the campaign as a named check; if the control
boot fails too, the crash stays an error.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from junitparser import Error, Failure, JUnitXml, TestCase, TestSuite

from harness.build.overlay import load_overlay
from harness.build.revisions import HINTING_V2_FIXED
from harness.build.series import load_series, patch_subject, write_quilt_series
from harness.build.spec import MANIFEST_NAME
from harness.core.errors import HarnessError
from harness.core.paths import PATCHES_DIR, REPO_ROOT, cache_dir
from harness.judge import KERNEL_LOG, Check, series_frame
from harness.report.run_results import failed_check_data, read_cases

MUTANTS_DIR = PATCHES_DIR / "mutants"
CLASS_TRAILER = re.compile(r"^Caught-by-class:\s*(\S+)", re.MULTILINE)
# A mutant runs on the debug kernel (2 vCPUs, lockdep, KASAN) when its class needs it or
# its patch says "Harness-kernel: debug" (defects that need frees during react(), which
# one vCPU never produces: react() returns before anything else runs).
DEBUG_CLASSES = frozenset({"concurrency"})
DEBUG_TRAILER = re.compile(r"^Harness-kernel:\s*debug", re.MULTILINE)
# the scenarios a mutant runs (the negative control and kconfig tests cannot catch one)
SCENARIO_FILTER = (
    "release_returns or detection or batches_out or debug_kernel or lifecycle or isolation "
    "or offline"
)


@dataclass(frozen=True)
class Mutant:
    id: str
    patch: Path
    defect_class: str
    subject: str
    debug_trailer: bool = False

    @property
    def needs_debug(self) -> bool:
        return self.defect_class in DEBUG_CLASSES or self.debug_trailer


@dataclass(frozen=True)
class MutantResult:
    mutant: Mutant | None  # None: the clean base revision
    status: str  # caught | missed | error | passed | failed
    check: str  # the failing check, or what went wrong
    seconds: float
    evidence: Path

    @property
    def name(self) -> str:
        return self.mutant.id if self.mutant else HINTING_V2_FIXED.name


def discover(only: Sequence[str] = ()) -> list[Mutant]:
    """The catalogue, in file order; `only` selects ids (unknown ids are an error)."""
    mutants = []
    for patch in sorted(MUTANTS_DIR.glob("*.patch")):
        mutant_id = patch.stem.split("-", 1)[1] if "-" in patch.stem else patch.stem
        text = patch.read_text(errors="replace")
        found = CLASS_TRAILER.search(text)
        if found is None:
            raise HarnessError(
                f"{patch} has no 'Caught-by-class:' trailer",
                "add one to its commit message (see harness/campaigns/mutants.py for the classes)",
            )
        subject = re.sub(r"^\[[^\]]*\]\s*", "", patch_subject(patch))  # drop "[PATCH]"
        debug = DEBUG_TRAILER.search(text) is not None
        mutants.append(Mutant(mutant_id, patch, found.group(1), subject, debug))
    unknown = sorted(set(only) - {m.id for m in mutants})
    if unknown:
        raise HarnessError(
            f"no mutant named {', '.join(unknown)} in {MUTANTS_DIR}",
            "choose from: " + ", ".join(m.id for m in mutants),
        )
    return [m for m in mutants if not only or m.id in only]


def materialise(mutant: Mutant, directory: Path) -> Path:
    """A quilt series directory: the base revision's patches, the harness's instrumentation,
    then the mutant. Mutants are made on the instrumented tree (some break the
    instrumentation itself, e.g. debugfs-field-renamed); the build finds the overlay
    present and does not apply it again."""
    base = HINTING_V2_FIXED.series
    assert base is not None
    overlay = [patch.path for patch in load_overlay().patches]
    return write_quilt_series(
        [*load_series(base).patches, *overlay, mutant.patch],
        directory / mutant.id,
        companions=[base / MANIFEST_NAME],
    )


def suite_command(
    revision_args: list[str],
    results: Path,
    stop_at_first_failure: bool,
    keyword: str | None = SCENARIO_FILTER,
) -> list[str]:
    """The scenario suite in a pytest subprocess, its JUnit at results/pytest-junit.xml;
    `keyword` is its -k expression (None: every scenario)."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(REPO_ROOT / "harness"),
        "-p",
        "no:cacheprovider",
        "-q",
        *(["-k", keyword] if keyword else []),
        "--results",
        str(results),
        f"--junitxml={results / 'pytest-junit.xml'}",
        *revision_args,
    ]
    return [*command, "-x"] if stop_at_first_failure else command


def run_one(mutant: Mutant | None, results: Path) -> MutantResult:
    """Run the suite on one mutant (None: the clean base) and classify the outcome."""
    started = time.monotonic()
    if mutant is None:
        evidence = results / "mutants" / HINTING_V2_FIXED.name
        args = ["--revisions", HINTING_V2_FIXED.name, "--debug-revisions", ""]
    else:
        evidence = results / "mutants" / mutant.id
        series_dir = str(materialise(mutant, cache_dir("mutants")))
        if mutant.needs_debug:
            args = ["--revisions", "", "--debug-revisions", series_dir]
        else:
            args = ["--revisions", "", "--series", series_dir, "--debug-revisions", ""]
    shutil.rmtree(evidence, ignore_errors=True)
    evidence.mkdir(parents=True)
    command = suite_command(args, evidence, stop_at_first_failure=mutant is not None)
    with (evidence / "pytest.log").open("w") as log:
        proc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    seconds = time.monotonic() - started
    status, check = classify(evidence / "pytest-junit.xml", proc.returncode, mutant is None)
    return MutantResult(mutant, status, check, seconds, evidence)


def classify(junit: Path, returncode: int, clean: bool) -> tuple[str, str]:
    """(status, failing check or reason) from the suite's JUnit file: the verdicts its
    tests recorded as data (harness.report.run_results), never its prose."""
    cases = read_cases(junit.parent, junit)
    if cases is None:
        return "error", f"pytest exited {returncode} without a JUnit report"
    bad = [case for case in cases if case.bad]
    if clean:
        if bad or not cases:
            return "failed", _first_line(
                bad[0].message or bad[0].text
            ) if bad else "no scenario ran"
        return "passed", f"{len(cases)} scenarios"
    for case in bad:
        for _, check in failed_check_data(case):
            if (name := catching_check(check)) is not None:
                return "caught", name
    if bad:
        return "error", _first_line(bad[0].message or bad[0].text)
    if not cases:
        return "error", "no scenario ran"
    return "missed", f"{len(cases)} scenarios passed"


def catching_check(check: Check) -> str | None:
    """The name a failed check catches a mutant by. A kernel log problem counts only when
    its report names the series' code (a crash elsewhere says nothing about the defect):
    then it is "kernel_log: <kind> <id>"."""
    if check.name != KERNEL_LOG:
        return check.name
    if series_frame(check.detail) is None:
        return None
    return f"{KERNEL_LOG}: {' '.join(check.detail.split()[:2])}"


def _first_line(text: str) -> str:
    for line in text.splitlines():
        line = line.strip().removeprefix("AssertionError: ").strip()
        if line:
            return line[:160]
    return ""


def campaign(only: Sequence[str], results: Path, *, include_clean: bool = True) -> int:
    """Run the clean base and each mutant; write mutants.md/.csv and JUnit; exit code."""
    mutants = discover(only)
    out: list[MutantResult] = []
    if include_clean:
        out.append(_report(run_one(None, results)))
    for mutant in mutants:
        out.append(_report(run_one(mutant, results)))
    write_reports(out, results)
    bad = [r for r in out if r.status in ("missed", "error", "failed")]
    return 1 if bad else 0


def _report(result: MutantResult) -> MutantResult:
    print(
        f"{result.name:24} {result.status:7} {result.seconds:6.0f} s  {result.check}",
        flush=True,
    )
    return result


def write_reports(results: list[MutantResult], directory: Path) -> None:
    rows = [
        {
            "mutant": r.name,
            "class": r.mutant.defect_class if r.mutant else "clean",
            "status": r.status,
            "check": r.check,
            "seconds": round(r.seconds),
            "evidence": str(r.evidence),
        }
        for r in results
    ]
    lines = [
        "# Mutant campaign",
        "",
        "| mutant | class | outcome | failing check | seconds |",
        "|---|---|---|---|---:|",
        *(
            f"| {r['mutant']} | {r['class']} | {r['status']} | {r['check']} | {r['seconds']} |"
            for r in rows
        ),
    ]
    caught = sum(r.status == "caught" for r in results)
    total = sum(r.mutant is not None for r in results)
    lines += ["", f"{caught} of {total} mutants caught."]
    (directory / "mutants.md").write_text("\n".join(lines) + "\n")
    with (directory / "mutants.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    suite = TestSuite("mutants")
    for r in results:
        case = TestCase(r.name, classname="mutants", time=round(r.seconds, 1))
        if r.status in ("missed", "failed"):
            case.result = [Failure(f"{r.status}: {r.check}")]
        elif r.status == "error":
            case.result = [Error(r.check)]
        suite.add_testcase(case)
    xml = JUnitXml()
    xml.add_testsuite(suite)
    xml.write(str(directory / "mutants-junit.xml"), pretty=True)
