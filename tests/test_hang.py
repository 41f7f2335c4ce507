"""Hang triage: the System.map symbolizer, the `info registers` parser (real dumps), the
heartbeat's staleness with a fake clock, vCPU sampling over a fake QMP, how a hang is
reported (a failed check `guest_responsive`, later steps on that guest skipped as blocked,
the mutant campaign's reading), a fake QEMU that stops ticking, and a real stock-kernel
guest whose vCPUs are stopped over QMP."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import process_gone

from harness.campaigns.mutants import catching_check, classify
from harness.core.errors import GuestHung
from harness.core.poll import poll_until
from harness.guest.cmdline import VMConfig
from harness.guest.console import ConsoleWatcher, console_tail
from harness.guest.hang import (
    Heartbeat,
    Registers,
    Triage,
    VcpuSample,
    describe_vcpus,
    format_dump,
    hang_detail,
    is_tick,
    parse_register_dump,
    parse_registers,
    sample_vcpus,
)
from harness.guest.session import Guest
from harness.guest.ssh import RunKey
from harness.guest.symbols import SymbolMap, describe_address, system_map_for
from harness.guest.vm import HANG_REGISTERS, GuestVM
from harness.observe import dmesg
from harness.pipeline import stock_kernel
from harness.pytest_plugin.outcomes import hang_check, is_infrastructure_fault

PLUGIN = "harness.pytest_plugin"

FIXTURES = Path(__file__).parent / "fixtures" / "hang"
IDLE_RIP = 0xFFFFFFFF812EC8E3  # both captured vCPUs: halted in the idle loop


@pytest.fixture(scope="module")
def symbols() -> SymbolMap:
    found = SymbolMap.load(FIXTURES / "System.map")
    assert found is not None
    return found


# ----------------------------------------------------------------- System.map


def test_symbolizer_names_the_function_and_its_size(symbols: SymbolMap) -> None:
    # a section marker (__cpuidle_text_start) shares the address: the function wins
    assert symbols.symbolize(IDLE_RIP) == "native_safe_halt+0x13/0x14"
    assert symbols.symbolize(0xFFFFFFFF812EC8E4) == "default_idle+0x0/0x2"
    assert symbols.symbolize(0xFFFFFFFF812ECAB5) == "acpi_idle_do_entry+0x5/0x31"
    # _stext and _text are markers at startup_64's address
    assert symbols.symbolize(0xFFFFFFFF81000005) == "startup_64+0x5/0x60"


def test_symbolizer_leaves_what_is_not_kernel_code_raw(symbols: SymbolMap) -> None:
    assert symbols.symbolize(0x401000) is None  # user space (and per-cpu offsets near 0)
    assert symbols.symbolize(0xFFFFFFFF80000000) is None  # below the first symbol
    assert symbols.symbolize(0xFFFFFFFF818000A4) is None  # data (rodata)
    assert symbols.symbolize(0xFFFFFFFFFFFFF000) is None  # past the last symbol: no size
    assert describe_address(0x401000, symbols) == "0x401000"
    assert describe_address(IDLE_RIP, None) == "0xffffffff812ec8e3"


def test_system_map_is_found_beside_the_kernel(tmp_path: Path) -> None:
    kernel = tmp_path / "builds" / "k" / "bzImage"
    assert system_map_for(kernel) == tmp_path / "builds" / "k" / "System.map"
    assert SymbolMap.load(system_map_for(kernel)) is None  # an older build kept none


# ----------------------------------------------------------------- info registers


def test_register_dump_of_one_vcpu() -> None:
    text = (FIXTURES / "info-registers-cpu0.txt").read_text()
    assert parse_registers(text) == Registers(rip=IDLE_RIP, cpl=0, halted=True)
    assert parse_register_dump(text) == {0: Registers(IDLE_RIP, 0, True)}


def test_register_dump_of_all_vcpus() -> None:
    dump = parse_register_dump((FIXTURES / "info-registers-all.txt").read_text())
    assert sorted(dump) == [0, 1]
    assert all(r.rip == IDLE_RIP and r.cpl == 0 and r.halted for r in dump.values())


def test_register_dump_without_a_rip_is_refused() -> None:
    with pytest.raises(ValueError, match="no RIP"):
        parse_registers("Error: CPU 7 is not present\n")


def test_running_vcpu_and_user_space_are_told_apart() -> None:
    text = (FIXTURES / "info-registers-cpu0.txt").read_text()
    user = text.replace("RIP=ffffffff812ec8e3", "RIP=0000000000401136").replace("CPL=0", "CPL=3")
    assert parse_registers(user.replace("HLT=1", "HLT=0")) == Registers(0x401136, 3, False)


# ----------------------------------------------------------------- heartbeat


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_heartbeat_counts_only_after_the_ready_marker() -> None:
    clock = FakeClock()
    beat = Heartbeat(limit=30.0, clock=clock)
    beat.tick()  # a tick before the boot's ready marker: booting, not counted
    clock.now += 100
    assert beat.silence() is None and beat.stale() is None
    beat.booted()
    clock.now += 100  # ready but not ticking yet (an image without the ticker): not hung
    assert beat.stale() is None
    beat.tick()
    clock.now += 29.9
    assert beat.silence() == pytest.approx(29.9) and beat.stale() is None
    clock.now += 0.1
    assert beat.stale() == pytest.approx(30.0)
    beat.tick()
    assert beat.stale() is None and beat.ticks == 2


def test_heartbeat_is_silent_through_a_reset() -> None:
    clock = FakeClock()
    beat = Heartbeat(limit=30.0, clock=clock)
    beat.booted()
    beat.tick()
    beat.rebooting()
    beat.tick()  # the old boot's last tick, read after the reset began: not counted
    clock.now += 120  # a slow boot
    assert beat.stale() is None
    beat.booted()
    beat.tick()
    clock.now += 31
    assert beat.stale() == pytest.approx(31.0)


def test_console_watcher_hands_ready_marker_and_ticks_to_the_heartbeat(tmp_path: Path) -> None:
    clock = FakeClock()
    watcher = ConsoleWatcher(tmp_path / "console.log", "abc", Heartbeat(clock=clock))
    watcher._check_line("[    1.932511] PHH-TICK 1.97")
    watcher._check_line("PHH-READY abc")
    watcher._check_line("[    3.935479] PHH-TICK 3.97")
    assert watcher.ready.is_set() and watcher.heartbeat.ticks == 1
    assert watcher.fatal_line is None


def test_ticks_are_left_out_of_console_tails_and_kernel_log_reports() -> None:
    assert is_tick("[    3.935479] PHH-TICK 3.97") and is_tick("PHH-TICK 12.00\r")
    assert not is_tick("[    3.9] echo PHH-TICK was here")
    log = "\n".join(
        [
            "[   10.000000] BUG: unable to handle page fault for address: 0000000000000008",
            "[   10.000001] RIP: 0010:get_unhinted_page+0x5c/0x120",
            "[   10.100000] PHH-TICK 10.10",
            "[   10.000002] Call Trace:",  # a trace without <TASK> markers ends at a non-frame
            "[   10.000003]  page_hinting_cycle+0x10/0x200",
            "[   12.100000] PHH-TICK 12.10",  # (the other vCPU's tick)
            "[   10.000004]  process_one_work+0x1e2/0x3b0",
            "[   12.200000] WARNING: CPU: 0 PID: 1 at mm/page_alloc.c:1 free_one_page+0x1/0x2",
        ]
    )
    bug, warning = dmesg.classify(log)
    assert bug.id == "BUG:unable_to_handle_page_fault_for_address:get_unhinted_page"
    assert bug.line_no == 1 and "PHH-TICK" not in bug.excerpt
    assert "process_one_work" in bug.excerpt  # the tick did not end the trace
    assert warning.line_no == 8  # lines of the log as given, ticks included
    assert "PHH-TICK" not in console_tail(log) and "process_one_work" in console_tail(log)


# ----------------------------------------------------------------- sampling (fake QMP)


def registers_text(rip: int, cpl: int = 0, halted: bool = False) -> str:
    sample = (FIXTURES / "info-registers-cpu0.txt").read_text()
    return (
        sample.replace("RIP=ffffffff812ec8e3", f"RIP={rip:016x}")
        .replace("CPL=0", f"CPL={cpl}")
        .replace("HLT=1", f"HLT={int(halted)}")
    )


class FakeQmp:
    """QMP as sample_vcpus uses it: vCPU 0 spins in one function, vCPU 1 idles."""

    def __init__(self, status: str = "running", fail_at: str | None = None) -> None:
        self.status = status
        self.fail_at = fail_at
        self.calls: list[str] = []
        self.rips = iter([0xFFFFFFFF812EC8E6 + n for n in (0, 8, 0x20)])  # mwait_idle+...

    def __call__(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        self.calls.append(command)
        if command == self.fail_at and self.calls.count(command) > 1:
            raise OSError("QMP socket closed")
        if command == "query-status":
            return {"status": self.status, "running": self.status == "running"}
        if command == "query-cpus-fast":
            return [{"cpu-index": 1, "target": "x86_64"}, {"cpu-index": 0, "target": "x86_64"}]
        if command == "human-monitor-command":
            assert arguments is not None and arguments["command-line"] == "info registers"
            if arguments["cpu-index"] == 0:
                return registers_text(next(self.rips))
            return registers_text(IDLE_RIP, halted=True)
        return {}


def test_a_running_vm_is_stopped_for_each_sample_and_continued() -> None:
    qmp, slept = FakeQmp(), []
    triage = sample_vcpus(qmp, samples=3, interval=0.5, sleep=slept.append)
    assert triage.run_state == "running" and triage.error is None and triage.cpus == [0, 1]
    assert slept == [0.5, 0.5]
    one_round = ["stop", "human-monitor-command", "human-monitor-command", "cont"]
    assert qmp.calls == ["query-status", "query-cpus-fast", *one_round * 3]


def test_where_the_vcpus_are(symbols: SymbolMap) -> None:
    triage = sample_vcpus(FakeQmp(), sleep=lambda s: None)
    assert describe_vcpus(triage, symbols) == (
        "vCPU 0 spinning in mwait_idle+0x0/0xa0 (3 of 3 samples), "
        "vCPU 1 halted in native_safe_halt+0x13/0x14 (3 of 3 samples)"
    )
    detail = hang_detail(31.4, triage, symbols)
    assert detail.startswith("no heartbeat for 31 s; vCPU 0 spinning in mwait_idle+0x")
    dump = format_dump(detail, triage, symbols)
    assert dump.count("RIP=") == 6 and "== sample 3 of 3" in dump
    assert "-- vCPU 1: native_safe_halt+0x13/0x14 (halted)" in dump


def test_a_paused_vm_is_sampled_as_it_is(symbols: SymbolMap) -> None:
    qmp = FakeQmp(status="paused")
    triage = sample_vcpus(qmp, sleep=lambda s: None)
    assert "stop" not in qmp.calls and "cont" not in qmp.calls
    detail = hang_detail(30.0, triage, symbols)
    assert detail.startswith("no heartbeat for 30 s (QEMU run state: paused); vCPU 0 stopped in")


def test_vcpus_that_move_around_and_user_space() -> None:
    samples = [
        VcpuSample(0, Registers(0x401136, 3, False), ""),
        VcpuSample(0, Registers(0x401140, 3, False), ""),
        VcpuSample(0, Registers(0xFFFFFFFF812EC8E4, 0, False), ""),
    ]
    triage = Triage("running", [[s] for s in samples])
    assert describe_vcpus(triage, None) == "vCPU 0 in user space (RIP 0x401136) (2 of 3 samples)"
    detail = hang_detail(30, triage, None)
    assert detail.endswith("(no System.map beside the kernel: raw addresses)")


def test_sampling_that_fails_keeps_what_it_has_and_says_why(symbols: SymbolMap) -> None:
    triage = sample_vcpus(FakeQmp(fail_at="stop"), sleep=lambda s: None)
    assert len(triage.rounds) == 1 and triage.error == "OSError: QMP socket closed"
    assert describe_vcpus(triage, symbols).endswith(
        "sampling stopped early: OSError: QMP socket closed"
    )

    def no_qmp(command: str, arguments: object = None) -> object:
        raise ConnectionRefusedError("no QMP socket")

    nothing = sample_vcpus(no_qmp)
    assert describe_vcpus(nothing, symbols) == (
        "vCPU registers unavailable (ConnectionRefusedError: no QMP socket)"
    )


# ----------------------------------------------------------------- reporting


def hung(detail: str = "no heartbeat for 31 s; vCPU 0 spinning in get_unhinted_page+0x5c/0x120"):
    return GuestHung(f"guest_responsive: {detail}\n--- console (tail) ---\n...", detail=detail)


def test_a_hang_is_a_failed_check_that_the_mutant_campaign_reads() -> None:
    error = hung()
    check = hang_check(error)
    assert str(check).startswith("[FAIL] guest_responsive: no heartbeat for 31 s; vCPU 0")
    assert catching_check(check) == "guest_responsive"
    assert not is_infrastructure_fault(pytest.ExceptionInfo.from_exc_info((GuestHung, error, None)))
    again = error.again()
    assert again is not error and again.detail == error.detail and again.message == error.message


BLOCKED_SUITE = '''\
import types
import pytest
from harness.core.errors import GuestHung

@pytest.fixture(autouse=True)
def _kernel_built_first():
    """(the plugin's would build the revision's kernel)"""

class FakeGuest:
    def __init__(self, evidence):
        self.vm = types.SimpleNamespace(hang=None)
        self.verdicts = []
        self.evidence = evidence

    def record(self, label, verdict):
        self.verdicts.append((label, verdict))
        return verdict

    def note(self, text):
        pass

@pytest.fixture(scope="module")
def guest(revision, tmp_path_factory):
    return FakeGuest(tmp_path_factory.mktemp("evidence"))

def test_first_step(guest):
    pass

def test_step_that_hangs(guest):
    detail = "no heartbeat for 31 s; vCPU 0 spinning in get_unhinted_page+0x5c/0x120"
    guest.vm.hang = GuestHung("guest_responsive: " + detail, "killed", detail=detail)
    raise guest.vm.hang

def test_later_step(guest):
    raise AssertionError("must not run on a hung guest")

def test_last_step(guest):
    raise AssertionError("must not run on a hung guest")
'''


def test_later_steps_on_a_hung_guest_are_skipped_as_blocked(tmp_path: Path) -> None:
    """Through the scenario suite's plugin: the step that hung fails `guest_responsive` (a
    failure, not an error), the guest's later steps are skipped naming it, and the mutant
    campaign reads the JUnit as caught by guest_responsive."""
    suite = tmp_path / "test_blocked.py"
    suite.write_text(BLOCKED_SUITE)
    results = tmp_path / "results"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", PLUGIN, "-p", "no:cacheprovider",
         "-o", "junit_family=xunit1", "--revisions", "stock", "--debug-revisions", "",
         "-rs", str(suite), "--results", str(results)],
        cwd=tmp_path, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 failed, 1 passed, 2 skipped" in run.stdout, run.stdout
    assert "blocked: guest hung in test_step_that_hangs[stock]" in run.stdout
    root = ET.parse(results / "junit.xml").getroot()
    cases = {case.get("name"): case for case in root.iter("testcase")}
    failure = cases["test_step_that_hangs[stock]"].find("failure")
    assert failure is not None
    assert (failure.get("message") or "").startswith("[FAIL] guest_responsive: no heartbeat")
    for name in ("test_later_step[stock]", "test_last_step[stock]"):
        skipped = cases[name].find("skipped")
        assert skipped is not None
        assert "blocked: guest hung in test_step_that_hangs[stock]" in (
            skipped.get("message") or ""
        )
    verdicts = [p.get("value") or "" for p in cases["test_step_that_hangs[stock]"].iter("property")]
    assert any('"guest_responsive", "status": "FAIL"' in v for v in verdicts)
    assert classify(results / "junit.xml", 1, clean=False) == ("caught", "guest_responsive")


# ----------------------------------------------------------------- a fake QEMU stops ticking

FAKE_QEMU = """\
#!{python}
# Stand-in for qemu-system-x86_64: boots, ticks twice, then says nothing (no QMP either).
import sys, time
args = sys.argv[1:]
console = next(a for a in args if a.startswith("file,id=console0,path=")).split("path=")[1]
boot_id = args[args.index("-append") + 1].split("phh.boot=")[1]
with open(console, "a") as out:
    out.write(f"PHH-READY {{boot_id}}\\n")
    for n in range(2):
        out.write(f"[    {{n}}.000000] PHH-TICK {{n}}.00\\n")
        out.flush()
        time.sleep(0.2)
while True:
    time.sleep(1)
"""


def test_a_silent_guest_is_hung_even_when_its_vcpus_cannot_be_read(tmp_path: Path) -> None:
    fake = tmp_path / "fake-qemu"
    fake.write_text(FAKE_QEMU.format(python=sys.executable))
    fake.chmod(0o755)
    for name in ("bzImage", "initrd.img"):
        (tmp_path / name).touch()
    config = VMConfig(
        kernel=tmp_path / "bzImage", initrd=tmp_path / "initrd.img", workdir=tmp_path / "vm",
        qemu_binary=str(fake), shutdown_timeout=1.0, hang_seconds=1.0,
    )  # fmt: skip
    with GuestVM(config) as vm:
        _, ticked = poll_until(lambda: vm.heartbeat.ticks, lambda n: n >= 2, timeout=10)
        assert ticked
        vm.check_responsive()  # ticking a moment ago: fine
        time.sleep(1.2)
        with pytest.raises(GuestHung) as raised:
            vm.check_responsive()
        assert not vm.is_running()
        with pytest.raises(GuestHung):  # every later use names the same hang
            vm.check_alive()
    detail = raised.value.detail
    assert re.match(r"no heartbeat for \d s; vCPU registers unavailable \(VMError: QMP", detail)
    assert (tmp_path / "vm" / HANG_REGISTERS).read_text().startswith(detail)


# ----------------------------------------------------------------- real QEMU + stock kernel


@pytest.fixture
def stopped_guest(tmp_path: Path, run_initrd: Path, run_key: RunKey) -> Iterator[Guest]:
    kernel = stock_kernel()
    assert system_map_for(kernel).is_file(), f"the build of {kernel} kept no System.map"
    config = VMConfig(
        kernel=kernel, initrd=run_initrd, workdir=tmp_path / "vm", memory_mib=512, smp=2
    )
    with Guest(GuestVM(config), run_key.private) as guest:
        yield guest


@pytest.mark.real
@pytest.mark.parametrize("waiting", ["new-command", "running-command"])
def test_real_guest_whose_vcpus_stop_is_found_hung_and_killed(
    stopped_guest: Guest, waiting: str
) -> None:
    """QMP `stop`: the vCPUs stop (and with them the heartbeat) while QEMU runs on. A
    command asked for afterwards (its channel never opens) and one that was running (its
    output never comes) both end in GuestHung within ~30 s, naming where each vCPU is."""
    guest = stopped_guest
    symbols = SymbolMap.load(system_map_for(guest.config.kernel))
    assert symbols is not None
    _, ticking = poll_until(lambda: guest.heartbeat.ticks, lambda n: n >= 2, timeout=30)
    assert ticking, f"no PHH-TICK on the console:\n{guest.console_tail()}"
    # A running guest's vCPUs are sampled (stopped and continued each time): it runs on.
    healthy = sample_vcpus(guest.qmp_execute)
    assert healthy.error is None and healthy.cpus == [0, 1] and len(healthy.rounds) == 3
    assert guest.qmp_execute("query-status")["status"] == "running"
    assert guest.ssh.check("echo alive").stdout == "alive\n"
    guest.check_responsive()

    pid = guest.pid
    running = guest.ssh.start("read line; echo never") if waiting == "running-command" else None
    guest.qmp_execute("stop")  # every vCPU stops, and with them the heartbeat; QEMU runs on
    stopped = time.monotonic()
    with pytest.raises(GuestHung) as raised:
        if running is not None:
            running.read_line(timeout=300)
        else:
            guest.ssh.run("cat /proc/uptime", timeout=300)
    detected = time.monotonic() - stopped
    hang = raised.value
    print(f"\n{waiting}: GuestHung {detected:.1f} s after the stop:\n{hang}")
    assert detected < 40
    assert str(hang).startswith("guest_responsive: no heartbeat for 3")
    assert "(QEMU run state: paused)" in hang.detail
    # each vCPU where it stopped: a kernel function from System.map (name+0xoff/0xsize; the
    # idle loop's native_safe_halt when it idled), or user space
    places = dict(
        re.findall(r"vCPU (\d) \w+ in (user space|[\w.]+\+0x[0-9a-f]+/0x[0-9a-f]+)", hang.detail)
    )
    assert sorted(places) == ["0", "1"], hang.detail
    functions = [place.split("+")[0] for place in places.values() if place != "user space"]
    assert functions and all(function in symbols.names() for function in functions), hang.detail
    assert not guest.is_running() and process_gone(pid)
    assert hang.registers is not None and hang.registers.read_text().count("RIP=") == 6
    with pytest.raises(GuestHung):
        guest.ssh.run("true")


def test_the_kernels_soft_lockup_report_is_named_and_entry_samples_do_not_vote() -> None:
    """A hung worker (the boundaries-set-once mutant, measured): two of three samples
    landed on the timer interrupt's entry; the third is where it spins, and the console's
    soft lockup report says the same."""
    from harness.guest.hang import describe_vcpu, kernel_detector_note

    console = (
        "[   36.929472] watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [kworker/0:1:13]\n"
        "[   36.930000] Modules linked in:\n"
        "[   36.938071] RIP: 0010:page_hinting_process+0x282/0x369\n"
    )
    note = kernel_detector_note(console)
    assert note == (
        "the kernel's soft lockup detector: CPU#0 stuck for 26 s at "
        "page_hinting_process+0x282/0x369"
    )
    assert kernel_detector_note("nothing here") == ""
    symbols = SymbolMap.parse(
        "ffffffff811bab7c T page_hinting_process\nffffffff811bacff t other\n"
        "ffffffff814001b0 T __irqentry_text_start\nffffffff81400800 T asm_later\n"
    )
    entry = Registers(rip=0xFFFFFFFF814001C0, cpl=0, halted=False)
    spin = Registers(rip=0xFFFFFFFF811BABFE, cpl=0, halted=False)
    samples = [VcpuSample(0, entry, ""), VcpuSample(0, entry, ""), VcpuSample(0, spin, "")]
    said = describe_vcpu(0, samples, symbols, running=True)
    assert said == "vCPU 0 in page_hinting_process+0x82/0x183 (1 of 1 samples)", said
