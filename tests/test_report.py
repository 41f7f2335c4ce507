"""Reports: pytest's JUnit read and merged, PNG plots, the revision comparison table."""

from __future__ import annotations

import csv
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from junitparser import JUnitXml

from harness.observe.rss import RssSample, RssSampler
from harness.report.junit import (
    ReportError,
    RevisionRow,
    Status,
    compare_revisions,
    merge_junit,
    plot_rss,
    read_junit,
    release_row,
    write_compare_csv,
    write_comparison,
)


def pytest_junit(tmp_path: Path, name: str, body: str) -> Path:
    """Run a tiny pytest file and return the JUnit XML pytest wrote for it."""
    test_file = tmp_path / f"test_{name}.py"
    test_file.write_text(body)
    xml = tmp_path / f"{name}.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file),
         f"--junitxml={xml}"],
        cwd=tmp_path, capture_output=True, check=False,
    )  # fmt: skip
    return xml


TINY = (
    "import pytest\n"
    "@pytest.fixture\n"
    "def broken():\n    raise RuntimeError('QEMU exited with 139')\n"
    "def test_ok():\n    pass\n"
    "def test_bad():\n    assert 1 == 2, 'RSS fell by 3 MiB'\n"
    "def test_setup(broken):\n    pass\n"
    "def test_skip():\n    pytest.skip('no baseline kernel built')\n"
)


def test_read_junit_keeps_every_status_and_message(tmp_path: Path) -> None:
    results = {r.name: r for r in read_junit(pytest_junit(tmp_path, "tiny", TINY))}
    assert results["test_ok"].status is Status.PASS
    assert results["test_bad"].status is Status.FAIL
    assert "RSS fell by 3 MiB" in results["test_bad"].message
    assert results["test_setup"].status is Status.ERROR
    assert "QEMU exited with 139" in results["test_setup"].message
    assert results["test_skip"].status is Status.SKIPPED


def test_merge_keeps_all_suites_and_recounts(tmp_path: Path) -> None:
    first = pytest_junit(tmp_path, "first", TINY)
    second = pytest_junit(tmp_path, "second", "def test_more():\n    pass\n")
    merged = JUnitXml.fromfile(str(merge_junit([first, second], tmp_path / "all.xml")))
    assert (merged.tests, merged.failures, merged.errors, merged.skipped) == (5, 1, 1, 1)
    assert len(list(merged)) == 2


def test_unreadable_junit_is_a_report_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.xml"
    broken.write_text("<testsuites><testsuite>")
    with pytest.raises(ReportError, match=r"broken\.xml"):
        merge_junit([broken], tmp_path / "out.xml")


# --- plots -----------------------------------------------------------------------------------

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def ramp(start_t: float, levels: list[int]) -> list[RssSample]:
    return [RssSample(start_t + i * 0.5, mib << 20) for i, mib in enumerate(levels)]


def test_plot_rss_writes_a_png(tmp_path: Path) -> None:
    series = {
        "stock 6.1": ramp(100.0, [300, 1300, 1300, 1200, 700, 400, 320]),
        "v2 port": ramp(500.0, [300, 1300, 1300, 1290, 1280, 1270, 1260]),
    }
    path = plot_rss(series, tmp_path / "plots" / "rss.png", {"stock 6.1": 101.0, "v2 port": 501.0})
    assert path.stat().st_size > 1000
    assert png_size(path) == (900, 500)


def test_plot_rss_of_a_real_process(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.readline()"], stdin=subprocess.PIPE
    )
    try:
        with RssSampler(child.pid, interval=0.02) as sampler:
            assert sampler.wait_until(lambda s: len(sampler.samples) >= 3, 30.0) is not None
            samples = sampler.samples
    finally:
        child.kill()
        child.wait()
    path = plot_rss({"python": samples}, tmp_path / "real.png", {})
    assert png_size(path) == (900, 500)


# --- comparison ------------------------------------------------------------------------------

ROWS = [
    RevisionRow("stock-6.1 (page_reporting)", 1_048_576_000, 6.25, "pass", touch_seconds=3.5),
    RevisionRow("v2-port", 3 << 20, None, "fail: RSS did not fall"),
    RevisionRow("v2|lockdep", None, None, "error: guest panicked"),
]


def test_compare_revisions_markdown() -> None:
    table = compare_revisions(ROWS).splitlines()
    assert table[0] == (
        "| revision | bytes returned | seconds to 90% | seconds to touch | verdict |"
    )
    assert len(table) == 2 + len(ROWS)
    assert table[2] == (
        "| stock-6.1 (page_reporting) | 1,048,576,000 (1000.0 MiB) | 6.25 | 3.50 | pass |"
    )
    assert table[3] == "| v2-port | 3,145,728 (3.0 MiB) | never | n/a | fail: RSS did not fall |"
    assert table[4].startswith("| v2\\|lockdep | n/a | never |")


def test_write_comparison_files(tmp_path: Path) -> None:
    markdown, table = write_comparison(ROWS, tmp_path / "results")
    assert markdown.name == "compare.md" and table.name == "compare.csv"
    assert markdown.read_text() == compare_revisions(ROWS)
    with table.open(newline="") as src:
        rows = list(csv.DictReader(src))
    assert rows[0] == {
        "revision": "stock-6.1 (page_reporting)",
        "bytes_returned": "1048576000",
        "seconds_to_90": "6.25",
        "touch_seconds": "3.5",
        "verdict": "pass",
    }
    assert rows[2]["bytes_returned"] == "" and rows[2]["revision"] == "v2|lockdep"


def test_release_row_from_samples() -> None:
    samples = ramp(0.0, [300, 1300, 1300, 1000, 500, 380, 310])  # t = 0, 0.5, ... 3.0
    row = release_row("stock", samples, release_t=1.0, baseline=300 << 20, verdict="pass")
    assert row.bytes_returned == (1300 - 310) << 20
    assert row.seconds_to_90 == pytest.approx(1.5)  # 380 MiB <= 1300 - 0.9 * 1000 at t = 2.5


def test_release_row_without_samples_after_release() -> None:
    row = release_row("x", ramp(0.0, [1, 2]), release_t=10.0, baseline=0, verdict="error")
    assert (row.bytes_returned, row.seconds_to_90) == (None, None)


def test_rows_recorded_as_dicts_by_the_scenarios(tmp_path: Path) -> None:
    recorded = {
        "revision": "hinting-v2",
        "released_bytes": 1 << 30,
        "returned_bytes": 900 << 20,
        "seconds_to_90pct": None,
        "passed": False,
    }
    table = compare_revisions([recorded]).splitlines()
    assert table[2] == "| hinting-v2 | 943,718,400 (900.0 MiB) | never | n/a | fail |"
    csv_path = write_compare_csv([recorded, ROWS[0]], tmp_path / "compare.csv")
    with csv_path.open(newline="") as src:
        rows = list(csv.DictReader(src))
    assert [row["verdict"] for row in rows] == ["fail", "pass"]
    assert rows[0]["bytes_returned"] == str(900 << 20) and rows[0]["seconds_to_90"] == ""


def test_row_without_revision_is_a_report_error() -> None:
    with pytest.raises(ReportError, match="without a revision"):
        compare_revisions([{"returned_bytes": 1}])
