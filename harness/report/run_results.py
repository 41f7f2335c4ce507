"""A finished run directory read back, for the reports written after it (harness/report/reply.py,
harness/report/index_page.py): its test cases from junit.xml with their evidence directories and
failing checks, a console excerpt, the revision comparison, the patch coverage total.

Only reads; every input may be missing (a run that stopped early), and a reader then
returns nothing rather than raising.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path

from junitparser import Error, Failure, JUnitXml, Properties, Skipped, TestCase, TestSuite

from harness.judge import Check, Verdict
from harness.observe import dmesg

JUNIT = "junit.xml"
COMPARE_MD = "compare.md"
COMPARE_CSV = "compare.csv"
COVERAGE_TXT = "coverage.txt"
REDUCED_PROPERTY = "reduced"  # set by harness/pytest_plugin/reduced.py
# Outcomes of a test case, worst first: a case pytest wrote twice (a failure in the call,
# then an error in teardown) takes the worst of its two.
OUTCOMES = ("failed", "error", "skipped", "passed")
# Revision name suffixes (harness/build/revisions.py FLAVOURS); none is the "release" flavour.
FLAVOURS = ("coverage", "debug")
FAIL_LINE = re.compile(r"^\s*(\[FAIL\] ([\w\[\]]+):?.*?)\s*$")
# A step the judge read again because two files disagreed (guest_checks.judge_reading_again):
# its failures were superseded by the next read, so they are no evidence.
READ_AGAIN = "disagreed between files"
CONSOLE_LINES = 15
SPLAT_LINES_BEFORE = 2  # console lines shown before a splat's header line
_TERMINAL_ESCAPE = re.compile(r"\x1b(?:\[[0-9;?]*[A-Za-z]|[A-Za-z])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_LINUX_VERSION = re.compile(r"Linux version (\S+)")


@dataclass(frozen=True)
class CaseResult:
    """One test case of junit.xml (pytest's xunit1, with the harness's properties)."""

    classname: str
    name: str  # e.g. "test_two_zones[hinting-v2+debug]"
    outcome: str  # one of OUTCOMES
    message: str  # why it failed / errored / was skipped ("" when it passed)
    text: str  # every result's message and text (pytest's long report)
    seconds: float
    evidence: Path | None  # its evidence directory, found in this run directory if it can be
    verdicts: tuple[str, ...]  # its "verdict" properties: the steps it judged
    # its "reduced" property: the line naming the overlay hunk that did not apply, when the
    # revision was judged without the harness's instrumentation ("" otherwise)
    reduced: str = ""

    @property
    def parameter(self) -> str:
        """The pytest parameter in [brackets]: the revision with its flavours."""
        found = re.search(r"\[(.*)\]$", self.name)
        return found.group(1) if found else ""

    @property
    def revision(self) -> str:
        return split_revision(self.parameter)[0]

    @property
    def flavour(self) -> str:
        return split_revision(self.parameter)[1]

    @property
    def bad(self) -> bool:
        return self.outcome in ("failed", "error")


def without_group(name: str) -> str:
    """The test's name without the "@<group>" pytest-xdist appends under --dist loadgroup
    (test_x[hinting-v2]@guest-detection-hinting-v2)."""
    head, at, group = name.rpartition("@")
    return head if at and head and not set(group) & set("[]") else name


def split_revision(parameter: str) -> tuple[str, str]:
    """("hinting-v2", "coverage+debug") from "hinting-v2+coverage+debug"; flavour "release"
    without a suffix, revision "-" for a test that takes none."""
    parts = parameter.split("+")
    flavours: list[str] = []
    while len(parts) > 1 and parts[-1] in FLAVOURS:  # a "+" may be part of a series' name
        flavours.insert(0, parts.pop())
    return "+".join(parts) or "-", "+".join(flavours) or "release"


def evidence_dir(run_dir: Path, recorded: str) -> Path | None:
    """The evidence directory a JUnit "evidence" property names, in `run_dir`.

    The property holds the absolute path the run wrote to; the run directory may have been
    copied, moved aside (DIR.<stamp>) or merged from CI shards since. The longest tail of
    the recorded path that exists under `run_dir` wins (`gw0/<scenario>` before
    `<scenario>`); failing that, the recorded path itself if it still exists.
    """
    path = Path(recorded)
    parts = [p for p in path.parts if p not in (path.anchor, "", ".")]
    if ".." not in parts:
        for start in range(len(parts)):
            candidate = run_dir.joinpath(*parts[start:])
            if candidate.is_dir():
                return candidate
    return path if path.is_absolute() and path.is_dir() else None


def _properties(case: TestCase) -> list[tuple[str, str]]:
    found = case.child(Properties)
    return [] if found is None else [(p.name or "", p.value or "") for p in found]


def _suites(xml: JUnitXml | TestSuite) -> list[TestSuite]:
    return [xml] if isinstance(xml, TestSuite) else list(xml)


def read_junit(path: Path) -> JUnitXml | TestSuite | None:
    """The parsed file, or None if it is missing or unreadable."""
    try:
        return JUnitXml.fromfile(str(path))
    except Exception:  # ParseError, OSError, JUnitXmlError: all mean "no usable file"
        return None


def read_cases(run_dir: Path, junit: Path | None = None) -> list[CaseResult] | None:
    """The test cases of `run_dir`/junit.xml (or of `junit`) in file order, one per test
    (None: no readable file). pytest writes a test twice when its call failed and its
    teardown errored: the two are one case here, with the worse outcome and both messages."""
    xml = read_junit(junit or run_dir / JUNIT)
    if xml is None:
        return None
    merged: dict[tuple[str, str], dict] = {}
    for suite in _suites(xml):
        for case in suite:
            key = (case.classname or suite.name or "", case.name or "")
            entry = merged.setdefault(
                key, {"outcomes": [], "messages": [], "texts": [], "seconds": 0.0, "props": []}
            )
            entry["seconds"] = max(entry["seconds"], case.time or 0.0)
            entry["props"] += _properties(case)
            for result in case.result:
                outcome = {Failure: "failed", Error: "error", Skipped: "skipped"}.get(
                    type(result), "error"
                )
                entry["outcomes"].append(outcome)
                entry["messages"].append(result.message or "")
                entry["texts"] += [result.message or "", result.text or ""]
    cases = []
    for (classname, raw_name), entry in merged.items():
        name = without_group(raw_name)
        outcome = next((o for o in OUTCOMES if o in entry["outcomes"]), "passed")
        evidence = next((v for k, v in entry["props"] if k == "evidence"), None)
        cases.append(
            CaseResult(
                classname=classname,
                name=name,
                outcome=outcome,
                message=next((m for m in entry["messages"] if m), ""),
                text="\n".join(t for t in entry["texts"] if t),
                seconds=entry["seconds"],
                evidence=None if evidence is None else evidence_dir(run_dir, evidence),
                verdicts=tuple(v for k, v in entry["props"] if k == "verdict"),
                reduced=next((v for k, v in entry["props"] if k == REDUCED_PROPERTY and v), ""),
            )
        )
    return cases


def junit_properties(run_dir: Path) -> dict[str, str]:
    """The suites' properties and then the test cases' (the first value of a name wins)."""
    xml = read_junit(run_dir / JUNIT)
    found: dict[str, str] = {}
    if xml is None:
        return found
    for suite in _suites(xml):
        for prop in suite.properties():
            found.setdefault(prop.name or "", prop.value or "")
    for suite in _suites(xml):
        for case in suite:
            for name, value in _properties(case):
                found.setdefault(name, value)
    return found


# --- failing checks --------------------------------------------------------------------------


@dataclass(frozen=True)
class FailLine:
    """One "[FAIL] check: detail" line of a verdict and the step it was judged at."""

    step: str  # the "== ..." header above it ("" if none)
    line: str  # "[FAIL] check: detail"
    check: str


def recorded_verdicts(case: CaseResult) -> list[tuple[str, Verdict]]:
    """The verdicts this test recorded as data: (step, verdict) from its "verdict"
    properties (`Verdict.to_json`); a run written before verdicts were data has none."""
    found = []
    for value in case.verdicts:
        if value.lstrip().startswith("{"):
            try:
                found.append(Verdict.from_json(value))
            except (ValueError, KeyError):
                continue
    return found


def failed_check_data(case: CaseResult) -> list[tuple[str, Check]]:
    """(step, check) for each check that failed in a verdict this bad test recorded, in
    the order it judged them."""
    if not case.bad:
        return []
    return [
        (step, check) for step, verdict in recorded_verdicts(case) for check in verdict.failures
    ]


def fail_lines(text: str) -> list[FailLine]:
    """The [FAIL] lines of verdict text, with their step; steps read again are left out."""
    found, step = [], ""
    for raw in text.splitlines():
        if raw.startswith("== "):
            step = raw[3:].strip()
            continue
        match = FAIL_LINE.match(raw)
        if match and READ_AGAIN not in step:
            found.append(FailLine(step, match.group(1), match.group(2)))
    return found


def _step_text(case: CaseResult) -> str:
    """The verdicts of the steps this test judged: its "verdict" properties (a guest shared
    by several tests keeps one verdict.txt for all), else its evidence's verdict.txt."""
    if case.verdicts:
        return "\n".join(case.verdicts)
    if case.evidence is not None and (case.evidence / "verdict.txt").is_file():
        return (case.evidence / "verdict.txt").read_text(errors="replace")
    return ""


def failed_checks(case: CaseResult) -> list[FailLine]:
    """The evidence of a failing check: the [FAIL] lines of the steps this test judged.

    When the failure message names checks (the judge's verdict in the assertion), only
    their lines count: a step of a revision that keeps a defect may show a [FAIL] the
    scenario expects. A failure that names none (a bare assertion) takes every [FAIL] of its
    steps; an error (an exception, a setup or teardown failure) or a kernel log problem
    none, since it is no check's verdict. Each line once, in step order.
    """
    if not case.bad:
        return []
    if data := failed_check_data(case):
        unique_data = {(step, str(check)): check for step, check in data}
        return [FailLine(step, line, check.name) for (step, line), check in unique_data.items()]
    steps = fail_lines(_step_text(case))
    named = fail_lines(case.text)
    if named:
        names = {line.check for line in named}
        chosen = [line for line in steps if line.check in names]
        seen = {line.line for line in chosen}
        chosen += [FailLine("", n.line, n.check) for n in named if n.line not in seen]
    elif case.outcome == "failed" and not kernel_problems(case.text):
        chosen = steps
    else:
        return []
    unique: dict[tuple[str, str], FailLine] = {}
    for line in chosen:
        unique.setdefault((line.step, line.line), line)
    return list(unique.values())


@dataclass(frozen=True)
class KernelProblem:
    """A kernel log problem as a failure message lists it (scenarios' format_splats)."""

    kind: str  # "WARNING", "BUG", "lockdep", ...
    id: str
    title: str  # the report's first line, e.g. "WARNING: inconsistent lock state"


_PROBLEM = re.compile(r"^(\S+) (\S+) \(line \d+\):\n([^\n]*)", re.MULTILINE)


def kernel_problems(text: str) -> list[KernelProblem]:
    """The kernel log problems a failure message lists ([] if it is about none)."""
    if "kernel log problems" not in text:
        return []
    listed = text.split("kernel log problems", 1)[1]
    return [KernelProblem(*m.groups()) for m in _PROBLEM.finditer(listed)]


def failure_summary(case: CaseResult) -> str:
    """One line: the failing checks' names, or the kernel log problem, else the first line
    of the failure message."""
    names = list(dict.fromkeys(line.check for line in failed_checks(case)))
    if names:
        return ", ".join(names)
    problems = kernel_problems(case.text)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return f"kernel log: {problems[0].kind}: {problems[0].title.strip()}{more}"
    if "kernel log problems" in case.text:
        return "kernel log problems"
    return first_line(case.message or case.text)


def first_line(text: str) -> str:
    for line in text.splitlines():
        line = line.strip().removeprefix("AssertionError: ").strip()
        if line:
            return line
    return ""


# --- console ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsoleExcerpt:
    path: Path  # the console.log
    first: int  # 1-based number of the first line shown
    lines: tuple[str, ...]
    splat: str  # the id of the splat it is cut around ("" for the end of the log)
    title: str = ""  # that splat's first line, e.g. "WARNING: inconsistent lock state"


def clean_console_line(line: str) -> str:
    """A console line without terminal escapes and control characters, tabs expanded."""
    line = _TERMINAL_ESCAPE.sub("", line.rstrip("\r")).expandtabs()
    return _CONTROL.sub("", line).rstrip()


def console_excerpt(evidence: Path, count: int = CONSOLE_LINES) -> ConsoleExcerpt | None:
    """`count` lines of evidence/console.log: from just before its first kernel splat (one
    splats.json names first, when the console shows it), else its last lines."""
    path = evidence / "console.log"
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    raw = text.split("\n")  # numbered as dmesg.classify numbers them
    found = dmesg.classify(text)
    wanted = _saved_splat_ids(evidence)
    splat = next((s for s in found if s.id in wanted[:1]), found[0] if found else None)
    if splat is not None:
        start = max(0, splat.line_no - 1 - SPLAT_LINES_BEFORE)
        end = min(len(raw), start + count)
    else:
        end = len(raw)
        while end > 0 and not clean_console_line(raw[end - 1]).strip():
            end -= 1
        start = max(0, end - count)
    lines = tuple(clean_console_line(line) for line in raw[start:end])
    if splat is None:
        return ConsoleExcerpt(path, start + 1, lines, "")
    return ConsoleExcerpt(path, start + 1, lines, splat.id, splat.excerpt.split("\n", 1)[0])


def _saved_splat_ids(evidence: Path) -> list[str]:
    """The ids of splats.json (the problems the scenario did not expect), in order."""
    try:
        saved = json.loads((evidence / "splats.json").read_text())
    except (OSError, ValueError):
        return []
    return [s["id"] for s in saved if isinstance(s, dict) and "id" in s]


def guest_kernel_version(run_dir: Path) -> str:
    """The "Linux version" the first console.log of the run shows ("" if none does)."""
    for console in sorted(run_dir.glob("*/console.log")) + sorted(run_dir.glob("*/*/console.log")):
        try:
            with console.open(errors="replace") as f:
                for line in itertools.islice(f, 200):
                    found = _LINUX_VERSION.search(line)
                    if found:
                        return found.group(1)
        except OSError:
            continue
    return ""


# --- comparison, coverage, timing ------------------------------------------------------------


def read_compare_csv(run_dir: Path) -> list[dict[str, str]]:
    """compare.csv's rows (report.CSV_COLUMNS), [] without one."""
    try:
        with (run_dir / COMPARE_CSV).open(newline="") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def fault_rates(run_dir: Path) -> dict[str, float]:
    """Page faults per second per revision: session-data.json's, else compare.md's table."""
    rates = read_json(run_dir / "session-data.json").get("fault_rates") or {}
    if rates:
        return {str(k): float(v) for k, v in rates.items()}
    try:
        markdown = (run_dir / COMPARE_MD).read_text()
    except OSError:
        return {}
    section = markdown.split("## Page-fault cost", 1)[1] if "## Page-fault cost" in markdown else ""
    found = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.fullmatch(r"[\d,.]+", cells[1]):
            found[cells[0]] = float(cells[1].replace(",", ""))
    return found


def coverage_file(run_dir: Path) -> Path | None:
    """coverage.txt of the run, or of a directory just below it (`harness coverage --results`
    puts it at the top; a report made apart may sit in a subdirectory)."""
    candidates = [run_dir / COVERAGE_TXT, *sorted(run_dir.glob(f"*/{COVERAGE_TXT}"))]
    return next((c for c in candidates if c.is_file()), None)


def evidence_dirs(run_dir: Path) -> list[Path]:
    """Every directory of the run (or of its xdist workers, gw*/) holding a verdict.txt or a
    console.log, sorted by path."""
    found = set()
    for pattern in ("*/verdict.txt", "*/console.log", "gw*/*/verdict.txt", "gw*/*/console.log"):
        found.update(p.parent for p in run_dir.glob(pattern))
    return sorted(found)
