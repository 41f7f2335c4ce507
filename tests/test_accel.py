"""Accelerator choice: remembered answers, explicit requests, and the real KVM probe (which
on this host must fall back to TCG: nested KVM is broken)."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest

from harness.core.errors import VMError
from harness.guest import accel
from harness.guest.accel import ProbeResult, select_accel

NOWHERE = Path("/nonexistent")


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PHH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> ProbeResult:
        raise AssertionError("the KVM probe ran although the answer was known")

    monkeypatch.setattr(accel, "probe_kvm", refuse)


def remember_answer(usable: bool) -> None:
    accel.remember(accel.host_fingerprint(), ProbeResult(usable, "test", "2026-01-01T00:00:00"))


def test_tcg_request_needs_no_probe(private_cache: Path, no_probe: None) -> None:
    assert select_accel("tcg") == "tcg"
    assert not (private_cache / "accel.json").exists()


def test_unknown_request_is_an_error(private_cache: Path) -> None:
    with pytest.raises(VMError, match="hvf"):
        select_accel("hvf")


@pytest.mark.parametrize(("usable", "expected"), [(True, "kvm"), (False, "tcg")])
def test_auto_uses_remembered_answer(
    private_cache: Path, no_probe: None, usable: bool, expected: str
) -> None:
    remember_answer(usable)
    assert select_accel("auto") == expected


def test_explicit_kvm_that_is_unusable_is_an_error(private_cache: Path, no_probe: None) -> None:
    remember_answer(False)
    with pytest.raises(VMError, match="KVM was requested but is unusable") as raised:
        select_accel("kvm")
    assert "tcg" in raised.value.hint


def test_fingerprint_names_kernel_qemu_and_device(tmp_path: Path) -> None:
    fingerprint = accel.host_fingerprint()
    assert fingerprint.startswith(platform.release() + "|QEMU emulator version")
    assert accel.host_fingerprint(kvm_device=tmp_path / "kvm").endswith("kvm=False")


def test_remember_keeps_other_hosts(private_cache: Path) -> None:
    accel.remember("other-host", ProbeResult(True, "elsewhere", "2026-01-01T00:00:00"))
    remember_answer(False)
    entries = json.loads((private_cache / "accel.json").read_text())
    assert entries["other-host"]["kvm_usable"] is True
    assert accel.load_remembered("other-host") == ProbeResult(
        True, "elsewhere", "2026-01-01T00:00:00"
    )


def test_corrupt_cache_file_means_probe_again(private_cache: Path) -> None:
    private_cache.mkdir(parents=True, exist_ok=True)
    (private_cache / "accel.json").write_text("{not json")
    assert accel.load_remembered(accel.host_fingerprint()) is None


def test_probe_without_kvm_device_does_not_boot(tmp_path: Path) -> None:
    result = accel.probe_kvm(kvm_device=tmp_path / "kvm")
    assert not result.kvm_usable and "kvm" in result.reason


# ----------------------------------------------------------------- the real probe


@pytest.mark.real
def test_real_probe_kernel_runs_under_tcg() -> None:
    """The probe program itself works: under TCG it reaches its exit port with the right
    sum (QEMU exit status 85), in well under a second and without any Linux kernel."""
    usable, reason = accel.run_probe("tcg")
    assert usable, reason


def test_probe_that_never_finishes_is_killed(tmp_path: Path) -> None:
    """A vCPU that hangs (a fake QEMU that never exits) means "not usable" at the deadline,
    and the process is gone when run_probe returns."""
    fake = tmp_path / "qemu-that-hangs"
    pidfile = tmp_path / "pid"
    fake.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 60\n")
    fake.chmod(0o755)
    ok, reason = accel.run_probe("kvm", timeout=1.0, qemu_binary=str(fake))
    assert not ok and "did not finish within 1 s under kvm" in reason
    pid = int(pidfile.read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


@pytest.mark.real
def test_real_auto_proves_kvm_by_running_the_probe(private_cache: Path) -> None:
    answer = select_accel("auto")
    remembered = accel.load_remembered(accel.host_fingerprint())
    assert remembered is not None and remembered.kvm_usable == (answer == "kvm")
    if answer == "kvm":
        return
    if Path("/dev/kvm").exists():
        # /dev/kvm present but unusable (this CI host: broken nested KVM): the probe told.
        assert "under kvm" in remembered.reason
    # The remembered answer now makes an explicit KVM request fail clearly, without a probe.
    with pytest.raises(VMError, match="KVM was requested"):
        select_accel("kvm")
