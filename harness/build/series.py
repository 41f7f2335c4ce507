"""Load a patch series (quilt dir, dir of *.patch, mbox) and apply it strictly with `git am`.

A series is identified by `digest`, a sha256 over the contents of its patches in order, so
the same patches give the same worktree and build cache key whatever directory they are in.

An mbox (`git format-patch --stdout`, `b4 am`, a list archive's t.mbox) is split with
`git mailsplit`; its cover letter, replies and messages without a diff are dropped and the
patches are put in `n/N` order, refusing a series with a gap, a duplicate or two lengths.
Patches a mail client damaged (CRLF line endings, wrapped lines) are named before `git am`.
"""

from __future__ import annotations

import contextlib
import email.header
import email.parser
import email.policy
import hashlib
import re
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from harness.build.source import run_git
from harness.core.diskspace import WORKTREE_NEEDS, disk_full, output_says_disk_full
from harness.core.errors import HarnessError, PatchApplyError, SeriesError
from harness.core.fsutil import atomic_directory
from harness.core.paths import cache_dir

EMPTY_SERIES_NAME = "stock"
# An mbox `From ` separator as git mailsplit recognises it: its last colon is in a time
# that a year follows ("From git@z Thu Jan  1 00:00:00 1970").
MBOX_SEPARATOR = re.compile(rb"^From \S.*\d:\d\d:\d\d\s+\d{4}[^:\n]*$", re.MULTILINE)
SPLIT_VERSION = b"mailsplit -b --keep-cr\0"  # in the split cache key: bump on a format change
DIFF_MARKERS = (re.compile(rb"^diff --git ", re.MULTILINE), re.compile(rb"^--- \S", re.MULTILINE))
HUNK_HEADER = re.compile(rb"^@@ -\d+(,\d+)? \+\d+(,\d+)? @@", re.MULTILINE)
HUNK_COUNTS = re.compile(rb"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
CRLF_DIFF_LINE = re.compile(rb"^(?:diff --git |@@ -).*\r$", re.MULTILINE)
SUBJECT_PREFIX = re.compile(r"^\s*\[([^\]]*)\]\s*")
COUNTER = re.compile(r"^(\d{1,4})/(\d{1,4})$")
REPLY = re.compile(r"^\s*(?:re|aw)\s*:", re.IGNORECASE)
B4_HINT = "fetch the whole thread with `b4 am <msgid>` and pass the .mbx it writes"
MAX_HUNKS_REPORTED = 10


@dataclass(frozen=True)
class Series:
    """An ordered tuple of patch files; the empty series is the stock kernel.

    `labels` name each patch to the user (their file, and for an mbox the message and its
    Subject), since a patch split from an mbox lives in the cache.
    """

    name: str
    patches: tuple[Path, ...]
    digest: str
    labels: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.patches

    def label(self, index: int) -> str:
        """How to name patch `index` (0-based) in a message: its label, else its path."""
        return self.labels[index] if index < len(self.labels) else str(self.patches[index])


@dataclass(frozen=True)
class _Patch:
    path: Path  # the file `git am` reads: the user's, or a message split into the cache
    source: Path  # the user's file it comes from
    label: str
    first_line: int = 1  # the line of `source` that is line 1 of `path`


class _Message(NamedTuple):
    patch: _Patch
    index: int  # 1-based position in the mbox
    subject: str
    counter: tuple[int, int] | None  # (n, N) from "[PATCH v2 n/N]"


def write_quilt_series(
    patches: Sequence[Path],
    target: Path,
    *,
    companions: Sequence[Path] = (),
    header: str | None = None,
) -> Path:
    """`target/` made anew as a quilt series directory: a `series` file naming `patches`
    as given, and copies of `companions` (params.toml, known-splats.txt)."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    lines = ([f"# {header}"] if header else []) + [str(p) for p in patches]
    (target / "series").write_text("\n".join(lines) + "\n")
    for companion in companions:
        shutil.copy2(companion, target / companion.name)
    return target


def series_digest(patches: tuple[Path, ...]) -> str:
    digest = hashlib.sha256()
    for patch in patches:
        content = patch.read_bytes()
        digest.update(f"{len(content)}\n".encode())
        digest.update(content)
    return digest.hexdigest()


def empty_series() -> Series:
    return Series(EMPTY_SERIES_NAME, (), series_digest(()))


def load_series(path: Path | None) -> Series:
    """Read a quilt directory, a directory of *.patch, a patch or an mbox; None: stock."""
    if path is None:
        return empty_series()
    path = path.expanduser()
    if path.is_dir():
        files = _quilt_patches(path) if (path / "series").is_file() else _dir_patches(path)
        patches = tuple(_Patch(file, file, str(file)) for file in files)
    elif path.is_file():
        patches = _file_patches(path)
    else:
        raise SeriesError(
            f"patch series {path} does not exist",
            "pass a directory with a quilt `series` file or *.patch files, or an mbox file",
        )
    for patch in patches:
        check_patch(patch.path)
        _check_mail_damage(patch)
    if not patches:
        return empty_series()
    name = path.name if path.is_dir() else path.stem
    files = tuple(patch.path for patch in patches)
    return Series(name, files, series_digest(files), tuple(patch.label for patch in patches))


def _quilt_patches(directory: Path) -> tuple[Path, ...]:
    series_file = directory / "series"
    patches = []
    for number, raw in enumerate(_read_text(series_file).splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name = line.split()[0]  # drops options such as -p1
        patch = directory / name
        if not patch.is_file():
            raise SeriesError(
                f"{series_file}:{number} lists {name}, but {patch} does not exist",
                "add the missing patch file or remove its line from the series file",
            )
        patches.append(patch)
    return tuple(patches)


def _dir_patches(directory: Path) -> tuple[Path, ...]:
    patches = tuple(sorted(directory.glob("*.patch")))
    if not patches:
        raise SeriesError(
            f"{directory} has neither a quilt `series` file nor any *.patch file",
            "put the patches there as numbered *.patch files or add a `series` file",
        )
    return patches


def _file_patches(path: Path) -> tuple[_Patch, ...]:
    """An mbox holding several messages is split; a single patch is a series of one."""
    content = _read_bytes(path)
    if len(MBOX_SEPARATOR.findall(content)) > 1:
        return _mbox_patches(path, content)
    return (_Patch(path, path, str(path)),)


# --- Mboxes --------------------------------------------------------------------------------


def _mbox_patches(mbox: Path, content: bytes) -> tuple[_Patch, ...]:
    """The patches of an mbox in n/N order, without cover letter, replies and diffless mail."""
    messages = _mbox_messages(mbox, content)
    patches = [message for message in messages if _is_patch(message)]
    if not patches:
        raise SeriesError(
            f"{mbox} holds no patch, only a cover letter, replies or other messages without a diff",
            f"check that it is the series thread; {B4_HINT}",
        )
    return tuple(message.patch for message in _series_order(mbox, patches))


def _mbox_messages(mbox: Path, content: bytes) -> list[_Message]:
    """Every message of the mbox, labelled with the mbox, its position and its Subject."""
    # mailsplit skips leading blank lines and copies the rest verbatim (--keep-cr), so the
    # messages' line counts give where each starts in the user's file.
    line = content[: len(content) - len(content.lstrip())].count(b"\n") + 1
    messages = []
    for index, part in enumerate(_split_mbox(mbox, content), start=1):
        subject = patch_subject(part)
        label = f"{mbox}, message {index} ({subject})"
        patch = _Patch(part, mbox, label, line)
        messages.append(_Message(patch, index, subject, _counter(subject)))
        line += _read_bytes(part).count(b"\n")
    return messages


def _split_mbox(mbox: Path, content: bytes) -> tuple[Path, ...]:
    """Split with `git mailsplit` into a content-keyed cache dir (temp dir, then rename)."""
    key = hashlib.sha256(SPLIT_VERSION + content).hexdigest()[:20]
    target = cache_dir("series") / key
    if not target.is_dir():
        # content-keyed: if another process split it first, its copy is as good
        with atomic_directory(target, replace=False) as scratch:
            # --keep-cr: leave CRLF damage in place for _check_mail_damage to name.
            result = subprocess.run(
                ["git", "mailsplit", "-b", "--keep-cr", f"-o{scratch}", str(mbox)],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise SeriesError(
                    f"cannot split mbox {mbox}: {result.stderr.strip()}",
                    "check that it is an mbox as `b4 am` or `git format-patch --stdout` writes it",
                )
            for part in scratch.iterdir():
                part.rename(part.with_name(f"{part.name}.patch"))
    return tuple(sorted(target.glob("*.patch")))


def _counter(subject: str) -> tuple[int, int] | None:
    """(n, N) from the bracketed prefixes, as b4 reads them: "[RFC PATCH v3 2/5] mm: x"."""
    while match := SUBJECT_PREFIX.match(subject):
        for chunk in match.group(1).split():
            found = COUNTER.match(chunk.strip(",;"))
            if found:
                return int(found.group(1)), int(found.group(2))
        subject = subject[match.end() :]
    return None


def _is_patch(message: _Message) -> bool:
    """Not a cover letter (n = 0), not a reply, and holding a diff."""
    if REPLY.match(message.subject) or (message.counter and message.counter[0] == 0):
        return False
    return _has_diff(_read_bytes(message.patch.path))


def _series_order(mbox: Path, messages: list[_Message]) -> list[_Message]:
    """Sort by n; refuse unnumbered strays, two series lengths, duplicates and gaps."""
    numbered = [message for message in messages if message.counter]
    if not numbered:  # `git format-patch -N`, or a single [PATCH]: keep the mbox order
        return messages
    stray = next((message for message in messages if not message.counter), None)
    if stray is not None:
        raise SeriesError(
            f"{stray.patch.label} has no n/N number in its Subject while the other "
            "patches of the mbox have one",
            f"remove that message from {mbox} if it is not part of the series; {B4_HINT}",
        )
    total = _series_length(mbox, numbered)
    by_number = _by_number(mbox, numbered, total)
    _check_complete(mbox, by_number, total)
    return [by_number[number][0] for number in sorted(by_number)]


def _series_length(mbox: Path, messages: list[_Message]) -> int:
    """The N all patches agree on; two Ns mean two versions of the series in one mbox."""
    first_with: dict[int, _Message] = {}
    for message in messages:
        assert message.counter is not None
        first_with.setdefault(message.counter[1], message)
    if len(first_with) > 1:
        seen = "; ".join(
            f"{total} in {message.patch.label}" for total, message in sorted(first_with.items())
        )
        raise SeriesError(
            f"{mbox} mixes series of different lengths (N of n/N): {seen}",
            "it holds more than one version of the series: keep one version's messages, "
            "or fetch the one you want with `b4 am -v <version> <msgid>`",
        )
    return next(iter(first_with))


def _by_number(mbox: Path, messages: list[_Message], total: int) -> dict[int, list[_Message]]:
    """Messages by n; refuse n > N and a number held by two messages."""
    by_number: dict[int, list[_Message]] = defaultdict(list)
    for message in messages:
        assert message.counter is not None
        number = message.counter[0]
        if number > total:
            raise SeriesError(
                f"{message.patch.label} is numbered {number}/{total}, beyond the series end",
                f"fix or remove that message in {mbox}; {B4_HINT}",
            )
        by_number[number].append(message)
    for number, held in sorted(by_number.items()):
        if len(held) > 1:
            raise SeriesError(
                f"{mbox} holds patch {number}/{total} twice: message {held[0].index} "
                f"({held[0].subject}) and message {held[1].index} ({held[1].subject})",
                "a resend or a new version was posted in the same thread: delete the "
                f"message you do not want from the mbox, or {B4_HINT}",
            )
    return by_number


def _check_complete(mbox: Path, by_number: dict[int, list[_Message]], total: int) -> None:
    missing = [f"{number}/{total}" for number in range(1, total + 1) if number not in by_number]
    if not missing:
        return
    what = (
        f"patch {missing[0]} is missing"
        if len(missing) == 1
        else f"patches {', '.join(missing)} are missing"
    )
    raise SeriesError(
        f"{mbox} holds {len(by_number)} of the {total} patches of the series: {what}",
        f"the mbox holds only part of the thread: {B4_HINT}",
    )


# --- Checks --------------------------------------------------------------------------------


def check_patch(patch: Path) -> None:
    """Raise SeriesError unless the file holds at least one diff with a hunk."""
    if not _has_diff(_read_bytes(patch)):
        raise SeriesError(
            f"{patch} contains no diff (no `diff --git`/`---` header with an `@@` hunk)",
            "check that the file is a patch (git format-patch output or a unified diff)",
        )


def _has_diff(content: bytes) -> bool:
    has_header = any(marker.search(content) for marker in DIFF_MARKERS)
    return has_header and HUNK_HEADER.search(content) is not None


def describe(label: str, patch: Path) -> str:
    """The label, with the patch's Subject unless the label already holds it."""
    subject = patch_subject(patch)
    return label if subject in label else f"{label} (Subject: {subject})"


def _check_mail_damage(patch: _Patch) -> None:
    """Name the damage a mail client does, which `git am` only reports as hunks that fail."""
    content = _read_bytes(patch.path)
    if CRLF_DIFF_LINE.search(content):
        raise SeriesError(
            f"{describe(patch.label, patch.path)} has CRLF (\\r\\n) line endings, "
            "so none of its hunks would apply",
            f"a mail client or editor converted the line endings: convert them back with "
            f"`dos2unix {patch.source}` or `sed -i 's/\\r$//' {patch.source}`, "
            "or save the raw message (`b4 am <msgid>`)",
        )
    wrapped = _wrapped_line(content)
    if wrapped is not None:
        number, line = wrapped
        shown = line.decode("utf-8", errors="replace")[:60]
        raise SeriesError(
            f"{describe(patch.label, patch.path)}: line {patch.first_line + number - 1} of "
            f"{patch.source} ({shown!r}) is inside a hunk but is not a context, `+` or `-` "
            "line: the mail client wrapped long lines",
            "save the raw message (`b4 am <msgid>`, or the client's 'show original'), or ask "
            "for it to be resent with `git send-email`; do not copy-paste a patch from a mail",
        )


def _wrapped_line(content: bytes) -> tuple[int, bytes] | None:
    """(1-based number, text) of the first line inside a hunk that no diff line looks like.

    A hunk holds as many old and new lines as its `@@ -a,b +c,d @@` header counts; an empty
    line is a context line whose trailing space some tools strip.
    """
    old = new = 0
    for number, line in enumerate(content.split(b"\n"), start=1):
        if old > 0 or new > 0:
            marker = line[:1]
            if marker in (b"", b" "):
                old, new = old - 1, new - 1
            elif marker == b"-":
                old -= 1
            elif marker == b"+":
                new -= 1
            elif marker != b"\\":  # "\ No newline at end of file"
                return number, line
        elif match := HUNK_COUNTS.match(line):
            old, new = (1 if count is None else int(count) for count in match.groups())
    return None


def patch_subject(patch: Path) -> str:
    """The Subject: header of a mail-format patch, or the file name for a plain diff."""
    headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(
        _read_bytes(patch)
    )
    subject = headers.get("Subject")
    if subject is None:
        return patch.name
    decoded = email.header.make_header(email.header.decode_header(str(subject)))
    return " ".join(str(decoded).split())


def _is_mail_patch(patch: Path) -> bool:
    head = _read_bytes(patch)[:4096]
    return re.search(rb"^From: ", head, re.MULTILINE) is not None and b"Subject:" in head


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SeriesError(
            f"cannot read {path}: {exc.strerror}", "check the path and its permissions"
        ) from exc


def _read_text(path: Path) -> str:
    return _read_bytes(path).decode("utf-8", errors="replace")


# --- Application ---------------------------------------------------------------------------


def apply_series(tree: Path, series: Series) -> None:
    """Apply every patch with `git am` (plain diffs: `git apply` + commit), strictly.

    Consecutive mail patches go to one `git am` (0.6 s for v2's 8 patches on the kernel,
    1.9 s one call each: every call reads and writes the 75,000-file index). On failure
    the tree is put back at its starting commit, cleaned, and PatchApplyError names the
    patch (the user's file, not the cache), its Subject, and the failed hunks.
    """
    start = run_git(["rev-parse", "HEAD"], tree).stdout.strip()
    for first, run in _runs_of_one_kind(series.patches):
        before = run_git(["rev-parse", "HEAD"], tree).stdout.strip()
        result = _apply_run(tree, run)
        if result.returncode == 0:
            continue
        if output_says_disk_full(result.stdout + result.stderr, tree):
            _restore_quietly(tree, start)
            raise disk_full(tree, f"applying series {series.name}", WORKTREE_NEEDS)
        applied = run_git(["rev-list", "--count", f"{before}..HEAD"], tree, check=False)
        index = first + (int(applied.stdout.strip() or 0) if len(run) > 1 else 0)
        patch = series.patches[index - 1]
        detail = _failure_detail(tree, patch, result.stdout + result.stderr)
        _restore(tree, start)
        raise PatchApplyError(
            f"patch {index}/{len(series.patches)} of series {series.name} does not apply: "
            f"{describe(series.label(index - 1), patch)}\n{detail}",
            f"rebase the patch on the tree being patched ({tree} at {start[:12]}), "
            "e.g. apply it by hand with `git am -3`, resolve, and `git format-patch`",
        )


def _runs_of_one_kind(patches: Sequence[Path]) -> list[tuple[int, list[Path]]]:
    """(1-based index of the first, patches): consecutive mail patches together, each
    plain diff alone."""
    runs: list[tuple[int, list[Path]]] = []
    previous_was_mail = False
    for index, patch in enumerate(patches, start=1):
        mail = _is_mail_patch(patch)
        if mail and previous_was_mail:
            runs[-1][1].append(patch)
        else:
            runs.append((index, [patch]))
        previous_was_mail = mail
    return runs


def _apply_run(tree: Path, run: list[Path]) -> subprocess.CompletedProcess[str]:
    if _is_mail_patch(run[0]):
        return run_git(["am", "--quiet", "--keep-cr", *map(str, run)], tree, check=False)
    (patch,) = run
    applied = run_git(["apply", "--index", str(patch)], tree, check=False)
    if applied.returncode != 0:
        return applied
    return run_git(["commit", "-q", "-m", patch.name], tree, check=False)


def _failure_detail(tree: Path, patch: Path, output: str) -> str:
    """The `error:` lines of git, each failed hunk's header from the patch, and the files."""
    check = run_git(["apply", "--check", "-v", str(patch)], tree, check=False)
    errors = _error_lines(check.stdout + check.stderr) or _error_lines(output)
    lines = errors or [output.strip()]
    failed_hunks = _failed_hunks(patch, errors)
    if failed_hunks:
        lines.append("failed hunks:")
        lines.extend(f"  {hunk}" for hunk in failed_hunks[:MAX_HUNKS_REPORTED])
    return "\n".join(lines)


def failed_hunks(tree: Path, patch: Path) -> list[str]:
    """Each hunk of `patch` that does not apply to `tree` as 'FILE:LINE @@ ... @@ context'
    (`git apply --check`); git's own error lines when it names no hunk (a missing file)."""
    check = run_git(["apply", "--check", "-v", str(patch)], tree, check=False)
    errors = _error_lines(check.stdout + check.stderr)
    return _failed_hunks(patch, errors) or errors


def _error_lines(text: str) -> list[str]:
    """git's `error:` lines without the echoed context ('while searching for:' blocks)."""
    return [
        line
        for line in text.splitlines()
        if line.startswith("error:") and "while searching for" not in line
    ]


def _failed_hunks(patch: Path, errors: list[str]) -> list[str]:
    """Map 'error: patch failed: FILE:LINE' to 'FILE: @@ -LINE,... @@ context' from the patch."""
    failed = [re.match(r"error: patch failed: (.+):(\d+)$", line) for line in errors]
    hunks = _hunk_headers(_read_text(patch))
    described = []
    for match in filter(None, failed):
        file, line = match.group(1), int(match.group(2))
        header = next((h for f, start, h in hunks if f == file and start == line), None)
        described.append(f"{file}:{line} {header or ''}".rstrip())
    return described


def _hunk_headers(text: str) -> list[tuple[str, int, str]]:
    """(file, old start line, header) for every hunk of a patch."""
    headers = []
    current = ""
    for line in text.splitlines():
        if line.startswith("--- "):
            current = re.sub(r"^(a/)", "", line[4:].split("\t")[0])
        elif line.startswith("+++ ") and current == "/dev/null":
            current = re.sub(r"^(b/)", "", line[4:].split("\t")[0])
        match = re.match(r"^@@ -(\d+)", line)
        if match:
            headers.append((current, int(match.group(1)), line))
    return headers


def _restore_quietly(tree: Path, start: str) -> None:
    """_restore on a full disk: best effort (the worktree's marker is not written, so the
    next run resets it anyway)."""
    with contextlib.suppress(HarnessError):
        _restore(tree, start)


def _restore(tree: Path, start: str) -> None:
    """Abort any am in progress, go back to the starting commit, drop stray files."""
    run_git(["am", "--abort"], tree, check=False)
    run_git(["reset", "-q", "--hard", start], tree)
    run_git(["clean", "-q", "-f", "-d"], tree)
