"""index.html (harness/report/index_page.py): a static page over a finished run, read back with
Python's HTML parser: every link and image resolves to a file of the run directory, and the
verdict table lists every test case."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest

from harness.report.index_page import markdown_html, write_index
from harness.report.run_results import read_cases
from tests.test_reply import FIXTURE_RUNS, make_run

# Elements that take no end tag in HTML.
VOID = {"meta", "link", "img", "br", "hr", "input", "col", "area", "base", "wbr", "source"}


class Page(HTMLParser):
    """What the tests look at: links, images, ids, and the rows of each table (cell texts),
    with a check that the elements nest properly."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.images: list[str] = []
        self.ids: set[str] = set()
        self.tables: list[list[list[str]]] = []
        self.row_classes: list[str] = []
        self.tags: list[str] = []
        self.stack: list[str] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.tags.append(tag)
        if tag not in VOID:
            self.stack.append(tag)
        if tag == "a" and values.get("href"):
            self.links.append(values["href"] or "")
        if tag == "img":
            self.images.append(values.get("src") or "")
        if values.get("id"):
            self.ids.add(values["id"] or "")
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
            self.row_classes.append(values.get("class") or "")
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()
        if tag in ("td", "th") and self.cell is not None:
            self.tables[-1][-1].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text())
    page.close()
    assert page.stack == [], f"unclosed elements: {page.stack}"
    return page


def assert_links_resolve(run: Path, page: Page) -> None:
    """Every href and src is a relative link to an existing file inside the run (or an
    anchor of the page itself)."""
    root = run.resolve()
    for url in page.links + page.images:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, url
        if not parts.path:
            assert parts.fragment in page.ids, url
            continue
        target = (run / unquote(parts.path)).resolve()
        assert target.is_relative_to(root), url
        assert target.is_file(), url


def verdict_rows(page: Page) -> dict[str, dict[str, str]]:
    """The verdict table (the one whose header starts with "test case"), by test case."""
    table = next(t for t in page.tables if t and t[0][:1] == ["test case"])
    header = table[0]
    return {row[0]: dict(zip(header, row, strict=True)) for row in table[1:]}


@pytest.fixture(scope="module")
def red_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("red"), red=True)


def test_index_of_a_red_run(red_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(red_run, run)
    (run / "report.txt").write_text("Subject: Re: [PATCH] x\n\nHi,\n")
    path = write_index(run)
    assert path == run / "index.html"
    page = parse(path)
    assert "script" not in page.tags
    assert_links_resolve(run, page)
    cases = read_cases(run)
    assert cases is not None and len(cases) == 5
    rows = verdict_rows(page)
    assert set(rows) == {case.name for case in cases}
    release = rows["test_release_returns_memory_to_host[hinting-v2]"]
    assert release["outcome"] == "failed"
    assert release["failing check"] == "rss_returned"
    assert release["revision"] == "hinting-v2" and release["flavour"] == "release"
    assert rows["test_threshold[hinting-v2+debug]"]["failing check"] == "idle_trigger_rule"
    assert rows["test_two_zones[hinting-v2]"]["outcome"] == "error"
    assert rows["test_boot_idle_point[hinting-v2+debug]"]["outcome"] == "passed"
    # the failing release's evidence (gw0/, found through the recorded path)
    assert "gw0/release%5Bhinting-v2%5D/verdict.txt" in page.links
    assert "gw0/release%5Bhinting-v2%5D/console.log" in page.links
    assert page.images == ["compare-rss.png"]
    assert "report.txt" in page.links and "coverage.txt" in page.links
    # compare.md: the release table and the page-fault cost table
    headers = [table[0] for table in page.tables]
    assert ["revision", "faults per second", "ratio to stock"] in headers
    fault = next(t for t in page.tables if t[0][:2] == ["revision", "faults per second"])
    assert ["hinting-v2", "78,500", "0.97"] in fault
    assert any(t[0][:2] == ["revision", "bytes returned"] for t in page.tables)


def test_index_falls_back_to_compare_csv(red_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(red_run, run)
    (run / "compare.md").unlink()
    (run / "compare-rss.png").unlink()
    page = parse(write_index(run))
    assert_links_resolve(run, page)
    assert page.images == []
    table = next(t for t in page.tables if t[0][:2] == ["revision", "bytes_returned"])
    assert table[1][0] == "stock" and table[2][0] == "hinting-v2"


def test_index_of_an_empty_run_directory(tmp_path: Path) -> None:
    page = parse(write_index(tmp_path))
    assert page.links == [] and page.images == []


def test_the_time_table_names_the_guests_cpu_and_counts_the_guests(tmp_path: Path) -> None:
    timing = {"make": 6.1, "boot": 34.8, "qemu_user": 64.1, "qemu_system": 29.3, "guests": 8.0}
    (tmp_path / "timing.json").write_text(json.dumps(timing))
    path = write_index(tmp_path)
    rows = [row for table in parse(path).tables for row in table]
    assert ["guests' QEMU CPU, host kernel", "29.3"] in rows and ["make", "6.1"] in rows
    assert not any(row and row[0] == "guests" for row in rows)
    assert "<p>8 guests ran.</p>" in path.read_text()


def test_text_from_the_run_is_escaped(tmp_path: Path) -> None:
    html = markdown_html("| a | b |\n|---|---:|\n| <script>x</script> | `1 \\| 2` |\n")
    assert "<script>" not in html
    assert "&lt;script&gt;" in html and "<code>1 | 2</code>" in html


@pytest.mark.parametrize("name", ["iso1", "iso2", "off1", "v2iso", "main1"])
def test_index_of_real_runs(name: str, tmp_path: Path) -> None:
    run = tmp_path / name
    shutil.copytree(FIXTURE_RUNS / name, run)
    if name == "main1":
        (run / "compare-rss.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # left out of the fixture
    page = parse(write_index(run))
    assert_links_resolve(run, page)
    cases = read_cases(run)
    assert cases is not None
    rows = verdict_rows(page)
    assert set(rows) == {case.name for case in cases}
    for case in cases:
        assert rows[case.name]["outcome"] == case.outcome
    if name == "iso1":
        failed = rows["test_contig_alloc_isolates_hinted_blocks[hinting-v2-fixed+coverage]"]
        assert failed["failing check"] == "freed_blocks_hinted_again"
    if name in ("iso2", "off1"):
        assert "cov/coverage.md" in page.links
    if name == "main1":
        assert page.images == ["compare-rss.png"]
        fault = next(t for t in page.tables if t[0][:2] == ["revision", "faults per second"])
        assert ["stock", "176,020", "1.00"] in fault
        failed = rows["test_contig_alloc_isolates_hinted_blocks[hinting-v2+debug]"]
        assert failed["outcome"] == "failed" and failed["failing check"] == "free_counts_agree"
    # every evidence directory's verdict.txt and console.log are linked
    for found in [*run.glob("*/verdict.txt"), *run.glob("gw*/*/verdict.txt")]:
        prefix = quote(found.parent.relative_to(run).as_posix())
        assert f"{prefix}/verdict.txt" in page.links
        if (found.parent / "console.log").is_file():
            assert f"{prefix}/console.log" in page.links


def test_a_reduced_verdict_is_marked_and_explained(tmp_path: Path) -> None:
    """A revision judged without the instrumentation: its passes say "(reduced)" with the
    overlay's line as the tooltip, and the page has report.txt's account of it."""
    line = "user:reworded: instrumentation 0002-x.patch did not apply (mm/page_hinting.c:151)"
    prop = f'<properties><property name="reduced" value="{line}"/></properties>'
    (tmp_path / "junit.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">'
        f'<testcase classname="s" name="test_a[user:reworded]" time="1">{prop}</testcase>'
        '<testcase classname="s" name="test_c[stock]" time="1"/>'
        "</testsuite></testsuites>"
    )
    path = write_index(tmp_path)
    rows = verdict_rows(parse(path))
    assert rows["test_a[user:reworded]"]["outcome"] == "passed (reduced)"
    assert rows["test_c[stock]"]["outcome"] == "passed"
    text = path.read_text()
    assert f'title="{line}">(reduced)' in text
    assert "<h2>Reduced verdicts</h2>" in text and "1 test cases judged reduced" in text
