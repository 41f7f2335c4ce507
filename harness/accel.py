"""Choose the QEMU accelerator: KVM only if a real guest boot under KVM proves it works.

/dev/kvm existing is not enough: with broken nested virtualisation `-cpu host` dies with
"emulation failure" and other CPU models hang burning CPU. So "auto" boots the guest under
KVM with a short deadline, waits for the ready marker, kills the probe and remembers the
answer in cache_root()/accel.json, keyed by what could change it (host kernel release, QEMU
version, /dev/kvm presence). Anything short of a clean boot means TCG.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from harness.errors import VMError
from harness.paths import cache_root
from harness.progress import step
from harness.vm import QEMU_BINARY, GuestVM, VMConfig

log = logging.getLogger("harness")

ACCEL_CACHE_NAME = "accel.json"
KVM_DEVICE = Path("/dev/kvm")
PROBE_TIMEOUT_SECONDS = 20.0
PROBE_MEMORY_MIB = 256
CHOICES = ("auto", "kvm", "tcg")


@dataclass(frozen=True)
class ProbeResult:
    kvm_usable: bool
    reason: str
    probed_at: str


def host_fingerprint(qemu_binary: str = QEMU_BINARY, kvm_device: Path = KVM_DEVICE) -> str:
    """What the KVM answer depends on: host kernel, QEMU version, /dev/kvm usability."""
    try:
        version_output = subprocess.run(
            [qemu_binary, "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (FileNotFoundError, subprocess.TimeoutExpired):
        version_output = "missing"
    version = version_output.splitlines()[0] if version_output else "unknown"
    return f"{platform.release()}|{version}|kvm={_kvm_accessible(kvm_device)}"


def _kvm_accessible(kvm_device: Path) -> bool:
    return kvm_device.exists() and os.access(kvm_device, os.R_OK | os.W_OK)


def _cache_file() -> Path:
    return cache_root() / ACCEL_CACHE_NAME


def load_remembered(fingerprint: str) -> ProbeResult | None:
    try:
        entry = json.loads(_cache_file().read_text()).get(fingerprint)
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        return None
    if not isinstance(entry, dict):
        return None
    try:
        return ProbeResult(**entry)
    except TypeError:
        return None


def remember(fingerprint: str, result: ProbeResult) -> None:
    """Add the answer to accel.json (atomic rewrite: temp file + rename)."""
    path = _cache_file()
    try:
        entries = json.loads(path.read_text())
        if not isinstance(entries, dict):
            entries = {}
    except (FileNotFoundError, json.JSONDecodeError):
        entries = {}
    entries[fingerprint] = asdict(result)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as tmp:
        json.dump(entries, tmp, indent=2, sort_keys=True)
    Path(tmp.name).replace(path)


def probe_kvm(
    kernel: Path,
    initrd: Path,
    timeout: float = PROBE_TIMEOUT_SECONDS,
    qemu_binary: str = QEMU_BINARY,
    kvm_device: Path = KVM_DEVICE,
) -> ProbeResult:
    """Boot the guest under KVM until its ready marker; the probe VM is always killed."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    if not _kvm_accessible(kvm_device):
        return ProbeResult(False, f"{kvm_device} is missing or not read/writable", now)
    with tempfile.TemporaryDirectory(prefix="phh-kvm-probe-") as workdir:
        config = VMConfig(
            kernel=kernel,
            initrd=initrd,
            workdir=Path(workdir),
            accel="kvm",
            memory_mib=PROBE_MEMORY_MIB,
            balloon=False,
            boot_timeout=timeout,
            qemu_binary=qemu_binary,
            shutdown_timeout=2.0,
            timing_phase="",  # the whole probe counts as "probe"
        )
        vm = GuestVM(config)
        try:
            with step("probing KVM by booting the guest", phase="probe"), vm:
                seconds = vm.boot_seconds or 0.0
        except VMError as error:
            said = " / ".join(vm.qemu_output().strip().splitlines()[-2:])
            first_line = str(error).splitlines()[0]
            reason = f"guest did not boot under KVM: {first_line}" + (f" ({said})" if said else "")
            return ProbeResult(False, reason, now)
    return ProbeResult(True, f"guest booted under KVM in {seconds:.1f} s", now)


def select_accel(
    requested: str = "auto",
    *,
    kernel: Path,
    initrd: Path,
    probe_timeout: float = PROBE_TIMEOUT_SECONDS,
    qemu_binary: str = QEMU_BINARY,
) -> str:
    """Return "kvm" or "tcg" for `requested` in auto|kvm|tcg.

    Explicit "kvm" that cannot work raises VMError instead of falling back.
    """
    if requested not in CHOICES:
        raise VMError(f"unknown accelerator {requested!r}", f"use one of {', '.join(CHOICES)}")
    if requested == "tcg":
        return "tcg"
    fingerprint = host_fingerprint(qemu_binary)
    result = load_remembered(fingerprint)
    if result is None:
        result = probe_kvm(kernel, initrd, probe_timeout, qemu_binary)
        remember(fingerprint, result)
    if result.kvm_usable:
        return "kvm"
    if requested == "kvm":
        raise VMError(
            f"KVM was requested but is unusable on this host: {result.reason}",
            f"use accel 'tcg' or 'auto' (answer remembered in {_cache_file()}; delete it to "
            "probe again)",
        )
    log.info("KVM unusable (%s): using TCG", result.reason)
    return "tcg"
