"""GuestVM: one QEMU process, owned from launch to kill, with console watch and QMP (the SSH
session into the guest is harness.guest.session's, beside it).

Lifecycle: check the port and the binary, launch QEMU (console to workdir/console.log,
watched by a thread), wait for the ready marker "PHH-READY <boot-id>" that images/init prints;
on exit ask QEMU to quit over QMP, then SIGKILL if it lingers. Every path (exceptions,
KeyboardInterrupt, a forgotten close, interpreter exit, even the death of the Python process
via PR_SET_PDEATHSIG) ends with the QEMU process gone.

While the guest runs, the watcher follows its heartbeat (images/init's "PHH-TICK" lines):
`check_responsive` takes a guest silent for `hang_seconds` for hung, says where its vCPUs
are (GuestHung, harness/guest/hang.py) and kills it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from qemu.qmp import ExecuteError, QMPClient, QMPError

from harness.core.errors import (
    GuestHung,
    GuestNotReady,
    GuestPanic,
    PortInUse,
    QemuDied,
    QemuMissing,
    QmpUnsupported,
    VMError,
    VMLaunchFailure,
)
from harness.core.progress import add_time
from harness.guest.hang import (
    HANG_SECONDS,
    Heartbeat,
    format_dump,
    hang_detail,
    is_tick,
    sample_vcpus,
)
from harness.guest.ssh import pick_free_port, port_is_free
from harness.guest.symbols import SymbolMap, system_map_for

QEMU_BINARY = "qemu-system-x86_64"
READY_PREFIX = "PHH-READY"
GUEST_SSH_PORT = 22
# Console lines that mean the boot is lost (checked until the ready marker appears).
FATAL_CONSOLE = re.compile(r"Kernel panic - not syncing|\bOops\b|\bBUG: ")
# QEMU stderr lines that mean the accelerator cannot run this guest: fail fast, do not wait.
FATAL_QEMU_OUTPUT = re.compile(r"KVM internal error|emulation failure|Could not access KVM")
POLL_SECONDS = 0.05
PANIC_GRACE_SECONDS = 1.0
QMP_TIMEOUT_SECONDS = 10.0
# A QMP event wait looks at the heartbeat this often (a hung guest never sends the event).
EVENT_SLICE_SECONDS = 1.0
HANG_REGISTERS = "hang-registers.txt"  # in the workdir: the register dumps of a hang
CONSOLE_TAIL_LINES = 40
UNIX_SOCKET_MAX = 100  # sun_path is 108 bytes
# The balloon sits behind its own PCIe root port on q35, so that it can be unplugged and
# plugged again (ACPI PCI hotplug: the guest kernel needs ACPI and HOTPLUG_PCI_ACPI).
BALLOON_ID = "balloon0"
BALLOON_PORT = "hotplug-port"
BALLOON_DRIVER = "virtio-balloon-pci"


@dataclass
class VMConfig:
    """What to boot and how (`ssh_port`: the host port forwarded to the guest's SSH)."""

    kernel: Path
    initrd: Path
    workdir: Path
    memory_mib: int = 2048
    smp: int = 1
    accel: str = "tcg"
    balloon: bool = True
    free_page_reporting: bool = True
    balloon_page_poison: bool = True  # QEMU's default; off: the host learns no poison value
    ssh_port: int | None = None
    boot_timeout: float = 60.0
    extra_cmdline: str = ""
    machine: str = "q35"
    qemu_binary: str = QEMU_BINARY
    shutdown_timeout: float = 10.0
    # Memory hotplug: room for this much more memory in `memory_slots` pc-dimm slots.
    hotplug_mib: int = 0
    memory_slots: int = 2
    timing_phase: str = "boot"  # where the boot time counts in the run's breakdown ("": nowhere)
    hang_seconds: float = HANG_SECONDS  # heartbeat silence after which the guest is hung


@dataclass(frozen=True)
class QemuPaths:
    """Files of one QEMU run."""

    console_log: Path
    qemu_log: Path
    qmp_socket: Path


def kernel_cmdline(config: VMConfig, boot_id: str) -> str:
    words = ["console=ttyS0", "panic=-1", *config.extra_cmdline.split(), f"phh.boot={boot_id}"]
    return " ".join(words)


def _opt(value: Path | str) -> str:
    """Escape a value for QEMU's key=value option syntax (a comma is written twice)."""
    return str(value).replace(",", ",,")


def accel_args(accel: str) -> list[str]:
    if accel == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    if accel == "tcg":
        return ["-accel", "tcg"]
    raise ValueError(f"unknown accelerator {accel!r} (expected 'kvm' or 'tcg')")


def balloon_properties(config: VMConfig) -> dict[str, object]:
    """The balloon's -device properties (device_add takes the same ones)."""
    props: dict[str, object] = {"id": BALLOON_ID, "free-page-reporting": config.free_page_reporting}
    if asynchronous_reports(config.accel, config.qemu_binary):
        props["ioeventfd"] = True
    if not config.balloon_page_poison:
        # QEMU then does not offer VIRTIO_BALLOON_F_PAGE_POISON: a poisoning guest cannot
        # tell the host its poison value (the poison scenario needs exactly that).
        props["page-poison"] = False
    if hotpluggable_balloon(config):
        props["bus"] = BALLOON_PORT
    return props


def asynchronous_reports(accel: str, qemu_binary: str = QEMU_BINARY) -> bool:
    """Whether QEMU acts on a free page report while the guest runs on (a slow host, as a
    real one is), rather than inside the guest's notification. That takes an ioeventfd:
    KVM only (virtio-pci enables them when KVM has them), and a virtio-balloon-pci that
    has the property (QEMU 7.2's has none: with it, KVM too handles the kick in the vCPU
    thread). Under TCG the answer is always no (patches/hinting-v2/NOTES.md)."""
    return accel == "kvm" and "ioeventfd" in device_properties(qemu_binary, BALLOON_DRIVER)


@functools.cache
def qemu_binary_version(qemu_binary: str = QEMU_BINARY) -> str:
    """`qemu --version`'s first line without the prefix, e.g. "7.2.22 (Debian 1:7.2+...)"."""
    out = subprocess.run(
        [qemu_binary, "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    return out.splitlines()[0].removeprefix("QEMU emulator version ").strip()


@functools.cache
def device_properties(qemu_binary: str, driver: str) -> frozenset[str]:
    """The property names `qemu -device DRIVER,help` lists (empty if QEMU cannot say)."""
    try:
        listing = subprocess.run(
            [qemu_binary, "-device", f"{driver},help"],
            capture_output=True, text=True, timeout=30, check=False,
        ).stdout  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(m[1] for m in re.finditer(r"^\s+([\w-]+)=", listing, re.MULTILINE))


def hotpluggable_balloon(config: VMConfig) -> bool:
    return config.machine.startswith("q35")


def balloon_args(config: VMConfig) -> list[str]:
    """The balloon (behind a root port on q35, see BALLOON_PORT); the port stays when the
    balloon is off, so that one can be plugged in later."""
    args: list[str] = []
    if hotpluggable_balloon(config):
        args += ["-device", f"pcie-root-port,id={BALLOON_PORT},bus=pcie.0,chassis=1"]
    if not config.balloon:
        return args
    words = [BALLOON_DRIVER]
    for key, value in balloon_properties(config).items():
        if isinstance(value, bool):
            value = "on" if value else "off"
        words.append(f"{key}={_opt(str(value))}")
    return [*args, "-device", ",".join(words)]


def memory_args(config: VMConfig) -> list[str]:
    if not config.hotplug_mib:
        return ["-m", str(config.memory_mib)]
    maxmem = config.memory_mib + config.hotplug_mib
    return ["-m", f"{config.memory_mib},slots={config.memory_slots},maxmem={maxmem}M"]


def exit_description(returncode: int) -> str:
    """ "killed by signal SIGKILL (9)" or "exited with status 1"."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "an unknown signal"
        return f"killed by signal {name} ({-returncode})"
    return f"exited with status {returncode}"


def build_qemu_command(
    config: VMConfig, ssh_port: int, boot_id: str, paths: QemuPaths
) -> list[str]:
    """The complete QEMU command line (pure: no I/O)."""
    forward = f"tcp:127.0.0.1:{ssh_port}-:{GUEST_SSH_PORT}"
    return [
        config.qemu_binary,
        "-machine", config.machine,
        *accel_args(config.accel),
        *memory_args(config),
        "-smp", str(config.smp),
        "-nographic", "-nodefaults", "-no-user-config", "-no-reboot",
        "-kernel", str(config.kernel),
        "-initrd", str(config.initrd),
        "-append", kernel_cmdline(config, boot_id),
        "-chardev", f"file,id=console0,path={_opt(paths.console_log)}",
        "-serial", "chardev:console0",
        "-chardev", f"socket,id=qmp0,path={_opt(paths.qmp_socket)},server=on,wait=off",
        "-mon", "chardev=qmp0,mode=control",
        "-netdev", f"user,id=n0,restrict=on,hostfwd={forward}",
        "-device", "virtio-net-pci,netdev=n0",
        *balloon_args(config),
    ]  # fmt: skip


def console_tail(text: str, lines: int = CONSOLE_TAIL_LINES) -> str:
    """The last `lines` lines, heartbeat ticks left out (an idle guest's would fill it)."""
    return "\n".join([line for line in text.splitlines() if not is_tick(line)][-lines:])


# Loaded up front: the child between fork and exec must not run the dynamic loader.
_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _set_parent_death_signal() -> None:
    """In the QEMU child: get SIGKILL when the Python process dies, whatever the cause.

    (Linux sends it when the thread that forked exits: start VMs from a long-lived thread.)
    """
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _kill_process(process: subprocess.Popen[bytes]) -> None:
    """Last resort (finalizer / atexit): SIGKILL and reap."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)


class ConsoleWatcher(threading.Thread):
    """Follows console.log line by line: flags the ready marker and the first fatal message,
    and hands the boots' ready markers and the ticks to `heartbeat`.

    It keeps watching after the guest is ready, so a later panic or oops is noticed too
    (`fatal_line`, `fatal_after_ready`).
    """

    def __init__(self, path: Path, boot_id: str, heartbeat: Heartbeat | None = None) -> None:
        super().__init__(name=f"console-{boot_id}", daemon=True)
        self.path = path
        self._marker = f"{READY_PREFIX} {boot_id}"
        self.ready = threading.Event()
        self.ready_count = 0  # one per boot: a reset guest prints the marker again
        self.fatal = threading.Event()
        self.fatal_line: str | None = None
        self.fatal_after_ready = False
        self.heartbeat = heartbeat if heartbeat is not None else Heartbeat()
        self._stop_event = threading.Event()
        self._partial = b""

    def run(self) -> None:
        offset = 0
        while not self._stop_event.is_set():
            offset = self._read_new(offset)
            self._stop_event.wait(POLL_SECONDS)
        self._read_new(offset)

    def _read_new(self, offset: int) -> int:
        try:
            with open(self.path, "rb") as console:
                console.seek(offset)
                chunk = console.read()
        except FileNotFoundError:
            return offset
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            self._check_line(line.decode(errors="replace").rstrip("\r"))
        return offset + len(chunk)

    def _check_line(self, line: str) -> None:
        if line.strip() == self._marker:
            self.ready_count += 1
            self.heartbeat.booted()
            self.ready.set()
        elif is_tick(line):
            self.heartbeat.tick()
        elif self.fatal_line is None and FATAL_CONSOLE.search(line):
            self.fatal_line = line
            self.fatal_after_ready = self.ready.is_set()
            self.fatal.set()

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=5)


class QMPConnection:
    """A thin synchronous facade over qemu.qmp's async QMPClient, on a private event loop."""

    def __init__(self, socket_path: Path, timeout: float = QMP_TIMEOUT_SECONDS) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = QMPClient("phh")
        self._timeout = timeout
        try:
            self._run(self._client.connect(str(socket_path)))
        except BaseException:
            self._loop.close()
            raise

    def _run(self, awaitable: Any) -> Any:
        return self._loop.run_until_complete(asyncio.wait_for(awaitable, self._timeout))

    def execute(self, command: str, arguments: dict[str, object] | None = None) -> Any:
        return self._run(self._client.execute(command, arguments))

    def forget_events(self) -> None:
        """Drop the events received so far (so that a wait sees only later ones)."""
        self._client.events.clear()

    def wait_event(self, name: str, match: dict[str, object], timeout: float) -> dict:
        """The next event called `name` whose data has the items of `match`."""

        async def next_matching() -> dict:
            while True:
                event = await self._client.events.get()
                data = event.get("data", {})
                if event["event"] == name and all(data.get(k) == v for k, v in match.items()):
                    return dict(event)

        return self._loop.run_until_complete(asyncio.wait_for(next_matching(), timeout))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._run(self._client.disconnect())
        self._loop.close()


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
        self._qmp: QMPConnection | None = None
        self._private_dir: Path | None = None
        self._qemu_version: str | None = None
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
            self._wait_until_ready(launched + self.config.boot_timeout)
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
        if config.ssh_port is not None and not port_is_free(config.ssh_port):
            raise PortInUse(
                f"127.0.0.1:{config.ssh_port} (requested SSH forward port) is already in use",
                "pick another ssh_port, or leave it None to get a free one",
            )

    def _choose_port(self) -> int:
        return self.config.ssh_port if self.config.ssh_port is not None else pick_free_port()

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

    def _wait_until_ready(self, deadline: float) -> None:
        """Return once the ready marker is on the console; raise on panic, exit or deadline."""
        assert self._watcher is not None
        while True:
            # Fatal output is checked first: a BUG before the marker fails the boot.
            if self._watcher.fatal.is_set() and not self._watcher.fatal_after_ready:
                time.sleep(PANIC_GRACE_SECONDS)  # let the rest of the trace reach the log
                raise self._panic_error()
            if self._watcher.ready.is_set():
                return
            self._raise_if_qemu_failed()
            if time.monotonic() > deadline:
                raise GuestNotReady(
                    f"guest {self.boot_id} printed no '{READY_PREFIX} {self.boot_id}' within "
                    f"{self.config.boot_timeout:.0f} s\n--- console (tail) ---\n"
                    f"{self.console_tail()}",
                    f"see {self.paths.console_log}; raise boot_timeout if the boot was slow",
                )
            time.sleep(POLL_SECONDS)

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
        try:
            return self.paths.console_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

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

    def _qmp_connection(self) -> QMPConnection:
        if self._process is None:
            raise VMLaunchFailure(f"VM {self.boot_id} is not running", "start() it first")
        self.check_alive()
        if self._qmp is None:
            self._qmp = QMPConnection(self.paths.qmp_socket)
        return self._qmp

    def qmp_execute(self, command: str, arguments: dict[str, object] | None = None) -> Any:
        """Run a QMP command (e.g. "query-balloon") and return its "return" value.

        A command, device or property this QEMU does not know raises QmpUnsupported naming
        the QEMU version; QEMU dying raises QemuDied."""
        try:
            return self._qmp_connection().execute(command, arguments)
        except ExecuteError as error:
            raise self._rejected(command, arguments, error) from error
        except (QMPError, OSError, TimeoutError, EOFError) as error:
            self.check_alive()
            raise VMError(
                f"QMP command {command} {arguments or ''} failed on VM {self.boot_id}: {error}",
                f"QMP socket {self.paths.qmp_socket}",
            ) from error

    def qemu_version(self) -> str:
        if self._qemu_version is None:
            info = self._qmp_connection().execute("query-version")
            q = info["qemu"]
            self._qemu_version = f"{q['major']}.{q['minor']}.{q['micro']} {info['package']}".strip()
        return self._qemu_version

    def _rejected(
        self, command: str, arguments: dict[str, object] | None, error: ExecuteError
    ) -> VMError:
        what = f"QMP command {command} {arguments or ''}".strip()
        message = f"QEMU {self.qemu_version()} rejected {what}: {error.error.error.desc}"
        unsupported = error.error_class == "CommandNotFound" or re.search(
            r"not found|not supported|does not support|Bus .* does not|is not hotpluggable"
            r"|not a valid device|Parameter .* is unexpected",
            error.error.error.desc,
        )
        if unsupported:
            return QmpUnsupported(
                message + f" ({error.error_class})",
                f"this QEMU ({self.config.qemu_binary}) lacks it: list what it has with "
                "`query-commands` or `-device DRIVER,help`, or use a newer QEMU",
            )
        return VMError(message + f" ({error.error_class})", f"QMP socket {self.paths.qmp_socket}")

    def forget_qmp_events(self) -> None:
        self._qmp_connection().forget_events()

    def wait_qmp_event(self, name: str, timeout: float, **match: object) -> dict:
        """Wait for the QMP event `name` (e.g. DEVICE_DELETED, device="balloon0"); a guest
        that hangs meanwhile raises GuestHung (the heartbeat is looked at every
        EVENT_SLICE_SECONDS)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                return self._qmp_connection().wait_event(
                    name, match, max(0.0, min(EVENT_SLICE_SECONDS, left))
                )
            except TimeoutError as error:
                self.check_responsive()
                if time.monotonic() >= deadline:
                    raise VMError(
                        f"no QMP event {name} {match or ''} from VM {self.boot_id} within "
                        f"{timeout:.0f} s",
                        "the guest did not act on the request: look at its console",
                    ) from error

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
        deadline = started + timeout
        while self._watcher.ready_count == boots:
            if self._watcher.fatal.is_set():
                time.sleep(PANIC_GRACE_SECONDS)
                raise self._panic_error()
            self.check_alive()
            if time.monotonic() > deadline:
                raise GuestNotReady(
                    f"guest {self.boot_id} did not boot again within {timeout:.0f} s of "
                    f"system_reset\n--- console (tail) ---\n{self.console_tail()}",
                    f"see {self.paths.console_log}",
                )
            time.sleep(POLL_SECONDS)
        self.qmp_execute("set-action", {"reboot": "shutdown"})
        return time.monotonic() - started

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
