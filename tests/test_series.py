"""Series loading (quilt, *.patch dir, mbox) and strict application on a tiny git repo."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import git

from harness.build.series import Series, apply_series, load_series, patch_subject
from harness.core.errors import PatchApplyError, SeriesError

PAGE_ALLOC = "".join(f"line {n}\n" for n in range(1, 41))
FORMAT_PATCH_SEPARATOR = re.compile(r"^(?=From [0-9a-f]{40} Mon Sep 17 00:00:00 2001$)", re.M)
LORE_SEPARATOR = "From git@z Thu Jan  1 00:00:00 1970"
SUBJECTS = [
    "[PATCH 1/3] mm: change line 5",
    "[PATCH 2/3] mm: change line 20",
    "[PATCH 3/3] mm: add page_hinting.c",
]
# A reviewer's reply to 2/3 that carries a diff of its own: it must not become a patch.
REPLY = """From reviewer@example.org Mon Jul 22 10:00:00 2019
From: Reviewer <reviewer@example.org>
Subject: Re: [PATCH 2/3] mm: change line 20
In-Reply-To: <2@example.org>

Better like this:

diff --git a/mm/page_alloc.c b/mm/page_alloc.c
--- a/mm/page_alloc.c
+++ b/mm/page_alloc.c
@@ -20 +20 @@
-line 20
+line XX

"""


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


def test_failing_patch_after_a_plain_diff_is_named_by_its_number(
    repo: Path, tmp_path: Path
) -> None:
    """Mail patches go to git am together, a plain diff alone: the failing patch is still
    the one named, counted across the runs."""
    start = git(repo, "rev-parse", "HEAD")
    first, second = two_patch_series(repo, tmp_path / "good")
    commit_edit(repo, "diverge", "line 30\n", "line thirty\n")
    diverged = git(repo, "rev-parse", "HEAD")
    commit_edit(repo, "mm: rework line 31", "line 31\n", "line 31 reworked\n")
    (bad,) = format_patches(repo, diverged, tmp_path / "bad")
    git(repo, "reset", "-q", "--hard", start)
    commit_edit(repo, "mm: a plain diff", "line 40\n", "line forty\n")
    plain = git(repo, "diff", "HEAD~1", "HEAD") + "\n"
    git(repo, "reset", "-q", "--hard", start)
    series_dir = tmp_path / "mixed"
    series_dir.mkdir()
    (series_dir / "0001.patch").write_bytes(first.read_bytes())
    (series_dir / "0002.patch").write_text(plain)  # no mail headers
    (series_dir / "0003.patch").write_bytes(second.read_bytes())
    (series_dir / "0004.patch").write_bytes(bad.read_bytes())

    with pytest.raises(PatchApplyError) as caught:
        apply_series(repo, load_series(series_dir))

    assert "patch 4/4 of series mixed does not apply" in str(caught.value)
    assert "mm: rework line 31" in str(caught.value)
    assert_pristine(repo, start)


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


# --- Mboxes as maintainers get them -------------------------------------------------------


def series_mbox(repo: Path) -> list[str]:
    """The messages of `git format-patch --cover-letter --stdout` for three commits:
    [cover letter, 1/3, 2/3, 3/3]. The repo is put back at its base."""
    base = git(repo, "rev-parse", "HEAD")
    commit_edit(repo, "mm: change line 5", "line 5\n", "line five\n")
    commit_edit(repo, "mm: change line 20", "line 20\n", "line twenty\n")
    commit_edit(repo, "mm: add page_hinting.c", "", "hinting\n", "mm/page_hinting.c")
    text = git(repo, "format-patch", "--cover-letter", "--stdout", f"{base}..HEAD")
    git(repo, "reset", "-q", "--hard", base)
    return split_messages(text)


def split_messages(text: str) -> list[str]:
    """Split an mbox on its separator lines; each message ends with one blank line."""
    return [message.rstrip("\n") + "\n\n" for message in FORMAT_PATCH_SEPARATOR.split(text)[1:]]


def write_mbox(path: Path, messages: list[str]) -> Path:
    path.write_text("".join(messages))
    return path


def log_subjects(repo: Path, count: int) -> list[str]:
    return git(repo, "log", "--reverse", "--format=%s", f"-{count}").splitlines()


def test_mbox_cover_letter_and_reply_are_skipped(repo: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PHH_CACHE", str(tmp_path / "cache"))
    cover, first, second, third = series_mbox(repo)
    assert "[PATCH 0/3]" in cover
    mbox = write_mbox(tmp_path / "v1.mbx", [cover, first, second, REPLY, third])

    series = load_series(mbox)

    assert [patch_subject(patch) for patch in series.patches] == SUBJECTS
    assert series.labels[0] == f"{mbox}, message 2 ([PATCH 1/3] mm: change line 5)"
    assert series.labels[2] == f"{mbox}, message 5 ([PATCH 3/3] mm: add page_hinting.c)"
    apply_series(repo, series)
    assert log_subjects(repo, 3) == [subject.split("] ")[1] for subject in SUBJECTS]
    assert "line XX" not in (repo / "mm/page_alloc.c").read_text()


def test_mbox_in_any_order_is_applied_in_n_of_n_order(
    repo: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("PHH_CACHE", str(tmp_path / "cache"))
    cover, first, second, third = series_mbox(repo)
    ordered = load_series(write_mbox(tmp_path / "ordered.mbx", [cover, first, second, third]))

    series = load_series(write_mbox(tmp_path / "shuffled.mbx", [third, cover, first, second]))

    assert [patch_subject(patch) for patch in series.patches] == SUBJECTS
    assert "message 1 ([PATCH 3/3]" in series.labels[2]
    assert series.digest == ordered.digest  # same patches in the same order
    apply_series(repo, series)
    assert log_subjects(repo, 3) == [subject.split("] ")[1] for subject in SUBJECTS]


def test_lore_mbox_with_other_separators(repo: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PHH_CACHE", str(tmp_path / "cache"))
    messages = [
        LORE_SEPARATOR + "\n" + message.split("\n", 1)[1].replace("[PATCH ", "[RFC PATCH v3 ")
        for message in series_mbox(repo)
    ]
    mbox = write_mbox(tmp_path / "t.mbox", [messages[0], messages[2], REPLY, *messages[1::2]])

    series = load_series(mbox)

    assert [patch_subject(p) for p in series.patches] == [
        subject.replace("[PATCH ", "[RFC PATCH v3 ") for subject in SUBJECTS
    ]
    apply_series(repo, series)
    assert log_subjects(repo, 3) == [subject.split("] ")[1] for subject in SUBJECTS]


def test_mbox_with_a_gap_names_the_missing_patch(repo: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PHH_CACHE", str(tmp_path / "cache"))
    cover, first, _, third = series_mbox(repo)
    mbox = write_mbox(tmp_path / "partial.mbx", [cover, first, third])

    with pytest.raises(SeriesError) as caught:
        load_series(mbox)

    assert str(mbox) in caught.value.message
    assert "patch 2/3 is missing" in caught.value.message
    assert "b4 am" in caught.value.hint


def test_mbox_with_a_duplicate_names_both_subjects(repo: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PHH_CACHE", str(tmp_path / "cache"))
    cover, first, second, third = series_mbox(repo)
    resent = second.replace("mm: change line 20", "mm: change line 20 (resend)")
    mbox = write_mbox(tmp_path / "dup.mbx", [cover, first, second, third, resent])

    with pytest.raises(SeriesError) as caught:
        load_series(mbox)

    message = caught.value.message
    assert f"{mbox} holds patch 2/3 twice" in message
    assert "message 3 ([PATCH 2/3] mm: change line 20)" in message
    assert "message 5 ([PATCH 2/3] mm: change line 20 (resend))" in message


def test_crlf_mbox_names_user_file_and_subject(repo: Path, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("PHH_CACHE", str(cache))
    mbox = tmp_path / "from-outlook.mbx"
    mbox.write_bytes("".join(series_mbox(repo)).replace("\n", "\r\n").encode())

    with pytest.raises(SeriesError) as caught:
        load_series(mbox)

    text = str(caught.value)
    assert f"{mbox}, message 2 ([PATCH 1/3] mm: change line 5)" in text
    assert "CRLF" in text
    assert str(cache) not in text
    assert "dos2unix" in caught.value.hint
    assert "b4 am" in caught.value.hint


def test_crlf_patch_in_a_directory_is_named(repo: Path, tmp_path: Path) -> None:
    patches = two_patch_series(repo, tmp_path / "series")
    patches[1].write_bytes(patches[1].read_bytes().replace(b"\n", b"\r\n"))

    with pytest.raises(SeriesError) as caught:
        load_series(tmp_path / "series")

    assert f"{patches[1]} (Subject: [PATCH 2/2] mm: add page_hinting.c)" in caught.value.message
    assert "CRLF" in caught.value.message
    with pytest.raises(SeriesError, match="CRLF"):
        load_series(patches[1])  # a single file too


def test_wrapped_line_is_named_with_its_line(repo: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PHH_CACHE", str(tmp_path / "cache"))
    base = git(repo, "rev-parse", "HEAD")
    long_line = "line 7 now explains at length why it is there " * 3
    commit_edit(repo, "mm: explain line 7", "line 7\n", long_line + "\n")
    text = git(repo, "format-patch", "--cover-letter", "--stdout", f"{base}..HEAD") + "\n"
    git(repo, "reset", "-q", "--hard", base)
    # The client wraps the `+` line after 72 columns, at a word boundary.
    cut = long_line.rindex(" ", 0, 72)
    wrapped = text.replace(f"+{long_line}\n", f"+{long_line[:cut]}\n{long_line[cut + 1 :]}\n")
    mbox = tmp_path / "wrapped.mbx"
    mbox.write_text(wrapped)
    number = wrapped.splitlines().index(long_line[cut + 1 :]) + 1

    with pytest.raises(SeriesError) as caught:
        load_series(mbox)

    message = caught.value.message
    assert "[PATCH 1/1] mm: explain line 7" in message
    assert f"line {number} of {mbox}" in message
    assert "wrapped long lines" in message
    assert "git send-email" in caught.value.hint


def test_apply_failure_names_mbox_message_not_cache(
    repo: Path, tmp_path: Path, monkeypatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("PHH_CACHE", str(cache))
    mbox = write_mbox(tmp_path / "v2.mbx", series_mbox(repo))
    series = load_series(mbox)
    commit_edit(repo, "diverge", "line 5\n", "line FIVE\n")

    with pytest.raises(PatchApplyError) as caught:
        apply_series(repo, series)

    message = caught.value.message
    assert f"patch 1/3 of series v2 does not apply: {mbox}, message 2 ([PATCH 1/3]" in message
    assert str(cache) not in message


def test_series_without_labels_names_patch_paths(tmp_path: Path) -> None:
    patch = tmp_path / "0001-x.patch"
    assert Series("x", (patch,), "digest").label(0) == str(patch)


def test_mbox_mixing_two_series_lengths_is_refused(repo: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PHH_CACHE", str(tmp_path / "cache"))
    cover, first, second, third = series_mbox(repo)
    mbox = write_mbox(tmp_path / "mixed.mbx", [cover, first, second, third.replace("3/3]", "3/4]")])
    with pytest.raises(SeriesError, match=r"mixes series of different lengths") as caught:
        load_series(mbox)
    assert "4 in " in caught.value.message
    assert "b4 am -v" in caught.value.hint
