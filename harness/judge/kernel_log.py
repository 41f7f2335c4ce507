"""The kernel log: code that reads as zeros (hinting handed in-use memory to the host)."""

from __future__ import annotations

from harness.judge.verdict import Check, Status
from harness.observe.dmesg import zero_filled_code


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
