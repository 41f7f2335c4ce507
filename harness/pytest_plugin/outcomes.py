"""A scenario's outcome: verdicts recorded as data, infrastructure faults as errors, a
panic or a hang as the failed check that explains it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.core.errors import (
    GuestHung,
    GuestPanic,
    HarnessError,
    QemuDied,
    StepTestedNothing,
    VMError,
)
from harness.guest.vm import boots_without_reporting
from harness.judge import (
    Check,
    Status,
    Verdict,
    VerdictFailed,
    judge_crash,
    judge_kernel_text,
    judge_stalled,
)
from harness.observe.dmesg import zero_filled_code


def guest_hang(guest: object) -> GuestHung | None:
    """The hang a shared guest's VM was killed for, if it was."""
    return getattr(getattr(guest, "vm", None), "hang", None)


def hang_check(error: GuestHung) -> Check:
    return Check(GuestHung.check_name, Status.FAIL, error.detail)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Infrastructure faults are errors, defects of the series failures: QEMU dying under a
    scenario (killed from outside), or a guest that did not come up (QEMU refused to
    start, no ready marker, a panic at boot, SSH refused) is reported as an error, the
    way pytest reports a failing fixture, in the terminal and in the JUnit file. A guest
    that hangs once up fails the check `guest_responsive`."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if call.excinfo is None:
        return
    if isinstance(failed := call.excinfo.value, VerdictFailed):  # raised, not asserted
        item.user_properties.append(("verdict", failed.verdict.to_json(failed.label)))
    elif (stalled := judge_stalled(call.excinfo.value)) is not None:
        item.user_properties.append(("verdict", Verdict((stalled,)).to_json(call.when)))
        report.longrepr = f"{stalled}\n\n{report.longreprtext}"
    if call.when == "teardown":
        return
    if (check := panic_verdict(call.excinfo) or hang_verdict(call.excinfo)) is not None:
        # A panic the judge can attribute to the series, or a guest that stopped making
        # progress once it was up, is a failure of that check (recorded as data, which
        # the mutant campaign and the reports read).
        item.user_properties.append(("verdict", Verdict((check,)).to_json(call.when)))
        report.when = "call"
        report.longrepr = f"{check}\n\n{report.longreprtext}"
        return
    if isinstance(call.excinfo.value, HarnessError) and (
        crash := judge_crash(str(call.excinfo.value))
    ):
        item.user_properties.append(("verdict", Verdict((crash,)).to_json(call.when)))
    if call.when == "call" and is_infrastructure_fault(call.excinfo):
        report.when = "setup"


def panic_verdict(excinfo: pytest.ExceptionInfo[BaseException]) -> Check | None:
    """The failed judge check that explains a guest panic, if one does: kernel code read
    as zeros, on a kernel that boots when the balloon takes no hints (a control boot)."""
    error = excinfo.value
    if not isinstance(error, GuestPanic) or error.console_log is None:
        return None
    try:
        console = error.console_log.read_text(errors="replace")
    except OSError:
        return None
    if not zero_filled_code(console):
        return None
    config = error.vm_config
    if config is None or not (config.balloon and config.free_page_reporting):
        return None  # no hints were taken: the host did not zero that memory
    check = judge_kernel_text(console, boots_without_reporting(config))
    return None if check.passed else check


def hang_verdict(excinfo: pytest.ExceptionInfo[BaseException]) -> Check | None:
    """The failed check `guest_responsive` of a guest found hung after it was up (a hang
    during the boot stays a boot failure)."""
    error = excinfo.value
    if not isinstance(error, GuestHung) or error.during_boot:
        return None
    return hang_check(error)


def is_infrastructure_fault(excinfo: pytest.ExceptionInfo[BaseException]) -> bool:
    error = excinfo.value
    return isinstance(error, QemuDied | StepTestedNothing) or (
        isinstance(error, VMError) and error.during_boot
    )
