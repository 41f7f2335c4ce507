"""Load a patch series (quilt dir, dir of *.patch, mbox) and apply it strictly with `git am`.

A series is identified by `digest`, a sha256 over the contents of its patches in order, so
the same patches give the same worktree and build cache key whatever directory they are in.
"""

from __future__ import annotations

import email.header
import email.parser
import email.policy
import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.errors import PatchApplyError, SeriesError
from harness.paths import cache_dir
from harness.source import run_git

EMPTY_SERIES_NAME = "stock"
MBOX_FROM_LINE = re.compile(rb"^From [0-9a-f]{7,40} Mon Sep 17 00:00:00 2001$", re.MULTILINE)
DIFF_MARKERS = (re.compile(rb"^diff --git ", re.MULTILINE), re.compile(rb"^--- \S", re.MULTILINE))
HUNK_HEADER = re.compile(rb"^@@ -\d+(,\d+)? \+\d+(,\d+)? @@", re.MULTILINE)
MAX_HUNKS_REPORTED = 10


@dataclass(frozen=True)
class Series:
    """An ordered tuple of patch files; the empty series is the stock kernel."""

    name: str
    patches: tuple[Path, ...]
    digest: str

    @property
    def is_empty(self) -> bool:
        return not self.patches


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
    """Read a quilt directory, a directory of *.patch, or an mbox (`b4 am`); None: stock."""
    if path is None:
        return empty_series()
    path = path.expanduser()
    if path.is_dir():
        patches = _quilt_patches(path) if (path / "series").is_file() else _dir_patches(path)
    elif path.is_file():
        patches = _file_patches(path)
    else:
        raise SeriesError(
            f"patch series {path} does not exist",
            "pass a directory with a quilt `series` file or *.patch files, or an mbox file",
        )
    for patch in patches:
        check_patch(patch)
    if not patches:
        return empty_series()
    name = path.name if path.is_dir() else path.stem
    return Series(name, patches, series_digest(patches))


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


def _file_patches(path: Path) -> tuple[Path, ...]:
    """An mbox holding several messages is split; a single patch is a series of one."""
    content = _read_bytes(path)
    if len(MBOX_FROM_LINE.findall(content)) > 1:
        return _split_mbox(path, content)
    return (path,)


def _split_mbox(mbox: Path, content: bytes) -> tuple[Path, ...]:
    """Split with `git mailsplit` into a content-keyed cache dir (temp dir, then rename)."""
    target = cache_dir("series") / hashlib.sha256(content).hexdigest()[:20]
    if not target.is_dir():
        scratch = target.with_name(f".{target.name}.{os.getpid()}")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        result = subprocess.run(
            ["git", "mailsplit", "-b", f"-o{scratch}", str(mbox)], capture_output=True, text=True
        )
        if result.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            raise SeriesError(
                f"cannot split mbox {mbox}: {result.stderr.strip()}",
                "check that it is an mbox as `b4 am` or `git format-patch --stdout` writes it",
            )
        for part in scratch.iterdir():
            part.rename(part.with_name(f"{part.name}.patch"))
        try:
            scratch.rename(target)
        except OSError:  # another process split it first
            shutil.rmtree(scratch, ignore_errors=True)
    return tuple(sorted(target.glob("*.patch")))


def check_patch(patch: Path) -> None:
    """Raise SeriesError unless the file holds at least one diff with a hunk."""
    content = _read_bytes(patch)
    if not any(marker.search(content) for marker in DIFF_MARKERS) or not HUNK_HEADER.search(
        content
    ):
        raise SeriesError(
            f"{patch} contains no diff (no `diff --git`/`---` header with an `@@` hunk)",
            "check that the file is a patch (git format-patch output or a unified diff)",
        )


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

    On failure the tree is put back at its starting commit, cleaned, and PatchApplyError
    names the patch, its Subject, and the files and hunks that failed.
    """
    start = run_git(["rev-parse", "HEAD"], tree).stdout.strip()
    for index, patch in enumerate(series.patches, start=1):
        result = _apply_one(tree, patch)
        if result.returncode != 0:
            detail = _failure_detail(tree, patch, result.stdout + result.stderr)
            _restore(tree, start)
            raise PatchApplyError(
                f"patch {index}/{len(series.patches)} of series {series.name} does not apply: "
                f"{patch} (Subject: {patch_subject(patch)})\n{detail}",
                f"rebase the patch on the tree being patched ({tree} at {start[:12]}), "
                "e.g. apply it by hand with `git am -3`, resolve, and `git format-patch`",
            )


def _apply_one(tree: Path, patch: Path) -> subprocess.CompletedProcess[str]:
    if _is_mail_patch(patch):
        return run_git(["am", "--quiet", "--keep-cr", str(patch)], tree, check=False)
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


def _restore(tree: Path, start: str) -> None:
    """Abort any am in progress, go back to the starting commit, drop stray files."""
    run_git(["am", "--abort"], tree, check=False)
    run_git(["reset", "-q", "--hard", start], tree)
    run_git(["clean", "-q", "-f", "-d"], tree)
