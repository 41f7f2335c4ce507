"""A step the series stalled (harness.drive.workloads.StepStalled): the worker never went
idle, never started, or its debugfs dump stopped parsing. Each is a failed check."""

from __future__ import annotations

from harness.drive.workloads import StepStalled
from harness.judge.verdict import Check, Status


def judge_stalled(error: BaseException) -> Check | None:
    """The failed check a stalled step stands for; None for any other exception."""
    if not isinstance(error, StepStalled) or not error.check:
        return None
    return Check(error.check, Status.FAIL, str(error))
