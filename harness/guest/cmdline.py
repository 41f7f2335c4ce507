"""The QEMU command line of a guest: machine, accelerator, memory (with hotplug slots),
kernel and initramfs, console and QMP sockets, user networking, the balloon.

Pure but for asking the QEMU binary what it has (`qemu_binary_version`, `device_properties`,
both cached). The network is QEMU user networking with `restrict=on` (the guest reaches
nothing) and one forward, from 127.0.0.1 only, to the guest's SSH port.
"""

from __future__ import annotations

import functools
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.guest.hang import HANG_SECONDS

QEMU_BINARY = "qemu-system-x86_64"
GUEST_SSH_PORT = 22
FORWARD_HOST = "127.0.0.1"  # the only address the SSH forward listens on
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


def network_args(ssh_port: int) -> list[str]:
    """User networking that reaches nothing (restrict=on), with one way in: host
    FORWARD_HOST:ssh_port to the guest's SSH. Never another address: the guest's SSH
    takes root with the run's key, which must not be offered to the network."""
    forward = f"tcp:{FORWARD_HOST}:{ssh_port}-:{GUEST_SSH_PORT}"
    return [
        "-netdev", f"user,id=n0,restrict=on,hostfwd={forward}",
        "-device", "virtio-net-pci,netdev=n0",
    ]  # fmt: skip


def build_qemu_command(
    config: VMConfig, ssh_port: int, boot_id: str, paths: QemuPaths
) -> list[str]:
    """The complete QEMU command line (pure: no I/O)."""
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
        *network_args(ssh_port),
        *balloon_args(config),
    ]  # fmt: skip
