"""The one judge: every pass/fail rule of the harness is a named check here.

Scenarios drive the guest and hand what they observed to these functions; each returns a
`Check` or a `Verdict` (verdict.py) that the scenario asserts and records as data
(record.py). The modules, by what they judge:

verdict.py       Status, Check, Verdict: the one vocabulary, and their JSON form
snapshot.py      one reading of the guest: counts against flags, tail block, idle rule
reading_again.py a disagreement between two files read a moment apart is read again
steps.py         scripted steps against the model, work bounds, idle quiet, accounting,
                 data integrity
rss.py           the host side: QEMU's RSS against what the guest hinted
kernel_log.py    the kernel log: splats (with a series' known splats), zero-filled code
lifecycle.py     QMP lifecycle events: unplug, balloon, hotplug, reset, OOM
isolation.py     pageblock isolation, alloc_contig_range, a failed react(), memory offline
outcome.py       a scenario's outcome from its recorded verdicts (mutants, reports)
"""

from harness.judge.build import MIN_BZIMAGE_BYTES, judge_kconfig
from harness.judge.isolation import (
    REACT_NOT_QUEUED,
    judge_contig_alloc,
    judge_offline,
    judge_offline_work,
    judge_react_failure,
)
from harness.judge.kernel_log import (
    CORRUPTION,
    KERNEL_LOG,
    SERIES_FRAME,
    format_splats,
    judge_crash,
    judge_kept_defect_shows,
    judge_kernel_log,
    judge_kernel_text,
    judge_poisoned_guest,
    series_frame,
)
from harness.judge.lifecycle import (
    BALLOON_MEMTOTAL_SLACK_KIB,
    judge_balloon_move,
    judge_device_gone,
    judge_hotplug,
    judge_oom,
    judge_restart,
    judge_rss_under_balloon,
)
from harness.judge.progress import judge_stalled
from harness.judge.reading_again import (
    CROSS_FILE_CHECKS,
    CROSS_FILE_PAUSE_S,
    CROSS_FILE_READS,
    judge_reading_again,
)
from harness.judge.release import (
    NEGATIVE_CONTROL_LIMIT,
    RETURN_FRACTION,
    RETURN_FRACTION_AFTER_EVENT,
    hinted_blocks,
    judge_feature_off,
    judge_pages_hinted,
    judge_returned,
)
from harness.judge.rss import ReleaseFigures, RssEvidence, hinted_bytes, judge, judge_rss
from harness.judge.snapshot import JudgeConfig, ZoneKey, judge_kernel
from harness.judge.steps import (
    FreeMemory,
    judge_accounting,
    judge_integrity,
    judge_prediction,
    judge_quiet,
    judge_work,
    judge_zones_cycled,
    zone_activity,
    zone_counts,
)
from harness.judge.verdict import (
    Check,
    Status,
    Verdict,
    VerdictFailed,
    judge_step,
    mib,
    result,
    verdict_of,
)

__all__ = [
    "BALLOON_MEMTOTAL_SLACK_KIB",
    "CORRUPTION",
    "CROSS_FILE_CHECKS",
    "CROSS_FILE_PAUSE_S",
    "CROSS_FILE_READS",
    "KERNEL_LOG",
    "MIN_BZIMAGE_BYTES",
    "NEGATIVE_CONTROL_LIMIT",
    "REACT_NOT_QUEUED",
    "RETURN_FRACTION",
    "RETURN_FRACTION_AFTER_EVENT",
    "SERIES_FRAME",
    "Check",
    "FreeMemory",
    "JudgeConfig",
    "ReleaseFigures",
    "RssEvidence",
    "Status",
    "Verdict",
    "VerdictFailed",
    "ZoneKey",
    "format_splats",
    "hinted_blocks",
    "hinted_bytes",
    "judge",
    "judge_accounting",
    "judge_balloon_move",
    "judge_contig_alloc",
    "judge_crash",
    "judge_device_gone",
    "judge_feature_off",
    "judge_hotplug",
    "judge_integrity",
    "judge_kconfig",
    "judge_kept_defect_shows",
    "judge_kernel",
    "judge_kernel_log",
    "judge_kernel_text",
    "judge_offline",
    "judge_offline_work",
    "judge_oom",
    "judge_pages_hinted",
    "judge_poisoned_guest",
    "judge_prediction",
    "judge_quiet",
    "judge_react_failure",
    "judge_reading_again",
    "judge_restart",
    "judge_returned",
    "judge_rss",
    "judge_rss_under_balloon",
    "judge_stalled",
    "judge_step",
    "judge_work",
    "judge_zones_cycled",
    "mib",
    "result",
    "series_frame",
    "verdict_of",
    "zone_activity",
    "zone_counts",
]
