"""Exceptions the harness raises: each says what failed, on which input, and what to do."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.guest.cmdline import VMConfig


class HarnessError(Exception):
    """Base class. `hint` tells the user what to do about it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  -> {self.hint}" if self.hint else self.message


class SourceError(HarnessError):
    """The kernel source could not be obtained or is not a kernel tree."""


class SeriesError(HarnessError):
    """A patch series could not be read or is malformed."""


class PatchApplyError(SeriesError):
    """A patch of the series does not apply; the tree was restored."""


class KconfigError(HarnessError):
    """Conflicting fragments, or options that Kconfig dropped."""


class BuildError(HarnessError):
    """make failed; carries the error lines and the log path."""


class ImageError(HarnessError):
    """The guest initramfs could not be assembled."""


class VMError(HarnessError):
    """Base class for QEMU / guest failures. `during_boot`: raised before the guest was up
    (no workload ran yet), so an infrastructure fault, not a defect the scenario found."""

    during_boot: bool = False


class QemuMissing(VMError):
    """The QEMU binary is not installed."""


class PortInUse(VMError):
    """The host port requested for SSH forwarding is taken."""


class VMLaunchFailure(VMError):
    """QEMU exited or could not be started; carries exit code, command line and output."""


class GuestPanic(VMError):
    """The guest kernel panicked (or oopsed fatally); carries the console tail, the console
    log's path for a judge that reads all of it, and the VM's configuration (a VMConfig)
    for a control boot that tells whether hinting caused it."""

    def __init__(
        self,
        message: str,
        hint: str = "",
        console_log: Path | None = None,
        vm_config: VMConfig | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.console_log = console_log
        self.vm_config = vm_config


class QemuDied(VMError):
    """The QEMU process of a running VM is gone (killed, crashed or exited on its own)."""


class GuestHung(VMError):
    """The guest stopped making progress while QEMU ran: no heartbeat (images/init's
    ticker) for harness.guest.hang.HANG_SECONDS. A defect of the kernel under test, not of
    the harness: the judge check `guest_responsive` fails (harness/pytest_plugin/outcomes.py).
    The VM was
    killed after its vCPUs were sampled: `detail` says where each one was, `registers` is
    the file with the register dumps; `step` is the scenario it hung in (the pytest plugin
    sets it: later steps on that guest are skipped as blocked)."""

    check_name = "guest_responsive"

    def __init__(
        self,
        message: str,
        hint: str = "",
        *,
        detail: str = "",
        registers: Path | None = None,
        console_log: Path | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.detail = detail or message.splitlines()[0]
        self.registers = registers
        self.console_log = console_log
        self.step: str | None = None

    def again(self) -> GuestHung:
        """The same hang as a new exception, for a later use of the killed VM."""
        return GuestHung(
            self.message,
            self.hint,
            detail=self.detail,
            registers=self.registers,
            console_log=self.console_log,
        )


class QmpUnsupported(VMError):
    """The running QEMU does not have a QMP command, device or property the scenario needs."""


class GuestNotReady(VMError):
    """The guest did not print its ready marker before the deadline."""


class SSHError(VMError):
    """SSH to the guest failed or a command timed out."""


class StepTestedNothing(HarnessError):
    """A scenario step could not set up the situation it exists to test (e.g. a workload
    finished before the window it must fall into): an error of the harness, not a verdict
    on the kernel."""


class DiskFull(HarnessError):
    """A write failed for lack of space (ENOSPC, EDQUOT), or a tool said so: named with its
    directory, what the step needs and PHH_CACHE (made by harness.core.diskspace)."""
