"""The reply a maintainer would send to the series' thread after a run: report.txt.

`write_reply(run_dir, ReplyContext(...))` writes `<run_dir>/report.txt`, a plain-text mail
in the style of the kernel test robot (0-day): a `Subject: Re: [PATCH ...]` header from the
series' cover letter or first patch (and `In-Reply-To:` when the series came as an mbox),
then what was tested, the verdict per revision and flavour, each failing check with its
evidence and a console excerpt, the reclaim times and page-fault cost against stock, the
patch coverage total, the first bad patch when a bisection found one, and a `Tested-by:`
only when everything passed. Nothing is sent.

Every line is at most 80 columns, except the quoted console lines (CONSOLE_PREFIX), which
are kept whole as the kernel printed them.
"""

from __future__ import annotations

import email.header
import email.parser
import email.policy
import itertools
import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.build.series import MBOX_SEPARATOR, load_series, patch_subject
from harness.core.errors import HarnessError
from harness.core.units import MiB
from harness.report.reduced import reduced_cases, reduced_section
from harness.report.run_results import (
    CaseResult,
    console_excerpt,
    coverage_file,
    failed_checks,
    failure_summary,
    fault_rates,
    guest_kernel_version,
    junit_properties,
    read_cases,
    read_compare_csv,
    read_json,
)

REPORT = "report.txt"
WIDTH = 80
CONSOLE_PREFIX = "  | "  # quoted console lines: never wrapped, may be longer than WIDTH
TESTED_BY = "Tested-by: Page Hinting Harness <harness@localhost>"
DEFAULT_SUBJECT = "[PATCH] mm: free page hinting"  # no series given (e.g. a stock-only run)
BASELINE = "stock"
MAX_FAIL_LINES = 8  # evidence lines quoted per failing test; the rest are counted
# Where a run records its environment, if it does: keys of session-data.json (top level or
# its "environment") and JUnit properties. The first found wins over the context.
RECORDED_KEYS = {
    "base_kernel": ("base_kernel", "kernel_version"),
    "qemu": ("qemu", "qemu_version"),
    "accel": ("accel", "accelerator"),
}
_COUNTER = re.compile(r"\[[^\]]*?\b(\d{1,4})/(\d{1,4})\b[^\]]*\]")
_REPLY = re.compile(r"^\s*(?:re|aw)\s*:\s*", re.IGNORECASE)


@dataclass(frozen=True)
class ReplyContext:
    """What the run directory does not say, from whoever calls write_reply.

    series: the series the run validated (a quilt directory, a directory of *.patch, or
        an mbox as `b4 am` writes it): gives the Subject (its cover letter's, else its
        first patch's) and, for an mbox, In-Reply-To. None: a generic subject.
    base_kernel: the kernel the series was applied to, e.g. "6.1.158 (Debian
        linux-source-6.1)". "" if unknown: then the version the guests booted is shown.
    qemu: the QEMU version, e.g. "7.2.15 (Debian 1:7.2+dfsg-7+deb12u7)".
    accel: "kvm" or "tcg", the accelerator the guests ran under.
    host: the machine, e.g. "2 CPUs, a virtual machine" (harness.core.host); "": not said.
    first_bad_patch: what a bisection over the series blamed, e.g. "[PATCH v2 3/4] mm:
        Show hinted page counts"; None when no bisection ran. One withholds Tested-by.
    bisect_summary: the bisection's own account (a few lines, e.g. each step's verdict).

    A value the run itself recorded (RECORDED_KEYS) is what ran and wins over these.
    """

    series: Path | None = None
    base_kernel: str = ""
    qemu: str = ""
    accel: str = ""
    host: str = ""
    first_bad_patch: str | None = None
    bisect_summary: str | None = None


@dataclass(frozen=True)
class Thread:
    """The message of the series a reply answers."""

    subject: str  # as the message has it, without "Re: "
    message_id: str = ""  # "<...>"; only for a series that came as mail (an mbox)


# --- the series' thread ----------------------------------------------------------------------


def _headers(raw: bytes) -> tuple[str, str]:
    """(Subject, Message-ID) of one message, unfolded and decoded."""
    headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    subject = headers.get("Subject")
    if subject is not None:
        decoded = email.header.make_header(email.header.decode_header(str(subject)))
        subject = " ".join(str(decoded).split())
    message_id = " ".join(str(headers.get("Message-ID") or "").split())
    return subject or "", message_id


def _counter(subject: str) -> int | None:
    found = _COUNTER.search(subject)
    return int(found.group(1)) if found else None


def _mbox_thread(path: Path) -> Thread | None:
    """The cover letter (0/N) of an mbox, else its patch 1/N, else its first message that
    is not a reply: the message the series' thread starts from."""
    content = path.read_bytes()
    starts = [m.start() for m in MBOX_SEPARATOR.finditer(content)] or [0]
    bounds = itertools.pairwise([*starts, len(content)])
    messages = [_headers(content[start:end]) for start, end in bounds]
    messages = [(s, m) for s, m in messages if s]
    if not messages:
        return None
    originals = [(s, m) for s, m in messages if not _REPLY.match(s)] or messages
    chosen = next(
        (msg for number in (0, 1) for msg in originals if _counter(msg[0]) == number),
        originals[0],
    )
    return Thread(chosen[0], chosen[1])


def _directory_thread(path: Path) -> Thread | None:
    """A cover letter beside the patches (git format-patch --cover-letter), else the first
    patch of the series."""
    for cover in sorted(path.glob("0000-*.patch")):
        subject = patch_subject(cover)
        if _counter(subject) == 0:
            return Thread(subject)
    try:
        patches = load_series(path).patches
    except HarnessError:  # a series the run could not use: its first file still names it
        patches = tuple(sorted(path.glob("*.patch")))
    return Thread(patch_subject(patches[0])) if patches else None


def series_thread(series: Path | None) -> Thread | None:
    """The message a reply about `series` answers (None: no series, or none readable)."""
    if series is None:
        return None
    series = series.expanduser()
    try:
        if series.is_dir():
            return _directory_thread(series)
        if series.is_file():
            return _mbox_thread(series)
    except (OSError, HarnessError):
        return None
    return None


def subject_line(thread: Thread | None) -> str:
    subject = _REPLY.sub("", thread.subject) if thread else DEFAULT_SUBJECT
    if not subject.startswith("["):
        subject = f"[PATCH] {subject}"
    return f"Re: {subject}"


# --- text ------------------------------------------------------------------------------------


def wrap(text: str, indent: str = "", hanging: str | None = None) -> list[str]:
    """`text` in lines of at most WIDTH columns (a word longer than a line is cut); lines
    after the first are indented by `hanging` (default: as the first)."""
    wrapper = textwrap.TextWrapper(
        width=WIDTH,
        initial_indent=indent,
        subsequent_indent=indent if hanging is None else hanging,
        break_long_words=True,
        break_on_hyphens=False,
    )
    return wrapper.wrap(text) or [indent.rstrip()]


def header(name: str, value: str) -> list[str]:
    """A mail header folded at WIDTH (continuation lines start with a blank); a word that
    cannot be folded (a long Message-ID) stays whole."""
    wrapper = textwrap.TextWrapper(
        width=WIDTH, subsequent_indent=" ", break_long_words=False, break_on_hyphens=False
    )
    return wrapper.wrap(f"{name}: {value}")


def _count(number: int, word: str) -> str:
    """E.g. 1 error, 2 errors, 2 passed."""
    plural = word if word in ("passed", "failed", "skipped") else f"{word}s"
    return f"{number} {word if number == 1 else plural}"


def _table(rows: Iterable[tuple[str, ...]], indent: str = "  ") -> list[str]:
    """Columns padded to their widest cell; the last column is left free (and wrapped)."""
    rows = list(rows)
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        lead = indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
        lines += wrap(f"{lead}  {row[-1]}".rstrip(), hanging=" " * min(len(lead) + 2, 40))
    return lines


# --- sections --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Environment:
    base_kernel: str
    qemu: str
    accel: str


def environment(run_dir: Path, context: ReplyContext) -> Environment:
    """The kernel, QEMU and accelerator: what the run recorded, else the context, else
    (the kernel) the version the guests' consoles show."""
    session = read_json(run_dir / "session-data.json")
    sources = [session.get("environment") or {}, session, junit_properties(run_dir)]

    def pick(field: str) -> str:
        for source in sources:
            for key in RECORDED_KEYS[field]:
                if isinstance(source, dict) and source.get(key):
                    return str(source[key])
        return str(getattr(context, field) or "")

    kernel = pick("base_kernel")
    if not kernel:
        booted = guest_kernel_version(run_dir)
        kernel = f"{booted} (the version the guests booted)" if booted else ""
    return Environment(kernel or "not recorded", pick("qemu") or "not recorded", pick("accel"))


def tested_section(
    run_dir: Path, context: ReplyContext, env: Environment, cases: list[CaseResult]
) -> list[str]:
    rows = []
    if context.series is not None:
        rows.append(("series:", context.series.name))
    rows += [
        ("base kernel:", env.base_kernel),
        ("qemu:", env.qemu),
        ("accelerator:", env.accel or "not recorded"),
    ]
    if context.host:
        rows.append(("host:", context.host))
    revisions = list(dict.fromkeys(case.parameter or case.revision for case in cases))
    revisions.sort(key=lambda name: name != BASELINE)
    if revisions:
        rows.append(("revisions:", ", ".join(revisions)))
    timing = read_json(run_dir / "timing.json")
    total = timing.get("total")
    finished = run_dir / "finished"
    when = finished.read_text().strip() if finished.is_file() else ""
    if isinstance(total, int | float):
        rows.append(("run:", f"{total:.0f} s" + (f", finished {when}" if when else "")))
    elif when:
        rows.append(("run:", f"finished {when}"))
    return ["tested:", *_table(rows)]


def verdict_section(cases: list[CaseResult]) -> list[str]:
    groups: dict[tuple[str, str], list[CaseResult]] = {}
    for case in cases:
        groups.setdefault((case.revision, case.flavour), []).append(case)
    order = sorted(groups, key=lambda key: (key[0] != BASELINE, list(groups).index(key)))
    rows = []
    for revision, flavour in order:
        group = groups[(revision, flavour)]
        counts = {o: sum(c.outcome == o for c in group) for o in ("passed", "failed", "error")}
        skipped = sum(c.outcome == "skipped" for c in group)
        words = [_count(counts["passed"], "passed"), _count(counts["failed"], "failed")]
        words.append(_count(counts["error"], "error"))
        if skipped:
            words.append(_count(skipped, "skipped"))
        verdict = "FAIL" if counts["failed"] or counts["error"] else "PASS"
        if verdict == "PASS" and not counts["passed"]:
            verdict = "SKIP"  # nothing ran to a verdict
        rows.append((revision, flavour, verdict, ", ".join(words)))
    return ["verdict (revision, flavour):", *_table(rows)]


def _relative(path: Path, run_dir: Path) -> str:
    try:
        return str(path.relative_to(run_dir))
    except ValueError:
        return str(path)


def failure_section(run_dir: Path, cases: list[CaseResult]) -> list[str]:
    """Each failed or errored test: its failing checks with their evidence lines, or what
    went wrong, and the console of its guest (each console once)."""
    lines: list[str] = []
    quoted: set[Path] = set()
    for case in (c for c in cases if c.bad):
        lines += ["", *wrap(f"{case.outcome.upper()}: {case.name}", hanging="    ")]
        if case.classname:
            lines += wrap(f"({case.classname})", indent="  ")
        checks = failed_checks(case)
        summary = failure_summary(case)
        named = checks or summary.startswith("kernel log")
        label = "failing check" if named else case.outcome
        lines += wrap(f"{label}: {summary}", indent="  ", hanging="    ")
        if checks:
            source = "verdict.txt"
            if case.evidence is not None:
                source = _relative(case.evidence / "verdict.txt", run_dir)
            lines += wrap(f"evidence ({source}):", indent="  ")
            step = None
            for check in checks[:MAX_FAIL_LINES]:
                if check.step and check.step != step:
                    lines += wrap(f"== {check.step}", indent="    ", hanging="       ")
                    step = check.step
                lines += wrap(check.line, indent="    ", hanging="      ")
            if len(checks) > MAX_FAIL_LINES:
                lines.append(f"    ... and {len(checks) - MAX_FAIL_LINES} more [FAIL] lines")
        lines += _console_lines(run_dir, case, quoted)
    return ["failures:", *lines] if lines else []


def _console_lines(run_dir: Path, case: CaseResult, quoted: set[Path]) -> list[str]:
    if case.evidence is None:
        return wrap("console: no evidence directory recorded for this test", indent="  ")
    excerpt = console_excerpt(case.evidence)
    if excerpt is None:
        return []
    name = _relative(excerpt.path, run_dir)
    if excerpt.path in quoted:
        return wrap(f"console: {name}, quoted above", indent="  ")
    quoted.add(excerpt.path)
    last = excerpt.first + len(excerpt.lines) - 1
    where = f'around "{excerpt.title.strip()}"' if excerpt.splat else "the end of the log"
    lines = wrap(
        f"console ({name}, lines {excerpt.first}-{last}, {where}):", indent="  ", hanging="    "
    )
    # Console lines are quoted whole (the kernel's line breaks are part of the evidence):
    # the one exception to the 80-column limit.
    return lines + [f"{CONSOLE_PREFIX}{line}".rstrip() for line in excerpt.lines]


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def reclaim_section(run_dir: Path) -> list[str]:
    """compare.csv: memory back to the host after the release, and the time to 90 % of it,
    as a ratio to stock's."""
    rows = sorted(read_compare_csv(run_dir), key=lambda row: row.get("revision") != BASELINE)
    if not rows:
        return []
    base = next(
        (_float(r.get("seconds_to_90")) for r in rows if r.get("revision") == BASELINE), None
    )
    table = []
    for row in rows:
        revision = row.get("revision", "?")
        returned = _float(row.get("bytes_returned"))
        seconds = _float(row.get("seconds_to_90"))
        back = "n/a" if returned is None else f"{returned / MiB:,.1f} MiB back"
        time = "90 % never" if seconds is None else f"90 % in {seconds:.2f} s"
        ratio = ""
        if seconds is not None and base and revision != BASELINE:
            ratio = f"({seconds / base:.2f}x {BASELINE})"
        verdict = "" if row.get("verdict", "pass") in ("pass", "") else row["verdict"].upper()
        table.append((revision, back, time, " ".join(filter(None, (ratio, verdict)))))
    title = "reclaim (QEMU RSS after the guest frees the release workload):"
    if base is None:
        title = "reclaim (QEMU RSS after the release; no stock run to compare with):"
    return [title, *_table(table)]


def fault_section(run_dir: Path, env: Environment) -> list[str]:
    rates = fault_rates(run_dir)
    if not rates:
        return []
    base = rates.get(BASELINE)
    table = []
    for revision, rate in sorted(rates.items(), key=lambda item: item[0] != BASELINE):
        ratio = f"{rate / base:.2f}x {BASELINE}" if base and revision != BASELINE else ""
        table.append((revision, f"{rate:,.0f} faults/s", ratio))
    lines = ["page-fault cost (faultbench: mmap, touch every page, munmap):", *_table(table)]
    if env.accel == "tcg":
        lines += wrap("(under TCG this figure moves by +-15 % between runs of one revision)", "  ")
    return lines


def coverage_section(run_dir: Path) -> list[str]:
    path = coverage_file(run_dir)
    if path is None:
        return []
    total = " ".join(path.read_text(errors="replace").split())
    return ["patch coverage:", *wrap(total, indent="  ", hanging="    ")] if total else []


def bisect_section(context: ReplyContext) -> list[str]:
    lines: list[str] = []
    if context.first_bad_patch:
        lines += wrap(f"first bad patch: {context.first_bad_patch}", hanging="  ")
    if context.bisect_summary:
        for raw in context.bisect_summary.strip().splitlines():
            lines += wrap(raw.rstrip(), indent="  ", hanging="    ")
    return lines


# --- the mail --------------------------------------------------------------------------------


def green(cases: list[CaseResult] | None, context: ReplyContext) -> bool:
    """Everything passed: at least one test passed, none failed or errored, no bisection
    blamed a patch."""
    if not cases or context.first_bad_patch:
        return False
    return any(c.outcome == "passed" for c in cases) and not any(c.bad for c in cases)


def compose(run_dir: Path, context: ReplyContext) -> str:
    """The mail, headers first, as report.txt holds it."""
    thread = series_thread(context.series)
    lines = header("Subject", subject_line(thread))
    if thread is not None and thread.message_id:
        lines += header("In-Reply-To", thread.message_id)
    cases = read_cases(run_dir)
    env = environment(run_dir, context)
    # a run judged without the instrumentation (reduced) tested less: no Tested-by
    reduced = bool(reduced_cases(run_dir))
    passed = green(cases, context) and not reduced
    lines += ["", "Hi,", ""]
    if cases is None:
        lines += wrap(
            "the page hinting harness ran its scenario suite on this series, but the run "
            f"left no readable junit.xml in {run_dir.name}: it did not finish."
        )
    elif passed:
        lines += wrap(
            "the page hinting harness ran its scenario suite on this series: all "
            f"{_count(len(cases), 'test case')} passed."
        )
    elif reduced and green(cases, context):
        lines += wrap(
            "the page hinting harness ran its scenario suite on this series without its "
            "instrumentation, which does not apply to it: every test case it could judge "
            "passed, with reduced verdicts (details below)."
        )
    else:
        bad = sum(c.bad for c in cases)
        lines += wrap(
            "the page hinting harness ran its scenario suite on this series: "
            f"{bad} of {len(cases)} test cases failed or could not run (details below)."
            if cases
            else "the page hinting harness ran its scenario suite on this series, but no "
            "test case ran."
        )
    cases = cases or []
    sections = [
        tested_section(run_dir, context, env, cases),
        verdict_section(cases) if cases else [],
        reduced_section(run_dir),
        failure_section(run_dir, cases),
        reclaim_section(run_dir),
        fault_section(run_dir, env),
        coverage_section(run_dir),
        bisect_section(context),
    ]
    for section in filter(None, sections):
        lines += ["", *section]
    if passed:
        lines += ["", TESTED_BY]
    lines += ["", "-- ", "Page Hinting Harness"]
    return "\n".join(lines) + "\n"


def write_reply(run_dir: Path, context: ReplyContext) -> Path:
    """Write `run_dir`/report.txt (see the module docstring) and return its path."""
    path = run_dir / REPORT
    path.write_text(compose(run_dir, context))
    return path
