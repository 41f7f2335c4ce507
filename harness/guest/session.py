"""Guest: a booted VM and the SSH session into it, side by side.

GuestVM owns the QEMU process (launch, console, QMP, death, reset); GuestSSH owns one
paramiko connection. Neither owns the other: the Guest starts the VM, then connects SSH
with the run's key, and hands the session two views of the VM (its console tail for
error messages, and `check_responsive` so that a command waiting on a dead QEMU or a hung
guest says so at once). A Guest is used where a VM is: what it does not define itself
(QMP, the console, the pid, the paths, `hang`) is the VM's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import paramiko

from harness.core.errors import VMError, VMLaunchFailure
from harness.guest.ssh import GuestSSH
from harness.guest.vm import GuestVM

MIN_CONNECT_SECONDS = 5.0  # even a guest that used its whole boot deadline gets this long


class Guest:
    """A context manager: the VM started and SSH connected, or nothing left running."""

    def __init__(
        self,
        vm: GuestVM,
        key: paramiko.PKey,
        before_shutdown: Callable[[GuestSSH], None] | None = None,
    ) -> None:
        self.vm = vm
        self._key = key
        # Runs while the guest still answers, before it shuts down or resets (a coverage
        # kernel's counters are read then: harness/observe/gcov.py).
        self._before_shutdown = before_shutdown
        self._ssh: GuestSSH | None = None
        self.ssh_seconds: float | None = None  # launch -> SSH connected
        self._connect_seconds = 0.0

    def __enter__(self) -> Guest:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        # Only called for names a Guest does not have: QEMU's side is the VM's.
        if name == "vm":  # not yet set (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.vm, name)

    def start(self) -> None:
        """Boot the VM, then connect SSH within what is left of its boot deadline; a guest
        that cannot be reached is an infrastructure fault raised during boot."""
        self.vm.start()
        try:
            self._connect(self.vm.config.boot_timeout - (self.vm.boot_seconds or 0.0))
            self.ssh_seconds = (self.vm.boot_seconds or 0.0) + self._connect_seconds
        except BaseException as error:
            if isinstance(error, VMError):
                error.during_boot = True
            self.close()
            raise

    def _connect(self, left: float) -> None:
        """Connect SSH within `left` seconds (at least MIN_CONNECT_SECONDS)."""
        started = time.monotonic()
        ssh = GuestSSH(
            port=self.vm.ssh_port,
            key=self._key,
            console_tail=self.vm.console_tail,
            check_peer=self.vm.check_responsive,
        )
        ssh.connect(timeout=max(MIN_CONNECT_SECONDS, left))
        self._ssh = ssh
        self._connect_seconds = time.monotonic() - started

    @property
    def ssh(self) -> GuestSSH:
        if self._ssh is None:
            raise VMLaunchFailure(
                f"guest {self.vm.boot_id} has no SSH session", "start() the Guest first"
            )
        return self._ssh

    def reset(self, timeout: float | None = None) -> float:
        """system_reset (GuestVM.reset), then a new SSH session; the seconds from the reset
        to that session."""
        self._last_words()
        self._close_ssh()
        limit = timeout or self.vm.config.boot_timeout
        started = time.monotonic()
        self.vm.reset(limit)
        self._connect(limit - (time.monotonic() - started))
        return time.monotonic() - started

    def close(self) -> None:
        self._last_words()
        self._close_ssh()
        self.vm.close()

    def _last_words(self) -> None:
        if self.vm.hang is not None:
            return  # killed: nothing left to ask
        if self._before_shutdown is not None and self._ssh is not None:
            self._before_shutdown(self._ssh)

    def _close_ssh(self) -> None:
        if self._ssh is not None:
            self._ssh.close()
            self._ssh = None
