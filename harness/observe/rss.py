"""Host-side sampling of a process's resident set size (the QEMU process, in practice).

Free page hinting shows from the host as the QEMU process RSS falling after the guest frees
memory, so the sampler records (time, RSS) pairs in a background thread and the helpers
here turn them into numbers: peak, time until most of the memory came back.
Times are `time.monotonic()` seconds unless a different clock is injected.

The numbers come from /proc/<pid>/status, not psutil: the evidence splits the RSS into
RssAnon, RssFile and RssShmem (guest RAM is anonymous or shared memory, depending on the
memory backend), which psutil's memory_info() does not give, and its memory_full_info()
walks smaps, far too slow for a 10 Hz sampler of a multi-GiB process.
"""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from harness.core.errors import HarnessError

StatusReader = Callable[[int], str]


class RssError(HarnessError):
    """/proc/PID/status could not be read or understood."""


class ProcessExited(RssError):
    """The sampled process is gone (or a zombie without memory)."""


@dataclass(frozen=True)
class RssSample:
    t: float  # seconds on the sampler's clock (time.monotonic by default)
    rss_bytes: int


@dataclass(frozen=True)
class RssBreakdown:
    """VmRSS and its parts, in bytes (RssAnon + RssFile + RssShmem == VmRSS)."""

    rss: int
    anon: int
    file: int
    shmem: int


def read_proc_status(pid: int) -> str:
    """Text of /proc/PID/status; ProcessExited when the process is gone."""
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise ProcessExited(f"process {pid} has exited", "nothing to sample any more") from exc


def _status_kb_fields(pid: int, text: str) -> dict[str, int]:
    """The "Name:   123 kB" lines of a status file, values in kB."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        words = rest.split()
        if sep and len(words) == 2 and words[1] == "kB":
            try:
                fields[name] = int(words[0])
            except ValueError:
                raise RssError(
                    f"/proc/{pid}/status: bad value in {line!r}", "is this a Linux /proc?"
                ) from None
    return fields


def read_rss_breakdown(pid: int, read_status: StatusReader = read_proc_status) -> RssBreakdown:
    """VmRSS, RssAnon, RssFile, RssShmem of `pid` in bytes."""
    fields = _status_kb_fields(pid, read_status(pid))
    if "VmRSS" not in fields:
        # A zombie keeps its status file but has no memory lines any more.
        raise ProcessExited(f"process {pid} has no VmRSS (exited)", "nothing to sample any more")
    return RssBreakdown(
        rss=fields["VmRSS"] * 1024,
        anon=fields.get("RssAnon", 0) * 1024,
        file=fields.get("RssFile", 0) * 1024,
        shmem=fields.get("RssShmem", 0) * 1024,
    )


def read_rss_bytes(pid: int, read_status: StatusReader = read_proc_status) -> int:
    """VmRSS of `pid` in bytes; ProcessExited if it is gone."""
    return read_rss_breakdown(pid, read_status).rss


class RssSampler:
    """Samples a process's RSS every `interval` seconds in a background thread.

    Use as a context manager. Sampling stops by itself when the process exits (`exited`
    becomes True); any other error in the thread is kept and raised by `stop()`.
    """

    def __init__(
        self,
        pid: int,
        interval: float = 0.2,
        *,
        read_status: StatusReader = read_proc_status,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.pid = pid
        self.interval = interval
        self._read_status = read_status
        self._clock = clock
        self._samples: list[RssSample] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._running = False
        self.exited = False
        self.error: BaseException | None = None

    # lifecycle -----------------------------------------------------------------------------

    def start(self) -> RssSampler:
        if self._thread is not None:
            raise RuntimeError("RssSampler already started")
        self._running = True
        self._thread = threading.Thread(
            target=self._run, name=f"rss-sampler-{self.pid}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling and join the thread; re-raise an error the thread hit."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            raise RssError(
                f"RSS sampling of process {self.pid} failed: {self.error}",
                "see the chained exception",
            ) from self.error

    def __enter__(self) -> RssSampler:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.stop()
            return
        # An exception is already on its way out: stop quietly, keep self.error for callers.
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def running(self) -> bool:
        return self._running

    def _run(self) -> None:
        try:
            while True:
                self._take_sample()
                if self._stop.wait(self.interval):
                    break
        except ProcessExited:
            self.exited = True
        except BaseException as exc:  # kept for stop(); a thread cannot raise to its caller
            self.error = exc
        finally:
            with self._changed:
                self._running = False
                self._changed.notify_all()

    def _take_sample(self) -> None:
        rss = read_rss_bytes(self.pid, self._read_status)
        sample = RssSample(self._clock(), rss)
        with self._changed:
            self._samples.append(sample)
            self._changed.notify_all()

    # results -------------------------------------------------------------------------------

    @property
    def samples(self) -> list[RssSample]:
        """A copy of every sample so far, oldest first."""
        with self._changed:
            return list(self._samples)

    def latest(self) -> RssSample | None:
        with self._changed:
            return self._samples[-1] if self._samples else None

    def peak(self) -> RssSample | None:
        with self._changed:
            return max(self._samples, key=lambda s: s.rss_bytes, default=None)

    def wait_until(
        self, predicate: Callable[[RssSample], bool], timeout: float
    ) -> RssSample | None:
        """First sample, from the latest one at call time on, for which `predicate` holds.

        Returns None when `timeout` seconds pass or sampling ends without a match.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            index = max(len(self._samples) - 1, 0)
            while True:
                for sample in self._samples[index:]:
                    if predicate(sample):
                        return sample
                index = len(self._samples)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._running:
                    return None
                self._changed.wait(remaining)

    def to_csv(self, path: Path) -> Path:
        return write_samples_csv(self.samples, path)


def write_samples_csv(samples: list[RssSample], path: Path) -> Path:
    """Write `t,rss_bytes` rows (header first); returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["t", "rss_bytes"])
        for sample in samples:
            writer.writerow([repr(sample.t), sample.rss_bytes])  # repr: exact round trip
    return path


def read_samples_csv(path: Path) -> list[RssSample]:
    with path.open(newline="") as src:
        return [RssSample(float(row["t"]), int(row["rss_bytes"])) for row in csv.DictReader(src)]


def time_to_fraction(
    samples: list[RssSample],
    start_t: float,
    baseline: int,
    peak: int,
    fraction: float = 0.9,
) -> float | None:
    """Seconds from `start_t` (the release) until `fraction` of (peak - baseline) came back.

    "Came back" means RSS fell to peak - fraction * (peak - baseline) or below. None when
    that never happens in `samples`, or when peak <= baseline (nothing to return).
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if peak <= baseline:
        return None
    target = peak - fraction * (peak - baseline)
    for sample in samples:
        if sample.t >= start_t and sample.rss_bytes <= target:
            return sample.t - start_t
    return None
