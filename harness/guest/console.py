"""The guest's serial console: what it printed (QEMU writes it to <workdir>/console.log),
watched line by line while the guest runs.

The watcher flags the boot's ready marker ("PHH-READY <boot-id>", printed by images/init),
the first fatal kernel message (panic, oops, BUG), and hands the ready markers and the
heartbeat's ticks ("PHH-TICK", harness/guest/hang.py) to the VM's `Heartbeat`.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from harness.guest.hang import Heartbeat, is_tick

READY_PREFIX = "PHH-READY"
# Console lines that mean the boot is lost (checked until the ready marker appears).
FATAL_CONSOLE = re.compile(r"Kernel panic - not syncing|\bOops\b|\bBUG: ")
POLL_SECONDS = 0.05  # how often the watcher reads what the console file gained
CONSOLE_TAIL_LINES = 40


def ready_marker(boot_id: str) -> str:
    return f"{READY_PREFIX} {boot_id}"


def read_console(path: Path) -> str:
    """Everything in a console log so far ("" before QEMU created it)."""
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def console_tail(text: str, lines: int = CONSOLE_TAIL_LINES) -> str:
    """The last `lines` lines, heartbeat ticks left out (an idle guest's would fill it)."""
    return "\n".join([line for line in text.splitlines() if not is_tick(line)][-lines:])


class ConsoleWatcher(threading.Thread):
    """Follows console.log line by line: flags the ready marker and the first fatal message,
    and hands the boots' ready markers and the ticks to `heartbeat`.

    It keeps watching after the guest is ready, so a later panic or oops is noticed too
    (`fatal_line`, `fatal_after_ready`).
    """

    def __init__(self, path: Path, boot_id: str, heartbeat: Heartbeat | None = None) -> None:
        super().__init__(name=f"console-{boot_id}", daemon=True)
        self.path = path
        self._marker = ready_marker(boot_id)
        self.ready = threading.Event()
        self.ready_count = 0  # one per boot: a reset guest prints the marker again
        self.fatal = threading.Event()
        self.fatal_line: str | None = None
        self.fatal_after_ready = False
        self.heartbeat = heartbeat if heartbeat is not None else Heartbeat()
        self._stop_event = threading.Event()
        self._partial = b""

    def run(self) -> None:
        # Not poll_until: this follows the file until stop(), with no deadline and no
        # condition to reach; the stop event's wait is both the pause and the way out.
        offset = 0
        while not self._stop_event.is_set():
            offset = self._read_new(offset)
            self._stop_event.wait(POLL_SECONDS)
        self._read_new(offset)

    def _read_new(self, offset: int) -> int:
        try:
            with open(self.path, "rb") as console:
                console.seek(offset)
                chunk = console.read()
        except FileNotFoundError:
            return offset
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            self._check_line(line.decode(errors="replace").rstrip("\r"))
        return offset + len(chunk)

    def _check_line(self, line: str) -> None:
        if line.strip() == self._marker:
            self.ready_count += 1
            self.heartbeat.booted()
            self.ready.set()
        elif is_tick(line):
            self.heartbeat.tick()
        elif self.fatal_line is None and FATAL_CONSOLE.search(line):
            self.fatal_line = line
            self.fatal_after_ready = self.ready.is_set()
            self.fatal.set()

    def stop(self) -> None:
        """Stop watching, after reading the console to its end."""
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=5)
