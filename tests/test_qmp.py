"""The QMP monitor (harness.guest.qmp) over qemu.qmp's QEMUMonitorProtocol, against a fake
QMP server on a unix socket: commands and their timeouts, rejections named with the QEMU
version, a broken link named after asking the peer (and connected again), a greeting that
never comes, events picked by name and data; and GuestVM's event wait (fake QEMU + fake QMP:
the event, a timeout, a guest that hangs meanwhile)."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import process_gone

from harness.core.errors import GuestHung, QemuDied, QmpUnsupported, VMError
from harness.core.poll import poll_until
from harness.guest.cmdline import VMConfig
from harness.guest.qmp import Monitor
from harness.guest.vm import GuestVM

VERSION = {"qemu": {"major": 7, "minor": 2, "micro": 22}, "package": "Debian 1:7.2+dfsg-7"}
Reply = dict[str, Any] | None  # None: no answer


def answers(name: str, arguments: dict[str, Any]) -> Reply:
    """What the fake QEMU says to a command."""
    if name == "query-version":
        return {"return": VERSION}
    if name == "query-balloon":
        return {
            "error": {"class": "DeviceNotActive", "desc": "No balloon device has been activated"}
        }
    if name == "device_add" and "no-such-property" in arguments:
        return {
            "error": {
                "class": "GenericError",
                "desc": "Property 'virtio-balloon-pci.no-such-property' not found",
            }
        }
    if name == "echo":
        return {"return": arguments}
    if name == "hang":
        return None
    return {"error": {"class": "CommandNotFound", "desc": f"The command {name} has not been found"}}


def json_messages(client: socket.socket) -> Iterator[dict[str, Any]]:
    """The JSON objects a client sends, as QEMU reads them: a stream, no line breaks needed
    (qemu.qmp sends none)."""
    decoder, buffer = json.JSONDecoder(), ""
    while chunk := client.recv(65536):
        buffer += chunk.decode()
        while buffer.strip():
            try:
                message, end = decoder.raw_decode(buffer.lstrip())
            except json.JSONDecodeError:
                break  # the rest has not arrived yet
            buffer = buffer.lstrip()[end:]
            yield message


class FakeQmp:
    """A QMP server: greets (unless told not to), negotiates, answers with `answers`, sends
    events on request; one client at a time, as QEMU's monitor socket."""

    def __init__(self, path: Path, greet: bool = True) -> None:
        self.path = path
        self.greet = greet
        self.received: list[dict[str, Any]] = []
        self.connections = 0
        self._client: socket.socket | None = None
        self._lock = threading.Lock()
        self._server = socket.socket(socket.AF_UNIX)
        self._server.bind(str(path))
        self._server.listen(1)
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with self._lock:
                self._client = client
            if self.greet:
                self._send({"QMP": {"version": VERSION, "capabilities": []}})
            with client:
                for message in json_messages(client):
                    self.received.append(message)
                    name = message["execute"]
                    reply = (
                        {"return": {}}
                        if name == "qmp_capabilities"
                        else answers(name, message.get("arguments", {}))
                    )
                    if reply is not None:
                        self._send({**reply, "id": message["id"]} if "id" in message else reply)
            with self._lock:
                self._client = None

    def _send(self, message: dict[str, Any]) -> None:
        with self._lock, contextlib.suppress(OSError):  # the client may have gone
            if self._client is not None:
                self._client.sendall(json.dumps(message).encode() + b"\n")

    def event(self, name: str, **data: object) -> None:
        stamp = {"seconds": int(time.time()), "microseconds": 0}
        self._send({"event": name, "data": data, "timestamp": stamp})

    def hang_up(self) -> None:
        with self._lock, contextlib.suppress(OSError):
            if self._client is not None:
                self._client.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._stop.set()
        self.hang_up()
        self._thread.join(timeout=5)
        self._server.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a unix socket's path must fit in 108 bytes."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="phh-qmp-test-") as name:
        yield Path(name)


@pytest.fixture
def server(short_dir: Path) -> Iterator[FakeQmp]:
    fake = FakeQmp(short_dir / "qmp.sock")
    yield fake
    fake.stop()


class Peer:
    """check_peer as GuestVM gives it: remembers each call; `dead` makes it raise."""

    def __init__(self) -> None:
        self.graces: list[float] = []
        self.dead = False

    def __call__(self, grace: float) -> None:
        self.graces.append(grace)
        if self.dead:
            raise QemuDied("QEMU (pid 1) of VM test killed by signal SIGKILL (9)", "fake")


def monitor_for(path: Path, peer: Callable[[float], None], timeout: float = 2.0) -> Monitor:
    return Monitor(path, name="VM test", qemu_binary="qemu-fake", check_peer=peer, timeout=timeout)


def test_commands_return_their_value_with_arguments_as_given(server: FakeQmp) -> None:
    monitor = monitor_for(server.path, Peer())
    try:
        arguments = {"command-line": "info registers", "cpu-index": 1}
        assert monitor.execute("echo", arguments) == arguments
        assert monitor.qemu_version() == "7.2.22 Debian 1:7.2+dfsg-7"
    finally:
        monitor.close()
    assert [m["execute"] for m in server.received][:2] == ["qmp_capabilities", "echo"]


def test_rejections_are_named_with_the_qemu_version(server: FakeQmp) -> None:
    monitor = monitor_for(server.path, Peer())
    try:
        with pytest.raises(QmpUnsupported) as raised:
            monitor.execute("no-such-command")
        assert raised.value.message.startswith("QEMU 7.2.22 Debian 1:7.2+dfsg-7 rejected QMP")
        assert "(CommandNotFound)" in raised.value.message
        assert "qemu-fake" in raised.value.hint
        with pytest.raises(QmpUnsupported, match="no-such-property"):
            monitor.execute("device_add", {"driver": "virtio-balloon-pci", "no-such-property": 1})
        with pytest.raises(VMError) as refused:  # refused now, not unknown to this QEMU
            monitor.execute("query-balloon")
        assert not isinstance(refused.value, QmpUnsupported)
        assert "No balloon device has been activated (DeviceNotActive)" in refused.value.message
    finally:
        monitor.close()


def test_a_command_without_an_answer_times_out_and_the_link_survives(server: FakeQmp) -> None:
    peer = Peer()
    monitor = monitor_for(server.path, peer, timeout=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(VMError, match=r"QMP command hang failed on VM test: no answer within"):
            monitor.execute("hang")
        assert time.monotonic() - started < 5
        assert peer.graces == [0.0]  # a timeout asks the peer without waiting for it to end
        assert monitor.execute("echo", {"n": 1}) == {"n": 1}
        assert server.connections == 1
    finally:
        monitor.close()


def test_a_dead_peer_is_named_and_a_broken_link_is_connected_again(server: FakeQmp) -> None:
    peer = Peer()
    monitor = monitor_for(server.path, peer)
    try:
        assert monitor.execute("echo", {"n": 1}) == {"n": 1}
        server.hang_up()
        peer.dead = True
        with pytest.raises(QemuDied):
            monitor.execute("echo", {"n": 2})
        assert peer.graces[-1] > 0  # a dropped link gives QEMU time to be reaped
        peer.dead = False  # QEMU was alive after all: the next command connects again
        _, reconnected = poll_until(lambda: server._client is None, bool, timeout=5)
        assert reconnected
        assert monitor.execute("echo", {"n": 3}) == {"n": 3}
        assert server.connections == 2
    finally:
        monitor.close()


def test_no_socket_is_a_vm_error_naming_the_socket(short_dir: Path) -> None:
    monitor = monitor_for(short_dir / "none.sock", Peer())
    with pytest.raises(VMError) as raised:
        monitor.execute("query-status")
    assert raised.value.message.startswith("QMP command query-status failed on VM test")
    assert str(short_dir / "none.sock") in raised.value.hint


def test_a_greeting_that_never_comes_is_a_timeout(short_dir: Path) -> None:
    """The library's own connect() waits for the greeting without a deadline."""
    mute = FakeQmp(short_dir / "mute.sock", greet=False)
    try:
        monitor = monitor_for(mute.path, Peer(), timeout=0.5)
        started = time.monotonic()
        with pytest.raises(VMError, match="no answer within"):
            monitor.execute("query-status")
        assert time.monotonic() - started < 5
    finally:
        mute.stop()


def test_events_are_picked_by_name_and_data(server: FakeQmp) -> None:
    monitor = monitor_for(server.path, Peer())
    try:
        monitor.forget_events()  # connects: events are sent to a connected client only
        server.event("BALLOON_CHANGE", actual=1)
        server.event("DEVICE_DELETED", device="dimm0", path="/machine/peripheral/dimm0")
        server.event("DEVICE_DELETED", device="balloon0", path="/machine/peripheral/balloon0")
        found, seen = poll_until(
            lambda: monitor.take_event("DEVICE_DELETED", {"device": "balloon0"}),
            lambda event: event is not None,
            timeout=5,
            sleep=monitor.await_event,
        )
        assert seen and found is not None and found["data"]["device"] == "balloon0"
        assert monitor.take_event("DEVICE_DELETED", {"device": "dimm0"}) is None  # dropped

        server.event("DEVICE_DELETED", device="dimm1")
        monitor.await_event(5.0)
        monitor.forget_events()
        assert monitor.take_event("DEVICE_DELETED", {}) is None
    finally:
        monitor.close()


def test_an_event_wait_returns_when_the_event_comes(server: FakeQmp) -> None:
    monitor = monitor_for(server.path, Peer())
    try:
        monitor.forget_events()
        threading.Timer(0.3, lambda: server.event("RESET", guest=True)).start()
        started = time.monotonic()
        monitor.await_event(10.0)
        assert time.monotonic() - started < 5
        assert monitor.take_event("RESET", {"guest": True}) is not None
    finally:
        monitor.close()


# ----------------------------------------------------------------- GuestVM's event wait

FAKE_QEMU = """\
#!{python}
# Stand-in for qemu-system-x86_64: boots, then ticks every 0.2 s while /tmp-file `ticking`
# exists (the test's fake QMP server plays its monitor).
import os, sys, time
args = sys.argv[1:]
console = next(a for a in args if a.startswith("file,id=console0,path=")).split("path=")[1]
boot_id = args[args.index("-append") + 1].split("phh.boot=")[1]
ticking = os.environ["FAKE_QEMU_TICKING"]
with open(console, "a") as out:
    out.write(f"PHH-READY {{boot_id}}\\n")
    out.flush()
    n = 0
    while True:
        if os.path.exists(ticking):
            n += 1
            out.write(f"[    {{n}}.000000] PHH-TICK {{n}}.00\\n")
            out.flush()
        time.sleep(0.2)
"""


@pytest.fixture
def fake_vm(
    tmp_path: Path, short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[GuestVM, FakeQmp, Path]]:
    fake = tmp_path / "fake-qemu"
    fake.write_text(FAKE_QEMU.format(python=sys.executable))
    fake.chmod(0o755)
    ticking = tmp_path / "ticking"
    ticking.touch()
    monkeypatch.setenv("FAKE_QEMU_TICKING", str(ticking))
    for name in ("bzImage", "initrd.img"):
        (tmp_path / name).touch()
    config = VMConfig(
        kernel=tmp_path / "bzImage", initrd=tmp_path / "initrd.img", workdir=short_dir / "vm",
        qemu_binary=str(fake), shutdown_timeout=1.0, hang_seconds=1.5,
    )  # fmt: skip
    with GuestVM(config) as vm:
        qmp = FakeQmp(vm.paths.qmp_socket)  # QEMU's monitor, played by the test
        try:
            yield vm, qmp, ticking
        finally:
            pid = vm.pid
            vm.close()
            qmp.stop()
    assert process_gone(pid)


def test_vm_waits_for_the_event_it_names(fake_vm: tuple[GuestVM, FakeQmp, Path]) -> None:
    vm, qmp, _ = fake_vm
    vm.forget_qmp_events()
    threading.Timer(0.5, lambda: qmp.event("DEVICE_DELETED", device="dimm0")).start()
    threading.Timer(1.0, lambda: qmp.event("DEVICE_DELETED", device="balloon0")).start()
    started = time.monotonic()
    event = vm.wait_qmp_event("DEVICE_DELETED", 10, device="balloon0")
    assert event["data"] == {"device": "balloon0"}
    assert time.monotonic() - started < 5
    with pytest.raises(VMError, match=r"no QMP event DEVICE_DELETED .*within 1 s"):
        vm.wait_qmp_event("DEVICE_DELETED", 1, device="balloon0")
    assert vm.qemu_version() == "7.2.22 Debian 1:7.2+dfsg-7"


def test_vm_event_wait_ends_when_the_guest_hangs(fake_vm: tuple[GuestVM, FakeQmp, Path]) -> None:
    vm, _, ticking = fake_vm
    _, ticked = poll_until(lambda: vm.heartbeat.ticks, lambda n: n >= 2, timeout=10)
    assert ticked
    ticking.unlink()  # the heartbeat stops; the fake monitor answers no triage command
    started = time.monotonic()
    with pytest.raises(GuestHung):
        vm.wait_qmp_event("DEVICE_DELETED", 60, device="balloon0")
    assert time.monotonic() - started < 15
    assert not vm.is_running()
