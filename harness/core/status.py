"""The one status vocabulary, from build to report: a judge check's, a scenario's, a
report row's and a mutant's verdict are read in these words."""

from __future__ import annotations

from enum import Enum


class Status(Enum):
    PASS = "PASS"
    FAIL = "FAIL"  # a check found a defect
    NOT_APPLICABLE = "N/A"  # nothing to judge here (e.g. no counters on stock)
    ERROR = "ERROR"  # could not judge: the build broke, the guest did not come up, QEMU died
    BLOCKED = "BLOCKED"  # not run: an earlier step on the same guest hung it
    SKIPPED = "SKIPPED"  # not run, for a reason pytest was given (a flavour not selected)
