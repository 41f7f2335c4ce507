"""GuestVM: one QEMU process, owned from launch to kill, and its boot (the SSH session into
the guest is harness.guest.session's, beside it).

Lifecycle: check the port and the binary, launch QEMU with the command line of
harness/guest/cmdline.py (console to workdir/console.log, watched by harness/guest/console.py's
thread), wait for the ready marker "PHH-READY <boot-id>" that images/init prints; on exit ask
QEMU to quit over QMP (harness/guest/qmp.py), then SIGKILL if it lingers. Every path
(exceptions, KeyboardInterrupt, a forgotten close, interpreter exit, even the death of the
Python process via PR_SET_PDEATHSIG) ends with the QEMU process gone.

While the guest runs, the watcher follows its heartbeat (images/init's "PHH-TICK" lines):
`check_responsive` takes a guest silent for `hang_seconds` for hung, says where its vCPUs
are (GuestHung, harness/guest/hang.py) and kills it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
import weakref
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

from harness.core.errors import (
    GuestHung,
    GuestNotReady,
    GuestPanic,
    PortInUse,
    QemuDied,
    QemuMissing,
    VMError,
    VMLaunchFailure,
)
from harness.core.poll import poll_until
from harness.core.progress import add_guest_cpu, add_time
from harness.guest.cmdline import (
    BALLOON_DRIVER,
    BALLOON_ID,
    BALLOON_PORT,
    FORWARD_HOST,
    QEMU_BINARY,
    QemuPaths,
    VMConfig,
    accel_args,
    asynchronous_reports,
    balloon_properties,
    build_qemu_command,
    device_properties,
    hotpluggable_balloon,
    qemu_binary_version,
)
from harness.guest.console import (
    CONSOLE_TAIL_LINES,
    FATAL_CONSOLE,
    ConsoleWatcher,
    console_tail,
    read_console,
    ready_marker,
)
from harness.guest.hang import Heartbeat, format_dump, hang_detail, sample_vcpus
from harness.guest.qmp import Monitor
from harness.guest.ssh import pick_free_port, port_is_free
from harness.guest.symbols import SymbolMap, system_map_for

# QEMU stderr lines that mean the accelerator cannot run this guest: fail fast, do not wait.
FATAL_QEMU_OUTPUT = re.compile(r"KVM internal error|emulation failure|Could not access KVM")
BOOT_POLL_SECONDS = 0.1  # how often a boot (or a reset) is looked at
PANIC_GRACE_SECONDS = 1.0
# A QMP event wait looks at the heartbeat at least this often (a hung guest never sends it).
EVENT_SLICE_SECONDS = 1.0
HANG_REGISTERS = "hang-registers.txt"  # in the workdir: the register dumps of a hang
UNIX_SOCKET_MAX = 100  # sun_path is 108 bytes

# This module's own names, and those that moved to cmdline.py and console.py (still
# importable from here).
__all__ = [
    "BALLOON_DRIVER",
    "BALLOON_ID",
    "BALLOON_PORT",
    "CONTROL_BOOT_DIR",
    "HANG_REGISTERS",
    "QEMU_BINARY",
    "ConsoleWatcher",
    "GuestVM",
    "QemuPaths",
    "VMConfig",
    "accel_args",
    "asynchronous_reports",
    "balloon_properties",
    "boots_without_reporting",
    "build_qemu_command",
    "console_tail",
    "device_properties",
    "exit_description",
    "hotpluggable_balloon",
    "qemu_binary_version",
]


def exit_description(returncode: int) -> str:
    """ "killed by signal SIGKILL (9)" or "exited with status 1"."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "an unknown signal"
        return f"killed by signal {name} ({-returncode})"
    return f"exited with status {returncode}"


# Loaded up front: the child between fork and exec must not run the dynamic loader.
_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _set_parent_death_signal() -> None:
    """In the QEMU child: get SIGKILL when the Python process dies, whatever the cause.

    (Linux sends it when the thread that forked exits: start VMs from a long-lived thread.)
    """
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def process_cpu_seconds(pid: int) -> tuple[float, float] | None:
    """(user, system) CPU seconds process `pid` has used, from /proc/PID/stat; None if it
    is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is fields[0]
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def _kill_process(process: subprocess.Popen[bytes]) -> None:
    """Last resort (finalizer / atexit): SIGKILL and reap."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)


class GuestVM:
    """A context manager owning one QEMU process (see the module docstring)."""

    def __init__(self, config: VMConfig) -> None:
        self.config = config
        self.boot_id = uuid.uuid4().hex[:12]
        self.ssh_port = 0
        self.command: list[str] = []
        self.boot_seconds: float | None = None  # launch -> ready marker
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None
        self._watcher: ConsoleWatcher | None = None
        self._qmp: Monitor | None = None
        self._private_dir: Path | None = None
        self.heartbeat = Heartbeat(config.hang_seconds)
        self.hang: GuestHung | None = None  # set once the guest was found hung (and killed)
        self.paths = self._make_paths()

    # ----------------------------------------------------------------- launch

    def __enter__(self) -> GuestVM:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Launch QEMU and wait for the ready marker; on any failure, clean up."""
        if self._process is not None:
            raise VMLaunchFailure(f"VM {self.boot_id} was already started", "use a new GuestVM")
        self._check_inputs()
        self.ssh_port = self._choose_port()
        self.command = build_qemu_command(self.config, self.ssh_port, self.boot_id, self.paths)
        try:
            launched = time.monotonic()
            self._launch()
            self._wait_until_ready(self.config.boot_timeout)
            self.boot_seconds = time.monotonic() - launched
            if self.config.timing_phase:
                add_time(self.config.timing_phase, self.boot_seconds)
        except BaseException as error:
            if isinstance(error, VMError):
                error.during_boot = True
            self.close()
            raise

    def _make_paths(self) -> QemuPaths:
        workdir = self.config.workdir
        workdir.mkdir(parents=True, exist_ok=True)
        socket_path = workdir / "qmp.sock"
        if len(str(socket_path)) > UNIX_SOCKET_MAX:
            # A long workdir would overflow sun_path: keep the socket in a short private dir.
            self._private_dir = Path(tempfile.mkdtemp(prefix="phh-qmp-"))
            socket_path = self._private_dir / "qmp.sock"
        return QemuPaths(workdir / "console.log", workdir / "qemu.log", socket_path)

    def _check_inputs(self) -> None:
        config = self.config
        if shutil.which(config.qemu_binary) is None:
            raise QemuMissing(
                f"QEMU binary {config.qemu_binary!r} not found",
                "apt-get install qemu-system-x86",
            )
        for what, path in (("kernel", config.kernel), ("initrd", config.initrd)):
            if not Path(path).is_file():
                raise VMLaunchFailure(f"{what} {path} does not exist", f"build the {what} first")
        if config.ssh_port is not None and not port_is_free(config.ssh_port, FORWARD_HOST):
            raise PortInUse(
                f"{FORWARD_HOST}:{config.ssh_port} (requested SSH forward port) is already in use",
                "pick another ssh_port, or leave it None to get a free one",
            )

    def _choose_port(self) -> int:
        if self.config.ssh_port is not None:
            return self.config.ssh_port
        return pick_free_port(FORWARD_HOST)

    def _launch(self) -> None:
        for stale in (self.paths.console_log, self.paths.qmp_socket):
            stale.unlink(missing_ok=True)
        self.paths.console_log.touch()
        self._watcher = ConsoleWatcher(self.paths.console_log, self.boot_id, self.heartbeat)
        self._watcher.start()
        with open(self.paths.qemu_log, "wb") as qemu_log:
            try:
                self._process = subprocess.Popen(
                    self.command,
                    stdin=subprocess.DEVNULL,
                    stdout=qemu_log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a terminal ^C reaches Python, which cleans up
                    preexec_fn=_set_parent_death_signal,
                )
            except FileNotFoundError as error:
                raise QemuMissing(
                    f"QEMU binary {self.config.qemu_binary!r} not found",
                    "apt-get install qemu-system-x86",
                ) from error
        self._finalizer = weakref.finalize(self, _kill_process, self._process)

    def _wait_until_ready(self, timeout: float) -> None:
        """Return once the ready marker is on the console; raise on panic, exit or timeout."""
        _, ready = poll_until(self._booted, bool, timeout=timeout, interval=BOOT_POLL_SECONDS)
        if not ready:
            raise GuestNotReady(
                f"guest {self.boot_id} printed no '{ready_marker(self.boot_id)}' within "
                f"{timeout:.0f} s\n--- console (tail) ---\n{self.console_tail()}",
                f"see {self.paths.console_log}; raise boot_timeout if the boot was slow",
            )

    def _booted(self) -> bool:
        """Whether the ready marker is on the console; raises if the boot is lost."""
        assert self._watcher is not None
        # Fatal output is checked first: a BUG before the marker fails the boot.
        if self._watcher.fatal.is_set() and not self._watcher.fatal_after_ready:
            time.sleep(PANIC_GRACE_SECONDS)  # let the rest of the trace reach the log
            raise self._panic_error()
        if self._watcher.ready.is_set():
            return True
        self._raise_if_qemu_failed()
        return False

    def _raise_if_qemu_failed(self) -> None:
        assert self._watcher is not None and self._process is not None
        if self._process.poll() is not None:
            self._watcher.stop()  # reads the console to its end
            if self._watcher.fatal.is_set() or FATAL_CONSOLE.search(self.console_text()):
                raise self._panic_error()
            raise self._launch_failure(f"QEMU exited with status {self._process.returncode}")
        if FATAL_QEMU_OUTPUT.search(self.qemu_output()):
            raise self._launch_failure("QEMU reported that the accelerator failed")

    def _panic_error(self) -> GuestPanic:
        return GuestPanic(
            f"guest kernel {self.config.kernel} failed during boot "
            f"{self.boot_id}\n--- console (tail) ---\n{self.console_tail()}",
            f"full console: {self.paths.console_log}",
            console_log=self.paths.console_log,
            vm_config=self.config,
        )

    def _launch_failure(self, what: str) -> VMLaunchFailure:
        return VMLaunchFailure(
            f"{what}\ncommand: {' '.join(self.command)}\n--- QEMU output ---\n"
            f"{self.qemu_output().strip()}\n--- console (tail) ---\n{self.console_tail()}",
            f"QEMU log: {self.paths.qemu_log}",
        )

    # ----------------------------------------------------------------- running VM

    @property
    def pid(self) -> int:
        if self._process is None:
            raise VMLaunchFailure(f"VM {self.boot_id} is not running", "start() it first")
        return self._process.pid

    @property
    def console_log(self) -> Path:
        return self.paths.console_log

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def death(self) -> str | None:
        """How QEMU ended ("killed by signal SIGKILL (9)"), or None while it runs."""
        if self._process is None or self._process.poll() is None:
            return None
        return exit_description(self._process.returncode)

    def check_alive(self, grace: float = 0.0) -> None:
        """Raise QemuDied, naming the signal or status and the console tail, if QEMU is gone.

        `grace` waits that long for QEMU to end: a caller that saw its connection drop
        uses it, because the kernel closes a dying QEMU's sockets before the process can
        be reaped, so the drop can arrive a moment before poll() sees the exit.
        A VM killed because it hung raises that hang (GuestHung) again.
        """
        if self.hang is not None:
            raise self.hang.again()
        if grace > 0 and self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=grace)
        death = self.death()
        if death is None:
            return
        if self._watcher is not None:
            self._watcher.stop()  # reads the console to its end
        if FATAL_CONSOLE.search(self.console_text()):
            # The guest kernel died (panic=-1 with -no-reboot ends QEMU): a defect of the
            # kernel under test, not of the harness.
            raise GuestPanic(
                f"guest kernel {self.config.kernel} of VM {self.boot_id} died (QEMU {death})"
                f"\n--- console (tail) ---\n{self.console_tail()}",
                f"full console: {self.paths.console_log}",
                console_log=self.paths.console_log,
                vm_config=self.config,
            )
        raise QemuDied(
            f"QEMU (pid {self.pid}) of VM {self.boot_id} {death}\n"
            f"--- QEMU output ---\n{self.qemu_output().strip()[-2000:]}\n"
            f"--- console (tail) ---\n{self.console_tail()}",
            f"console log {self.paths.console_log}; if nobody killed it, look for the host's "
            "OOM killer in the host's dmesg",
        )

    def check_responsive(self, grace: float = 0.0) -> None:
        """check_alive(), and GuestHung if the guest has been silent for `hang_seconds`
        since its last heartbeat: its vCPUs are sampled first (where each one is, by the
        build's System.map; the dumps go to <workdir>/hang-registers.txt), then QEMU is
        killed. What GuestSSH calls while it waits, so that no wait outlives a hang by more
        than a moment."""
        self.check_alive(grace)
        silence = self.heartbeat.stale()
        if silence is not None and self.is_running():
            raise self._hung(silence)

    def _hung(self, silence: float) -> GuestHung:
        """Triage a hung guest, kill it, and remember the hang (every later check raises it)."""
        symbols = SymbolMap.load(system_map_for(self.config.kernel))
        triage = sample_vcpus(self.qmp_execute)
        detail = hang_detail(silence, triage, symbols, self.console_text())
        registers: Path | None = self.config.workdir / HANG_REGISTERS
        try:
            (self.config.workdir / HANG_REGISTERS).write_text(format_dump(detail, triage, symbols))
        except OSError:
            registers = None  # the hang is still reported, without the dumps
        self.close()
        self.hang = GuestHung(
            f"{GuestHung.check_name}: {detail}\nregister samples: {registers}\n"
            f"--- console (tail) ---\n{self.console_tail()}",
            f"the kernel under test stopped making progress (VM {self.boot_id} killed): see "
            f"where its vCPUs were above, the registers in {registers}, the console in "
            f"{self.paths.console_log}",
            detail=detail,
            registers=registers,
            console_log=self.paths.console_log,
        )
        return self.hang

    def wait_for_exit(self, timeout: float) -> str | None:
        """Wait up to `timeout` for QEMU to end; how it ended, or None if it still runs."""
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=timeout)
        return self.death()

    def console_text(self) -> str:
        """Everything the guest printed on its console so far."""
        return read_console(self.paths.console_log)

    def console_problem(self) -> str | None:
        """The first panic/oops/BUG line the console showed (before or after ready), if any."""
        return self._watcher.fatal_line if self._watcher is not None else None

    def console_tail(self, lines: int = CONSOLE_TAIL_LINES) -> str:
        return console_tail(self.console_text(), lines)

    def qemu_output(self) -> str:
        try:
            return self.paths.qemu_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _monitor(self) -> Monitor:
        if self._process is None:
            raise VMLaunchFailure(f"VM {self.boot_id} is not running", "start() it first")
        self.check_alive()
        if self._qmp is None:
            self._qmp = Monitor(
                self.paths.qmp_socket,
                name=f"VM {self.boot_id}",
                qemu_binary=self.config.qemu_binary,
                check_peer=self.check_alive,  # not check_responsive: hang triage uses QMP
            )
        return self._qmp

    def qmp_execute(self, command: str, arguments: dict[str, object] | None = None) -> Any:
        """Run a QMP command (e.g. "query-balloon") and return its "return" value.

        A command, device or property this QEMU does not know raises QmpUnsupported naming
        the QEMU version; QEMU dying raises QemuDied."""
        return self._monitor().execute(command, arguments)

    def qemu_version(self) -> str:
        return self._monitor().qemu_version()

    def forget_qmp_events(self) -> None:
        self._monitor().forget_events()

    def wait_qmp_event(self, name: str, timeout: float, **match: object) -> dict:
        """Wait for the QMP event `name` (e.g. DEVICE_DELETED, device="balloon0"); a guest
        that hangs meanwhile raises GuestHung (the heartbeat is looked at every
        EVENT_SLICE_SECONDS at least)."""
        monitor = self._monitor()

        def until_an_event(seconds: float) -> None:
            monitor.await_event(seconds)
            self.check_responsive()

        event, arrived = poll_until(
            lambda: monitor.take_event(name, match),
            lambda event: event is not None,
            timeout=timeout,
            interval=EVENT_SLICE_SECONDS,
            sleep=until_an_event,
        )
        if event is None or not arrived:
            raise VMError(
                f"no QMP event {name} {match or ''} from VM {self.boot_id} within {timeout:.0f} s",
                "the guest did not act on the request: look at its console",
            )
        return event

    # ----------------------------------------------------------------- reset

    def reset(self, timeout: float | None = None) -> float:
        """system_reset over QMP and wait for the guest to boot again (SSH: Guest.reset).

        QEMU runs with -no-reboot (a panicking guest ends the run), under which a reset
        is a shutdown: the reboot action is set to "reset" for this one reset and back.
        Returns the seconds from the reset to the new ready marker."""
        assert self._watcher is not None
        timeout = timeout or self.config.boot_timeout
        boots = self._watcher.ready_count
        self.heartbeat.rebooting()  # silent until the new boot ticks
        self.qmp_execute("set-action", {"reboot": "reset"})
        started = time.monotonic()
        self.qmp_execute("system_reset")
        _, booted = poll_until(
            lambda: self._booted_again(boots), bool, timeout=timeout, interval=BOOT_POLL_SECONDS
        )
        if not booted:
            raise GuestNotReady(
                f"guest {self.boot_id} did not boot again within {timeout:.0f} s of "
                f"system_reset\n--- console (tail) ---\n{self.console_tail()}",
                f"see {self.paths.console_log}",
            )
        self.qmp_execute("set-action", {"reboot": "shutdown"})
        return time.monotonic() - started

    def _booted_again(self, boots: int) -> bool:
        """Whether the guest printed more than `boots` ready markers; raises if it died."""
        assert self._watcher is not None
        if self._watcher.ready_count > boots:
            return True
        if self._watcher.fatal.is_set():
            time.sleep(PANIC_GRACE_SECONDS)  # let the rest of the trace reach the log
            raise self._panic_error()
        self.check_alive()
        return False

    # ----------------------------------------------------------------- shutdown

    def close(self) -> None:
        """Stop the guest: QMP quit, then SIGKILL after shutdown_timeout. Idempotent."""
        try:
            if self.is_running():
                self._quit_politely()
        finally:
            self._kill_and_reap()
            if self._qmp is not None:
                self._qmp.close()
                self._qmp = None
            if self._watcher is not None:
                self._watcher.stop()
            if self._private_dir is not None:
                shutil.rmtree(self._private_dir, ignore_errors=True)

    def _quit_politely(self) -> None:
        assert self._process is not None
        cpu = process_cpu_seconds(self._process.pid)  # (its shutdown is not worth counting)
        if cpu is not None:
            add_guest_cpu(*cpu)
        if self._qmp is not None or self.paths.qmp_socket.exists():
            with contextlib.suppress(Exception):
                self.qmp_execute("quit")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=self.config.shutdown_timeout)

    def _kill_and_reap(self) -> None:
        if self._process is not None:
            _kill_process(self._process)
        if self._finalizer is not None:
            self._finalizer.detach()


CONTROL_BOOT_DIR = "control-boot-without-reporting"


def boots_without_reporting(config: VMConfig) -> bool:
    """Whether the same kernel and initramfs boot to the ready marker when the balloon does
    not accept hints (free-page-reporting=off): the control that tells a crash hinting
    caused from one it did not. Its console stays in `<workdir>/CONTROL_BOOT_DIR`."""
    workdir = config.workdir / CONTROL_BOOT_DIR
    workdir.mkdir(parents=True, exist_ok=True)
    control = replace(config, free_page_reporting=False, workdir=workdir, ssh_port=None)
    try:
        with GuestVM(control):
            return True
    except VMError:
        return False
