"""Checks shared by scenarios: kernel log health and the series' hinted counts."""

from __future__ import annotations

from harness import dmesg
from harness.procfs import GuestObservations, read_observations


def observe(vm) -> GuestObservations:
    """Read /proc and the series' debugfs file in the guest over SSH."""

    def read(path: str) -> str:
        result = vm.ssh.run(f"cat {path}", timeout=60)
        if result.exit_status != 0:
            raise FileNotFoundError(path)
        return result.stdout

    return read_observations(read)


def splats(vm) -> list[dmesg.Splat]:
    """Problems in the console log and in dmesg, each id once.

    The console holds what the ring buffer may have lost; dmesg holds what the console's
    loglevel filtered. A splat seen in both is reported once (first place wins).
    """
    result = vm.ssh.run("dmesg", timeout=60)
    found: dict[str, dmesg.Splat] = {}
    for text in (vm.console_text(), result.stdout):
        for splat in dmesg.classify(text):
            found.setdefault(splat.id, splat)
    return list(found.values())


def format_splats(found: list[dmesg.Splat]) -> str:
    return "\n".join(f"{s.kind} {s.id} (line {s.line_no}):\n{s.excerpt}" for s in found)


def hinted_vs_free(obs: GuestObservations) -> list[tuple[str, int, int, int]]:
    """(zone, order, hinted, free blocks) for every zone and order the series counts."""
    rows = []
    for zone in obs.zoneinfo:
        free = obs.buddyinfo.free.get((zone.node, zone.zone))
        for order, hinted in sorted(zone.hinted.items()):
            rows.append((zone.zone, order, hinted, free[order] if free else 0))
    return rows
