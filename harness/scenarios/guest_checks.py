"""What scenarios read from a guest: its /proc and debugfs observations, and the problems in
its kernel log (judged by harness.judge)."""

from __future__ import annotations

from harness.observe import dmesg
from harness.observe.procfs import (
    OBSERVED_PATHS,
    GuestObservations,
    cat_files_command,
    read_observations,
    split_files,
)


def observe(vm) -> GuestObservations:
    """Read /proc and the series' debugfs file in the guest, all in one SSH command."""
    files = split_files(vm.ssh.check(cat_files_command(OBSERVED_PATHS), timeout=60).stdout)

    def read(path: str) -> str:
        text = files.get(path)
        if text is None:
            raise FileNotFoundError(path)
        return text

    return read_observations(read)


def splats(vm) -> list[dmesg.Splat]:
    """Problems in the console log and in dmesg, each id once.

    The console holds what the ring buffer may have lost; dmesg holds what the console's
    loglevel filtered. A splat seen in both is reported once (first place wins). A guest
    killed because it hung (GuestHung) has only its console.
    """
    texts = [vm.console_text()]
    if getattr(vm, "hang", None) is None:
        texts.append(vm.ssh.run("dmesg", timeout=60).stdout)
    found: dict[str, dmesg.Splat] = {}
    for text in texts:
        for splat in dmesg.classify(text):
            found.setdefault(splat.id, splat)
    return list(found.values())


def hinted_vs_free(obs: GuestObservations) -> list[tuple[str, int, int, int]]:
    """(zone, order, hinted, free blocks) for every zone and order the series counts."""
    rows = []
    for zone in obs.zoneinfo:
        free = obs.buddyinfo.free.get((zone.node, zone.zone))
        for order, hinted in sorted(zone.hinted.items()):
            rows.append((zone.zone, order, hinted, free[order] if free else 0))
    return rows
