"""QMP to one QEMU: qemu.qmp's own synchronous client (`QEMUMonitorProtocol`), with what the
harness adds on top: a rejection named with the QEMU version (and told apart when this
QEMU lacks the command, device or property), a broken link named as such after asking
whether QEMU is still there (`check_peer`), and events picked by name and data.

The library does the protocol: the greeting and capabilities negotiation, command ids,
per-command timeouts (`settimeout`), the event queue, its own event loop.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from qemu.qmp import ExecuteError, QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

from harness.core.errors import QmpUnsupported, VMError

T = TypeVar("T")
QMP_TIMEOUT_SECONDS = 10.0  # for connecting and for each command
# After the link broke, how long to wait for QEMU to be reaped before calling it a QMP
# fault rather than a dead VM (the kernel closes a dying QEMU's socket first).
DROP_GRACE_SECONDS = 2.0
# A rejection that says this QEMU does not have what was asked (rather than refusing it
# now): the hint then points at what it has.
UNSUPPORTED = re.compile(
    r"not found|not supported|does not support|Bus .* does not|is not hotpluggable"
    r"|not a valid device|Parameter .* is unexpected"
)

Event = dict[str, Any]


class _Client(QEMUMonitorProtocol):
    def connect_within(self, timeout: float) -> None:
        """connect() with a deadline: the library's waits for QEMU's greeting without one,
        and a QEMU whose main loop is stuck would hold the harness forever."""
        self._sync(self._qmp.connect(self._address), timeout)


class Monitor:
    """The QMP monitor of one QEMU, connected on first use (and again after the link
    broke). `check_peer(grace)` raises if QEMU is gone (QemuDied), waiting up to `grace`
    seconds for it to end; `name` says whose monitor it is in messages ("VM 1a2b3c")."""

    def __init__(
        self,
        socket_path: Path,
        *,
        name: str,
        qemu_binary: str,
        check_peer: Callable[[float], None],
        timeout: float = QMP_TIMEOUT_SECONDS,
    ) -> None:
        self.socket_path = socket_path
        self.name = name
        self.qemu_binary = qemu_binary
        self.timeout = timeout
        self._check_peer = check_peer
        self._client: _Client | None = None
        self._events: list[Event] = []  # received, not yet looked at by take_event
        self._qemu_version: str | None = None

    # ----------------------------------------------------------------- commands

    def execute(self, command: str, arguments: dict[str, object] | None = None) -> Any:
        """Run a QMP command and return its "return" value.

        A command, device or property this QEMU does not know raises QmpUnsupported, any
        other rejection VMError, both naming the QEMU version; a broken link or a
        timeout raises what `check_peer` raises (QemuDied), else VMError."""
        what = f"QMP command {command} {arguments or ''}".strip()
        try:
            return self._use(what, lambda client: client.cmd(command, **(arguments or {})))
        except ExecuteError as error:
            raise self._rejected(what, error) from error

    def qemu_version(self) -> str:
        """ "7.2.22 Debian 1:7.2+dfsg-7+deb12u18", from query-version (asked once)."""
        if self._qemu_version is None:
            info = cast(
                dict, self._use("QMP command query-version", lambda c: c.cmd("query-version"))
            )
            q = info["qemu"]
            self._qemu_version = f"{q['major']}.{q['minor']}.{q['micro']} {info['package']}".strip()
        return self._qemu_version

    def _rejected(self, what: str, error: ExecuteError) -> VMError:
        desc = error.error.error.desc
        message = f"QEMU {self.qemu_version()} rejected {what}: {desc} ({error.error_class})"
        if error.error_class == "CommandNotFound" or UNSUPPORTED.search(desc):
            return QmpUnsupported(
                message,
                f"this QEMU ({self.qemu_binary}) lacks it: list what it has with "
                "`query-commands` or `-device DRIVER,help`, or use a newer QEMU",
            )
        return VMError(message, f"QMP socket {self.socket_path}")

    # ----------------------------------------------------------------- events

    def forget_events(self) -> None:
        """Drop the events received so far (so that take_event sees only later ones)."""
        self._use("QMP events", lambda client: client.clear_events())
        self._events.clear()

    def take_event(self, name: str, match: dict[str, object]) -> Event | None:
        """The first event received so far called `name` whose data has the items of
        `match`, or None; the events before it (all of them, without one) are dropped."""
        self._events += self._use("QMP events", lambda client: client.get_events(wait=False))
        for index, event in enumerate(self._events):
            data = event.get("data", {})
            if event["event"] == name and all(data.get(k) == v for k, v in match.items()):
                del self._events[: index + 1]
                return event
        self._events.clear()
        return None

    def await_event(self, seconds: float) -> None:
        """Return when QEMU sends an event (kept for take_event) or `seconds` passed."""

        def pull(client: _Client) -> Event | None:
            with contextlib.suppress(TimeoutError):
                return client.pull_event(wait=float(seconds))  # a float: an int means forever
            return None

        event = self._use("QMP events", pull)
        if event is not None:
            self._events.append(event)

    # ----------------------------------------------------------------- the link

    def _use(self, what: str, action: Callable[[_Client], T]) -> T:
        """`action` on the connected client, a failure of the link named."""
        try:
            return action(self._connected())
        except ExecuteError:
            raise
        except TimeoutError as error:  # no answer in time: the link itself is fine
            raise self._failed(what, f"no answer within {self.timeout:.0f} s", 0.0) from error
        except (QMPError, OSError, EOFError) as error:
            self.close()  # the next use connects again
            raise self._failed(
                what, str(error) or type(error).__name__, DROP_GRACE_SECONDS
            ) from error

    def _connected(self) -> _Client:
        if self._client is None:
            client = _Client(str(self.socket_path), nickname=self.name)
            client.settimeout(self.timeout)
            client.connect_within(self.timeout)
            self._client = client
        return self._client

    def _failed(self, what: str, why: str, grace: float) -> VMError:
        self._check_peer(grace)  # a dead QEMU is named as such (QemuDied)
        return VMError(f"{what} failed on {self.name}: {why}", f"QMP socket {self.socket_path}")

    def close(self) -> None:
        """Disconnect (QEMU's side may be gone already: nothing to say then)."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
