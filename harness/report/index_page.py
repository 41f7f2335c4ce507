"""A static page over a finished run: `write_index(run_dir)` writes `<run_dir>/index.html`.

One HTML file, no script, no server, every link relative to the run directory, so the
directory can be copied, archived by CI, or opened from disk: the verdict of each test
case (with its failing check and its evidence), the RSS plot, the release and page-fault
tables of compare.md (or compare.csv), the patch coverage total, the time per phase, and
the files of every evidence directory. Text from the run is escaped with html.escape.
Call it after write_reply (harness/report/reply.py), so that the page links report.txt.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

from harness.report.reduced import reduced_section
from harness.report.run_results import (
    COMPARE_CSV,
    COMPARE_MD,
    JUNIT,
    CaseResult,
    coverage_file,
    evidence_dirs,
    failure_summary,
    read_cases,
    read_compare_csv,
    read_json,
)

INDEX = "index.html"
RSS_PLOT = "compare-rss.png"
# Files of a run's top level worth a link, in this order (those present).
RUN_FILES = (
    "report.txt",
    JUNIT,
    COMPARE_MD,
    COMPARE_CSV,
    "measurements.jsonl",
    "timing.json",
    "session-data.json",
    "mutants.md",
)
# Files of an evidence directory linked first; its other files follow.
EVIDENCE_FIRST = ("verdict.txt", "console.log", "splats.json", "rss.png", "qemu.log")
COVERAGE_FILES = ("coverage.md", "coverage.txt", "coverage.xml", "coverage.json")
STYLE = """
body { font-family: sans-serif; margin: 1.5em; max-width: 75em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
td.num { text-align: right; }
tr.passed td.outcome { background: #d8f0d8; }
tr.failed td.outcome, tr.error td.outcome { background: #f6d0d0; font-weight: bold; }
tr.skipped td.outcome { background: #eee; }
code, pre { font-size: 90%; }
img { max-width: 100%; }
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def href(run_dir: Path, path: Path) -> str | None:
    """The relative URL of `path` from run_dir/index.html; None when it is not an existing
    file or directory inside run_dir (nothing links out of the run)."""
    try:
        relative = path.resolve().relative_to(run_dir.resolve())
    except ValueError:
        return None
    return quote(relative.as_posix()) if path.exists() else None


def link(run_dir: Path, path: Path, label: str | None = None) -> str:
    """An <a> to `path`, or its escaped name when it cannot be linked."""
    url = href(run_dir, path)
    text = _e(label if label is not None else path.name)
    return f'<a href="{_e(url)}">{text}</a>' if url else text


# --- markdown and CSV tables -----------------------------------------------------------------


def _inline(text: str) -> str:
    """Escaped text with markdown's `code` and **bold**."""
    escaped = _e(text)
    escaped = re.sub(r"`([^`]*)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)


def _cells(line: str) -> list[str]:
    """The cells of a markdown table row ("\\|" is a pipe inside a cell)."""
    inner = line.strip().removeprefix("|").removesuffix("|")
    return [cell.replace("\\|", "|").strip() for cell in re.split(r"(?<!\\)\|", inner)]


def _table_html(header: list[str], rows: Iterable[list[str]], numeric: set[int]) -> list[str]:
    out = ["<table>", "<thead><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in header)]
    out.append("</tr></thead><tbody>")
    for row in rows:
        cells = "".join(
            f'<td class="num">{_inline(c)}</td>' if i in numeric else f"<td>{_inline(c)}</td>"
            for i, c in enumerate(row)
        )
        out.append(f"<tr>{cells}</tr>")
    out.append("</tbody></table>")
    return out


def markdown_html(text: str) -> str:
    """The headings, tables and paragraphs of a report's markdown (compare.md), as HTML
    under the page's own h2 sections (markdown's # and ## become h3, ### h4, ...)."""
    out: list[str] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index].rstrip()
        if line.startswith("|"):
            block = []
            while index < len(lines) and lines[index].lstrip().startswith("|"):
                block.append(_cells(lines[index]))
                index += 1
            separator = block[1] if len(block) > 1 else []
            if separator and all(re.fullmatch(r":?-+:?", c) for c in separator):
                numeric = {i for i, c in enumerate(separator) if c.endswith(":")}
                out += _table_html(block[0], block[2:], numeric)
            else:
                out += _table_html(block[0], block[1:], set())
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading:
            level = min(6, max(3, len(heading.group(1)) + 1))
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif line.strip():
            out.append(f"<p>{_inline(line.strip())}</p>")
        index += 1
    return "\n".join(out)


# --- sections --------------------------------------------------------------------------------


def _summary(cases: list[CaseResult] | None) -> str:
    if cases is None:
        return "<p><strong>No readable junit.xml: the run did not finish.</strong></p>"
    counts = {o: sum(c.outcome == o for c in cases) for o in ("passed", "failed", "error")}
    skipped = sum(c.outcome == "skipped" for c in cases)
    text = (
        f"{len(cases)} test case{'' if len(cases) == 1 else 's'}: {counts['passed']} passed, "
        f"{counts['failed']} failed, {counts['error']} error{'' if counts['error'] == 1 else 's'}"
        + (f", {skipped} skipped" if skipped else "")
    )
    verdict = "FAIL" if counts["failed"] or counts["error"] or not cases else "PASS"
    return f"<p><strong>{verdict}</strong>: {_e(text)}</p>"


def _evidence_cell(run_dir: Path, case: CaseResult) -> str:
    if case.evidence is None:
        return ""
    if href(run_dir, case.evidence) is None:  # a shard's directory outside this run
        return f"<code>{_e(case.evidence)}</code>"
    links = [
        link(run_dir, case.evidence / name)
        for name in ("verdict.txt", "console.log")
        if (case.evidence / name).is_file()
    ]
    anchor = f'<a href="#{_e(_anchor(run_dir, case.evidence))}">{_e(case.evidence.name)}</a>'
    return " ".join([anchor, *links])


def _anchor(run_dir: Path, directory: Path) -> str:
    try:
        name = directory.resolve().relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        name = directory.name
    return "evidence-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")


def verdict_table(run_dir: Path, cases: list[CaseResult]) -> list[str]:
    out = [
        "<table>",
        "<thead><tr><th>test case</th><th>revision</th><th>flavour</th><th>outcome</th>"
        "<th>failing check</th><th>seconds</th><th>evidence</th></tr></thead><tbody>",
    ]
    for case in cases:
        check = failure_summary(case) if case.bad else ""
        if case.outcome == "skipped":
            check = case.message
        outcome = _e(case.outcome)
        if case.reduced:  # judged without the instrumentation: says less than a full pass
            outcome += f' <small title="{_e(case.reduced)}">(reduced)</small>'
        out.append(
            f'<tr class="{_e(case.outcome)}">'
            f'<td title="{_e(case.classname)}">{_e(case.name)}</td>'
            f"<td>{_e(case.revision)}</td><td>{_e(case.flavour)}</td>"
            f'<td class="outcome">{outcome}</td><td>{_e(check)}</td>'
            f'<td class="num">{case.seconds:.1f}</td>'
            f"<td>{_evidence_cell(run_dir, case)}</td></tr>"
        )
    out.append("</tbody></table>")
    return out


def comparison_section(run_dir: Path) -> list[str]:
    """compare.md rendered (release rows and page-fault cost), else compare.csv's rows."""
    markdown = run_dir / COMPARE_MD
    if markdown.is_file():
        source = link(run_dir, markdown)
        return [f"<p>From {source}.</p>", markdown_html(markdown.read_text(errors="replace"))]
    rows = read_compare_csv(run_dir)
    if not rows:
        return []
    header = list(rows[0])
    body = [[row.get(column) or "" for column in header] for row in rows]
    numeric = {i for i, column in enumerate(header) if column not in ("revision", "verdict")}
    source = link(run_dir, run_dir / COMPARE_CSV)
    return [f"<p>From {source}.</p>", *_table_html(header, body, numeric)]


def reduced_lines(run_dir: Path) -> list[str]:
    """report.txt's account of the revisions judged without the instrumentation."""
    lines = reduced_section(run_dir)
    return [f"<pre>{_e(chr(10).join(lines))}</pre>"] if lines else []


def coverage_section(run_dir: Path) -> list[str]:
    total = coverage_file(run_dir)
    if total is None:
        return []
    text = " ".join(total.read_text(errors="replace").split())
    files = [total.parent / name for name in COVERAGE_FILES]
    links = " ".join(link(run_dir, path) for path in files if path.is_file())
    return [f"<p>{_e(text)}</p>", f"<p>{links}</p>"]


# timing.json keys that are not phase names (harness.core.progress.GUEST_CPU)
TIMING_LABELS = {
    "qemu_user": "guests' QEMU CPU, user",
    "qemu_system": "guests' QEMU CPU, host kernel",
}


def timing_section(run_dir: Path) -> list[str]:
    """Seconds per phase, then the guests' CPU; the number of guests is a count, not a row."""
    timing = read_json(run_dir / "timing.json")
    rows = [
        [TIMING_LABELS.get(key, key), f"{seconds:.1f}"]
        for key, seconds in timing.items()
        if isinstance(seconds, int | float) and key != "guests"
    ]
    if not rows:
        return []
    guests = timing.get("guests")
    counted = [f"<p>{int(guests)} guests ran.</p>"] if isinstance(guests, int | float) else []
    return _table_html(["phase", "seconds"], rows, {1}) + counted


def evidence_section(run_dir: Path, cases: list[CaseResult]) -> list[str]:
    """Every evidence directory of the run: its files, the usual ones first."""
    directories = set(evidence_dirs(run_dir))
    directories.update(c.evidence for c in cases if c.evidence and href(run_dir, c.evidence))
    out = ["<ul>"]
    for directory in sorted(directories):
        files = sorted(p for p in directory.iterdir() if p.is_file())
        first = [directory / n for n in EVIDENCE_FIRST if (directory / n).is_file()]
        rest = [p for p in files if p not in first]
        name = directory.resolve().relative_to(run_dir.resolve()).as_posix()
        items = " ".join(link(run_dir, p) for p in first)
        others = " ".join(link(run_dir, p) for p in rest)
        out.append(
            f'<li id="{_e(_anchor(run_dir, directory))}"><strong>{_e(name)}</strong>: {items}'
            + (f"<br><small>also: {others}</small>" if others else "")
            + "</li>"
        )
    out.append("</ul>")
    return out if len(out) > 2 else []


def page(run_dir: Path) -> str:
    """index.html's text."""
    cases = read_cases(run_dir)
    title = f"Page hinting harness: {run_dir.name}"
    body = [f"<h1>{_e(title)}</h1>", _summary(cases)]
    files = [link(run_dir, run_dir / name) for name in RUN_FILES if (run_dir / name).is_file()]
    if files:
        body.append(f"<p>Files: {' '.join(files)}</p>")
    if cases:
        body += ["<h2>Verdicts</h2>", *verdict_table(run_dir, cases)]
    plot = run_dir / RSS_PLOT
    if plot.is_file():
        body += [
            "<h2>Memory back to the host</h2>",
            f'<p><img src="{_e(href(run_dir, plot))}" alt="QEMU RSS after the release, '
            'by revision"></p>',
        ]
    sections = [
        ("Reduced verdicts", reduced_lines(run_dir)),
        ("Release and page-fault cost", comparison_section(run_dir)),
        ("Patch coverage", coverage_section(run_dir)),
        ("Time per phase", timing_section(run_dir)),
        ("Evidence", evidence_section(run_dir, cases or [])),
    ]
    for heading, section in sections:
        if section:
            body += [f"<h2>{_e(heading)}</h2>", *section]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def write_index(run_dir: Path) -> Path:
    """Write `run_dir`/index.html (see the module docstring) and return its path."""
    path = run_dir / INDEX
    path.write_text(page(run_dir))
    return path
