"""Kernel log classification on logs written in the kernel's real message formats (6.1)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.build.known_splats import is_known, load_known_splats
from harness.observe.dmesg import (
    IgnoreRule,
    Splat,
    classify,
    count_ids,
    function_name,
    new_ids,
    slug,
    strip_prefix,
)

PATCHES = Path(__file__).resolve().parent.parent / "patches"


def log(text: str, start: float = 12.0) -> str:
    """Give each line a kernel timestamp, as the serial console shows them."""
    lines = textwrap.dedent(text).strip("\n").split("\n")
    return "\n".join(f"[{start + i * 0.000017:12.6f}] {line}" for i, line in enumerate(lines))


BOOT_NOISE = log(
    """
    Linux version 6.1.0 (root@phh) (gcc (Debian 12.2.0-14) 12.2.0) #1 SMP PREEMPT_DYNAMIC
    Command line: console=ttyS0 panic=-1 quiet
    virtio_balloon virtio0: free page reporting enabled
    Freeing unused kernel image (initmem) memory: 1234K
    Run /init as init process
    """,
    start=0.0,
)

WARN_SPLAT = log(
    """
    ------------[ cut here ]------------
    WARNING: CPU: 1 PID: 42 at mm/page_alloc.c:5539 __alloc_pages.constprop.0+0x2a5/0x330
    Modules linked in:
    CPU: 1 PID: 42 Comm: memhog Not tainted 6.1.0 #1
    Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
    RIP: 0010:__alloc_pages.constprop.0+0x2a5/0x330
    Code: 8b 44 24 10 e9 5e fe ff ff 80 3d 2a 61 2b 01 00 0f 85 a9 fe ff ff <0f> 0b
    RSP: 0000:ffffc900001f7d70 EFLAGS: 00010246
    RAX: 0000000000000000 RBX: 0000000000000000 RCX: 0000000000000000
    CR2: 00007f1c2a3b4000 CR3: 0000000004a2c000 CR4: 00000000000006e0
    Call Trace:
     <TASK>
     ? __warn+0x7d/0xc0
     ? report_bug+0xe6/0x170
     page_hinting_fill+0x91/0x1c0
     page_hinting_process+0x6e/0x110
     process_one_work+0x1d4/0x3b0
     worker_thread+0x4d/0x3d0
     kthread+0xe6/0x110
     ret_from_fork+0x1f/0x30
     </TASK>
    irq event stamp: 1234
    hardirqs last  enabled at (1233): [<ffffffff81a2b3c4>] _raw_spin_unlock_irq+0x1f/0x40
    hardirqs last disabled at (1234): [<ffffffff81a1e5f2>] __schedule+0x6c2/0xb80
    softirqs last  enabled at (998): [<ffffffff81c0029c>] __do_softirq+0x29c/0x3a1
    softirqs last disabled at (991): [<ffffffff810a6e1d>] irq_exit_rcu+0xad/0xd0
    ---[ end trace 0000000000000000 ]---
    """,
    start=30.5,
)

INCONSISTENT_LOCK = log(
    """
    ================================
    WARNING: inconsistent lock state
    6.1.0 #1 Not tainted
    --------------------------------
    inconsistent {IN-SOFTIRQ-W} -> {SOFTIRQ-ON-W} usage.
    kworker/0:1/20 [HC0[0]:SC0[0]:HE1:SE1] takes:
    ffff88807ffd6e18 (&zone->lock){+.?.}-{2:2}, at: page_hinting_process+0x4a/0x2b0
    {IN-SOFTIRQ-W} state was registered at:
      lock_acquire+0xc2/0x2b0
      _raw_spin_lock_irqsave+0x3d/0x60
      free_pcppages_bulk+0x4d/0x2d0
      free_unref_page_commit+0x10e/0x150
      rcu_core+0x2d6/0x6d0
      __do_softirq+0xd4/0x3a1
    irq event stamp: 5678
    hardirqs last  enabled at (5677): [<ffffffff81a2b3c4>] _raw_spin_unlock_irq+0x1f/0x40
    other info that might help us debug this:
     Possible unsafe locking scenario:

           CPU0
           ----
      lock(&zone->lock);
      <Interrupt>
        lock(&zone->lock);

     *** DEADLOCK ***

    2 locks held by kworker/0:1/20:
     #0: ffff888003c51b38 ((wq_completion)events){+.+.}-{0:0}, at: process_one_work+0x1b8/0x3b0

    stack backtrace:
    CPU: 0 PID: 20 Comm: kworker/0:1 Not tainted 6.1.0 #1
    Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
    Workqueue: events page_hinting_process
    Call Trace:
     <TASK>
     dump_stack_lvl+0x5b/0x77
     mark_lock.part.0+0x7a5/0x8a0
     __lock_acquire+0x3d3/0x1f20
     lock_acquire+0xc2/0x2b0
     _raw_spin_lock+0x2f/0x40
     page_hinting_process+0x4a/0x2b0
     process_one_work+0x225/0x3b0
     </TASK>
    """,
    start=41.0,
)

CIRCULAR_LOCK = log(
    """
    ======================================================
    WARNING: possible circular locking dependency detected
    6.1.0 #1 Not tainted
    ------------------------------------------------------
    kworker/1:2/77 is trying to acquire lock:
    ffff88807ffd6e18 (&zone->lock){..-.}-{2:2}, at: page_hinting_fill.isra.0+0x4a/0x2b0

    but task is already holding lock:
    ffff888004b3c0a0 (&vb->stop_update_lock){+.+.}-{2:2}, at: virtballoon_hint+0x1c/0x80

    which lock already depends on the new lock.

    the existing dependency chain (in reverse order) is:

    -> #1 (&zone->lock){..-.}-{2:2}:
           _raw_spin_lock_irqsave+0x3d/0x60
           rmqueue_bulk+0x4b/0x780

    stack backtrace:
    CPU: 1 PID: 77 Comm: kworker/1:2 Not tainted 6.1.0 #1
    Call Trace:
     <TASK>
     dump_stack_lvl+0x5b/0x77
     check_noncircular+0xfe/0x110
     __lock_acquire+0x10ea/0x1f20
     page_hinting_fill.isra.0+0x4a/0x2b0
     </TASK>
    """,
    start=50.0,
)

SUSPICIOUS_RCU = log(
    """
    =============================
    WARNING: suspicious RCU usage
    6.1.0 #1 Not tainted
    -----------------------------
    include/linux/rcupdate.h:737 rcu_read_lock() used illegally while idle!

    other info that might help us debug this:

    rcu_scheduler_active = 2, debug_locks = 1
    RCU used illegally from extended quiescent state!
    1 lock held by swapper/0/0:
     #0: ffffffff82a5e8d8 (rcu_read_lock){....}-{1:2}, at: __page_hinting_request+0x5/0x90

    stack backtrace:
    CPU: 0 PID: 0 Comm: swapper/0 Not tainted 6.1.0 #1
    Call Trace:
     <IRQ>
     dump_stack_lvl+0x5b/0x77
     lockdep_rcu_suspicious+0x135/0x150
     __page_hinting_request+0x7c/0x90
     </IRQ>
     <TASK>
     default_idle_call+0x2e/0xe0
     </TASK>
    """,
    start=52.0,
)

KASAN_SPLAT = log(
    """
    ==================================================================
    BUG: KASAN: use-after-free in page_hinting_drain+0x1b2/0x210
    Read of size 8 at addr ffff888006a3c2e8 by task kworker/0:2/88

    CPU: 0 PID: 88 Comm: kworker/0:2 Not tainted 6.1.0 #1
    Call Trace:
     <TASK>
     dump_stack_lvl+0x5b/0x77
     print_report+0x17f/0x47b
     kasan_report+0xbb/0xf0
     page_hinting_drain+0x1b2/0x210
     </TASK>

    Allocated by task 1:
     kasan_save_stack+0x22/0x50
     __kmalloc+0x5e/0x160

    Freed by task 88:
     kasan_save_stack+0x22/0x50
     kfree+0xb4/0x1a0

    The buggy address belongs to the object at ffff888006a3c2c0
     which belongs to the cache kmalloc-64 of size 64
    Memory state around the buggy address:
     ffff888006a3c280: fa fb fb fb fb fb fb fb fc fc fc fc fa fb fb fb
    >ffff888006a3c2e0: fa fb fb fb fb fb fb fb fc fc fc fc fc fc fc fc
                             ^
    ==================================================================
    Disabling lock debugging due to kernel taint
    """,
    start=60.0,
)

NULL_DEREF_PANIC = log(
    """
    BUG: kernel NULL pointer dereference, address: 0000000000000008
    #PF: supervisor read access in kernel mode
    #PF: error_code(0x0000) - not-present page
    PGD 0 P4D 0
    Oops: 0000 [#1] PREEMPT SMP NOPTI
    CPU: 0 PID: 1 Comm: swapper/0 Not tainted 6.1.0 #1
    RIP: 0010:__page_hinting_request+0x42/0x90
    Code: 48 8b 05 d1 9c 3a 01 48 85 c0 74 2d <48> 8b 40 08
    RSP: 0018:ffffc90000013d88 EFLAGS: 00010246
    Call Trace:
     <TASK>
     page_hinting_notify_free+0x31/0x40
     __free_one_page+0x2b4/0x4a0
     free_pcppages_bulk+0x1de/0x2d0
     </TASK>
    Modules linked in:
    CR2: 0000000000000008
    ---[ end trace 0000000000000000 ]---
    RIP: 0010:__page_hinting_request+0x42/0x90
    Kernel panic - not syncing: Fatal exception
    Kernel Offset: disabled
    ---[ end Kernel panic - not syncing: Fatal exception ]---
    """,
    start=70.0,
)

BAD_PAGE = log(
    """
    BUG: Bad page state in process memhog  pfn:1a2b3
    page:00000000c4d2b1f3 refcount:0 mapcount:-128 mapping:0000000000000000 index:0x0 pfn:0x1a2b3
    flags: 0xfffffc0000000(node=0|zone=1|lastcpupid=0x1fffff)
    page_type: 0xffffff7f(buddy)
    raw: 000fffffc0000000 ffffea000068acc8 ffffea000068ac88 0000000000000000
    raw: 0000000000000000 0000000000000009 00000000ffffff7f 0000000000000000
    page dumped because: nonzero mapcount
    Modules linked in:
    CPU: 1 PID: 101 Comm: memhog Tainted: G    B              6.1.0 #1
    Call Trace:
     <TASK>
     dump_stack_lvl+0x5b/0x77
     bad_page.cold+0x63/0x94
     rmqueue_bulk+0x5f5/0x780
     </TASK>
    Disabling lock debugging due to kernel taint
    """,
    start=80.0,
)

LIST_CORRUPTION = log(
    """
    ------------[ cut here ]------------
    list_del corruption. prev->next should be ffffea0000c3a008, but was dead000000000100. \
(prev=ffffea0000c39008)
    WARNING: CPU: 0 PID: 12 at lib/list_debug.c:59 __list_del_entry_valid+0x8a/0xd0
    Modules linked in:
    RIP: 0010:__list_del_entry_valid+0x8a/0xd0
    Call Trace:
     <TASK>
     __rmqueue_pcplist+0x2a1/0x8b0
     </TASK>
    ---[ end trace 0000000000000000 ]---
    """,
    start=90.0,
)

SOFT_LOCKUP = log(
    """
    watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [kworker/1:1:31]
    Modules linked in:
    irq event stamp: 10220
    CPU: 1 PID: 31 Comm: kworker/1:1 Not tainted 6.1.0 #1
    Workqueue: events page_hinting_process
    RIP: 0010:virtballoon_hint.cold+0x12/0x30
    Call Trace:
     <IRQ>
     ? watchdog_timer_fn+0x1b8/0x220
     </IRQ>
     <TASK>
     page_hinting_process+0xa1/0x110
     process_one_work+0x1d4/0x3b0
     </TASK>
    """,
    start=120.0,
)

RCU_STALL = log(
    """
    rcu: INFO: rcu_preempt self-detected stall on CPU
    rcu: \t1-....: (21002 ticks this GP) idle=b04c/1/0x4000000000000000 softirq=4431/4431 fqs=5227
    \t(t=21003 jiffies g=5933 q=34 ncpus=2)
    NMI backtrace for cpu 1
    CPU: 1 PID: 31 Comm: kworker/1:1 Not tainted 6.1.0 #1
    Call Trace:
     <IRQ>
     dump_stack_lvl+0x5b/0x77
     nmi_cpu_backtrace.cold+0x32/0x68
     </IRQ>
     <TASK>
     page_hinting_process+0xa1/0x110
     </TASK>
    """,
    start=140.0,
)

HUNG_TASK = log(
    """
    INFO: task kworker/u4:1:42 blocked for more than 122 seconds.
          Not tainted 6.1.0 #1
    "echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.
    task:kworker/u4:1    state:D stack:0     pid:42    ppid:2      flags:0x00004000
    Workqueue: events_freezable_power_ virtballoon_hint_work
    Call Trace:
     <TASK>
     __schedule+0x33a/0xb80
     schedule+0x5d/0xe0
     wait_event_interruptible+0x7a/0x90
     virtballoon_hint+0x61/0x80
     </TASK>
    """,
    start=245.0,
)

UBSAN_SPLAT = log(
    """
    ================================================================================
    UBSAN: shift-out-of-bounds in mm/page_hinting.c:123:45
    shift exponent 64 is too large for 64-bit type 'long unsigned int'
    CPU: 0 PID: 20 Comm: kworker/0:1 Not tainted 6.1.0 #1
    Call Trace:
     <TASK>
     dump_stack_lvl+0x5b/0x77
     __ubsan_handle_shift_out_of_bounds.cold+0x5e/0x106
     page_hinting_fill+0x1a5/0x1c0
     </TASK>
    ================================================================================
    """,
    start=150.0,
)

PAGEALLOC_CORRUPTION = log(
    """
    pagealloc: memory corruption
    00000000: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................
    CPU: 1 PID: 101 Comm: memhog Not tainted 6.1.0 #1
    Call Trace:
     <TASK>
     dump_stack_lvl+0x5b/0x77
     __kernel_unpoison_pages.cold+0x5f/0x7c
     post_alloc_hook+0x9f/0xd0
     </TASK>
    """,
    start=160.0,
)

SLEEPING_IN_ATOMIC = log(
    """
    BUG: sleeping function called from invalid context at mm/page_alloc.c:5180
    in_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: 20, name: kworker/0:1
    preempt_count: 1, expected: 0
    RCU nest depth: 0, expected: 0
    CPU: 0 PID: 20 Comm: kworker/0:1 Not tainted 6.1.0 #1
    Call Trace:
     <TASK>
     dump_stack_lvl+0x5b/0x77
     __might_resched.cold+0xcc/0xde
     virtballoon_hint+0x2e/0x80
     </TASK>
    """,
    start=170.0,
)

STANDALONE_TRACE = log(
    """
    CPU: 0 PID: 1 Comm: swapper/0 Not tainted 6.1.0 #1
    Call Trace:
     <TASK>
     dump_stack_lvl+0x5b/0x77
     page_hinting_enable+0x3c/0x60
     virtballoon_probe+0x2d1/0x3a0
     </TASK>
    """,
    start=5.0,
)


def only(splats: list[Splat]) -> Splat:
    assert len(splats) == 1, [s.id for s in splats]
    return splats[0]


def test_clean_boot_has_no_splats() -> None:
    assert classify(BOOT_NOISE) == []


def test_warning_id_is_the_function_and_excerpt_ends_at_end_trace() -> None:
    text = BOOT_NOISE + "\n" + WARN_SPLAT + "\n" + BOOT_NOISE
    splat = only(classify(text))
    assert splat.kind == "WARNING"
    assert splat.id == "WARNING:__alloc_pages"
    assert splat.line_no == 5 + 2  # five boot lines, the cut-here line, then the header
    excerpt = splat.excerpt.split("\n")
    assert excerpt[0].startswith("WARNING: CPU: 1 PID: 42 at mm/page_alloc.c:5539")
    assert excerpt[-1] == "---[ end trace 0000000000000000 ]---"
    assert " page_hinting_fill+0x91/0x1c0" in excerpt
    assert not any(line.startswith("[") for line in excerpt), "timestamps must be stripped"


def test_same_problem_gets_same_id_across_runs() -> None:
    other_run = WARN_SPLAT.replace("5539", "5601").replace("0x2a5/0x330", "0x2b1/0x340")
    other_run = other_run.replace("CPU: 1 PID: 42", "CPU: 0 PID: 977")
    assert classify(WARN_SPLAT)[0].id == classify(other_run)[0].id


def test_inconsistent_lock_state_names_usage_lock_and_site() -> None:
    splat = only(classify(INCONSISTENT_LOCK))
    assert splat.kind == "lockdep"
    assert splat.id == (
        "lockdep:inconsistent_lock_state:{IN-SOFTIRQ-W}->{SOFTIRQ-ON-W}"
        ":&zone->lock:page_hinting_process"
    )
    assert splat.excerpt.split("\n")[-1].strip() == "</TASK>"
    assert "*** DEADLOCK ***" in splat.excerpt


# As hinting-v2+debug printed it in CI on 2026-11-30 (page_hinting_startup() takes
# zone->lock with plain spin_lock(); the network hash locks are only what lockdep met first).
IRQ_INVERSION_FORWARDS = log(
    """
    ========================================================
    WARNING: possible irq lock inversion dependency detected
    6.1.192+ #3 Not tainted
    --------------------------------------------------------
    ksoftirqd/0/10 just changed the state of lock:
    ffff888003d0e0f0 (&tcp_hashinfo.bhash[i].lock){+.-.}-{2:2}, at: __inet_inherit_port+0x9a/0x28c
    but this lock took another, SOFTIRQ-unsafe lock in the past:
     (&zone->lock){+.+.}-{2:2}


    and interrupts could create inverse lock ordering between them.


    other info that might help us debug this:
    Chain exists of:
      &tcp_hashinfo.bhash[i].lock --> &tcp_hashinfo.bhash2[i].lock --> &zone->lock

     Possible interrupt unsafe locking scenario:

           CPU0                    CPU1
           ----                    ----
      lock(&zone->lock);
                                   local_irq_disable();
                                   lock(&tcp_hashinfo.bhash[i].lock);
                                   lock(&tcp_hashinfo.bhash2[i].lock);
      <Interrupt>
        lock(&tcp_hashinfo.bhash[i].lock);

     *** DEADLOCK ***

    stack backtrace:
    CPU: 0 PID: 10 Comm: ksoftirqd/0 Not tainted 6.1.192+ #3
    Call Trace:
     <TASK>
     dump_stack_lvl+0x5b/0x77
     mark_lock.part.0+0x5ad/0x6f8
     __inet_inherit_port+0x9a/0x28c
     </TASK>
    """
)

IRQ_INVERSION_BACKWARDS = log(
    """
    WARNING: possible irq lock inversion dependency detected
    6.1.192+ #3 Not tainted
    --------------------------------------------------------
    kworker/0:2/51 just changed the state of lock:
    ffff88807ffd6e18 (&zone->lock){+.+.}-{2:2}, at: page_hinting_process+0x4a/0x2b0
    but this lock was taken by another, SOFTIRQ-safe lock in the past:
     (&base->lock){-.-.}-{2:2}

    stack backtrace:
    Call Trace:
     <TASK>
     dump_stack_lvl+0x5b/0x77
     page_hinting_process+0x4a/0x2b0
     </TASK>
    """
)

SAFE_TO_UNSAFE = log(
    """
    WARNING: SOFTIRQ-safe -> SOFTIRQ-unsafe lock order detected
    6.1.192+ #3 Not tainted
    -----------------------------------------------------
    kworker/0:2/51 [HC0[0]:SC0[0]:HE1:SE1] is trying to acquire:
    ffff88807ffd6e18 (&zone->lock){+.+.}-{2:2}, at: page_hinting_process+0x4a/0x2b0

    and this task is already holding:
    ffff888004b3c0a0 (&vb->stop_update_lock){..-.}-{2:2}, at: virtballoon_hint+0x1c/0x80
    which would create a new lock dependency:
     (&vb->stop_update_lock){..-.}-{2:2} -> (&zone->lock){+.+.}-{2:2}

    but this new dependency connects a SOFTIRQ-irq-safe lock:
     (&vb->stop_update_lock){..-.}-{2:2}

    ... which became SOFTIRQ-irq-safe at:
      lock_acquire+0x19e/0x2e7

    to a SOFTIRQ-irq-unsafe lock:
     (&zone->lock){+.+.}-{2:2}

    stack backtrace:
    Call Trace:
     <TASK>
     dump_stack_lvl+0x5b/0x77
     page_hinting_process+0x4a/0x2b0
     </TASK>
    """
)


@pytest.mark.parametrize(
    "text",
    [IRQ_INVERSION_FORWARDS, IRQ_INVERSION_BACKWARDS, SAFE_TO_UNSAFE],
    ids=["inversion-forwards", "inversion-backwards", "safe-to-unsafe"],
)
def test_irq_safety_reports_name_the_unsafe_lock(text: str) -> None:
    splat = only(classify(text))
    assert splat.kind == "lockdep"
    assert splat.id.endswith(":SOFTIRQ-unsafe:&zone->lock"), splat.id


def test_irq_inversion_id_is_known_for_hinting_v2_only() -> None:
    splat_id = only(classify(IRQ_INVERSION_FORWARDS)).id
    assert splat_id == (
        "lockdep:possible_irq_lock_inversion_dependency_detected:SOFTIRQ-unsafe:&zone->lock"
    )
    assert is_known(splat_id, load_known_splats(PATCHES / "hinting-v2"))
    assert not is_known(splat_id, load_known_splats(PATCHES / "hinting-v2-fixed"))


def test_circular_locking_names_the_lock_being_acquired() -> None:
    splat = only(classify(CIRCULAR_LOCK))
    assert splat.id == "lockdep:circular_locking:&zone->lock:page_hinting_fill"


def test_suspicious_rcu_usage_names_the_file() -> None:
    splat = only(classify(SUSPICIOUS_RCU))
    assert splat.id == "lockdep:suspicious_RCU_usage:include/linux/rcupdate.h"
    # the trace has an <IRQ> part and a <TASK> part: the excerpt runs to the final </TASK>
    assert "default_idle_call" in splat.excerpt


def test_kasan_report_runs_to_the_closing_ruler() -> None:
    splat = only(classify(KASAN_SPLAT))
    assert (splat.kind, splat.id) == ("KASAN", "KASAN:use-after-free:page_hinting_drain")
    assert "Freed by task 88:" in splat.excerpt
    assert splat.excerpt.split("\n")[-1].startswith("=====")
    assert "Disabling lock debugging" not in splat.excerpt


def test_null_dereference_oops_and_panic() -> None:
    splats = classify(NULL_DEREF_PANIC)
    assert [(s.kind, s.id) for s in splats] == [
        ("BUG", "BUG:kernel_NULL_pointer_dereference:__page_hinting_request"),
        ("panic", "Kernel_panic:Fatal_exception"),
    ]
    bug, panic = splats
    assert bug.excerpt.split("\n")[-1].startswith("---[ end trace")
    assert "Oops: 0000 [#1]" in bug.excerpt  # the Oops line belongs to the BUG, not separate
    assert panic.excerpt.split("\n")[-1].startswith("---[ end Kernel panic")


def test_bad_page_state_id_carries_the_dump_reason() -> None:
    splat = only(classify(BAD_PAGE))
    assert splat.id == "BUG:Bad_page_state:nonzero_mapcount"


def test_list_corruption_and_its_warning() -> None:
    splats = classify(LIST_CORRUPTION)
    assert [s.id for s in splats] == [
        "list_corruption:list_del:prev->next_should_be",
        "WARNING:__list_del_entry_valid",
    ]


@pytest.mark.parametrize(
    ("text", "kind", "splat_id"),
    [
        (SOFT_LOCKUP, "soft lockup", "soft_lockup:virtballoon_hint"),
        (RCU_STALL, "RCU stall", "RCU_stall:self-detected_stall"),
        (HUNG_TASK, "hung task", "hung_task:kworker"),
        (UBSAN_SPLAT, "UBSAN", "UBSAN:shift-out-of-bounds:mm/page_hinting.c"),
        (PAGEALLOC_CORRUPTION, "pagealloc corruption", "pagealloc:memory_corruption"),
        (
            SLEEPING_IN_ATOMIC,
            "BUG",
            "BUG:sleeping_function_called_from_invalid_context:mm/page_alloc.c",
        ),
        (STANDALONE_TRACE, "Call Trace", "Call_Trace:page_hinting_enable"),
    ],
)
def test_each_family_has_a_stable_id(text: str, kind: str, splat_id: str) -> None:
    splat = only(classify(text))
    assert (splat.kind, splat.id) == (kind, splat_id)
    assert splat.excerpt.count("\n") >= 3


@pytest.mark.parametrize(
    ("line", "splat_id"),
    [
        ("kernel BUG at mm/page_alloc.c:1104!", "kernel_BUG:mm/page_alloc.c"),
        ("BUG: scheduling while atomic: kworker/0:1/20/0x00000002", "BUG:scheduling_while_atomic"),
        (
            "BUG: unable to handle page fault for address: ffff88800a000000",
            "BUG:unable_to_handle_page_fault_for_address",
        ),
        (
            "WARNING: CPU: 0 PID: 1 at virtballoon_probe+0x31/0x400 [virtio_balloon]",
            "WARNING:virtballoon_probe",
        ),
        ("WARNING: at mm/page_hinting.c:88 page_hinting_enable()", "WARNING:page_hinting_enable"),
        ("WARNING: bad unlock balance detected!", "lockdep:bad_unlock_balance_detected!"),
        (
            "general protection fault, probably for non-canonical address 0xdead000000000100: 0000",
            "general_protection_fault",
        ),
        (
            "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009",
            "Kernel_panic:Attempted_to_kill_init!_exitcode=",
        ),
        ("rcu: INFO: rcu_sched detected stalls on CPUs/tasks:", "RCU_stall:detected_stalls"),
        (
            "memhog: page allocation failure: order:9, mode:0x40cc0(GFP_KERNEL|__GFP_COMP)",
            "page_allocation_failure:order_9",
        ),
        (
            "memhog invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE), order=0",
            "OOM:memhog",
        ),
        ("NMI watchdog: Watchdog detected hard LOCKUP on cpu 1", "hard_lockup"),
        (
            "page dumped because: VM_BUG_ON_PAGE(PageTail(page))",
            "page_dumped_because:VM_BUG_ON_PAGE(PageTail(page))",
        ),
        ("invalid opcode: 0000 [#1] PREEMPT SMP NOPTI", "Oops"),
    ],
)
def test_one_line_headers(line: str, splat_id: str) -> None:
    assert only(classify(log(line))).id == splat_id


def test_secondary_lines_inside_a_splat_are_not_reported_twice() -> None:
    kinds = [s.kind for s in classify(WARN_SPLAT + "\n" + BAD_PAGE + "\n" + NULL_DEREF_PANIC)]
    assert "Call Trace" not in kinds and "Oops" not in kinds and "page dump" not in kinds
    assert kinds == ["WARNING", "BUG", "BUG", "panic"]


def test_line_numbers_point_at_headers() -> None:
    text = "\n".join([BOOT_NOISE, KASAN_SPLAT, HUNG_TASK])
    lines = text.split("\n")
    for splat in classify(text):
        assert strip_prefix(lines[splat.line_no - 1]) == splat.excerpt.split("\n")[0]


def test_ignore_rules_drop_matching_ids_only() -> None:
    text = WARN_SPLAT + "\n" + HUNG_TASK
    rule = IgnoreRule(r"^hung_task:", "TCG guests stall for minutes under host load")
    assert [s.id for s in classify(text, ignore=[rule])] == ["WARNING:__alloc_pages"]
    assert len(classify(text)) == 2


def test_console_log_with_carriage_returns_and_log_levels() -> None:
    text = "\r\n".join(f"<4>{line}" for line in WARN_SPLAT.split("\n"))
    assert only(classify(text)).id == "WARNING:__alloc_pages"


def test_truncated_log_keeps_what_is_there() -> None:
    cut = "\n".join(NULL_DEREF_PANIC.split("\n")[:12])  # the guest died mid-trace
    splat = only(classify(cut))
    assert splat.id == "BUG:kernel_NULL_pointer_dereference:__page_hinting_request"
    assert splat.excerpt.count("\n") == 11


def test_count_and_new_ids_compare_runs() -> None:
    stock = classify(BOOT_NOISE + "\n" + WARN_SPLAT)
    patched = classify(WARN_SPLAT + "\n" + INCONSISTENT_LOCK + "\n" + WARN_SPLAT)
    assert count_ids(patched)["WARNING:__alloc_pages"] == 2
    assert new_ids(stock, patched) == {
        "lockdep:inconsistent_lock_state:{IN-SOFTIRQ-W}->{SOFTIRQ-ON-W}"
        ":&zone->lock:page_hinting_process"
    }


def test_helpers() -> None:
    assert function_name("__free_one_page.constprop.0+0x1c/0x3a0") == "__free_one_page"
    assert function_name("bad_page.cold+0x63/0x94") == "bad_page"
    assert slug("stuck for 22s! [kworker/0:1:20] at 0xffff8880") == "stuck_for_s!_[kworker/::]_at"
    assert strip_prefix("[   12.345678] [    T1] hello") == "hello"
    assert strip_prefix("   no timestamp") == "   no timestamp"


# --- real captures from the stock 6.1 guest (tests/fixtures/proc/guest-6.1-stock) -----------

GUEST = Path(__file__).parent / "fixtures" / "proc" / "guest-6.1-stock"


def test_real_clean_boot_console_and_dmesg_have_no_splats() -> None:
    console = (GUEST / "console.log").read_bytes().decode("utf-8", "replace")
    assert "Run /init as init process" in console
    assert classify(console) == []
    assert classify((GUEST / "dmesg").read_text()) == []


def test_real_panic_console() -> None:
    """rdinit=/bin/false: init exits, the kernel panics and (panic=-1) reboots at once."""
    console = (GUEST / "console-panic.log").read_bytes().decode("utf-8", "replace")
    splat = only(classify(console))
    assert (splat.kind, splat.id) == ("panic", "Kernel_panic:Attempted_to_kill_init!_exitcode=")
    lines = splat.excerpt.split("\n")
    assert lines[0] == "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100"
    assert " panic+0xfc/0x260" in lines
    assert lines[-1].strip() == "</TASK>"  # no "---[ end Kernel panic": it rebooted first
    assert console.split("\n")[splat.line_no - 1].endswith(lines[0] + "\r")
