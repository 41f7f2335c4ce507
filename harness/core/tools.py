"""Running other tools (tar, git, make, ...): their whole output goes to a log file; a
failure is raised with the few lines that explain it, the log's path and a hint that fits
the cause (a full disk is named as such, not blamed on the input)."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from harness.core.diskspace import RUN_NEEDS, disk_full, is_disk_full, output_says_disk_full
from harness.core.errors import DiskFull, HarnessError

MAX_EXPLAINING_LINES = 8
PERMISSION = re.compile(r"Permission denied|Operation not permitted|Read-only file system")
# Lines worth showing: what tools print when something went wrong.
EXPLAINING = re.compile(
    r"error|fatal|cannot|can't|failed|No space left|Permission denied|corrupt|unexpected end"
    r"|not found|No such file|Wrote only",
    re.IGNORECASE,
)


def explaining_lines(output: str, limit: int = MAX_EXPLAINING_LINES) -> list[str]:
    """The lines that say what went wrong, repeats folded: tar's hundreds of "Cannot write:
    No space left on device" lines become one line with a count."""
    counts: Counter[str] = Counter()
    first_seen: dict[str, str] = {}
    for line in output.splitlines():
        if not EXPLAINING.search(line):
            continue
        reason = line.rsplit(": ", 2)[-2:]  # "Cannot write: No space left on device"
        key = ": ".join(reason)
        counts[key] += 1
        first_seen.setdefault(key, line.strip())
    lines = [
        first_seen[key] + (f"  ({n} lines like this)" if n > 1 else "") for key, n in counts.items()
    ]
    if not lines:  # nothing looks like an error: the tail is the best guess
        lines = [line for line in output.strip().splitlines()[-limit:]]
    return lines[:limit]


def hint_for(output: str, where: Path, default: str) -> str:
    """The hint that fits the cause: a full disk or a permission problem before `default`."""
    if output_says_disk_full(output, where):
        return (
            f"the disk is full: free space on the file system of {where} "
            f"(df -h {where}), then run again"
        )
    if PERMISSION.search(output):
        return f"check the permissions of {where} (and that it is not read-only)"
    return default


def run_logged(
    command: list[str] | str,
    log: Path,
    *,
    cwd: Path | None = None,
    shell: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run `command` (a shell line runs in bash) with stdout and stderr into `log`
    (replaced); the output is also returned in `.stdout` for the caller to explain a
    failure."""
    result = subprocess.run(
        command, cwd=cwd, shell=shell, executable="/bin/bash" if shell else None,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
    )  # fmt: skip
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(result.stdout)
    except OSError as error:  # a full disk: the caller names it (the output is in hand)
        if not is_disk_full(error):
            raise
        log.unlink(missing_ok=True)
    return result


def tool_failure(
    error_class: Callable[[str, str], HarnessError],
    what: str,
    result: subprocess.CompletedProcess[str],
    log: Path,
    where: Path,
    default_hint: str,
    needs: str = RUN_NEEDS,
) -> HarnessError:
    """`error_class` naming what failed, the explaining lines, the log and a fitting hint;
    DiskFull (for `where`, `what` needing `needs`) when the disk is full."""
    output = result.stdout or ""
    lines = "\n  ".join(explaining_lines(output))
    if output_says_disk_full(output, where):
        full = disk_full(where, what, needs)
        where_log = f"full output: {log}" if log.is_file() else "(no room for its log either)"
        return DiskFull(f"{full.message}:\n  {lines}\n{where_log}", full.hint)
    return error_class(
        f"{what} failed (exit {result.returncode}):\n  {lines}\nfull output: {log}",
        hint_for(output, where, default_hint),
    )
