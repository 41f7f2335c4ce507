"""Accelerator choice: remembered answers, explicit requests, and the real KVM probe (which
on this host must fall back to TCG: nested KVM is broken)."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest

from harness import accel, image
from harness.accel import ProbeResult, select_accel
from harness.errors import VMError
from harness.pipeline import stock_kernel

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
    assert select_accel("tcg", kernel=NOWHERE, initrd=NOWHERE) == "tcg"
    assert not (private_cache / "accel.json").exists()


def test_unknown_request_is_an_error(private_cache: Path) -> None:
    with pytest.raises(VMError, match="hvf"):
        select_accel("hvf", kernel=NOWHERE, initrd=NOWHERE)


@pytest.mark.parametrize(("usable", "expected"), [(True, "kvm"), (False, "tcg")])
def test_auto_uses_remembered_answer(
    private_cache: Path, no_probe: None, usable: bool, expected: str
) -> None:
    remember_answer(usable)
    assert select_accel("auto", kernel=NOWHERE, initrd=NOWHERE) == expected


def test_explicit_kvm_that_is_unusable_is_an_error(private_cache: Path, no_probe: None) -> None:
    remember_answer(False)
    with pytest.raises(VMError, match="KVM was requested but is unusable") as raised:
        select_accel("kvm", kernel=NOWHERE, initrd=NOWHERE)
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
    result = accel.probe_kvm(NOWHERE, NOWHERE, kvm_device=tmp_path / "kvm")
    assert not result.kvm_usable and "kvm" in result.reason


# ----------------------------------------------------------------- the real probe


@pytest.fixture(scope="session")
def guest_files() -> tuple[Path, Path]:
    """Kernel and initramfs from the real caches (session scope: resolved before a test's
    private_cache fixture redirects PHH_CACHE, so nothing is built twice)."""
    return stock_kernel(), image.build_image().initramfs


@pytest.mark.real
def test_real_auto_proves_kvm_by_booting(
    guest_files: tuple[Path, Path], private_cache: Path
) -> None:
    kernel, initrd = guest_files
    answer = select_accel("auto", kernel=kernel, initrd=initrd)
    remembered = accel.load_remembered(accel.host_fingerprint())
    assert remembered is not None and remembered.kvm_usable == (answer == "kvm")
    if answer == "kvm":
        return
    if Path("/dev/kvm").exists():
        # /dev/kvm present but unusable (this CI host: broken nested KVM): the boot told.
        assert "did not boot under KVM" in remembered.reason
    # The remembered answer now makes an explicit KVM request fail clearly, without a boot.
    with pytest.raises(VMError, match="KVM was requested"):
        select_accel("kvm", kernel=NOWHERE, initrd=NOWHERE)
