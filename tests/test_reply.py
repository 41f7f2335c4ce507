"""report.txt (harness/report/reply.py): the reply a maintainer would send to the series' thread,
written from a finished run directory; and the run directory read back
(harness/report/run_results.py).

The fake runs are made the way a real one is: pytest itself writes junit.xml (xunit1, with
"evidence" and "verdict" properties recorded as the harness records them, naming where a
run on another machine wrote them), harness/report/junit.py writes compare.md and compare.csv.
The real runs of tests/fixtures/runs/ are copied into tmp_path and reported on too.
"""

from __future__ import annotations

import email
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.paths import REPO_ROOT
from harness.observe import dmesg
from harness.report.junit import fault_benchmark_section, write_comparison
from harness.report.reply import (
    CONSOLE_PREFIX,
    DEFAULT_SUBJECT,
    TESTED_BY,
    WIDTH,
    ReplyContext,
    series_thread,
    write_reply,
)
from harness.report.run_results import (
    CaseResult,
    evidence_dir,
    fail_lines,
    failed_checks,
    failure_summary,
    read_cases,
    split_revision,
    without_group,
)

FIXTURE_RUNS = Path(__file__).parent / "fixtures" / "runs"
# Where the fake run's scenarios "wrote" their evidence: another machine's results
# directory, as in a run copied off a CI runner. The writers must find it in the copy.
RECORDED = "/srv/ci/results/20261206-201500"

# pytest runs this file to write the fake run's junit.xml; plan.json beside it says whether
# the run is red and where the evidence was recorded.
SCENARIOS = """
import json, pathlib, pytest

PLAN = json.loads((pathlib.Path(__file__).parent / "plan.json").read_text())
RED = PLAN["red"]
STEP_PASS = "== boot\\nverdict: PASS\\n  [PASS] idle_trigger_rule: U[9] 0 <= 37"
STEP_READ_AGAIN = (
    "== threshold: read 1 disagreed between files\\nverdict: FAIL (1 of 2)\\n"
    "  [FAIL] free_counts_agree: debugfs free 1 != pagetypeinfo 0 (tolerance 0)"
)
STEP_FAIL = (
    "== threshold at HWM + 8 blocks\\nverdict: FAIL (1 of 2)\\n  [PASS] refcnt_idle: refcnt 0\\n"
    "  [FAIL] idle_trigger_rule: node 0 DMA32: U[9] 45 > 37 although the zone is idle"
)


@pytest.fixture
def broken_guest():
    if RED:
        raise RuntimeError("QemuDied: QEMU (pid 4242) was killed by SIGKILL")


@pytest.mark.parametrize("revision", ["stock", "hinting-v2"])
def test_release_returns_memory_to_host(revision, record_property):
    record_property("evidence", f"{PLAN['recorded']}/gw0/release[{revision}]")
    if RED and revision == "hinting-v2":
        raise AssertionError(
            "hinting-v2: the judge disagrees:\\n" + PLAN["release_verdict"]
        )


@pytest.mark.parametrize("revision", ["hinting-v2+debug"])
def test_boot_idle_point(revision, record_property):
    record_property("evidence", f"{PLAN['recorded']}/gw1/detection[{revision}]")
    record_property("verdict", STEP_PASS)


@pytest.mark.parametrize("revision", ["hinting-v2+debug"])
def test_threshold(revision, record_property):
    record_property("evidence", f"{PLAN['recorded']}/gw1/detection[{revision}]")
    if RED:
        record_property("verdict", STEP_READ_AGAIN)
        record_property("verdict", STEP_FAIL)
        raise AssertionError(f"{revision}:\\n" + STEP_FAIL.split("\\n", 1)[1])
    record_property("verdict", STEP_PASS)


@pytest.mark.parametrize("revision", ["hinting-v2"])
def test_two_zones(revision, broken_guest):
    pass
"""

RELEASE_FAIL = (
    "[FAIL] rss_returned: 312 MiB of 1200 MiB came back to the host within 30 s "
    "(80 % = 960 MiB needed)"
)
RELEASE_VERDICT = (
    "verdict: FAIL (1 of 3)\n"
    "  [PASS] kernel_log_clean: no problems\n"
    f"  {RELEASE_FAIL}\n"
    "  [PASS] hinted_tail_block: 4 lists hold a hinted tail block"
)
SPLAT = [
    "[   10.000000] ------------[ cut here ]------------",
    "[   10.000001] WARNING: CPU: 0 PID: 42 at mm/page_hinting.c:120 page_hinting_cycle+0x5a/0x1c0",
    "[   10.000002] Modules linked in:",
    "[   10.000003] CPU: 0 PID: 42 Comm: kworker/0:1 Not tainted 6.1.192+ #1",
    "[   10.000004] RIP: 0010:page_hinting_cycle+0x5a/0x1c0",
    "[   10.000005] Code: 0f 0b 48 8b 45 e8 48 8b 55 f0 48 89 c6 48 89 d7 e8 6a fe ff ff "
    "48 8b 45 e8 48 8b 40 08 48 39 45 f0 75 cb eb 01 90 c9 c3",
    "[   10.000006] Call Trace:",
    "[   10.000007]  <TASK>",
    "[   10.000008]  process_one_work+0x1c4/0x380",
    "[   10.000009]  </TASK>",
    "[   10.000010] ---[ end trace 0000000000000000 ]---",
]


def console(splat: bool) -> str:
    boot = [
        "\x1bc\x1b[?7l\x1b[2J[    0.000000] Linux version 6.1.192+ (harness@harness) #1 SMP",
        *(f"[    0.{i:06d}] boot line {i}" for i in range(1, 30)),
    ]
    tail = [f"[   20.{i:06d}] after the release, line {i}" for i in range(30)]
    return "\n".join([*boot, *(SPLAT if splat else []), *tail]) + "\n"


def write_evidence(run: Path, red: bool) -> None:
    """The scenarios' evidence directories, under the xdist workers' gw0/ and gw1/."""
    for revision in ("stock", "hinting-v2"):
        directory = run / "gw0" / f"release[{revision}]"
        directory.mkdir(parents=True)
        failing = red and revision == "hinting-v2"
        verdict = RELEASE_VERDICT if failing else "verdict: PASS\n  [PASS] rss_returned: 1150 MiB"
        (directory / "verdict.txt").write_text(verdict + "\n")
        text = console(splat=failing)
        (directory / "console.log").write_text(text)
        found = [s.__dict__ for s in dmesg.classify(text)]
        (directory / "splats.json").write_text(json.dumps(found))
    detection = run / "gw1" / "detection[hinting-v2+debug]"
    detection.mkdir(parents=True)
    (detection / "verdict.txt").write_text("== boot\nverdict: PASS\n")
    (detection / "console.log").write_text(console(splat=False))


def make_run(root: Path, red: bool) -> Path:
    """A finished run directory: junit.xml from pytest, evidence, compare.md/.csv,
    session-data.json, timing.json, coverage.txt and the RSS plot's file."""
    work = root / "pytest-work"
    work.mkdir(parents=True)
    (work / "test_scenarios.py").write_text(SCENARIOS)
    plan = {"red": red, "recorded": RECORDED, "release_verdict": RELEASE_VERDICT}
    (work / "plan.json").write_text(json.dumps(plan))
    run = root / "run"
    run.mkdir()
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
         "junit_family=xunit1", f"--junitxml={run / 'junit.xml'}", "test_scenarios.py"],
        cwd=work, capture_output=True, check=False,
    )  # fmt: skip
    write_evidence(run, red)
    rows = [
        {"revision": "stock", "returned_bytes": 1_205_862_400, "seconds_to_90pct": 35.1,
         "touch_seconds": 2.5, "passed": True},
        {"revision": "hinting-v2", "returned_bytes": 327_155_712 if red else 1_190_000_000,
         "seconds_to_90pct": None if red else 4.2, "touch_seconds": 2.6, "passed": not red},
    ]  # fmt: skip
    markdown, _ = write_comparison(rows, run)
    rates = {"stock": 81_000.0, "hinting-v2": 78_500.0}
    with markdown.open("a") as f:
        f.write(fault_benchmark_section(rates))
    session = {"measurements": rows, "release_series": {}, "fault_rates": rates}
    (run / "session-data.json").write_text(json.dumps({**session, "time_spent": {"boot": 9.5}}))
    (run / "timing.json").write_text(json.dumps({"make": 12.0, "boot": 9.5, "total": 301.4}))
    (run / "finished").write_text("2026-12-06T20:20:00Z\n")
    (run / "compare-rss.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (run / "coverage.txt").write_text(
        "patch coverage of hinting-v2: 150 of 210 executable lines the series adds or changes "
        "ran (71.4 %), counters from 3 guest boots\n"
    )
    return run


COVER_SUBJECT = (
    "[PATCH v3 0/2] mm / virtio: Provide support for free page hinting on top of the "
    "buddy allocator's free lists"
)
COVER_ID = "<20261206195158.19640.60805.stgit@localhost.localdomain>"


def mail(subject: str, message_id: str, body: str, reply_to: str = "") -> str:
    headers = [
        "From git@z Thu Jan  1 00:00:00 1970",
        "From: Alexander Duyck <alexander.duyck@gmail.com>",
        "Date: Wed, 06 Dec 2026 12:51:58 -0700",
        f"Subject: {subject}",
        f"Message-ID: {message_id}",
    ]
    if reply_to:
        headers.append(f"In-Reply-To: {reply_to}")
    return "\n".join(headers) + "\n\n" + body + "\n\n"


DIFF = (
    "---\n mm/page_hinting.c | 1 +\n\ndiff --git a/mm/page_hinting.c b/mm/page_hinting.c\n"
    "--- a/mm/page_hinting.c\n+++ b/mm/page_hinting.c\n@@ -1,1 +1,2 @@\n x\n+y\n"
)


def write_mbox(path: Path, cover: bool = True) -> Path:
    """A series as `b4 am` writes it: cover letter, two patches, and a reply in the thread."""
    messages = [
        mail("[PATCH v3 1/2] mm: Introduce Hinted pages", "<p1@localhost>", DIFF, COVER_ID),
        mail("[PATCH v3 2/2] virtio-balloon: Provide hints", "<p2@localhost>", DIFF, COVER_ID),
        mail("Re: [PATCH v3 1/2] mm: Introduce Hinted pages", "<r1@x>", "Looks good.", "<p1@x>"),
    ]
    if cover:
        text = "This series provides free page hinting.\n\nAlexander Duyck (2):\n  ..."
        # A long Subject, folded in the mbox as a mail client folds it.
        folded = COVER_SUBJECT.replace(" on top", "\n on top")
        messages.insert(0, mail(folded, COVER_ID, text))
    path.write_text("".join(messages))
    return path


@pytest.fixture(scope="module")
def red_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("red"), red=True)


@pytest.fixture(scope="module")
def green_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("green"), red=False)


def reply(run: Path, tmp_path: Path, **context: object) -> str:
    """report.txt of a copy of `run` (the fixtures' runs are shared by the tests)."""
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    path = write_reply(copy, ReplyContext(**context))  # type: ignore[arg-type]
    assert path == copy / "report.txt"
    return path.read_text()


def assert_mail_layout(text: str) -> None:
    """Headers, a blank line, a body; no line longer than WIDTH columns, except the quoted
    console lines, which are kept as the kernel printed them (a log line cut in two is
    harder to read and to search for)."""
    head, _, body = text.partition("\n\n")
    assert head.startswith("Subject: Re: [PATCH") and body
    for line in text.splitlines():
        if not line.startswith(CONSOLE_PREFIX):
            assert len(line) <= WIDTH, line


# --- red and green ---------------------------------------------------------------------------


def test_red_run_names_the_failing_check_with_its_evidence(red_run: Path, tmp_path: Path) -> None:
    text = reply(red_run, tmp_path, series=write_mbox(tmp_path / "v3.mbx"), accel="tcg")
    assert_mail_layout(text)
    assert TESTED_BY not in text and "Tested-by:" not in text
    # the failing release check and its line of verdict.txt (found through the junit
    # "evidence" property, recorded on another machine, in gw0/ of this copy)
    assert "FAILED: test_release_returns_memory_to_host[hinting-v2]" in text
    assert "failing check: rss_returned" in text
    assert "evidence (gw0/release[hinting-v2]/verdict.txt):" in text
    unwrapped = " ".join(text.split())
    assert RELEASE_FAIL in unwrapped
    # the shared guest's failing step, from its "verdict" properties; the step read again
    # (superseded by the next read) is no evidence
    assert "failing check: idle_trigger_rule" in text
    assert "== threshold at HWM + 8 blocks" in text
    assert "free_counts_agree" not in text
    # the setup error
    assert "ERROR: test_two_zones[hinting-v2]" in text
    assert "QemuDied: QEMU (pid 4242) was killed by SIGKILL" in unwrapped


def test_red_run_quotes_the_console_around_the_first_splat(red_run: Path, tmp_path: Path) -> None:
    text = reply(red_run, tmp_path)
    quoted = [line[len(CONSOLE_PREFIX) :] for line in text.splitlines()
              if line.startswith(CONSOLE_PREFIX)]  # fmt: skip
    # the release's console from two lines before the WARNING, 15 lines, kept whole (the
    # "Code:" line is longer than 80 columns)
    assert "console (gw0/release[hinting-v2]/console.log, lines 30-44, around" in text
    title = "WARNING: CPU: 0 PID: 42 at mm/page_hinting.c:120 page_hinting_cycle+0x5a/0x1c0"
    assert f'around "{title}"):' in " ".join(text.split())
    after = [f"[   20.{i:06d}] after the release, line {i}" for i in range(3)]
    assert quoted[:15] == ["[    0.000029] boot line 29", *SPLAT, *after]
    # the shared detection guest's console has no splat: its last 15 lines
    assert quoted[15:30] == [f"[   20.{i:06d}] after the release, line {i}" for i in range(15, 30)]
    assert "console: no evidence directory recorded for this test" in text  # the setup error
    assert len(quoted) == 30


def test_red_run_verdict_per_revision_and_flavour(red_run: Path, tmp_path: Path) -> None:
    lines = reply(red_run, tmp_path).splitlines()
    verdicts = lines[lines.index("verdict (revision, flavour):") + 1 :]
    table = {" ".join(line.split()[:2]): line for line in verdicts[:3]}
    assert "PASS" in table["stock release"] and "1 passed" in table["stock release"]
    assert "FAIL" in table["hinting-v2 release"]
    assert "1 failed, 1 error" in table["hinting-v2 release"]
    assert "1 passed, 1 failed, 0 errors" in table["hinting-v2 debug"]


def test_red_run_reclaim_fault_cost_and_coverage(red_run: Path, tmp_path: Path) -> None:
    text = reply(red_run, tmp_path, accel="tcg")
    lines = text.splitlines()
    reclaim = next(line for line in lines if line.split()[:1] == ["hinting-v2"] and "MiB" in line)
    assert "312.0 MiB back" in reclaim and "90 % never" in reclaim and "FAIL" in reclaim
    stock = next(line for line in lines if line.split()[:1] == ["stock"] and "MiB" in line)
    assert "90 % in 35.10 s" in stock
    assert "78,500 faults/s" in text and "0.97x stock" in text
    assert "under TCG" in text
    assert "150 of 210 executable lines" in " ".join(text.split())


def test_green_run_is_tested_by(green_run: Path, tmp_path: Path) -> None:
    text = reply(green_run, tmp_path, series=write_mbox(tmp_path / "v3.mbx"))
    assert_mail_layout(text)
    assert TESTED_BY in text.splitlines()
    assert text.count("Tested-by:") == 1
    assert "failures:" not in text and "FAILED" not in text
    assert "all 5 test cases passed" in " ".join(text.split())
    assert "(0.12x stock)" in text  # 4.2 s against stock's 35.1 s


def test_a_first_bad_patch_is_reported_and_withholds_tested_by(
    green_run: Path, tmp_path: Path
) -> None:
    text = reply(
        green_run,
        tmp_path,
        first_bad_patch="[PATCH v3 2/2] virtio-balloon: Provide hints",
        bisect_summary="good: stock\nbad: [PATCH v3 2/2] (test_release_returns_memory_to_host)",
    )
    assert_mail_layout(text)
    assert "first bad patch: [PATCH v3 2/2] virtio-balloon: Provide hints" in text
    assert "  bad: [PATCH v3 2/2] (test_release_returns_memory_to_host)" in text
    assert "Tested-by:" not in text


def test_a_run_without_junit_says_so(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    text = write_reply(run, ReplyContext()).read_text()
    assert_mail_layout(text)
    assert "no readable junit.xml" in text and "Tested-by:" not in text


# --- headers: the series' thread -------------------------------------------------------------


def test_subject_and_in_reply_to_come_from_the_mbox_cover_letter(
    green_run: Path, tmp_path: Path
) -> None:
    text = reply(green_run, tmp_path, series=write_mbox(tmp_path / "v3.mbx"))
    message = email.message_from_string(text)
    assert " ".join(message["Subject"].split()) == f"Re: {COVER_SUBJECT}"
    assert message["In-Reply-To"] == COVER_ID
    assert text.startswith("Subject: Re: [PATCH v3 0/2] mm / virtio:")
    assert text.splitlines()[1].startswith(" ")  # folded: longer than 80 columns


def test_mbox_without_cover_letter_replies_to_patch_one(tmp_path: Path) -> None:
    thread = series_thread(write_mbox(tmp_path / "v3.mbx", cover=False))
    assert thread is not None
    assert thread.subject == "[PATCH v3 1/2] mm: Introduce Hinted pages"
    assert thread.message_id == "<p1@localhost>"


def test_series_directory_gives_its_first_patch_or_cover_letter(tmp_path: Path) -> None:
    thread = series_thread(REPO_ROOT / "patches" / "hinting-v2")
    assert thread is not None
    assert thread.subject == "[PATCH 1/2] mm: Introduce Hinted pages"
    assert thread.message_id == ""  # not mail: nothing to reply to
    directory = tmp_path / "v3"
    directory.mkdir()
    cover = mail(COVER_SUBJECT, COVER_ID, "cover")
    (directory / "0000-cover-letter.patch").write_text(cover)
    (directory / "0001-mm.patch").write_text(mail("[PATCH v3 1/2] mm: x", "<p1@x>", DIFF))
    found = series_thread(directory)
    assert found is not None and found.subject == COVER_SUBJECT


def test_without_series_the_subject_is_generic(green_run: Path, tmp_path: Path) -> None:
    text = reply(green_run, tmp_path)
    assert text.splitlines()[0] == f"Subject: Re: {DEFAULT_SUBJECT}"
    assert "In-Reply-To:" not in text


def test_recorded_environment_wins_and_the_context_fills_in(
    green_run: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(green_run, copy)
    session = json.loads((copy / "session-data.json").read_text())
    session["environment"] = {"qemu": "7.2.15 (Debian 1:7.2+dfsg-7+deb12u7)"}
    (copy / "session-data.json").write_text(json.dumps(session))
    context = ReplyContext(qemu="9.9", accel="tcg")
    lines = write_reply(copy, context).read_text().splitlines()
    assert "  qemu:         7.2.15 (Debian 1:7.2+dfsg-7+deb12u7)" in lines
    assert "  accelerator:  tcg" in lines
    # no base kernel recorded nor given: the version the guests booted
    assert "  base kernel:  6.1.192+ (the version the guests booted)" in lines


# --- the run read back -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameter", "expected"),
    [
        ("stock", ("stock", "release")),
        ("hinting-v2+debug", ("hinting-v2", "debug")),
        ("hinting-v2-fixed+coverage+debug", ("hinting-v2-fixed", "coverage+debug")),
        ("user:v3+rc1", ("user:v3+rc1", "release")),
        ("", ("-", "release")),
    ],
)
def test_split_revision(parameter: str, expected: tuple[str, str]) -> None:
    assert split_revision(parameter) == expected


def test_evidence_dir_prefers_the_longest_tail_inside_the_run(tmp_path: Path) -> None:
    (tmp_path / "gw0" / "release[stock]").mkdir(parents=True)
    (tmp_path / "release[stock]").mkdir()
    found = evidence_dir(tmp_path, "/elsewhere/run/gw0/release[stock]")
    assert found == tmp_path / "gw0" / "release[stock]"
    assert evidence_dir(tmp_path, "/elsewhere/run/gw1/other") is None


def case(outcome: str, message: str, verdicts: tuple[str, ...] = ()) -> CaseResult:
    return CaseResult("m", "test_x[hinting-v2]", outcome, message, message, 1.0, None, verdicts)


def test_only_the_checks_the_failure_names_are_its_evidence() -> None:
    """A revision that keeps a defect may show a [FAIL] its scenario expects: the checks
    the assertion's verdict names are the failing ones."""
    steps = (
        "== offline\nverdict: FAIL (1 of 2)\n  [FAIL] kept_defect_shows: BUG seen",
        "== after\nverdict: FAIL (1 of 2)\n  [FAIL] free_memory_returns: 16 MiB short",
    )
    message = "x after:\nverdict: FAIL (1 of 9)\n  [FAIL] free_memory_returns: 16 MiB short"
    failed = case("failed", message, steps)
    assert [(c.step, c.check) for c in failed_checks(failed)] == [("after", "free_memory_returns")]
    assert failure_summary(failed) == "free_memory_returns"
    # a bare assertion takes every [FAIL] of its steps
    bare = case("failed", "AssertionError: assert False", steps)
    assert failure_summary(bare) == "kept_defect_shows, free_memory_returns"


def test_a_kernel_log_problem_is_summarised_by_its_first_line() -> None:
    message = (
        'failed on teardown with "AssertionError: hinting-v2+debug: kernel log problems:\n'
        "lockdep lockdep:inconsistent_lock_state:{SOFTIRQ-ON-W}->{IN-SOFTIRQ-W}:&zone->lock:"
        "free_pcppages_bulk (line 259):\nWARNING: inconsistent lock state\n6.1.192+ #3\n"
        "BUG BUG:Bad_page_state (line 300):\nBUG: Bad page state in process memhog\n"
    )
    steps = ("== boot\nverdict: FAIL (1 of 2)\n  [FAIL] kept_defect_shows: lockdep seen",)
    error = case("error", message, steps)
    assert failed_checks(error) == []  # the steps' verdicts are not why it errored
    assert failure_summary(error) == (
        "kernel log: lockdep: WARNING: inconsistent lock state (and 1 more)"
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "test_x[hinting-v2+debug]@isolation_guest-isolation-hinting-v2+debug",
            "test_x[hinting-v2+debug]",
        ),
        ("test_x[stock]", "test_x[stock]"),
        ("test_x[user:me@host]", "test_x[user:me@host]"),
    ],
)
def test_xdist_group_is_not_part_of_the_name(name: str, expected: str) -> None:
    assert without_group(name) == expected


def test_fail_lines_skip_steps_read_again() -> None:
    text = (
        "== dimm-online: read 1 disagreed between files\nverdict: FAIL (1 of 2)\n"
        "  [FAIL] free_counts_agree: debugfs free 1 != pagetypeinfo 0\n"
        "== dimm-online\nverdict: FAIL (1 of 2)\n  [PASS] a: ok\n  [FAIL] b_check: 3 > 2\n"
    )
    (line,) = fail_lines(text)
    assert (line.step, line.line, line.check) == ("dimm-online", "[FAIL] b_check: 3 > 2", "b_check")


# --- the real runs of tests/fixtures/runs ----------------------------------------------------


def real_run(name: str, tmp_path: Path) -> Path:
    run = tmp_path / name
    shutil.copytree(FIXTURE_RUNS / name, run)
    return run


@pytest.mark.parametrize("name", ["iso1", "iso2", "off1", "v2iso", "main1"])
def test_real_runs(name: str, tmp_path: Path) -> None:
    run = real_run(name, tmp_path)
    text = write_reply(run, ReplyContext(series=REPO_ROOT / "patches" / "hinting-v2")).read_text()
    assert_mail_layout(text)
    cases = read_cases(run)
    # every evidence directory found in the copy, not where the run recorded it (the kconfig
    # and two-zone scenarios record none)
    assert cases and all(c.evidence is None or c.evidence.is_relative_to(run) for c in cases)
    assert all(c.evidence for c in cases if "kconfig" not in c.name and "two_zones" not in c.name)
    green = name in ("iso2", "off1")
    assert (TESTED_BY in text) is green
    assert ("patch coverage of" in text) is green  # only those two kept cov/coverage.txt
    if name == "iso1":
        assert "failing check: freed_blocks_hinted_again" in text
        assert "[FAIL] freed_blocks_hinted_again: after the free 62 of 65 CMA blocks" in text
    if name == "v2iso":
        # one test case written twice by pytest (call failed, teardown errored): one failure
        assert "3 passed, 1 failed, 0 errors" in text
        assert "kernel BUG at mm/page_alloc.c" in text
        assert "SSHError" in text
        assert "free_counts_agree" not in text  # a step read again, then passed
    if name == "main1":
        lines = text.splitlines()
        assert "  stock             release  PASS  11 passed, 0 failed, 0 errors" in lines
        assert "  hinting-v2-fixed  debug    FAIL  3 passed, 2 failed, 1 error" in lines
        # the xdist group is not part of a test's name
        assert "FAILED: test_contig_alloc_isolates_hinted_blocks[hinting-v2+debug]" in lines
        assert "@" not in "".join(line for line in lines if line.startswith(("FAILED", "ERROR")))
        # a teardown error on a guest with a kept defect: the lockdep report, not the
        # [FAIL] lines of the defect its steps expected
        error = text.split("ERROR: test_memory_offline_while_a_batch_is_out[hinting-v2+debug]")[1]
        error = error.split("\n\n")[0]
        assert "failing check: kernel log: lockdep: WARNING: inconsistent lock state" in error
        assert "[FAIL]" not in error and "WARNING: inconsistent lock state" in error
        assert "  hinting-v2        169,174 faults/s  0.96x stock" in lines
        assert "  hinting-v2        1,190.0 MiB back  90 % in 0.32 s  (0.04x stock)" in lines


def test_real_failure_evidence_is_the_tests_own(tmp_path: Path) -> None:
    """Tests sharing a guest share verdict.txt: a failing test's evidence is the steps it
    judged (its "verdict" properties), not another test's."""
    run = real_run("iso1", tmp_path)
    cases = read_cases(run)
    assert cases is not None
    failed = next(c for c in cases if c.outcome == "failed")
    assert [line.check for line in failed_checks(failed)] == ["freed_blocks_hinted_again"]
