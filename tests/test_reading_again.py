"""judge_reading_again: a disagreement between two files read a moment apart is read again;
a defect that shows on every read, or in a check that reads one file, is not."""

from __future__ import annotations

import pytest

from harness.judge import Check, Status, Verdict, judge_reading_again
from harness.judge import reading_again as guest_checks


def verdict(*failing: str) -> Verdict:
    checks = [Check(name, Status.FAIL, "differs") for name in failing]
    return Verdict((Check("refcnt_idle", Status.PASS, "0"), *checks))


def reader(*verdicts: Verdict):
    """A read_and_judge that returns the given verdicts in turn and records its attempts."""
    attempts: list[int] = []

    def read_and_judge(attempt: int):
        attempts.append(attempt)
        return f"obs{attempt}", verdicts[attempt - 1]

    return read_and_judge, attempts


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guest_checks, "CROSS_FILE_PAUSE_S", 0.0)


def test_a_race_between_two_reads_goes_away() -> None:
    read, attempts = reader(verdict("free_counts_agree"), verdict())
    heard: list[str] = []
    obs, final = judge_reading_again(read, heard.append)
    assert (obs, final.passed, attempts) == ("obs2", True, [1, 2])
    assert len(heard) == 1 and heard[0].startswith("read 1 disagreed between files\n")


def test_a_counting_defect_fails_every_read() -> None:
    wrong = verdict("zoneinfo_hinted_matches_debugfs", "hinted_le_free_per_order")
    read, attempts = reader(wrong, wrong, wrong)
    obs, final = judge_reading_again(read)
    assert attempts == [1, 2, 3] and obs == "obs3"
    assert [c.name for c in final.failures] == [
        "zoneinfo_hinted_matches_debugfs",
        "hinted_le_free_per_order",
    ]


def test_a_failure_of_another_check_is_not_read_again() -> None:
    read, attempts = reader(verdict("free_counts_agree", "hinted_tail_block"))
    _, final = judge_reading_again(read)
    assert attempts == [1] and not final.passed


def test_a_passing_idle_point_is_read_once() -> None:
    read, attempts = reader(verdict())
    assert judge_reading_again(read)[1].passed and attempts == [1]
