"""Hang triage: the guest's heartbeat, and where its vCPUs are once it stops.

images/init prints `PHH-TICK <uptime>` every TICK_SECONDS through the kernel log; the
console watcher (harness.guest.console.ConsoleWatcher) hands every tick to the VM's
`Heartbeat`. A guest that ticked since its last boot and then stays silent for HANG_SECONDS is hung:
`GuestVM.check_responsive` (which GuestSSH calls while it waits) then samples every vCPU over
QMP (`sample_vcpus`: `query-cpus-fast`, then `info registers` per vCPU, SAMPLES times),
says where each one is with the build's System.map (`describe_vcpus`), keeps the register
dumps (`format_dump`) and kills QEMU. The failure is the judge check `guest_responsive`.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.guest.symbols import SymbolMap, describe_address, function_of

HANG_SECONDS = 30.0  # silence after which a booted guest is hung
TICK_SECONDS = 2.0  # images/init's period
TICK_PREFIX = "PHH-TICK"
# A tick as the console shows it (through the kernel log: "[   12.345678] PHH-TICK 12.34")
# or as a line of its own.
TICK_LINE = re.compile(r"^(?:<\d+>)?(?:\[\s*\d+\.\d+\]\s?)?PHH-TICK \S+\s*$")
SAMPLES = 3
SAMPLE_INTERVAL_S = 0.5
USER_SPACE = "user space"


def is_tick(line: str) -> bool:
    return TICK_LINE.match(line) is not None


class Heartbeat:
    """When the guest last ticked. Only ticks after a boot's ready marker count (`booted`),
    and a reset silences it until the next boot is ready (`rebooting`): a guest that is
    booting is not hung, and neither is one that never ticked (an image without the ticker).
    Thread-safe: the console watcher writes, the harness reads."""

    def __init__(
        self, limit: float = HANG_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._last: float | None = None
        self._boots = 0
        self._boot_wanted = 1
        self.ticks = 0  # counted ticks, all boots

    def booted(self) -> None:
        """A boot's ready marker."""
        with self._lock:
            self._boots += 1

    def tick(self) -> None:
        with self._lock:
            if self._boots >= self._boot_wanted:
                self._last = self._clock()
                self.ticks += 1

    def rebooting(self) -> None:
        """The guest is about to reboot: silent until the next boot's ready marker and tick."""
        with self._lock:
            self._boot_wanted = self._boots + 1
            self._last = None

    def silence(self) -> float | None:
        """Seconds since the last tick; None while there is none to count from."""
        with self._lock:
            return None if self._last is None else self._clock() - self._last

    def stale(self) -> float | None:
        """The silence if it has reached `limit` (the guest is hung), else None."""
        silence = self.silence()
        return silence if silence is not None and silence >= self.limit else None


# ----------------------------------------------------------------- registers


@dataclass(frozen=True)
class Registers:
    """What triage needs of one vCPU's `info registers`."""

    rip: int
    cpl: int | None  # 3: user space
    halted: bool  # HLT=1: waiting for an interrupt (idle)


_CPU_HEADER = re.compile(r"^CPU#(\d+)\s*$", re.MULTILINE)
_RIP = re.compile(r"\bRIP=([0-9a-fA-F]+)")
_CPL = re.compile(r"\bCPL=(\d)")
_HLT = re.compile(r"\bHLT=(\d)")


def parse_registers(text: str) -> Registers:
    """The RIP, CPL and HLT flag of one x86-64 `info registers` dump (ValueError if it has
    no RIP, e.g. an error text)."""
    rip = _RIP.search(text)
    if rip is None:
        raise ValueError(f"no RIP= in register dump: {text.strip()[:200]!r}")
    cpl = _CPL.search(text)
    hlt = _HLT.search(text)
    return Registers(int(rip[1], 16), int(cpl[1]) if cpl else None, bool(hlt and hlt[1] == "1"))


def parse_register_dump(text: str) -> dict[int, Registers]:
    """Every vCPU of an `info registers` (one "CPU#N" section) or `info registers -a`
    dump, by CPU number."""
    headers = list(_CPU_HEADER.finditer(text))
    if not headers:
        return {0: parse_registers(text)}
    found = {}
    for header, after in zip(headers, [*headers[1:], None], strict=True):
        section = text[header.end() : after.start() if after else len(text)]
        found[int(header[1])] = parse_registers(section)
    return found


# ----------------------------------------------------------------- sampling


@dataclass(frozen=True)
class VcpuSample:
    cpu: int
    registers: Registers | None  # None: the dump could not be read
    dump: str  # QEMU's text (or why there is none)


@dataclass
class Triage:
    """The vCPU samples of one hang: `rounds[i]` holds every vCPU's sample of round i."""

    run_state: str = "unknown"  # QEMU's (query-status) when the hang was found
    rounds: list[list[VcpuSample]] = field(default_factory=list)
    error: str | None = None  # why sampling stopped early

    @property
    def cpus(self) -> list[int]:
        return sorted({sample.cpu for round_ in self.rounds for sample in round_})

    def samples_of(self, cpu: int) -> list[VcpuSample]:
        return [s for round_ in self.rounds for s in round_ if s.cpu == cpu]


QmpExecute = Callable[..., Any]  # (command, arguments=None) -> the "return" value


def sample_vcpus(
    execute: QmpExecute,
    samples: int = SAMPLES,
    interval: float = SAMPLE_INTERVAL_S,
    sleep: Callable[[float], None] = time.sleep,
) -> Triage:
    """`samples` rounds, `interval` apart, of every vCPU's registers. A running VM is
    stopped for each round and continued after it (under TCG a running vCPU's RIP is only
    written back when it leaves translated code; a stopped one's is exact), so the rounds
    show whether a vCPU stays where it is. Never raises: a QMP failure ends the sampling
    and is kept in `error` with the rounds taken so far (triage must not hide the hang)."""
    triage = Triage()
    try:
        triage.run_state = str(execute("query-status").get("status", "unknown"))
        cpus = sorted(int(cpu["cpu-index"]) for cpu in execute("query-cpus-fast"))
        running = triage.run_state == "running"
        for index in range(samples):
            if index:
                sleep(interval)
            if running:
                execute("stop")
            try:
                triage.rounds.append([_sample(execute, cpu) for cpu in cpus])
            finally:
                if running:
                    execute("cont")
    except Exception as error:  # any failure: keep what was sampled, say why it stopped
        triage.error = f"{type(error).__name__}: {error}"
    return triage


def _sample(execute: QmpExecute, cpu: int) -> VcpuSample:
    text = str(
        execute("human-monitor-command", {"command-line": "info registers", "cpu-index": cpu})
    )
    try:
        registers: Registers | None = parse_registers(text)
    except ValueError:
        registers = None
    return VcpuSample(cpu, registers, text)


# ----------------------------------------------------------------- where the vCPUs are


def location(registers: Registers, symbols: SymbolMap | None) -> tuple[str, str]:
    """(function, exact place) of a vCPU: ("get_unhinted_page", "get_unhinted_page+0x5c/
    0x120"); ("user space", "user space (RIP 0x4012f0)"); an unknown kernel address is its
    own function."""
    if registers.cpl == 3:
        return USER_SPACE, f"{USER_SPACE} (RIP {registers.rip:#x})"
    place = describe_address(registers.rip, symbols)
    return function_of(place), place


def describe_vcpu(
    cpu: int, samples: list[VcpuSample], symbols: SymbolMap | None, running: bool
) -> str:
    """ "vCPU 0 spinning in get_unhinted_page+0x5c/0x120 (3 of 3 samples)": the function
    most samples fell in, at the place most of them were; "halted" when it idled in every
    sample, "spinning" when a running VM's vCPU stayed in that function in every one."""
    read = [s.registers for s in samples if s.registers is not None]
    if not read:
        return f"vCPU {cpu}: registers unreadable"
    places = [location(r, symbols) for r in read]
    # A sample taken as the timer interrupt comes in says nothing about what it interrupted:
    # it counts only when every sample is one.
    inside = [(r, p) for r, p in zip(read, places, strict=True) if not _in_entry_code(p[0])]
    if inside:
        read, places = [r for r, _ in inside], [p for _, p in inside]
    function, count = Counter(f for f, _ in places).most_common(1)[0]
    place = Counter(p for f, p in places if f == function).most_common(1)[0][0]
    if all(r.halted for r in read):
        verb = "halted in"
    elif not running:
        verb = "stopped in"
    elif count == len(read) > 1:
        verb = "spinning in"
    else:
        verb = "in"
    return f"vCPU {cpu} {verb} {place} ({count} of {len(read)} samples)"


ENTRY_CODE = ("__irqentry_text_start", "asm_sysvec_", "asm_common_interrupt", "asm_exc_")


def _in_entry_code(function: str) -> bool:
    return function.startswith(ENTRY_CODE)


# The kernel's own detectors, on the console: where they saw a CPU stuck.
SOFT_LOCKUP = re.compile(r"BUG: soft lockup - (CPU#\d+) stuck for (\d+)s!")
RIP_LINE = re.compile(r"RIP: \d+:(\S+)")


def kernel_detector_note(console: str) -> str:
    """ "the kernel's soft lockup detector: CPU#0 stuck for 26 s at page_hinting_process
    +0x282/0x369", from the console's last soft lockup report ("" without one)."""
    found = list(SOFT_LOCKUP.finditer(console))
    if not found:
        return ""
    last = found[-1]
    rip = RIP_LINE.search(console, last.end())
    where = f" at {rip[1]}" if rip else ""
    return f"the kernel's soft lockup detector: {last[1]} stuck for {last[2]} s{where}"


def describe_vcpus(triage: Triage, symbols: SymbolMap | None) -> str:
    """Every vCPU's place, comma-separated; what kept them from being read, if anything."""
    running = triage.run_state == "running"
    parts = [describe_vcpu(cpu, triage.samples_of(cpu), symbols, running) for cpu in triage.cpus]
    if not parts:
        parts = [f"vCPU registers unavailable ({triage.error or 'no vCPU listed'})"]
    elif triage.error:
        parts.append(f"sampling stopped early: {triage.error}")
    return ", ".join(parts)


def hang_detail(
    silence: float, triage: Triage, symbols: SymbolMap | None, console: str = ""
) -> str:
    """The one line that says it: "no heartbeat for 31 s; vCPU 0 spinning in ..."; and
    where the kernel's own soft lockup detector saw the CPU, if the console has it."""
    known = triage.run_state not in ("running", "unknown")
    state = f" (QEMU run state: {triage.run_state})" if known else ""
    raw = "" if symbols is not None else " (no System.map beside the kernel: raw addresses)"
    note = kernel_detector_note(console)
    detector = f"; {note}" if note else ""
    vcpus = describe_vcpus(triage, symbols)
    return f"no heartbeat for {silence:.0f} s{state}; {vcpus}{raw}{detector}"


def format_dump(detail: str, triage: Triage, symbols: SymbolMap | None) -> str:
    """The evidence file: the detail, then every round's registers per vCPU."""
    lines = [detail, ""]
    for index, round_ in enumerate(triage.rounds, 1):
        lines.append(f"== sample {index} of {len(triage.rounds)}")
        for sample in round_:
            where = location(sample.registers, symbols)[1] if sample.registers else "unreadable"
            halted = " (halted)" if sample.registers and sample.registers.halted else ""
            lines += [f"-- vCPU {sample.cpu}: {where}{halted}", sample.dump.strip(), ""]
    if triage.error:
        lines.append(f"sampling stopped early: {triage.error}")
    return "\n".join(lines) + "\n"
