"""The kernel log: its problems against the defects a series keeps on purpose, and kernel
code that reads as zeros (hinting handed in-use memory to the host)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from harness.build.known_splats import is_known
from harness.judge.verdict import Check, Status, result
from harness.observe.dmesg import Splat, zero_filled_code
from harness.observe.procfs import HintingState

KERNEL_LOG = "kernel_log"
# A stack frame in the series' own code: a splat there says something about the series (a
# crash elsewhere, e.g. a guest that ran out of memory, does not).
SERIES_FRAME = re.compile(
    r"\b((?:__)?page_hinting_\w+|get_unhinted_page|put_hinted_page|"
    r"virtballoon_page_hinting_\w+)\+0x"
)


def series_frame(text: str) -> str | None:
    """The first function of the series on a stack in `text`, if any."""
    found = SERIES_FRAME.search(text)
    return found.group(1) if found else None


def judge_crash(error_text: str) -> Check | None:
    """`crash_in_series_code`: a guest that died (panic, QEMU gone, SSH lost) with the
    series' code on the stack of what its console showed; None when no frame of the
    series is there (the error then says nothing about the series: an infrastructure
    fault)."""
    frame = series_frame(error_text)
    if frame is None:
        return None
    return Check("crash_in_series_code", Status.FAIL, f"the console shows {frame} on a stack")


def format_splats(found: Sequence[Splat]) -> str:
    return "\n".join(f"{s.kind} {s.id} (line {s.line_no}):\n{s.excerpt}" for s in found)


def judge_kernel_log(
    found: Sequence[Splat], allowed: Iterable[str] = (), must_show: Iterable[str] = ()
) -> Check:
    """`kernel_log`: every problem in the kernel log (console and dmesg) is allowed: a
    defect the series keeps on purpose (its known-splats.txt) or one a step caused on
    purpose; and each `must_show` pattern (a kept defect the harness exists to expose)
    shows. The detail of a failure starts with the first problem's kind and id."""
    allowed, must_show = list(allowed), list(must_show)
    unknown = [s for s in found if not is_known(s.id, allowed)]
    if unknown:
        return Check(KERNEL_LOG, Status.FAIL, format_splats(unknown))
    missed = [p for p in must_show if not any(is_known(s.id, [p]) for s in found)]
    if missed:
        return Check(
            KERNEL_LOG,
            Status.FAIL,
            f"the series keeps a defect that the kernel should report here, but the log "
            f"has no {missed}: the harness failed to expose it",
        )
    known = f" ({len(found)} known: {', '.join(s.id for s in found)})" if found else ""
    return Check(KERNEL_LOG, Status.PASS, f"no unexpected problem{known}")


def judge_kernel_text(console_text: str, control_booted: bool | None = None) -> Check:
    """The guest never ran kernel code that reads as zeros.

    An oops with all-zero instruction bytes at RIP means a page of the kernel's own memory
    came back zero-filled. The crash is in no function of the series, so it is attributed
    to hinting only by a control: `control_booted` says whether the same kernel booted
    with the balloon's free-page-reporting off (None: no control was run). If it did, the
    zeroed memory is what hinting handed to the host while in use: the integrity check for
    the kernel's own memory, as memory_kept_its_contents is for a process's.
    """
    zeros = zero_filled_code(console_text)
    if not zeros:
        return Check("kernel_text_intact", Status.PASS, "no oops on zero-filled kernel code")
    first = zeros[0]
    seen = (
        f"the guest ran kernel code that reads as zeros at {first.rip} (console line "
        f"{first.line}, {len(zeros)} such oops)"
    )
    if control_booted is False:
        return Check(
            "kernel_text_intact",
            Status.NOT_APPLICABLE,
            f"{seen}, but the same kernel also failed to boot with free-page-reporting off: "
            "not attributable to hinting",
        )
    control = (
        " and booted cleanly with the balloon's free-page-reporting off (control boot)"
        if control_booted
        else " (no control boot)"
    )
    return Check(
        "kernel_text_intact",
        Status.FAIL,
        f"{seen}{control}: kernel memory came back from the host zero-filled, i.e. pages "
        "were handed to the host while in use",
    )


CORRUPTION = "pagealloc:memory_corruption"  # the allocator found a free page's poison gone


def judge_poisoned_guest(state: HintingState | None, keeps_defect: bool) -> Check:
    """`no_hinting_of_poisoned_pages`: on a guest with page poisoning whose host was not told
    the poison value, a series must not hint (debugfs shows no device), unless it keeps
    that defect on purpose (then judge_kernel_log requires the corruption report)."""
    if state is None:
        return Check("no_hinting_of_poisoned_pages", Status.FAIL, "no debugfs page_hinting/state")
    if keeps_defect:
        return Check(
            "no_hinting_of_poisoned_pages",
            Status.NOT_APPLICABLE,
            "the series keeps this defect: the corruption report must show instead",
        )
    problems = (
        [f"page hinting is active (capacity {state.capacity}): the host does not know the poison"]
        if state.device
        else []
    )
    return result("no_hinting_of_poisoned_pages", problems, "no hinting device")


def judge_kept_defect_shows(found: Sequence[Splat], patterns: Sequence[str], what: str) -> Check:
    """`kept_defect_shows`: a revision that keeps a defect on purpose (its known-splats.txt)
    must show it where the scenario provokes it: the harness exists to expose it."""
    shown = any(is_known(s.id, patterns) for s in found)
    problems = [] if shown else [f"{what} did not show {list(patterns)}: {[s.id for s in found]}"]
    return result("kept_defect_shows", problems, f"{list(patterns)} showed")
