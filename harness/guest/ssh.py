"""SSH to the guest (paramiko): connect retries while it boots, commands with timeouts.

Host keys: the guest is an ephemeral VM reached only through QEMU's hostfwd on 127.0.0.1,
and its dropbear host key is regenerated with every image build, so there is nothing to pin
against; paramiko.AutoAddPolicy accepts it for this one in-memory client (nothing is saved).
"""

from __future__ import annotations

import contextlib
import random
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType

import paramiko

from harness.core.errors import SSHError
from harness.core.poll import poll_until
from harness.core.workers import worker_port_range

# Waiting for guest output sleeps in select() on the channel (paramiko signals new stdout
# data and the channel's close through its fileno); the cap bounds how late stderr-only
# output or an exit status without a close is noticed. No 10 ms spinning on a 2-core host
# (poll_until's floor, 0.1 s, is only the cap's: select() returns as soon as data comes).
WAIT_CAP_SECONDS = 0.2
RETRY_SECONDS = 0.25
READ_CHUNK = 65536
# After a dropped connection, how long to wait for QEMU to be reaped before calling it
# a network fault rather than a dead VM.
DROP_GRACE_SECONDS = 2.0
CHANNEL_OPEN_TIMEOUT = 30.0
# After a channel open timed out on a live connection, how long the peer check gets to
# name a guest that hung just before (its heartbeat goes stale HANG_SECONDS after its last
# tick, which can be up to a tick period and a watcher poll after the open began).
OPEN_VERDICT_SECONDS = 5.0
PEER_WATCH_SECONDS = 1.0  # how often a pending exec_command() asks if the VM still runs


@dataclass(frozen=True)
class RunKey:
    """A per-run SSH key pair: the private key for paramiko, the authorized_keys line (the
    guest image takes it: harness.guest.image.make_run_initrd)."""

    private: paramiko.PKey
    public_line: str


def generate_run_key() -> RunKey:
    """A fresh ECDSA P-256 key pair (dropbear 2022.83 accepts ecdsa-sha2-nistp256)."""
    private = paramiko.ECDSAKey.generate(bits=256)
    return RunKey(private=private, public_line=f"{private.get_name()} {private.get_base64()} phh")


@dataclass(frozen=True)
class CommandResult:
    """What a finished guest command returned."""

    command: str
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class GuestSSH:
    """A paramiko connection to the guest's dropbear, as root with the per-run key."""

    def __init__(
        self,
        *,
        port: int,
        key: paramiko.PKey,
        host: str = "127.0.0.1",
        user: str = "root",
        console_tail: Callable[[], str] | None = None,
        check_peer: Callable[[float], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.user = user
        self._key = key
        # Set by harness.guest.session.Guest so that failures can show what the guest console said.
        self.console_tail = console_tail
        # Set by Guest: raises when the VM behind the connection is gone (QemuDied) or hung
        # (GuestHung), so that either is named as such instead of as a timeout or a broken
        # channel. Called on every failure and while a command is waited for (every
        # WAIT_CAP_SECONDS at most). Its argument is how long to wait for the VM to end
        # (used when the link dropped).
        self.check_peer = check_peer
        self._client: paramiko.SSHClient | None = None

    # ----------------------------------------------------------------- connection

    def connect(self, timeout: float = 60.0) -> None:
        """Connect, retrying until `timeout` while the guest is still booting.

        QEMU accepts the forwarded TCP connection before dropbear listens, so early attempts
        fail with "Error reading SSH protocol banner" or a reset: those are retried. A
        rejected key is not: it will not get better.
        """
        deadline = time.monotonic() + timeout

        def attempt() -> paramiko.SSHClient | Exception:
            try:
                return self._connect_once(max(1.0, deadline - time.monotonic()))
            except paramiko.AuthenticationException as error:
                raise self._error(
                    f"guest {self._where()} rejected the key for {self.user}: {error}",
                    "the per-run initrd must carry this key in /root/.ssh/authorized_keys",
                ) from error
            except (paramiko.SSHException, OSError, EOFError) as error:
                return error  # the guest is still booting: try again

        outcome, _ = poll_until(
            attempt,
            lambda got: isinstance(got, paramiko.SSHClient),
            timeout=timeout,
            interval=RETRY_SECONDS,
        )
        if not isinstance(outcome, paramiko.SSHClient):
            raise self._error(
                f"could not connect to guest {self._where()} within {timeout:.0f} s: {outcome}",
                "look at the console log: did dropbear start and eth0 come up?",
            ) from outcome
        self._client = outcome

    def _connect_once(self, timeout: float) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # see module docstring
        attempt = min(timeout, 10.0)
        try:
            client.connect(
                self.host,
                port=self.port,
                username=self.user,
                pkey=self._key,
                timeout=attempt,
                banner_timeout=attempt,
                auth_timeout=attempt,
                allow_agent=False,
                look_for_keys=False,
            )
        except BaseException:
            client.close()
            raise
        return client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> GuestSSH:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        transport = self._client.get_transport() if self._client else None
        return transport is not None and transport.is_active()

    # ----------------------------------------------------------------- commands

    def run(self, command: str, timeout: float = 60.0) -> CommandResult:
        """Run `command` in the guest shell; SSHError if it takes longer than `timeout`."""
        channel = self._open_channel(command)
        stdout, stderr = bytearray(), bytearray()
        try:
            _, finished = poll_until(
                lambda: _drain(channel, stdout, stderr),
                bool,
                timeout=timeout,
                interval=WAIT_CAP_SECONDS,
                sleep=self.output_wait(channel),
            )
            if not finished:
                raise self._error(
                    f"guest command timed out after {timeout:.0f} s: {command}\n"
                    f"stdout so far: {_tail(stdout)}\nstderr so far: {_tail(stderr)}",
                    "raise the timeout, or check that the command cannot block",
                )
            if channel.recv_exit_status() == -1 and not self.connected:
                raise self._dropped(command)
            return CommandResult(
                command, channel.recv_exit_status(), stdout.decode(errors="replace"),
                stderr.decode(errors="replace"),
            )  # fmt: skip
        finally:
            _close_quietly(channel)

    def check(self, command: str, timeout: float = 60.0) -> CommandResult:
        """Like run(), but a non-zero exit status raises SSHError carrying stderr."""
        result = self.run(command, timeout)
        if not result.ok:
            raise self._error(
                f"guest command failed (exit {result.exit_status}): {command}\n"
                f"stderr: {_tail(result.stderr.encode())}",
                "see the command's stderr above and the guest console",
            )
        return result

    def start(self, command: str) -> RemoteProcess:
        """Start a long-running program (e.g. memhog) and talk to it line by line.

        Its session ends only once RemoteProcess.wait() (or close_stdin()) gives it EOF, not
        when the program exits: see hold_exit_until_eof().
        """
        return RemoteProcess(self, command, self._open_channel(hold_exit_until_eof(command)))

    def _open_channel(self, command: str) -> paramiko.Channel:
        if not self.connected or self._client is None:
            raise self._error(
                f"not connected to guest {self._where()} (running {command!r})",
                "call connect() first; if it was connected, the guest may have died",
            )
        self.check_while_waiting()  # a guest known to be hung is not asked again
        transport = self._client.get_transport()
        assert transport is not None
        try:
            channel = transport.open_session(timeout=CHANNEL_OPEN_TIMEOUT)
            with self._watching_the_peer(channel):
                channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as error:
            self.check_while_waiting()  # the watcher found the VM hung or dead: that is why
            if self.connected:  # no answer on a live connection: hung, or only slow?
                self._await_peer_verdict(OPEN_VERDICT_SECONDS)
            raise self._error(
                f"could not start guest command {command!r}: {error}",
                "the SSH connection broke: look at the guest console",
            ) from error
        return channel

    @contextmanager
    def _watching_the_peer(self, channel: paramiko.Channel) -> Iterator[None]:
        """paramiko's exec_command() waits for the server's answer with no deadline: a guest
        whose kernel hangs after the channel opened never sends it. Meanwhile a watcher asks
        check_peer every PEER_WATCH_SECONDS; once the VM is found dead or hung (which kills
        it) the channel is closed, exec_command() raises, and the verdict is raised below."""
        if self.check_peer is None:
            yield
            return
        done = threading.Event()

        def watch() -> None:
            while not done.wait(PEER_WATCH_SECONDS):
                try:
                    self.check_while_waiting()
                except Exception:  # the VM is gone or hung: end the wait
                    channel.close()
                    return

        watcher = threading.Thread(target=watch, name="ssh-peer-watch", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()
            watcher.join(timeout=PEER_WATCH_SECONDS + 1)

    def check_while_waiting(self) -> None:
        """Raise at once if the VM behind the connection died or hung (check_peer)."""
        if self.check_peer is not None:
            self.check_peer(0.0)

    def output_wait(self, channel: paramiko.Channel) -> Callable[[float], None]:
        """A pause for poll_until while a command's output is awaited: until the channel
        has stdout data or closes, or the pause is over; then the peer is checked."""

        def wait(seconds: float) -> None:
            select.select([channel], [], [], seconds)
            self.check_while_waiting()

        return wait

    def _await_peer_verdict(self, seconds: float) -> None:
        """Give check_peer `seconds` to raise (a hang it is about to see); return if not."""
        if self.check_peer is not None:
            # Never done: only check_peer ends it early, by raising.
            poll_until(
                self.check_while_waiting, lambda _: False, timeout=seconds, interval=RETRY_SECONDS
            )

    # ----------------------------------------------------------------- errors

    def _where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def _dropped(self, command: str) -> SSHError:
        return self._error(
            f"the SSH connection to {self._where()} dropped while {command!r} ran",
            "the guest or QEMU went away: look at the guest console",
            peer_grace=DROP_GRACE_SECONDS,
        )

    def _error(self, message: str, hint: str, peer_grace: float = 0.0) -> SSHError:
        if self.check_peer is not None:
            self.check_peer(peer_grace)
        if self.console_tail is not None:
            message = f"{message}\n--- guest console (tail) ---\n{self.console_tail()}"
        return SSHError(message, hint)


def hold_exit_until_eof(command: str) -> str:
    """`command` in a shell that, after it ends, reads stdin to EOF before exiting with its
    status.

    Dropbear 2022.83 (Debian 12's, the guest's) aborts the whole connection with "Failed
    assertion (common-channel.c:705): `!channel->sent_close'" when one of its session
    shells exits while another channel is opened but not yet running its command: the
    SIGCHLD makes it close the new channel early (mkj/dropbear#321, fixed in 2024.86). A
    background program that ends by itself while the harness opens a channel for a
    `cat` hit that (the merges-in-the-drain step, 1 run in 3). The harness is one thread,
    so a session that ends only when RemoteProcess.wait() closes stdin never ends while
    the harness is opening another one.
    """
    return f"(\n{command}\n)\nstatus=$?\ncat >/dev/null\nexit $status"


class RemoteProcess:
    """A guest program started with GuestSSH.start(): line I/O with timeouts."""

    def __init__(self, ssh: GuestSSH, command: str, channel: paramiko.Channel) -> None:
        self.command = command
        self._ssh = ssh
        self._channel = channel
        self._stdout = bytearray()
        self._stderr = bytearray()
        self._finished = False

    def read_line(self, timeout: float = 60.0) -> str:
        """The next stdout line without its newline; "" once stdout is closed (EOF)."""

        def line_or_end() -> bool:
            finished = _drain(self._channel, self._stdout, self._stderr)
            ended = self._channel.eof_received and not self._channel.recv_ready()
            return b"\n" in self._stdout or finished or ended

        _, ready = poll_until(
            line_or_end,
            bool,
            timeout=timeout,
            interval=WAIT_CAP_SECONDS,
            sleep=self._ssh.output_wait(self._channel),
        )
        if b"\n" in self._stdout:
            line, _, rest = bytes(self._stdout).partition(b"\n")
            self._stdout = bytearray(rest)
            return line.decode(errors="replace")
        if not ready:
            raise self._ssh._error(
                f"no line from {self.command!r} within {timeout:.0f} s; "
                f"partial stdout: {_tail(self._stdout)}; stderr: {_tail(self._stderr)}",
                "check that the program flushes its output and is not stuck",
            )
        if not self._ssh.connected:  # stdout ended because the connection did
            raise self._ssh._dropped(self.command)
        line, self._stdout = bytes(self._stdout), bytearray()
        return line.decode(errors="replace")

    def expect_line(self, expected: str, timeout: float = 60.0) -> str:
        """Read one line and raise SSHError unless it equals `expected`."""
        line = self.read_line(timeout)
        if line != expected:
            raise self._ssh._error(
                f"{self.command!r} printed {line!r}, expected {expected!r}; "
                f"stderr: {_tail(self._stderr)}",
                "see the program's stderr and the guest console",
            )
        return line

    def write_line(self, text: str = "") -> None:
        self._channel.sendall((text + "\n").encode())

    def close_stdin(self) -> None:
        self._channel.shutdown_write()

    def wait(self, timeout: float = 60.0) -> CommandResult:
        """Close its stdin and wait for the program to exit; returns everything it printed
        that was not read. (A program still waiting for a line takes EOF for one.)"""
        if not self._channel.closed:
            with contextlib.suppress(paramiko.SSHException, OSError, EOFError):
                self.close_stdin()  # a broken connection shows in the drain below
        _, finished = poll_until(
            lambda: _drain(self._channel, self._stdout, self._stderr),
            bool,
            timeout=timeout,
            interval=WAIT_CAP_SECONDS,
            sleep=self._ssh.output_wait(self._channel),
        )
        if not finished:
            raise self._ssh._error(
                f"{self.command!r} did not exit within {timeout:.0f} s of its stdin closing",
                "look at what it was doing on the guest console, or kill() it",
            )
        self._finished = True
        if self._channel.recv_exit_status() == -1 and not self._ssh.connected:
            raise self._ssh._dropped(self.command)
        result = CommandResult(
            self.command, self._channel.recv_exit_status(),
            self._stdout.decode(errors="replace"), self._stderr.decode(errors="replace"),
        )  # fmt: skip
        self._channel.close()
        return result

    @property
    def stderr_so_far(self) -> str:
        return self._stderr.decode(errors="replace")

    def kill(self) -> None:
        """Drop the channel; dropbear then hangs up on the program."""
        _close_quietly(self._channel)

    def __enter__(self) -> RemoteProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._finished:
            self.kill()


def _close_quietly(channel: paramiko.Channel) -> None:
    """Close a channel whose connection may be gone (a VM killed under it): what is being
    raised already says why."""
    with contextlib.suppress(paramiko.SSHException, OSError, EOFError):
        channel.close()


def _drain(channel: paramiko.Channel, stdout: bytearray, stderr: bytearray) -> bool:
    """Move whatever arrived into the buffers; True once the command exited and all is read."""
    while channel.recv_ready():
        stdout += channel.recv(READ_CHUNK)
    while channel.recv_stderr_ready():
        stderr += channel.recv_stderr(READ_CHUNK)
    # Data precedes exit-status on the channel, so once the status is here all data is too.
    return (
        channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready()
    )


def _tail(data: bytes | bytearray, limit: int = 2000) -> str:
    text = bytes(data).decode(errors="replace").strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if `host:port` can be bound right now (SO_REUSEADDR, as QEMU's hostfwd does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def pick_free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel considers free on `host` now (QEMU binds it a moment later).

    Under pytest-xdist the port comes from this worker's own range, so that two workers
    never hand QEMU the same port between the check and the bind."""
    ports = worker_port_range()
    if ports is None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            return int(probe.getsockname()[1])
    start = random.randrange(len(ports))  # a worker's next VM rarely gets its last port
    for offset in range(len(ports)):
        port = ports[(start + offset) % len(ports)]
        if port_is_free(port, host):
            return port
    raise SSHError(
        f"no free port in {ports.start}-{ports.stop - 1} on {host} for this worker's SSH forward",
        "stop what holds those ports, or run with fewer workers",
    )
