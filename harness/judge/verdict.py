"""The judge's vocabulary: a named Check with a Status and the numbers it compared, and a
Verdict, the checks of one judged point."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from harness.core.units import MiB


class Status(Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    NOT_APPLICABLE = "N/A"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str

    @property
    def passed(self) -> bool:
        return self.status is not Status.FAIL

    def __str__(self) -> str:
        return f"[{self.status.value}] {self.name}: {self.detail}"


@dataclass(frozen=True)
class Verdict:
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if not check.passed)

    def check(self, name: str) -> Check:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(f"no check named {name!r}; have {[c.name for c in self.checks]}")

    def __add__(self, other: Verdict) -> Verdict:
        return Verdict(self.checks + other.checks)

    def __str__(self) -> str:
        head = "PASS" if self.passed else f"FAIL ({len(self.failures)} of {len(self.checks)})"
        return "\n".join([f"verdict: {head}", *(f"  {check}" for check in self.checks)])


def result(name: str, problems: list[str], ok_detail: str) -> Check:
    """A check from the problems found: FAIL naming the first dozen, else PASS with
    `ok_detail` (what was compared)."""
    if problems:
        shown = "; ".join(problems[:12])
        more = f" (+{len(problems) - 12} more)" if len(problems) > 12 else ""
        return Check(name, Status.FAIL, shown + more)
    return Check(name, Status.PASS, ok_detail)


def mib(value: int) -> str:
    return f"{value / MiB:.1f} MiB"
