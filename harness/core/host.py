"""The machine a run is on, as the reply states it: its CPUs, and whether it is itself a
virtual machine that gives its free memory back to its hypervisor.

The second matters to every figure of cost. Where the host's own free memory is reported
(virtio-balloon free page reporting, as this series does for its guests), memory a guest
gives back through hinting is freed by QEMU, reported by the host, and faulted in from
the hypervisor when the guest touches it again. Measured on a 2-CPU Firecracker guest
reporting at order 9: touching 1200 MiB freed seconds before took 3.1 s of host kernel
time, 0.17 s when freed just before; in a one-patch run 30 % of QEMU's CPU samples were
the host zeroing such memory (clear_page_erms).
"""

from __future__ import annotations

import os
from pathlib import Path

VIRTIO_BALLOON_F_REPORTING = 5  # the feature bit of free page reporting (virtio spec 5.5.3)


def reports_free_memory(sys_root: Path = Path("/sys")) -> bool:
    """A virtio-balloon device bound to this kernel has free page reporting negotiated."""
    driver = sys_root / "bus/virtio/drivers/virtio_balloon"
    for features in driver.glob("virtio*/features"):
        try:
            bits = features.read_text().strip()
        except OSError:
            continue
        if len(bits) > VIRTIO_BALLOON_F_REPORTING and bits[VIRTIO_BALLOON_F_REPORTING] == "1":
            return True
    return False


def is_virtual_machine(proc_root: Path = Path("/proc")) -> bool:
    """The CPU says it runs under a hypervisor (x86's "hypervisor" flag)."""
    try:
        cpuinfo = (proc_root / "cpuinfo").read_text()
    except OSError:
        return False
    return any(
        line.startswith("flags") and "hypervisor" in line.split() for line in cpuinfo.splitlines()
    )


def describe_host(sys_root: Path = Path("/sys"), proc_root: Path = Path("/proc")) -> str:
    """ "2 CPUs, a virtual machine that reports its free memory to its hypervisor (...)"."""
    cpus = os.cpu_count() or 0
    words = f"{cpus} CPU{'s' if cpus != 1 else ''}"
    if reports_free_memory(sys_root):
        return (
            f"{words}, a virtual machine that reports its own free memory to its hypervisor: "
            "memory the guests give back costs the host a fault in its hypervisor when "
            "they touch it again (slower faults, more host CPU per run)"
        )
    if is_virtual_machine(proc_root):
        return f"{words}, a virtual machine"
    return words
