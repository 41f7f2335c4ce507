"""Choose the QEMU accelerator: KVM only if a vCPU under KVM proves that it runs guest code.

/dev/kvm existing is not enough: with broken nested virtualisation QEMU aborts setting up
the vCPU ("failed to set MSR"), dies with "emulation failure" or hangs burning CPU. So
"auto" runs the probe kernel of images/kvm-probe/ (a multiboot program of a few
instructions: paging on, a loop, the result to QEMU's isa-debug-exit port) under KVM with
a short deadline, and remembers the answer in cache_root()/accel.json, keyed by what could
change it (host kernel release, QEMU version, /dev/kvm presence). It needs no Linux kernel,
so it is answered once per session before any revision is built. Anything short of the
probe's exit status means TCG.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from harness.core.errors import VMError
from harness.core.fsutil import atomic_directory
from harness.core.paths import IMAGES_DIR, cache_dir, cache_root
from harness.core.progress import step
from harness.core.tools import run_logged, tool_failure
from harness.guest.cmdline import QEMU_BINARY, accel_args
from harness.guest.vm import exit_description

log = logging.getLogger("harness")

ACCEL_CACHE_NAME = "accel.json"
KVM_DEVICE = Path("/dev/kvm")
PROBE_TIMEOUT_SECONDS = 10.0  # the probe runs in well under a second when the vCPU works
PROBE_MEMORY_MIB = 64
PROBE_DIR = IMAGES_DIR / "kvm-probe"
PROBE_SOURCES = (PROBE_DIR / "probe.S", PROBE_DIR / "probe.ld")
# isa-debug-exit: QEMU exits with (value << 1) | 1; probe.S writes 0x2a when its sum is right.
PROBE_EXIT_OK = (0x2A << 1) | 1
PROBE_EXIT_WRONG_SUM = (0x15 << 1) | 1
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


def probe_kernel() -> Path:
    """images/kvm-probe/ assembled and linked (cached by the sources' content)."""
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in PROBE_SOURCES)).hexdigest()
    final = cache_dir("kvm-probe") / digest[:16]
    elf = final / "probe.elf"
    if elf.is_file():
        return elf
    source, script = PROBE_SOURCES
    with atomic_directory(final, replace=False) as staging:
        log = staging / "build.log"
        for what, command in (
            ("assembling", ["gcc", "-m32", "-c", "-o", "probe.o", str(source)]),
            ("linking", ["ld", "-m", "elf_i386", "-n", "--no-warn-rwx-segments",
                         "-T", str(script), "-o", "probe.elf", "probe.o"]),
        ):  # fmt: skip
            result = run_logged(command, log, cwd=staging)
            if result.returncode != 0:
                raise tool_failure(
                    VMError, f"{what} the KVM probe {source}", result, log, staging,
                    "install gcc and binutils (scripts/setup.sh), or pass --accel tcg",
                )  # fmt: skip
        (staging / "probe.o").unlink()
    return elf


def probe_command(kernel: Path, accel: str, qemu_binary: str = QEMU_BINARY) -> list[str]:
    return [
        qemu_binary, "-machine", "q35", *accel_args(accel), "-m", str(PROBE_MEMORY_MIB),
        "-nographic", "-nodefaults", "-no-user-config", "-no-reboot",
        "-kernel", str(kernel), "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
    ]  # fmt: skip


def run_probe(
    accel: str, timeout: float = PROBE_TIMEOUT_SECONDS, qemu_binary: str = QEMU_BINARY
) -> tuple[bool, str]:
    """Run the probe kernel under `accel`: (ran correctly, what happened)."""
    command = probe_command(probe_kernel(), accel, qemu_binary)
    try:
        with step(f"probing {accel.upper()} with the probe kernel", phase="probe"):
            # On the deadline subprocess.run kills QEMU and reaps it.
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"the probe kernel did not finish within {timeout:.0f} s under {accel}"
    except FileNotFoundError:
        return False, f"QEMU binary {qemu_binary!r} not found"
    said = " / ".join(done.stderr.strip().splitlines()[-2:])
    if done.returncode == PROBE_EXIT_OK:
        return True, f"the probe kernel ran under {accel}"
    if done.returncode == PROBE_EXIT_WRONG_SUM:
        return False, f"the probe kernel computed a wrong result under {accel}"
    what = f"QEMU {exit_description(done.returncode)} under {accel}"
    return False, what + (f" ({said})" if said else "")


def probe_kvm(
    timeout: float = PROBE_TIMEOUT_SECONDS,
    qemu_binary: str = QEMU_BINARY,
    kvm_device: Path = KVM_DEVICE,
) -> ProbeResult:
    """Run the probe kernel under KVM (its QEMU is always gone when this returns)."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    if not _kvm_accessible(kvm_device):
        return ProbeResult(False, f"{kvm_device} is missing or not read/writable", now)
    usable, reason = run_probe("kvm", timeout, qemu_binary)
    return ProbeResult(usable, reason, now)


def select_accel(
    requested: str = "auto",
    *,
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
        result = probe_kvm(probe_timeout, qemu_binary)
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
