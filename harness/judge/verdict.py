"""The judge's vocabulary: a named Check with a Status and the numbers it compared, and a
Verdict, the checks of one judged point."""

from __future__ import annotations

import json
from dataclasses import dataclass

from harness.core.status import Status
from harness.core.units import MiB


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

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status.value, "detail": self.detail}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Check:
        return cls(data["name"], Status(data["status"]), data["detail"])


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

    def to_json(self, label: str = "") -> str:
        """The verdict as data (a JUnit property, a line of verdicts.jsonl)."""
        return json.dumps({"label": label, "checks": [c.to_dict() for c in self.checks]})

    @classmethod
    def from_json(cls, text: str) -> tuple[str, Verdict]:
        """(label, verdict) from `to_json`'s text."""
        data = json.loads(text)
        return data.get("label", ""), cls(tuple(Check.from_dict(c) for c in data["checks"]))


def verdict_of(*checks: Check) -> Verdict:
    return Verdict(tuple(checks))


def judge_step(name: str, done: bool, detail: str) -> Check:
    """A scenario's own step did what it drives (the pool grew, the hook took the delay):
    when it did not, the kernel refused it, which is a finding too."""
    return Check(name, Status.PASS if done else Status.FAIL, detail)


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


class VerdictFailed(AssertionError):
    """A failed verdict raised where no test body can assert it (a module fixture's
    teardown: the kernel log of a guest several steps shared). The plugin records it as
    data like an asserted one."""

    def __init__(self, label: str, verdict: Verdict, context: str = "") -> None:
        self.label = label
        self.verdict = verdict
        super().__init__(f"{context}: {label}:\n{verdict}" if context else f"{label}:\n{verdict}")
