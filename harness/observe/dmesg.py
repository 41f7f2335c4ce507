"""Kernel log problem classification: a pattern table in the spirit of lkp-tests.

`classify(log_text)` finds each splat (WARNING, BUG, lockdep report, KASAN, ...), cuts its
excerpt (the header line and what follows up to the end of its trace) and gives it a stable
id: addresses, numbers, timestamps, pids and compiler clone suffixes are dropped, so the
same problem has the same id in every run and runs can be compared by id.

Secondary patterns ("Call Trace:", "Oops:", "page dumped because:") usually belong to a
primary splat; they are reported on their own only when they appear outside one.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from harness.guest.hang import is_tick

MAX_EXCERPT_LINES = 400
END_MARKER_WINDOW = 10  # lines between "</TASK>" and "---[ end trace" (irq stamps, CR2...)


@dataclass(frozen=True)
class Splat:
    kind: str  # family: "WARNING", "BUG", "lockdep", "KASAN", "panic", ...
    id: str  # stable across runs, e.g. "WARNING:__alloc_pages"
    line_no: int  # 1-based line of the header in the log given to classify()
    excerpt: str  # header line and its following lines, timestamps removed


@dataclass(frozen=True)
class IgnoreRule:
    """Splats whose id matches `pattern` (re.search) are dropped; `reason` says why."""

    pattern: str
    reason: str


# Nothing is ignored by default: add a rule only with a reason that names the cause.
DEFAULT_IGNORE: tuple[IgnoreRule, ...] = ()


# --- normalisation ---------------------------------------------------------------------------

_PREFIX = re.compile(r"^(?:<\d+>)?(?:\[\s*\d+\.\d+\]\s?)?(?:\[\s*[CT]\d+\]\s?)?")
_HEX = re.compile(r"\b0x[0-9a-fA-F]+\b|\b[0-9a-fA-F]{8,}\b")
_NUMBER = re.compile(r"\d+")
_CLONE_SUFFIX = re.compile(r"(?:\.(?:part|isra|constprop|cold|llvm|lto_priv)(?:\.\d+)?)+$")
_FUNC_OFFSET = re.compile(r"^([\w.$]+)\+0x[0-9a-f]+/0x[0-9a-f]+")


def strip_prefix(line: str) -> str:
    """Drop the log level, timestamp and caller id the kernel put in front of the text."""
    return _PREFIX.sub("", line.rstrip("\r"), count=1)


def slug(text: str) -> str:
    """Id fragment: addresses and numbers removed, blanks turned into '_'."""
    text = _NUMBER.sub("", _HEX.sub("", text))
    text = re.sub(r"\(\s*\)|\[\s*\]", "", text)  # brackets that only held numbers
    text = re.sub(r"\s+", "_", text.strip())
    return re.sub(r"_+", "_", text).strip("_.,:;")


def function_name(symbol: str) -> str:
    """ "__free_one_page.constprop.0+0x1c/0x3a0" -> "__free_one_page"."""
    m = _FUNC_OFFSET.match(symbol)
    name = m[1] if m else symbol.split("+", 1)[0]
    return _CLONE_SUFFIX.sub("", name)


def source_file(location: str) -> str:
    """ "mm/page_alloc.c:1234" -> "mm/page_alloc.c"."""
    return re.sub(r":\d+(?::\d+)?!?$", "", location)


# --- facts found in an excerpt -------------------------------------------------------------

_RIP = re.compile(r"^RIP: [0-9a-f]{4}:(\S+)")
_FRAME = re.compile(r"^\s+(?:\[<[0-9a-f]+>\] )?(\? )?([\w.$]+)\+0x[0-9a-f]+/0x[0-9a-f]+")
_TRACE_MARKER = re.compile(r"^\s*</?(?:TASK|IRQ|NMI|SOFTIRQ|EOE)>\s*$")
_BORING_FRAMES = frozenset(
    {"dump_stack", "dump_stack_lvl", "show_stack", "__warn", "warn_alloc", "report_bug"}
)
_LOCK_AT = re.compile(r"^\s*\S+ \((.+)\)\{[^}]*\}(?:-\{[^}]*\})?, at: (\S+)")


def rip_function(lines: list[str]) -> str | None:
    for line in lines:
        if m := _RIP.match(line):
            return function_name(m[1])
    return None


def first_trace_function(lines: list[str]) -> str | None:
    """First reliable frame after "Call Trace:" that is not the dumping machinery."""
    in_trace = False
    for line in lines:
        if line.startswith("Call Trace:"):
            in_trace = True
        elif in_trace and (m := _FRAME.match(line)) and not m[1]:
            name = function_name(m[2])
            if name not in _BORING_FRAMES:
                return name
    return None


def lock_after(lines: list[str], marker: str) -> str | None:
    """ "lock:func" of the lock line that follows the line containing `marker`."""
    for index, line in enumerate(lines):
        if marker in line:
            for candidate in lines[index + 1 : index + 3]:
                if m := _LOCK_AT.match(candidate):
                    lock = re.sub(r"#\d+$", "", m[1])
                    return f"{lock}:{function_name(m[2])}"
    return None


def with_suffix(base: str, *parts: str | None) -> str:
    return ":".join([base, *(part for part in parts if part)])


# --- the pattern table -----------------------------------------------------------------------

IdBuilder = Callable[[re.Match[str], list[str]], str]


@dataclass(frozen=True)
class Pattern:
    kind: str
    regex: re.Pattern[str]
    make_id: IdBuilder
    end: str = "trace"  # "trace" | "ruler" (KASAN/UBSAN "====" line) | "panic"
    secondary: bool = False  # only reported outside a primary splat's excerpt


def _circular(m: re.Match[str], lines: list[str]) -> str:
    return with_suffix("lockdep:circular_locking", lock_after(lines, "is trying to acquire"))


def _inconsistent(m: re.Match[str], lines: list[str]) -> str:
    usage = next((u[1] for line in lines if (u := re.match(r"inconsistent (.+) usage", line))), "")
    return with_suffix(
        "lockdep:inconsistent_lock_state", usage.replace(" ", ""), lock_after(lines, " takes:")
    )


def _suspicious_rcu(m: re.Match[str], lines: list[str]) -> str:
    where = next((w[1] for line in lines if (w := re.match(r"(\S+\.[ch]):\d+ ", line))), None)
    return with_suffix("lockdep:suspicious_RCU_usage", where)


def _warn(m: re.Match[str], lines: list[str]) -> str:
    return f"WARNING:{function_name(m['func'])}"


def _report_warning(m: re.Match[str], lines: list[str]) -> str:
    return f"lockdep:{slug(m[1])}"


_LOCK_CLASS = re.compile(r"^\s*\((.+?)\)\{[^}]*\}")


def _lock_on_line_after(lines: list[str], marker: re.Pattern[str]) -> tuple[str, str] | None:
    """(irq state, lock class) for the first line matching `marker` and the lock line after it."""
    for index, line in enumerate(lines):
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if (m := marker.search(line)) and (lock := _LOCK_CLASS.match(following)):
            return m[1], lock[1]
    return None


def _irq_unsafe_lock(m: re.Match[str], lines: list[str]) -> str:
    """Irq inversion and safe -> unsafe reports: the id names the irq-unsafe lock.

    That lock is the one taken with interrupts enabled where it must not be, so its name is
    what stays the same across runs; the safe lock on the other side (a network hash lock,
    a timer base) depends on which path lockdep saw first.
    """
    unsafe = _lock_on_line_after(lines, _UNSAFE_LOCK_MARKER)
    if unsafe is None:  # "taken by another, X-safe lock": the lock that changed state is unsafe
        changed = lock_after(lines, "just changed the state of lock:")
        state = next((s[1] for line in lines if (s := _SAFE_LOCK_MARKER.search(line))), None)
        unsafe = (state, changed.rsplit(":", 1)[0]) if changed and state else None
    state, lock = unsafe if unsafe else (None, None)
    return with_suffix(f"lockdep:{slug(m[1])}", f"{state}-unsafe" if state else None, lock)


# "but this lock took another, SOFTIRQ-unsafe lock in the past:" (irq inversion) and
# "to a SOFTIRQ-irq-unsafe lock:" (safe -> unsafe order): the unsafe lock's class follows.
_UNSAFE_LOCK_MARKER = re.compile(r"(?:another, |to a )(\S+?)(?:-irq)?-unsafe lock")
_SAFE_LOCK_MARKER = re.compile(r"taken by another, (\S+?)-safe lock")


def _other_warning(m: re.Match[str], lines: list[str]) -> str:
    return f"WARNING:{slug(m[1])}"


def _kasan(m: re.Match[str], lines: list[str]) -> str:
    return f"KASAN:{slug(m[1])}:{function_name(m[2])}"


def _sleeping(m: re.Match[str], lines: list[str]) -> str:
    return f"BUG:sleeping_function_called_from_invalid_context:{source_file(m[1])}"


def _bad_page(m: re.Match[str], lines: list[str]) -> str:
    why = next((w[1] for line in lines if (w := re.match(r"page dumped because: (.+)", line))), "")
    return with_suffix("BUG:Bad_page_state", slug(why))


def _soft_lockup(m: re.Match[str], lines: list[str]) -> str:
    return with_suffix("soft_lockup", rip_function(lines) or first_trace_function(lines))


def _hard_lockup(m: re.Match[str], lines: list[str]) -> str:
    return with_suffix("hard_lockup", rip_function(lines) or first_trace_function(lines))


def _generic_bug(m: re.Match[str], lines: list[str]) -> str:
    title = re.split(r",|: | - | in process |\[", m[1], maxsplit=1)[0]
    return with_suffix(f"BUG:{slug(title)}", rip_function(lines))


def _kernel_bug(m: re.Match[str], lines: list[str]) -> str:
    return with_suffix(f"kernel_BUG:{source_file(m[1])}", rip_function(lines))


def _gpf(m: re.Match[str], lines: list[str]) -> str:
    return with_suffix("general_protection_fault", rip_function(lines))


def _oops(m: re.Match[str], lines: list[str]) -> str:
    return with_suffix("Oops", rip_function(lines))


def _panic(m: re.Match[str], lines: list[str]) -> str:
    return with_suffix("Kernel_panic", slug(m[1]))


def _rcu_stall(m: re.Match[str], lines: list[str]) -> str:
    return f"RCU_stall:{slug(m[1])}"


def _hung_task(m: re.Match[str], lines: list[str]) -> str:
    return f"hung_task:{slug(m[1].split('/', 1)[0])}"


def _ubsan(m: re.Match[str], lines: list[str]) -> str:
    return f"UBSAN:{slug(m[1])}:{source_file(m[2])}"


def _pagealloc(m: re.Match[str], lines: list[str]) -> str:
    return "pagealloc:memory_corruption"


def _list_corruption(m: re.Match[str], lines: list[str]) -> str:
    detail = re.sub(r"\([^)]*\)", "", m[2]).split(", but was")[0]
    return with_suffix(f"list_corruption:{m[1]}", slug(detail))


def _page_dump(m: re.Match[str], lines: list[str]) -> str:
    return f"page_dumped_because:{slug(m[1])}"


def _call_trace(m: re.Match[str], lines: list[str]) -> str:
    return with_suffix("Call_Trace", first_trace_function(lines))


def _alloc_failure(m: re.Match[str], lines: list[str]) -> str:
    return f"page_allocation_failure:order_{m[1]}"  # the order is the category, not noise


def _oom(m: re.Match[str], lines: list[str]) -> str:
    return f"OOM:{slug(m[1])}"


_LOCKDEP_TITLES = (
    r"possible recursive locking detected|possible irq lock inversion dependency detected"
    r"|bad unlock balance detected!|held lock freed!|lock held when returning to user space!"
    r"|Nested lock was not taken|\S+-safe -> \S+-unsafe lock order detected"
    r"|releasing a pinned lock|lock held at task exit time!|Illegal lock usage!"
)

# Order matters: the first pattern that matches a line wins.
PATTERNS: tuple[Pattern, ...] = (
    Pattern(
        "lockdep", re.compile(r"WARNING: possible circular locking dependency detected"), _circular
    ),
    Pattern("lockdep", re.compile(r"WARNING: inconsistent lock state"), _inconsistent),
    Pattern("lockdep", re.compile(r"WARNING: suspicious RCU usage"), _suspicious_rcu),
    Pattern(
        "lockdep",
        re.compile(
            r"WARNING: (possible irq lock inversion dependency detected"
            r"|\S+-safe -> \S+-unsafe lock order detected)"
        ),
        _irq_unsafe_lock,
    ),
    Pattern("lockdep", re.compile(rf"WARNING: ({_LOCKDEP_TITLES})"), _report_warning),
    Pattern(
        "WARNING",
        re.compile(
            r"WARNING: (?:CPU: \d+ PID: \d+ )?at (?:\S+:\d+ )?(?P<func>\S+?)(?:\(\))?"
            r"(?: \[[\w-]+\])?$"  # a module name may follow the function
        ),
        _warn,
    ),
    Pattern("WARNING", re.compile(r"WARNING: (.+)"), _other_warning),
    Pattern("KASAN", re.compile(r"BUG: KASAN: (.+?) in (\S+)"), _kasan, end="ruler"),
    Pattern(
        "BUG",
        re.compile(r"BUG: sleeping function called from invalid context at (\S+)"),
        _sleeping,
    ),
    Pattern("soft lockup", re.compile(r"BUG: soft lockup - CPU#\d+ stuck"), _soft_lockup),
    Pattern("BUG", re.compile(r"BUG: Bad page state in process"), _bad_page),
    Pattern("BUG", re.compile(r"BUG: (.+)"), _generic_bug),
    Pattern("BUG", re.compile(r"kernel BUG at (\S+)"), _kernel_bug),
    Pattern("hard lockup", re.compile(r"Watchdog detected hard LOCKUP on cpu"), _hard_lockup),
    Pattern("GPF", re.compile(r"general protection fault"), _gpf),
    Pattern("panic", re.compile(r"^Kernel panic - not syncing: ?(.*)"), _panic, end="panic"),
    Pattern(
        "RCU stall",
        re.compile(r"rcu_\w+ (self-detected stall|detected stalls|detected expedited stalls)"),
        _rcu_stall,
    ),
    Pattern(
        "hung task",
        re.compile(r"INFO: task (.+):\d+ blocked for more than \d+ seconds"),
        _hung_task,
    ),
    Pattern("UBSAN", re.compile(r"UBSAN: (.+?) in (\S+)"), _ubsan, end="ruler"),
    Pattern("pagealloc corruption", re.compile(r"pagealloc: memory corruption"), _pagealloc),
    Pattern(
        "list corruption",
        re.compile(r"(list_add|list_del) corruption[.,]? ?(.*)"),
        _list_corruption,
    ),
    Pattern(
        "allocation failure", re.compile(r"page allocation failure: order:(\d+)"), _alloc_failure
    ),
    Pattern("OOM", re.compile(r"^(\S+) invoked oom-killer:"), _oom),
    Pattern("page dump", re.compile(r"page dumped because: (.+)"), _page_dump, secondary=True),
    Pattern(
        "Oops",
        re.compile(r"^(?:Oops|invalid opcode): [0-9a-f]+ \[#\d+\]"),
        _oops,
        secondary=True,
    ),
    Pattern("Call Trace", re.compile(r"^Call Trace:"), _call_trace, secondary=True),
)


def match_line(text: str) -> tuple[Pattern, re.Match[str]] | None:
    for pattern in PATTERNS:
        if m := pattern.regex.search(text):
            return pattern, m
    return None


def _is_primary_header(text: str) -> bool:
    found = match_line(text)
    return found is not None and not found[0].secondary


# --- excerpt boundaries ----------------------------------------------------------------------


def _extend_to_end_marker(lines: list[str], index: int, marker: str) -> int:
    """End (exclusive) of an excerpt whose trace closed at `index`: include a nearby marker."""
    for j in range(index, min(len(lines), index + END_MARKER_WINDOW)):
        if lines[j].startswith(marker):
            return j + 1
        if _is_primary_header(lines[j]):
            break
    return index


def _trace_end(lines: list[str], start: int, limit: int) -> int:
    in_trace = saw_marker = False
    for j in range(start + 1, limit):
        text = lines[j]
        if text.startswith("---[ end trace"):
            return j + 1
        if _is_primary_header(text):
            return j
        if text.strip() == "</TASK>":
            return _extend_to_end_marker(lines, j + 1, "---[ end trace")
        if text.startswith("Call Trace:"):
            in_trace = True
        elif _TRACE_MARKER.match(text):
            saw_marker = True
        elif in_trace and not saw_marker and not _FRAME.match(text):
            return _extend_to_end_marker(lines, j, "---[ end trace")  # a trace without markers
    return limit


def _ruler_end(lines: list[str], start: int, limit: int) -> int:
    for j in range(start + 1, limit):
        if re.fullmatch(r"={20,}", lines[j].strip()):
            return j + 1
        if _is_primary_header(lines[j]):
            return j
    return limit


def _panic_end(lines: list[str], start: int, limit: int) -> int:
    """Up to "---[ end Kernel panic"; with panic=-1 the kernel reboots before printing it."""
    for j in range(start + 1, limit):
        if lines[j].startswith("---[ end Kernel panic"):
            return j + 1
        if _is_primary_header(lines[j]):
            break
    return _trace_end(lines, start, limit)


def excerpt_end(lines: list[str], start: int, rule: str) -> int:
    limit = min(len(lines), start + MAX_EXCERPT_LINES)
    if rule == "ruler":
        return _ruler_end(lines, start, limit)
    if rule == "panic":
        return _panic_end(lines, start, limit)
    return _trace_end(lines, start, limit)


# --- classification --------------------------------------------------------------------------


def classify(log_text: str, ignore: Iterable[IgnoreRule] = DEFAULT_IGNORE) -> list[Splat]:
    """Every problem in a kernel log, in order of appearance, minus the ignored ones.

    The guest's heartbeat ticks (images/init: "PHH-TICK <uptime>" through the kernel log)
    are left out: on two vCPUs one can land between two lines of a report."""
    kept = [(n, line) for n, line in enumerate(log_text.split("\n"), 1) if not is_tick(line)]
    line_numbers = [n for n, _ in kept]
    lines = [strip_prefix(line) for _, line in kept]
    ignore_res = [re.compile(rule.pattern) for rule in ignore]
    splats: list[Splat] = []
    covered_until = 0  # end of the last primary splat's excerpt
    for index, text in enumerate(lines):
        found = match_line(text)
        if found is None:
            continue
        pattern, m = found
        if pattern.secondary and index < covered_until:
            continue
        end = excerpt_end(lines, index, pattern.end)
        excerpt = lines[index:end]
        if not pattern.secondary:
            covered_until = max(covered_until, end)
        splat_id = pattern.make_id(m, excerpt)
        if any(rule.search(splat_id) for rule in ignore_res):
            continue
        splats.append(Splat(pattern.kind, splat_id, line_numbers[index], "\n".join(excerpt)))
    return splats


@dataclass(frozen=True)
class ZeroCode:
    """An oops whose instruction bytes at RIP are all zero: kernel code that reads as zeros."""

    line: int  # 1-based line of the "Code:" line
    rip: str  # "wait_for_initramfs+0x0/0x3b"


_CODE_BYTES = re.compile(r"^Code: ((?:<?[0-9a-f]{2}>? ?)+)$")


def zero_filled_code(log_text: str) -> list[ZeroCode]:
    """Each "Code:" line of an oops whose bytes are all 00, with the RIP printed before it.

    Kernel text is never zero; an x86 oops that dumps zeros at RIP ran code whose page was
    replaced by a zero page, which on a hinting guest is what the host's discard leaves.
    """
    found: list[ZeroCode] = []
    rip = "?"
    for index, raw in enumerate(log_text.split("\n")):
        line = strip_prefix(raw).strip()
        if m := _RIP.match(line):
            rip = m[1]
        elif (m := _CODE_BYTES.match(line)) and set(re.findall(r"[0-9a-f]{2}", m[1])) == {"00"}:
            found.append(ZeroCode(index + 1, rip))
    return found


def count_ids(splats: Iterable[Splat]) -> Counter[str]:
    """How often each id occurs: the comparable summary of one run."""
    return Counter(splat.id for splat in splats)


def new_ids(baseline: Iterable[Splat], candidate: Iterable[Splat]) -> set[str]:
    """Ids present in `candidate` but not in `baseline` (e.g. patched vs stock kernel)."""
    return set(count_ids(candidate)) - set(count_ids(baseline))
