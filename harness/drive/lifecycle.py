"""Lifecycle events driven over QMP on a running guest: unplug and plug the balloon,
move the balloon's target, add a memory DIMM. (A reset is Guest.reset: it owns the boot.)

Each helper waits for QEMU and the guest to have acted, and says how long that took.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from harness.core.errors import QmpUnsupported, VMError
from harness.core.poll import poll_until
from harness.core.units import MiB
from harness.guest.cmdline import (
    BALLOON_DRIVER,
    BALLOON_ID,
    balloon_properties,
    hotpluggable_balloon,
)
from harness.guest.session import Guest
from harness.guest.vm import GuestVM

UNPLUG_TIMEOUT_S = 60.0
BALLOON_TIMEOUT_S = 120.0  # inflating 512 MiB page by page under TCG takes seconds


def _require_hotpluggable_balloon(vm: GuestVM | Guest, command: str) -> None:
    if not hotpluggable_balloon(vm.config):
        raise QmpUnsupported(
            f"{command} of {BALLOON_ID}: machine {vm.config.machine!r} has no hot-pluggable "
            f"slot for it (QEMU {vm.qemu_version()})",
            "use machine q35, where the harness puts the balloon behind a PCIe root port",
        )


def unplug_balloon(vm: GuestVM | Guest, timeout: float = UNPLUG_TIMEOUT_S) -> float:
    """device_del the balloon and wait for QEMU's DEVICE_DELETED (the guest released it)."""
    _require_hotpluggable_balloon(vm, "device_del")
    started = time.monotonic()
    vm.forget_qmp_events()
    vm.qmp_execute("device_del", {"id": BALLOON_ID})
    vm.wait_qmp_event("DEVICE_DELETED", timeout, device=BALLOON_ID)
    return time.monotonic() - started


def plug_balloon(vm: GuestVM | Guest) -> None:
    """device_add the balloon again with the properties it was started with."""
    _require_hotpluggable_balloon(vm, "device_add")
    vm.qmp_execute("device_add", {"driver": BALLOON_DRIVER, **balloon_properties(vm.config)})


def balloon_actual_mib(vm: GuestVM | Guest) -> int:
    """The guest's memory as QEMU's balloon sees it (query-balloon "actual")."""
    return int(vm.qmp_execute("query-balloon")["actual"]) // MiB


@dataclass(frozen=True)
class BalloonMove:
    target_mib: int
    actual_mib: int
    seconds: float

    @property
    def reached(self) -> bool:
        return self.actual_mib == self.target_mib


def set_balloon_target(
    vm: GuestVM | Guest, target_mib: int, timeout: float = BALLOON_TIMEOUT_S
) -> BalloonMove:
    """Ask for `target_mib` of guest memory and poll query-balloon until the guest is there
    (or `timeout`: the result then says where it got to; a guest that hangs meanwhile
    raises GuestHung)."""
    started = time.monotonic()
    vm.qmp_execute("balloon", {"value": target_mib * MiB})

    def actual_mib() -> int:
        vm.check_responsive()  # QEMU answers query-balloon for a hung guest too
        return balloon_actual_mib(vm)

    actual, _ = poll_until(actual_mib, lambda mib: mib == target_mib, timeout=timeout)
    return BalloonMove(target_mib, actual, time.monotonic() - started)


def add_dimm(vm: GuestVM | Guest, mib: int, index: int = 0) -> str:
    """Plug a `mib` MiB pc-dimm (RAM backed); the guest onlines it (auto-online). Its id."""
    if not vm.config.hotplug_mib:
        raise QmpUnsupported(
            f"device_add pc-dimm: the VM was started without hotplug memory slots "
            f"(QEMU {vm.qemu_version()})",
            "start it with VMConfig.hotplug_mib > 0 (QEMU -m SIZE,slots=N,maxmem=MAX)",
        )
    backend, dimm = f"hotmem{index}", f"dimm{index}"
    vm.qmp_execute(
        "object-add", {"qom-type": "memory-backend-ram", "id": backend, "size": mib * MiB}
    )
    try:
        vm.qmp_execute("device_add", {"driver": "pc-dimm", "id": dimm, "memdev": backend})
    except VMError:
        vm.qmp_execute("object-del", {"id": backend})
        raise
    return dimm


def remove_dimm(vm: GuestVM | Guest, dimm: str) -> None:
    """device_del a pc-dimm: the guest offlines its memory and ejects it (QEMU then sends
    DEVICE_DELETED, which the caller waits for: an offline can take a while)."""
    vm.qmp_execute("device_del", {"id": dimm})
