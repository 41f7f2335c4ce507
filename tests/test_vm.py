"""GuestVM: the QEMU command line, launch checks, cleanup on every path (with a fake QEMU),
and real boots of the stock kernel under TCG."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import process_gone

from harness.core import progress
from harness.core.errors import (
    GuestNotReady,
    GuestPanic,
    PortInUse,
    QemuMissing,
    VMError,
    VMLaunchFailure,
)
from harness.guest.cmdline import (
    QemuPaths,
    VMConfig,
    asynchronous_reports,
    build_qemu_command,
    device_properties,
)
from harness.guest.session import Guest
from harness.guest.ssh import RunKey
from harness.guest.vm import (
    CONTROL_BOOT_DIR,
    GuestVM,
    boots_without_reporting,
    process_cpu_seconds,
)
from harness.pipeline import stock_kernel

PATHS = QemuPaths(Path("/w/console.log"), Path("/w/qemu.log"), Path("/w/qmp.sock"))


def kernel_under_test() -> Path:
    return stock_kernel()


def config_for(tmp_path: Path, **overrides: object) -> VMConfig:
    kernel = tmp_path / "bzImage"
    initrd = tmp_path / "initrd.img"
    for path in (kernel, initrd):
        path.touch()
    values: dict[str, object] = {"kernel": kernel, "initrd": initrd, "workdir": tmp_path / "vm"}
    return VMConfig(**{**values, **overrides})  # type: ignore[arg-type]


def option_values(command: list[str], option: str) -> list[str]:
    return [command[i + 1] for i, word in enumerate(command[:-1]) if word == option]


# ----------------------------------------------------------------- command line (pure)


def test_command_line_defaults(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    command = build_qemu_command(config, 2222, "abc123", PATHS)
    assert command[0] == "qemu-system-x86_64"
    assert option_values(command, "-accel") == ["tcg"]
    assert option_values(command, "-m") == ["2048"] and option_values(command, "-smp") == ["1"]
    assert {"-nographic", "-no-reboot"} <= set(command)
    assert option_values(command, "-kernel") == [str(config.kernel)]
    assert option_values(command, "-initrd") == [str(config.initrd)]
    append = option_values(command, "-append")[0].split()
    assert {"console=ttyS0", "panic=-1", "phh.boot=abc123"} <= set(append)
    assert "chardev:console0" in option_values(command, "-serial")
    assert "file,id=console0,path=/w/console.log" in option_values(command, "-chardev")
    assert "socket,id=qmp0,path=/w/qmp.sock,server=on,wait=off" in option_values(
        command, "-chardev"
    )


def test_command_line_network_is_restricted_to_localhost(tmp_path: Path) -> None:
    command = build_qemu_command(config_for(tmp_path), 2222, "id", PATHS)
    (netdev,) = option_values(command, "-netdev")
    assert netdev == "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22"
    assert "virtio-net-pci,netdev=n0" in option_values(command, "-device")


@pytest.mark.parametrize(
    ("reporting", "expected"),
    [(True, "free-page-reporting=on"), (False, "free-page-reporting=off")],
)
def test_command_line_balloon_reporting(tmp_path: Path, reporting: bool, expected: str) -> None:
    config = config_for(tmp_path, free_page_reporting=reporting)
    devices = option_values(build_qemu_command(config, 2222, "id", PATHS), "-device")
    assert f"virtio-balloon-pci,id=balloon0,{expected},bus=hotplug-port" in devices


def test_command_line_balloon_page_poison_off(tmp_path: Path) -> None:
    command = build_qemu_command(config_for(tmp_path, balloon_page_poison=False), 2222, "id", PATHS)
    balloon = [w for w in command if w.startswith("virtio-balloon-pci")]
    assert balloon == [
        "virtio-balloon-pci,id=balloon0,free-page-reporting=on,page-poison=off,bus=hotplug-port"
    ]
    default = build_qemu_command(config_for(tmp_path), 2222, "id", PATHS)
    assert not any("page-poison" in w for w in default)


def balloon_word(config: VMConfig) -> str:
    command = build_qemu_command(config, 2222, "id", PATHS)
    return next(w for w in command if w.startswith("virtio-balloon-pci"))


def test_reports_are_asynchronous_only_with_kvm_and_a_balloon_ioeventfd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With KVM and a QEMU whose virtio-balloon-pci has `ioeventfd`, the harness asks for it:
    QEMU then acts on a report while the guest runs on (a slow host). Under TCG never."""
    monkeypatch.setattr(
        "harness.guest.cmdline.device_properties", lambda qemu, driver: frozenset({"ioeventfd"})
    )
    assert "ioeventfd=on" in balloon_word(config_for(tmp_path, accel="kvm"))
    assert "ioeventfd" not in balloon_word(config_for(tmp_path, accel="tcg"))
    monkeypatch.setattr("harness.guest.cmdline.device_properties", lambda qemu, driver: frozenset())
    assert "ioeventfd" not in balloon_word(config_for(tmp_path, accel="kvm"))


@pytest.mark.real
def test_this_qemu_handles_balloon_reports_inside_the_notification() -> None:
    """The real QEMU: its virtio-pci devices can have an ioeventfd (virtio-net-pci lists
    one), its virtio-balloon-pci cannot (QEMU 7.2), so reports are synchronous here with
    TCG and with KVM alike (patches/hinting-v2/NOTES.md)."""
    device_properties.cache_clear()
    balloon = device_properties("qemu-system-x86_64", "virtio-balloon-pci")
    assert "free-page-reporting" in balloon  # the probe reads QEMU's listing
    assert "ioeventfd" in device_properties("qemu-system-x86_64", "virtio-net-pci")
    assert asynchronous_reports("tcg") is False
    assert asynchronous_reports("kvm") is ("ioeventfd" in balloon)


def test_command_line_without_balloon(tmp_path: Path) -> None:
    config = config_for(tmp_path, balloon=False)
    command = build_qemu_command(config, 2222, "id", PATHS)
    assert not any("balloon" in word for word in command)


def test_command_line_options(tmp_path: Path) -> None:
    config = config_for(
        tmp_path, memory_mib=512, smp=2, accel="kvm", extra_cmdline="quiet  rdinit=/bin/sh"
    )
    command = build_qemu_command(config, 1234, "id", PATHS)
    assert option_values(command, "-m") == ["512"] and option_values(command, "-smp") == ["2"]
    assert option_values(command, "-accel") == ["kvm"]
    assert option_values(command, "-cpu") == ["host"]
    append = option_values(command, "-append")[0]
    assert "quiet rdinit=/bin/sh" in append and append.endswith("phh.boot=id")


def test_command_line_escapes_commas_in_paths(tmp_path: Path) -> None:
    paths = QemuPaths(Path("/w,x/console.log"), Path("/w/qemu.log"), Path("/w,x/qmp.sock"))
    command = build_qemu_command(config_for(tmp_path), 2222, "id", paths)
    assert "file,id=console0,path=/w,,x/console.log" in option_values(command, "-chardev")


def test_unknown_accelerator_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="hvf"):
        build_qemu_command(config_for(tmp_path, accel="hvf"), 2222, "id", PATHS)


# ----------------------------------------------------------------- launch checks


def test_port_in_use_is_refused_before_qemu_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        vm = GuestVM(config_for(tmp_path, ssh_port=port))
        with pytest.raises(PortInUse, match=str(port)):
            vm.start()
    assert not vm.is_running() and vm.command == []


def test_missing_qemu_binary(tmp_path: Path) -> None:
    vm = GuestVM(config_for(tmp_path, qemu_binary="/nonexistent/qemu-system-x86_64"))
    with pytest.raises(QemuMissing) as raised:
        vm.start()
    assert "/nonexistent/qemu-system-x86_64" in raised.value.message
    assert "apt-get install qemu-system-x86" in raised.value.hint


def test_missing_kernel(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    config.kernel = tmp_path / "no-such-bzImage"
    with pytest.raises(VMLaunchFailure, match="no-such-bzImage"):
        GuestVM(config).start()


def test_long_workdir_keeps_qmp_socket_short(tmp_path: Path) -> None:
    config = config_for(tmp_path, workdir=tmp_path / ("d" * 120))
    vm = GuestVM(config)
    assert len(str(vm.paths.qmp_socket)) < 100
    vm.close()
    assert not vm.paths.qmp_socket.parent.exists()


# ----------------------------------------------------------------- lifecycle with a fake QEMU

FAKE_QEMU = """\
#!{python}
# Stand-in for qemu-system-x86_64: writes to the console file like a guest would.
import os, sys, time
args = sys.argv[1:]
console = next(a for a in args if a.startswith("file,id=console0,path=")).split("path=")[1]
boot_id = args[args.index("-append") + 1].split("phh.boot=")[1]
mode = os.environ["FAKE_QEMU_MODE"]
with open(console, "a") as out:
    out.write("[    0.000000] Linux version 6.1 (fake)\\n")
    out.flush()
    if mode == "ready":
        out.write(f"PHH-READY {{boot_id}}\\n")
    elif mode == "bug-then-ready":
        out.write("BUG: unable to handle page fault for address: 0000000000000008\\n")
        out.write(f"PHH-READY {{boot_id}}\\n")
    elif mode == "ready-then-oops":
        out.write(f"PHH-READY {{boot_id}}\\n")
        out.write("Oops: 0002 [#1] SMP\\n")
    elif mode.startswith("panic"):
        out.write("Kernel panic - not syncing: Attempted to kill init!\\n")
    elif mode == "exit":
        print("qemu: could not load kernel (fake)", file=sys.stderr)
        sys.exit(3)
    out.flush()
if mode == "panic-exit":
    sys.exit(0)
while True:
    time.sleep(1)
"""


@pytest.fixture
def fake_qemu(tmp_path: Path) -> Path:
    script = tmp_path / "fake-qemu"
    script.write_text(FAKE_QEMU.format(python=sys.executable))
    script.chmod(0o755)
    return script


def fake_config(tmp_path: Path, fake_qemu: Path, **overrides: object) -> VMConfig:
    return config_for(tmp_path, qemu_binary=str(fake_qemu), shutdown_timeout=1.0, **overrides)


def test_fake_ready_then_exception_kills_qemu(
    tmp_path: Path, fake_qemu: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_QEMU_MODE", "ready")
    pid = None
    with pytest.raises(RuntimeError, match="boom"), GuestVM(fake_config(tmp_path, fake_qemu)) as vm:
        pid = vm.pid
        assert vm.is_running() and vm.boot_seconds is not None
        assert f"PHH-READY {vm.boot_id}" in vm.console_text()
        raise RuntimeError("boom")
    assert pid is not None and process_gone(pid)


def test_fake_keyboard_interrupt_kills_qemu(
    tmp_path: Path, fake_qemu: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_QEMU_MODE", "ready")
    pid = None
    with pytest.raises(KeyboardInterrupt), GuestVM(fake_config(tmp_path, fake_qemu)) as vm:
        pid = vm.pid
        raise KeyboardInterrupt
    assert pid is not None and process_gone(pid)


def test_fake_forgotten_vm_is_killed_by_finalizer(
    tmp_path: Path, fake_qemu: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_QEMU_MODE", "ready")
    vm = GuestVM(fake_config(tmp_path, fake_qemu))
    vm.start()
    pid = vm.pid
    assert vm._finalizer is not None
    vm._finalizer()  # what garbage collection or interpreter exit would run
    assert process_gone(pid)
    vm.close()


@pytest.mark.parametrize("mode", ["panic", "panic-exit"])
def test_fake_panic_raises_guest_panic(
    tmp_path: Path, fake_qemu: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setenv("FAKE_QEMU_MODE", mode)
    vm = GuestVM(fake_config(tmp_path, fake_qemu))
    with pytest.raises(GuestPanic, match="Attempted to kill init"):
        vm.start()
    assert not vm.is_running()


def test_fake_bug_before_ready_is_a_panic(
    tmp_path: Path, fake_qemu: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_QEMU_MODE", "bug-then-ready")
    vm = GuestVM(fake_config(tmp_path, fake_qemu))
    with pytest.raises(GuestPanic, match="unable to handle page fault"):
        vm.start()
    assert not vm.is_running()


def test_fake_oops_after_ready_is_reported(
    tmp_path: Path, fake_qemu: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_QEMU_MODE", "ready-then-oops")
    with GuestVM(fake_config(tmp_path, fake_qemu)) as vm:
        deadline = time.monotonic() + 10
        while vm.console_problem() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert vm.console_problem() == "Oops: 0002 [#1] SMP"


def test_fake_silent_guest_raises_not_ready(
    tmp_path: Path, fake_qemu: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_QEMU_MODE", "silent")
    vm = GuestVM(fake_config(tmp_path, fake_qemu, boot_timeout=1.0))
    with pytest.raises(GuestNotReady, match="Linux version"):
        vm.start()
    assert not vm.is_running()


def test_fake_qemu_exit_raises_launch_failure(
    tmp_path: Path, fake_qemu: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_QEMU_MODE", "exit")
    with pytest.raises(VMLaunchFailure) as raised:
        GuestVM(fake_config(tmp_path, fake_qemu)).start()
    text = raised.value.message
    assert "status 3" in text and "could not load kernel (fake)" in text
    assert str(fake_qemu) in text  # the command line


# ----------------------------------------------------------------- real QEMU + stock kernel


def real_config(tmp_path: Path, initrd: Path, **overrides: object) -> VMConfig:
    kernel = kernel_under_test()
    assert kernel.is_file(), f"test kernel {kernel} missing: set PHH_TEST_KERNEL"
    values: dict[str, object] = {"kernel": kernel, "initrd": initrd, "workdir": tmp_path / "vm"}
    return VMConfig(**{**values, **overrides})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def booted_vm(
    tmp_path_factory: pytest.TempPathFactory, run_initrd: Path, run_key: RunKey
) -> Iterator[Guest]:
    config = real_config(tmp_path_factory.mktemp("booted"), run_initrd)
    with Guest(GuestVM(config), run_key.private) as vm:
        yield vm
    assert not vm.is_running()


@pytest.mark.real
def test_real_boot_to_ssh_and_zoneinfo(booted_vm: Guest) -> None:
    print(
        f"boot-to-ready {booted_vm.boot_seconds:.1f} s, boot-to-ssh {booted_vm.ssh_seconds:.1f} s"
    )
    zoneinfo = booted_vm.ssh.check("cat /proc/zoneinfo").stdout
    assert "zone   Normal" in zoneinfo or "zone    DMA32" in zoneinfo
    assert "pages free" in zoneinfo
    assert f"PHH-READY {booted_vm.boot_id}" in booted_vm.console_text()


@pytest.mark.real
def test_real_guest_mounts_and_network(booted_vm: Guest) -> None:
    mounts = booted_vm.ssh.check("cat /proc/mounts").stdout
    for mountpoint in ("/proc", "/sys", "/dev", "/dev/pts", "/tmp", "/run", "/sys/kernel/debug"):
        assert f" {mountpoint} " in mounts, mountpoint
    assert "10.0.2.15/24" in booted_vm.ssh.check("ip addr show eth0").stdout


@pytest.mark.real
def test_real_qmp_query_balloon(booted_vm: Guest) -> None:
    balloon = booted_vm.qmp_execute("query-balloon")
    assert balloon["actual"] == booted_vm.config.memory_mib << 20


@pytest.mark.real
def test_real_qemu_pid_is_the_qemu_process(booted_vm: Guest) -> None:
    cmdline = Path(f"/proc/{booted_vm.pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[0].endswith(b"qemu-system-x86_64")
    assert f"phh.boot={booted_vm.boot_id}".encode() in b" ".join(cmdline)


@pytest.mark.real
def test_real_guest_cpu_is_counted_when_the_guest_stops(
    tmp_path: Path, run_initrd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "_spent", progress.defaultdict(float))
    with GuestVM(real_config(tmp_path, run_initrd, memory_mib=512)) as vm:
        user, system = process_cpu_seconds(vm.pid) or (0.0, 0.0)
        assert user > 0.3  # booting under TCG alone takes over a second of QEMU CPU
    spent = progress.time_spent()
    assert spent["guests"] == 1
    assert spent["qemu_user"] >= user and spent["qemu_system"] >= system
    assert process_cpu_seconds(vm.pid) is None  # gone


@pytest.mark.real
def test_real_boot_without_balloon(tmp_path: Path, run_initrd: Path) -> None:
    config = real_config(tmp_path, run_initrd, balloon=False, memory_mib=512)
    with GuestVM(config) as vm:
        with pytest.raises(VMError, match="query-balloon") as raised:
            vm.qmp_execute("query-balloon")
        assert "No balloon device" in raised.value.message
        pid = vm.pid
    assert process_gone(pid)


@pytest.mark.real
def test_real_panic_at_boot(tmp_path: Path, run_initrd: Path) -> None:
    config = real_config(tmp_path, run_initrd, extra_cmdline="rdinit=/bin/false", memory_mib=512)
    vm = GuestVM(config)
    with pytest.raises(GuestPanic, match="Attempted to kill init"):
        vm.start()
    assert vm._process is not None and process_gone(vm._process.pid)


@pytest.mark.real
def test_real_panic_carries_what_a_control_boot_needs(tmp_path: Path, run_initrd: Path) -> None:
    """The control boot of kernel_text_intact: the same kernel with the balloon taking no
    hints. A kernel that boots gives True; one that crashes either way (no init) False."""
    config = real_config(tmp_path, run_initrd, extra_cmdline="rdinit=/bin/false", memory_mib=512)
    with pytest.raises(GuestPanic) as raised:
        GuestVM(config).start()
    assert raised.value.vm_config == config and raised.value.console_log is not None
    assert "Attempted to kill init" in raised.value.console_log.read_text()
    assert boots_without_reporting(config) is False
    assert boots_without_reporting(real_config(tmp_path, run_initrd, memory_mib=512)) is True
    control_console = tmp_path / "vm" / CONTROL_BOOT_DIR / "console.log"
    assert "PHH-READY" in control_console.read_text()


@pytest.mark.real
def test_real_guest_never_ready(tmp_path: Path, run_initrd: Path) -> None:
    config = real_config(
        tmp_path, run_initrd, extra_cmdline="rdinit=/bin/sh", memory_mib=512, boot_timeout=8.0
    )
    vm = GuestVM(config)
    started = time.monotonic()
    with pytest.raises(GuestNotReady, match="PHH-READY"):
        vm.start()
    assert vm._process is not None and process_gone(vm._process.pid)
    assert time.monotonic() - started < 60


@pytest.mark.real
def test_real_guest_cannot_reach_the_host(booted_vm: Guest) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        # 10.0.2.2 is the host as seen from QEMU user networking; restrict=on must block it.
        result = booted_vm.ssh.run(f"echo hi | timeout 5 nc 10.0.2.2 {port}", timeout=30)
        with pytest.raises(TimeoutError):
            listener.accept()
    assert result.exit_status != 0
