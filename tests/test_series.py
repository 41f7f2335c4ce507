"""Series loading (quilt, *.patch dir, mbox) and strict application on a tiny git repo."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.errors import PatchApplyError, SeriesError
from harness.series import apply_series, load_series, patch_subject

PAGE_ALLOC = "".join(f"line {n}\n" for n in range(1, 41))
IDENTITY = ["-c", "user.name=Test", "-c", "user.email=test@example.org"]


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *IDENTITY, *args], cwd=repo, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A tiny git repo with mm/page_alloc.c (40 numbered lines) and one commit."""
    repo = tmp_path / "repo"
    (repo / "mm").mkdir(parents=True)
    (repo / "mm/page_alloc.c").write_text(PAGE_ALLOC)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    return repo


def commit_edit(repo: Path, subject: str, old: str, new: str, path: str = "mm/page_alloc.c"):
    target = repo / path
    target.parent.mkdir(parents=True, exist_ok=True)
    text = target.read_text() if target.exists() else ""
    target.write_text(text.replace(old, new) if old else text + new)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", subject)


def format_patches(repo: Path, base: str, out: Path) -> list[Path]:
    """`git format-patch base..HEAD` into `out`, then put the repo back at `base`."""
    out.mkdir(parents=True, exist_ok=True)
    git(repo, "format-patch", "-q", "-o", str(out), f"{base}..HEAD")
    git(repo, "reset", "-q", "--hard", base)
    return sorted(out.glob("*.patch"))


def two_patch_series(repo: Path, out: Path) -> list[Path]:
    base = git(repo, "rev-parse", "HEAD")
    commit_edit(repo, "mm: change line 5", "line 5\n", "line five\n")
    commit_edit(repo, "mm: add page_hinting.c", "", "hinting\n", "mm/page_hinting.c")
    return format_patches(repo, base, out)


def assert_pristine(repo: Path, start: str) -> None:
    assert git(repo, "rev-parse", "HEAD") == start
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""


def test_directory_of_patches_applies_in_order(repo: Path, tmp_path: Path) -> None:
    patches = two_patch_series(repo, tmp_path / "series")
    series = load_series(tmp_path / "series")
    assert series.patches == tuple(patches)
    assert series.name == "series"
    apply_series(repo, series)
    assert git(repo, "log", "--format=%s", "-2").splitlines() == [
        "mm: add page_hinting.c",
        "mm: change line 5",
    ]
    assert "line five" in (repo / "mm/page_alloc.c").read_text()
    assert (repo / "mm/page_hinting.c").read_text() == "hinting\n"


def test_failing_patch_names_file_hunk_and_restores_tree(repo: Path, tmp_path: Path) -> None:
    start = git(repo, "rev-parse", "HEAD")
    good = two_patch_series(repo, tmp_path / "good")
    # A third patch made against a tree where line 30 reads differently: it cannot apply.
    commit_edit(repo, "diverge", "line 30\n", "line thirty\n")
    diverged = git(repo, "rev-parse", "HEAD")
    commit_edit(repo, "mm: rework line 31", "line 31\n", "line 31 reworked\n")
    bad = format_patches(repo, diverged, tmp_path / "bad")
    git(repo, "reset", "-q", "--hard", start)
    series_dir = tmp_path / "all"
    series_dir.mkdir()
    for index, patch in enumerate([*good, *bad], start=1):
        (series_dir / f"{index:04d}.patch").write_bytes(patch.read_bytes())

    with pytest.raises(PatchApplyError) as caught:
        apply_series(repo, load_series(series_dir))

    message = str(caught.value)
    assert "0003.patch" in message
    assert "mm: rework line 31" in message
    assert "patch failed: mm/page_alloc.c:28" in message
    assert "@@ -28,7 +28,7 @@" in message
    assert "rebase the patch" in caught.value.hint
    # The two good patches that were applied first are gone again.
    assert_pristine(repo, start)
    assert not (repo / ".git/rebase-apply").exists()


def test_mbox_with_two_patches_is_split(repo: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PHH_CACHE", str(tmp_path / "cache"))
    base = git(repo, "rev-parse", "HEAD")
    commit_edit(repo, "mm: first", "line 2\n", "line two\n")
    commit_edit(repo, "mm: second", "line 20\n", "line twenty\n")
    mbox = tmp_path / "v2_20190724_series.mbx"
    mbox.write_text(git(repo, "format-patch", "--stdout", f"{base}..HEAD") + "\n")
    git(repo, "reset", "-q", "--hard", base)

    series = load_series(mbox)

    assert len(series.patches) == 2
    assert [patch_subject(p) for p in series.patches] == [
        "[PATCH 1/2] mm: first",
        "[PATCH 2/2] mm: second",
    ]
    apply_series(repo, series)
    assert git(repo, "log", "--format=%s", "-2").splitlines() == ["mm: second", "mm: first"]


def test_quilt_series_file(repo: Path, tmp_path: Path) -> None:
    patches = two_patch_series(repo, tmp_path / "quilt")
    (tmp_path / "quilt/series").write_text(
        f"# the series\n\n{patches[1].name} -p1\n{patches[0].name}  # reordered on purpose\n"
    )
    series = load_series(tmp_path / "quilt")
    assert series.patches == (patches[1], patches[0])


def test_quilt_series_with_missing_file_names_it(repo: Path, tmp_path: Path) -> None:
    patches = two_patch_series(repo, tmp_path / "quilt")
    (tmp_path / "quilt/series").write_text(f"{patches[0].name}\nmissing-fix.patch\n")
    with pytest.raises(SeriesError, match=r"series:2 lists missing-fix.patch"):
        load_series(tmp_path / "quilt")


def test_file_without_diff_is_malformed(tmp_path: Path) -> None:
    patch = tmp_path / "0001-notes.patch"
    patch.write_text("From: A <a@example.org>\nSubject: [PATCH] notes\n\nJust words.\n")
    with pytest.raises(SeriesError, match=r"0001-notes.patch contains no diff"):
        load_series(tmp_path)


def test_missing_path_and_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(SeriesError, match="does not exist"):
        load_series(tmp_path / "nope")
    with pytest.raises(SeriesError, match="neither a quilt `series` file nor any"):
        load_series(tmp_path)


def test_none_is_the_stock_kernel() -> None:
    series = load_series(None)
    assert series.patches == ()
    assert series.is_empty
    assert series.digest == load_series(None).digest


def test_digest_follows_content_not_location(repo: Path, tmp_path: Path) -> None:
    patches = two_patch_series(repo, tmp_path / "a")
    copy = tmp_path / "b"
    copy.mkdir()
    for patch in patches:
        (copy / patch.name).write_bytes(patch.read_bytes())
    assert load_series(tmp_path / "a").digest == load_series(copy).digest
    (copy / patches[0].name).write_bytes(patches[0].read_bytes().replace(b"five", b"FIVE"))
    assert load_series(tmp_path / "a").digest != load_series(copy).digest


def test_plain_diff_without_mail_headers_applies(repo: Path, tmp_path: Path) -> None:
    diff = tmp_path / "fix.patch"
    (repo / "mm/page_alloc.c").write_text(PAGE_ALLOC.replace("line 9\n", "line nine\n"))
    diff.write_text(git(repo, "diff") + "\n")
    git(repo, "checkout", "-q", "--", ".")
    apply_series(repo, load_series(diff))
    assert git(repo, "log", "--format=%s", "-1") == "fix.patch"
    assert "line nine" in (repo / "mm/page_alloc.c").read_text()
