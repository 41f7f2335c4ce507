"""Reports: written JUnit parsed back, PNG plots, the revision comparison table."""

from __future__ import annotations

import csv
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped

from harness.report import (
    ReportError,
    RevisionRow,
    Status,
    TestResult,
    compare_revisions,
    merge_junit,
    plot_rss,
    read_junit,
    release_row,
    write_compare_csv,
    write_comparison,
    write_junit,
    xml_safe,
)
from harness.rss import RssSample, RssSampler

PANIC_CONSOLE = "[   70.1] Kernel panic - not syncing: Fatal exception\n\x1b[0m\x00end"

RESULTS = [
    TestResult("boot", "stock boots", Status.PASS, 12.5, system_out="login prompt seen"),
    TestResult("boot", "v2 boots", Status.ERROR, 31.25, "guest panicked\nRIP: page_hinting_fill"),
    TestResult("rss", "rss falls", Status.FAIL, 60.0, "RSS fell by 3 MiB, expected >= 900 MiB"),
    TestResult("rss", "control", Status.SKIP, 0.0, "no baseline kernel built"),
    TestResult("boot", "crash", Status.ERROR, 1.0, "QEMU exited with 139", PANIC_CONSOLE),
]


def test_junit_round_trip_keeps_every_status_and_message(tmp_path: Path) -> None:
    path = write_junit(RESULTS, tmp_path / "out" / "junit.xml")
    xml = JUnitXml.fromfile(str(path))
    assert (xml.tests, xml.failures, xml.errors, xml.skipped) == (5, 1, 2, 1)
    suites = {suite.name: suite for suite in xml}
    assert list(suites) == ["boot", "rss"]
    boot = {case.name: case for case in suites["boot"]}
    assert boot["stock boots"].is_passed and boot["stock boots"].time == 12.5
    error = boot["v2 boots"].result[0]
    assert isinstance(error, Error)
    assert error.message == "guest panicked"
    assert error.text == "guest panicked\nRIP: page_hinting_fill"
    rss = {case.name: case for case in suites["rss"]}
    assert isinstance(rss["rss falls"].result[0], Failure)
    assert isinstance(rss["control"].result[0], Skipped)
    assert [(r.suite, r.name, r.status) for r in read_junit(path)] == [
        ("boot", "stock boots", Status.PASS),
        ("boot", "v2 boots", Status.ERROR),
        ("boot", "crash", Status.ERROR),
        ("rss", "rss falls", Status.FAIL),
        ("rss", "control", Status.SKIP),
    ]


def test_console_control_characters_do_not_break_the_xml(tmp_path: Path) -> None:
    path = write_junit(RESULTS, tmp_path / "junit.xml")
    root = ET.parse(path).getroot()  # a strict XML parser must accept the file
    crash = root.find(".//testcase[@name='crash']")
    assert crash is not None
    assert crash.find("error").get("message") == "QEMU exited with 139"
    out = crash.find("system-out").text
    assert "Kernel panic - not syncing" in out and "\\x1b[0m\\x00end" in out


def test_xml_safe_keeps_normal_text() -> None:
    assert xml_safe("tab\tnl\nünïcode ✓") == "tab\tnl\nünïcode ✓"
    assert xml_safe("a\x07b") == "a\\x07b"


def test_merge_keeps_all_suites_and_recounts(tmp_path: Path) -> None:
    first = write_junit(RESULTS[:2], tmp_path / "stock.xml")
    second = write_junit(RESULTS[2:], tmp_path / "v2.xml")
    merged = JUnitXml.fromfile(str(merge_junit([first, second], tmp_path / "all.xml")))
    assert (merged.tests, merged.failures, merged.errors, merged.skipped) == (5, 1, 2, 1)
    assert [suite.name for suite in merged] == ["boot", "rss", "boot"]


def test_merge_accepts_pytest_junit(tmp_path: Path) -> None:
    test_file = tmp_path / "test_tiny.py"
    test_file.write_text("def test_ok():\n    pass\n\ndef test_bad():\n    assert 1 == 2\n")
    pytest_xml = tmp_path / "pytest.xml"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(test_file),
            f"--junitxml={pytest_xml}",
        ],
        cwd=tmp_path,
        capture_output=True,
        check=False,
    )
    ours = write_junit(RESULTS[:1], tmp_path / "ours.xml")
    merged = read_junit(merge_junit([pytest_xml, ours], tmp_path / "all.xml"))
    assert sorted((r.name, r.status) for r in merged) == [
        ("stock boots", Status.PASS),
        ("test_bad", Status.FAIL),
        ("test_ok", Status.PASS),
    ]


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


def test_plugin_style_string_status(tmp_path: Path) -> None:
    result = TestResult("scenarios", "t", "error", 2.0, "setup failed: QEMU exited")
    root = ET.parse(write_junit([result], tmp_path / "j.xml")).getroot()
    assert root.find(".//error").get("message") == "setup failed: QEMU exited"
