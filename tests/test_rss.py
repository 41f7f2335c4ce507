"""RSS sampler: a real child process for the main path, a fake /proc for the edge cases."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.core.units import MiB as MIB
from harness.observe.rss import (
    ProcessExited,
    RssError,
    RssSample,
    RssSampler,
    read_rss_breakdown,
    read_rss_bytes,
    read_samples_csv,
    time_to_fraction,
)

ALLOCATION = 200 * MIB
WAIT = 30.0  # generous deadlines: the assertions are about values, never about speed

# Allocates 200 MiB (every page written), frees it on request, exits on request.
HOG = textwrap.dedent(
    f"""
    import sys
    sys.stdin.readline()
    block = b"\\x01" * {ALLOCATION}
    print("allocated", flush=True)
    sys.stdin.readline()
    del block
    print("freed", flush=True)
    sys.stdin.readline()
    """
)


@pytest.fixture
def hog() -> Iterator[subprocess.Popen[str]]:
    child = subprocess.Popen(
        [sys.executable, "-c", HOG], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    yield child
    child.kill()
    child.wait()


def tell(child: subprocess.Popen[str], expect: str | None) -> None:
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    if expect is not None:
        assert child.stdout.readline().strip() == expect


def test_real_child_allocation_and_release_are_seen(
    hog: subprocess.Popen[str], tmp_path: Path
) -> None:
    with RssSampler(hog.pid, interval=0.05) as sampler:
        first = sampler.wait_until(lambda s: True, WAIT)
        assert first is not None
        baseline = first.rss_bytes
        assert baseline < ALLOCATION / 2

        tell(hog, "allocated")
        high = sampler.wait_until(lambda s: s.rss_bytes >= baseline + ALLOCATION * 0.9, WAIT)
        assert high is not None

        tell(hog, "freed")
        release_t = high.t
        low = sampler.wait_until(lambda s: s.rss_bytes <= baseline + ALLOCATION * 0.1, WAIT)
        assert low is not None

        peak = sampler.peak()
        assert peak is not None and peak.rss_bytes >= baseline + ALLOCATION * 0.9
        seconds = time_to_fraction(sampler.samples, release_t, baseline, peak.rss_bytes)
        assert seconds is not None and 0 <= seconds <= low.t - release_t

        tell(hog, None)  # the child exits: sampling must stop by itself, without error
        hog.wait(timeout=WAIT)
        assert sampler.wait_until(lambda s: False, WAIT) is None
        assert sampler.exited and not sampler.running

    rows = read_samples_csv(sampler.to_csv(tmp_path / "rss.csv"))
    assert rows == sampler.samples
    assert len(rows) >= 3


def test_read_rss_of_this_process_matches_breakdown() -> None:
    import os

    breakdown = read_rss_breakdown(os.getpid())
    assert breakdown.rss > 0
    assert breakdown.anon + breakdown.file + breakdown.shmem == breakdown.rss


def test_real_exited_process_raises_process_exited() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with pytest.raises(ProcessExited):
        read_rss_bytes(child.pid)


# --- fake /proc ------------------------------------------------------------------------------

STATUS = "Name:\tqemu\nVmPeak:\t  9000 kB\nVmRSS:\t  {rss} kB\nRssAnon:\t {rss} kB\n"
ZOMBIE_STATUS = "Name:\tqemu\nState:\tZ (zombie)\nThreads:\t1\n"


class FakeProc:
    """Serves scripted /proc/PID/status texts; after the script it reports the process gone."""

    def __init__(self, script: list[str | BaseException]) -> None:
        self.script = list(script)
        self.reads = 0
        self.lock = threading.Lock()

    def __call__(self, pid: int) -> str:
        with self.lock:
            self.reads += 1
            if not self.script:
                raise ProcessExited(f"process {pid} has exited")
            item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def run_fake(script: list[str | BaseException]) -> RssSampler:
    sampler = RssSampler(1234, interval=0.001, read_status=FakeProc(script), clock=FakeClock())
    sampler.start()
    sampler.wait_until(lambda s: False, WAIT)  # returns once sampling ended by itself
    return sampler


def test_fake_samples_in_order_until_exit() -> None:
    sampler = run_fake([STATUS.format(rss=rss) for rss in (100, 300, 200)])
    sampler.stop()
    assert sampler.samples == [
        RssSample(1.0, 102400),
        RssSample(2.0, 307200),
        RssSample(3.0, 204800),
    ]
    assert sampler.peak() == RssSample(2.0, 307200)
    assert sampler.latest() == RssSample(3.0, 204800)
    assert sampler.exited


def test_zombie_status_without_vmrss_ends_sampling() -> None:
    sampler = run_fake([STATUS.format(rss=10), ZOMBIE_STATUS, STATUS.format(rss=99)])
    sampler.stop()
    assert [s.rss_bytes for s in sampler.samples] == [10240]
    assert sampler.exited


def test_vanished_proc_file_ends_sampling() -> None:
    impossible_pid = 2**31 - 1  # above any pid_max: /proc/PID/status does not exist
    with RssSampler(impossible_pid, interval=0.001) as sampler:
        assert sampler.wait_until(lambda s: True, WAIT) is None
    assert sampler.exited and sampler.samples == []


def test_error_in_thread_is_not_lost() -> None:
    sampler = run_fake([STATUS.format(rss=1), "VmRSS:\tlots kB\n"])
    with pytest.raises(RssError, match="lots") as caught:
        sampler.stop()
    assert isinstance(caught.value.__cause__, RssError)
    assert not sampler.exited


def test_unexpected_exception_in_reader_is_not_lost() -> None:
    sampler = run_fake([STATUS.format(rss=1), PermissionError("/proc/1234/status")])
    with pytest.raises(RssError, match=r"PermissionError|/proc/1234/status"):
        sampler.stop()


def test_empty_sampler_has_no_peak_or_latest() -> None:
    sampler = RssSampler(1, read_status=FakeProc([]))
    assert sampler.latest() is None and sampler.peak() is None


def test_wait_until_after_sampling_ended_checks_only_the_latest() -> None:
    sampler = run_fake([STATUS.format(rss=rss) for rss in (1, 500, 1)])
    sampler.stop()
    # the sampler already ended: only the latest sample is considered, and it does not match
    assert sampler.wait_until(lambda s: s.rss_bytes == 500 * 1024, 0.0) is None
    assert sampler.wait_until(lambda s: s.rss_bytes == 1024, 0.0) == RssSample(3.0, 1024)


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval"):
        RssSampler(1, interval=0)


# --- time_to_fraction ------------------------------------------------------------------------


def series(*points: tuple[float, int]) -> list[RssSample]:
    return [RssSample(t, rss) for t, rss in points]


def test_time_to_fraction_counts_from_release() -> None:
    samples = series((0, 100), (1, 1100), (2, 1100), (3, 600), (4, 190), (5, 100))
    # 90% of 1000 returned means RSS <= 200: first at t=4, release at t=2
    assert time_to_fraction(samples, 2.0, 100, 1100) == pytest.approx(2.0)
    assert time_to_fraction(samples, 2.0, 100, 1100, fraction=0.5) == pytest.approx(1.0)


def test_time_to_fraction_ignores_samples_before_release() -> None:
    samples = series((0, 100), (1, 1100), (2, 1100), (3, 1050))
    assert time_to_fraction(samples, 1.0, 100, 1100) is None


def test_time_to_fraction_none_without_growth() -> None:
    assert time_to_fraction(series((0, 100), (1, 50)), 0.0, 100, 100) is None


def test_time_to_fraction_rejects_bad_fraction() -> None:
    with pytest.raises(ValueError, match="fraction"):
        time_to_fraction([], 0.0, 0, 1, fraction=0)


def test_release_waits_for_the_rise_or_a_settled_rss() -> None:
    """The release workload's wait for QEMU's RSS to catch up ends when it rose enough, or
    when it stopped growing (touching memory the host still backs adds nothing)."""
    from harness.drive.workloads import _risen_or_settled
    from harness.observe.rss import RssSample

    risen = _risen_or_settled(baseline=100 * MIB, target_rise=300 * MIB)
    assert not risen(RssSample(0.0, 150 * MIB))
    assert risen(RssSample(0.2, 420 * MIB))
    settled = _risen_or_settled(baseline=100 * MIB, target_rise=300 * MIB)
    flat = [settled(RssSample(t / 5, 250 * MIB)) for t in range(12)]  # 2.2 s, no growth
    assert flat[:10] == [False] * 10 and flat[-1]
    growing = _risen_or_settled(baseline=100 * MIB, target_rise=300 * MIB)
    rising = [growing(RssSample(t / 5, (150 + 10 * t) * MIB)) for t in range(15)]
    assert not any(rising)  # 50 MiB/s: still catching up


def test_return_watch_ends_at_the_target_or_once_a_passing_return_has_settled() -> None:
    """The watch after a release ends when `enough` came back; or when what the judge needs
    came back and the RSS stopped falling for `settle_s` (89 % of 90 % must not wait out the
    deadline); a return short of the judge's bar is watched to the deadline, flat or not."""
    from harness.drive.workloads import _returned_or_settled
    from harness.observe.rss import RssSample

    peak = 1300 * MIB
    reached = _returned_or_settled(peak, enough=900 * MIB, passing=800 * MIB, settle_s=2.0)
    assert not reached(RssSample(0.0, 1000 * MIB))
    assert reached(RssSample(0.2, 390 * MIB))

    plateau = _returned_or_settled(peak, enough=900 * MIB, passing=800 * MIB, settle_s=2.0)
    falling = [plateau(RssSample(t / 5, (1300 - 100 * t) * MIB)) for t in range(5)]
    flat = [plateau(RssSample(1.0 + t / 5, 450 * MIB)) for t in range(12)]  # 850 MiB back
    assert not any(falling)
    assert flat[:10] == [False] * 10 and flat[-1]  # ends 2 s into the plateau

    short = _returned_or_settled(peak, enough=900 * MIB, passing=800 * MIB, settle_s=2.0)
    assert not any(short(RssSample(t / 5, 600 * MIB)) for t in range(50))  # 700 MiB back
    unbounded = _returned_or_settled(peak, enough=900 * MIB, passing=None, settle_s=2.0)
    assert not any(unbounded(RssSample(t / 5, 450 * MIB)) for t in range(50))


def test_the_release_settle_follows_the_revisions_cadence() -> None:
    """Three worker delays, at least 2 s: 6 s for stock reporting (2 s between passes)."""
    from harness.build.revisions import resolve
    from harness.scenarios.test_release import passing_bytes, settle_for

    assert settle_for(resolve("stock")) == 6.0
    assert settle_for(resolve("hinting-v2-fixed")) == 2.0
    assert passing_bytes(1200) == int(0.8 * 1200 * MIB)
