"""What the reply says of the machine (harness.core.host), read from fake /sys and /proc
trees, and from this machine's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core import host
from harness.report.reply import ReplyContext, write_reply


def fake_host(root: Path, features: str | None, flags: str) -> tuple[Path, Path]:
    sys_root, proc_root = root / "sys", root / "proc"
    proc_root.mkdir(parents=True)
    (proc_root / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    driver = sys_root / "bus/virtio/drivers/virtio_balloon"
    driver.mkdir(parents=True)
    if features is not None:
        (driver / "virtio0").mkdir()
        (driver / "virtio0/features").write_text(features.ljust(64, "0") + "\n")
    return sys_root, proc_root


@pytest.mark.parametrize(
    ("features", "flags", "said"),
    [
        ("011001", "fpu hypervisor", "reports its own free memory to its hypervisor"),
        ("011000", "fpu hypervisor", "a virtual machine"),  # a balloon without reporting
        (None, "fpu hypervisor", "a virtual machine"),
        (None, "fpu sse2", ""),  # bare metal: the CPUs alone
    ],
)
def test_the_host_says_whether_it_gives_its_free_memory_back(
    tmp_path: Path, features: str | None, flags: str, said: str
) -> None:
    sys_root, proc_root = fake_host(tmp_path, features, flags)
    text = host.describe_host(sys_root, proc_root)
    assert text.split(",")[0].endswith("CPUs") or text.endswith("CPU")
    assert said in text
    if not said:
        assert "virtual" not in text
    if features != "011001":
        assert "hypervisor:" not in text


def test_this_machine_is_described_and_the_reply_says_it(tmp_path: Path) -> None:
    """Here: a Firecracker guest whose virtio-balloon reports free pages (when this runs
    elsewhere, the description still starts with the CPU count)."""
    described = host.describe_host()
    assert described.startswith(f"{__import__('os').cpu_count()} CPU")
    run = tmp_path / "run"
    run.mkdir()
    text = write_reply(run, ReplyContext(accel="tcg", host=described)).read_text()
    assert f"  host:         {described[:40]}" in text.replace("\n", " ")
