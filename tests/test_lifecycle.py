"""QMP-driven lifecycle events against a real QEMU and the stock kernel: balloon unplug and
plug, balloon target, memory hotplug, reset, QEMU killed from outside (also under
`python3 -m harness boot`), and clear errors for what this QEMU or machine cannot do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import process_gone

from harness.core.errors import QemuDied, QmpUnsupported, SSHError
from harness.core.paths import REPO_ROOT
from harness.core.poll import poll_until
from harness.drive.lifecycle import (
    add_dimm,
    balloon_actual_mib,
    plug_balloon,
    set_balloon_target,
    unplug_balloon,
)
from harness.drive.workloads import read_meminfo
from harness.guest.cmdline import BALLOON_PORT, QemuPaths, VMConfig, build_qemu_command
from harness.guest.session import Guest
from harness.guest.ssh import RunKey
from harness.guest.vm import GuestVM, exit_description
from harness.pipeline import stock_kernel

MEM_MIB = 512


# ----------------------------------------------------------------- pure


def test_exit_description_names_the_signal() -> None:
    assert exit_description(-9) == "killed by signal SIGKILL (9)"
    assert exit_description(-15) == "killed by signal SIGTERM (15)"
    assert exit_description(1) == "exited with status 1"


def test_command_line_puts_the_balloon_on_a_hotpluggable_port(tmp_path: Path) -> None:
    config = VMConfig(kernel=tmp_path / "k", initrd=tmp_path / "i", workdir=tmp_path)
    command = build_qemu_command(config, 2222, "id", config_paths(tmp_path))
    devices = [command[i + 1] for i, w in enumerate(command[:-1]) if w == "-device"]
    assert f"pcie-root-port,id={BALLOON_PORT},bus=pcie.0,chassis=1" in devices
    assert any(d.startswith("virtio-balloon-pci") and f"bus={BALLOON_PORT}" in d for d in devices)


def test_command_line_memory_hotplug_slots(tmp_path: Path) -> None:
    config = VMConfig(
        kernel=tmp_path / "k", initrd=tmp_path / "i", workdir=tmp_path, hotplug_mib=512
    )
    command = build_qemu_command(config, 2222, "id", config_paths(tmp_path))
    assert command[command.index("-m") + 1] == "2048,slots=2,maxmem=2560M"


def config_paths(tmp_path: Path) -> QemuPaths:
    return QemuPaths(tmp_path / "c.log", tmp_path / "q.log", tmp_path / "qmp.sock")


# ----------------------------------------------------------------- real QEMU + stock kernel


def real_vm(workdir: Path, initrd: Path, key: RunKey, **overrides: object) -> Guest:
    values: dict[str, object] = {
        "kernel": stock_kernel(),
        "initrd": initrd,
        "workdir": workdir,
        "memory_mib": MEM_MIB,
    }
    return Guest(GuestVM(VMConfig(**{**values, **overrides})), key.private)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def hotplug_vm(
    tmp_path_factory: pytest.TempPathFactory, run_initrd: Path, run_key: RunKey
) -> Iterator[Guest]:
    vm = real_vm(tmp_path_factory.mktemp("hotplug"), run_initrd, run_key, hotplug_mib=256)
    with vm:
        yield vm
    assert process_gone(vm.pid)


def guest_has_balloon(vm: Guest) -> bool:
    # virtio id 5 is the balloon
    out = vm.ssh.run("grep -l 0x0005 /sys/bus/virtio/devices/*/device").stdout
    return bool(out.strip())


@pytest.mark.real
def test_real_balloon_unplug_and_plug(hotplug_vm: Guest) -> None:
    assert guest_has_balloon(hotplug_vm)
    seconds = unplug_balloon(hotplug_vm)
    print(f"DEVICE_DELETED {seconds:.2f} s after device_del")
    assert not guest_has_balloon(hotplug_vm)
    assert hotplug_vm.ssh.check("echo alive").stdout.strip() == "alive"
    plug_balloon(hotplug_vm)
    _, bound = poll_until(lambda: guest_has_balloon(hotplug_vm), bool, timeout=30)
    assert bound, "the guest did not bind the re-plugged balloon within 30 s"
    assert balloon_actual_mib(hotplug_vm) == MEM_MIB


@pytest.mark.real
def test_real_balloon_target(hotplug_vm: Guest) -> None:
    def mem_total() -> int:
        return read_meminfo(hotplug_vm)["MemTotal"]

    before = mem_total()
    inflated = set_balloon_target(hotplug_vm, MEM_MIB - 128)
    assert inflated.reached, inflated
    assert before - mem_total() == 128 * 1024
    deflated = set_balloon_target(hotplug_vm, MEM_MIB)
    assert deflated.reached, deflated
    assert mem_total() == before


@pytest.mark.real
def test_real_memory_hotplug(hotplug_vm: Guest) -> None:
    before = read_meminfo(hotplug_vm)["MemTotal"]
    add_dimm(hotplug_vm, 256)
    now, online = poll_until(
        lambda: read_meminfo(hotplug_vm)["MemTotal"],
        lambda total: total - before == 256 * 1024,
        timeout=30,
    )
    assert online, f"MemTotal {before} -> {now} KiB: the DIMM is not online after 30 s"
    online = hotplug_vm.ssh.check("cat /sys/devices/system/memory/memory*/state").stdout
    assert online.split().count("online") >= (MEM_MIB + 256) // 128


@pytest.mark.real
def test_real_unsupported_qmp_is_named_with_the_qemu_version(hotplug_vm: Guest) -> None:
    with pytest.raises(QmpUnsupported, match=r"QEMU \d+\.\d+.*no-such-command") as raised:
        hotplug_vm.qmp_execute("no-such-command")
    assert "CommandNotFound" in raised.value.message
    with pytest.raises(QmpUnsupported, match="no-such-property") as raised:
        hotplug_vm.qmp_execute(
            "device_add", {"driver": "virtio-balloon-pci", "id": "b9", "no-such-property": 1}
        )
    assert "QEMU" in raised.value.message
    # the VM is still usable after the refusals
    assert hotplug_vm.ssh.check("echo ok").stdout.strip() == "ok"


@pytest.mark.real
def test_real_reset_boots_again(hotplug_vm: Guest) -> None:
    boot_id = hotplug_vm.ssh.check("cat /proc/sys/kernel/random/boot_id").stdout
    seconds = hotplug_vm.reset()
    print(f"system_reset to SSH in {seconds:.1f} s")
    assert hotplug_vm.ssh.check("cat /proc/sys/kernel/random/boot_id").stdout != boot_id
    assert hotplug_vm.console_text().count(f"PHH-READY {hotplug_vm.boot_id}") == 2
    # the reboot action is back to "shutdown": a guest panic still ends the run
    assert hotplug_vm.is_running()


@pytest.mark.real
def test_real_hotplug_on_a_machine_without_a_slot_is_refused(
    tmp_path: Path, run_initrd: Path, run_key: RunKey
) -> None:
    vm = real_vm(tmp_path, run_initrd, run_key, machine="pc")
    with vm:
        with pytest.raises(QmpUnsupported, match=r"machine 'pc'.*QEMU \d"):
            unplug_balloon(vm)
        with pytest.raises(QmpUnsupported, match="without hotplug memory slots"):
            add_dimm(vm, 128)
    assert process_gone(vm.pid)


@pytest.mark.real
def test_real_qemu_killed_mid_command_is_named(
    tmp_path: Path, run_initrd: Path, run_key: RunKey
) -> None:
    """SIGKILL from outside while a guest command runs: the error names the signal and
    shows the console; the evidence stays; the next VM boots normally."""
    vm = real_vm(tmp_path / "killed", run_initrd, run_key)
    with vm:
        pid = vm.pid
        killer = subprocess.Popen(["sh", "-c", f"sleep 1; kill -KILL {pid}"])
        with pytest.raises(QemuDied) as raised:
            vm.ssh.run("sleep 30", timeout=60)
        killer.wait()
        message = str(raised.value)
        assert "killed by signal SIGKILL (9)" in message
        assert "console (tail)" in message and f"PHH-READY {vm.boot_id}" in message
        with pytest.raises(QemuDied):
            vm.qmp_execute("query-status")
        with pytest.raises((QemuDied, SSHError)):
            vm.ssh.check("true")
    assert vm.paths.console_log.is_file()
    assert process_gone(pid)
    with real_vm(tmp_path / "next", run_initrd, run_key) as again:
        assert again.ssh.check("echo next").stdout.strip() == "next"


@pytest.mark.real
def test_real_boot_command_exits_when_its_qemu_dies() -> None:
    """`python3 -m harness boot --qmp`: prints the QMP socket; when its QEMU is killed it
    says so within seconds and exits non-zero (it used to wait for Ctrl-C and exit 0)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    boot = subprocess.Popen(
        [sys.executable, "-m", "harness", "boot", "--revision", "stock", "--qmp",
         "--guest-mem", str(MEM_MIB)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        lines = []
        assert boot.stdout is not None
        for line in boot.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C"):
                break
        text = "".join(lines)
        assert "QMP socket" in text, text
        socket_path = text.split("QMP socket (one client at a time): ")[1].split()[0]
        assert Path(socket_path).exists()
        pid = int(text.split("QEMU pid ")[1].split(",")[0])
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        _, stderr = boot.communicate(timeout=30)
        noticed = time.monotonic() - killed
    finally:
        if boot.poll() is None:
            boot.kill()
            boot.wait()
    print(f"boot noticed the dead QEMU after {noticed:.2f} s")
    assert boot.returncode == 1
    assert "killed by signal SIGKILL" in stderr
    assert noticed < 5


def test_dropped_link_waits_for_the_dying_qemu(tmp_path: Path) -> None:
    """The kernel closes a dying QEMU's sockets before the process can be reaped: a caller
    that saw its connection drop gives QEMU a grace period, so the error is QemuDied (seen in
    CI as a bare "connection dropped" once). Without the grace the same moment is no error."""
    vm = GuestVM(VMConfig(kernel=tmp_path / "k", initrd=tmp_path / "i", workdir=tmp_path))
    vm._process = subprocess.Popen(["sh", "-c", "sleep 0.3; kill -KILL $$"])
    try:
        vm.check_alive()  # still running: nothing to say
        with pytest.raises(QemuDied, match=r"killed by signal SIGKILL"):
            vm.check_alive(grace=5.0)
    finally:
        vm._process.kill()
        vm._process.wait()
