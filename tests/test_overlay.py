"""The instrumentation overlay: detection in the tree, all-or-none application, the one-line
message, the record in the worktree; the real overlay against the real revisions and every
mutant (on a tree of just the files they touch)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from helpers import git

from harness.build import overlay
from harness.build.overlay import (
    Overlay,
    OverlayResult,
    OverlayStatus,
    apply_overlay,
    for_revision,
    load_overlay,
    recorded,
)
from harness.build.revisions import HINTING_V2, HINTING_V2_FIXED, STOCK
from harness.build.series import apply_series, load_series
from harness.core.errors import SeriesError
from harness.core.paths import PATCHES_DIR

HINTING_C = "".join(f"line {n}\n" for n in range(1, 41))
REWORDED_SERIES = Path(__file__).parent / "fixtures" / "overlay" / "reworded"


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A tiny tree: mm/page_hinting.c of 40 numbered lines, one commit."""
    repo = tmp_path / "repo"
    (repo / "mm").mkdir(parents=True)
    (repo / "mm/page_hinting.c").write_text(HINTING_C)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    return repo


def make_overlay(repo: Path, directory: Path, edits: list[tuple[str, str, str]]) -> Overlay:
    """An overlay of one patch per (subject, old line, new line) of mm/page_hinting.c, made
    with git format-patch in a clone of `repo`; each provides its new line."""
    clone = directory.parent / f"{directory.name}-clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    for subject, old, new in edits:
        path = clone / "mm/page_hinting.c"
        path.write_text(path.read_text().replace(f"{old}\n", f"{new}\n"))
        message = f"{subject}\n\nHarness-provides: mm/page_hinting.c {new}\n"
        git(clone, "commit", "-q", "-a", "-m", message)
    git(clone, "format-patch", "-q", "-o", str(directory), f"HEAD~{len(edits)}")
    names = sorted(p.name for p in directory.glob("*.patch"))
    (directory / "series").write_text("\n".join(names) + "\n")
    return load_overlay.__wrapped__(directory)


@pytest.fixture
def two_patches(repo: Path, tmp_path: Path) -> Overlay:
    return make_overlay(
        repo,
        tmp_path / "overlay",
        [("mm: count", "line 5", "line 5 counted"), ("mm: hook", "line 20", "line 20 hooked")],
    )


def test_the_overlay_is_applied_where_the_tree_lacks_it(repo: Path, two_patches: Overlay) -> None:
    start = head(repo)
    result = apply_overlay(repo, two_patches)
    assert result.status is OverlayStatus.APPLIED and not result.reduced
    assert result.applied == tuple(p.name for p in two_patches.patches)
    assert git(repo, "log", "--format=%s", f"{start}..HEAD").splitlines() == [
        "mm: hook",
        "mm: count",
    ]
    assert "line 20 hooked" in (repo / "mm/page_hinting.c").read_text()


def test_a_tree_that_provides_it_is_left_alone(repo: Path, two_patches: Overlay) -> None:
    apply_overlay(repo, two_patches)
    start = head(repo)
    again = apply_overlay(repo, two_patches)
    assert again.status is OverlayStatus.PRESENT and again.applied == ()
    assert again.present == tuple(p.name for p in two_patches.patches)
    assert head(repo) == start


def test_only_the_missing_patches_are_applied(repo: Path, two_patches: Overlay) -> None:
    """Detected by content, not by file name: a revision with its own copy of the first."""
    path = repo / "mm/page_hinting.c"
    path.write_text(path.read_text().replace("line 5\n", "line 5 counted\n"))
    git(repo, "commit", "-q", "-a", "-m", "the series' own counters")
    result = apply_overlay(repo, two_patches)
    first, second = (p.name for p in two_patches.patches)
    assert result.status is OverlayStatus.APPLIED
    assert (result.present, result.applied) == ((first,), (second,))


def test_an_overlay_that_does_not_apply_is_not_applied_at_all(
    repo: Path, two_patches: Overlay
) -> None:
    """The second patch's context was reworded: neither patch stays, and the result names
    the patch and its hunk."""
    path = repo / "mm/page_hinting.c"
    path.write_text(path.read_text().replace("line 19\n", "line nineteen\n"))
    git(repo, "commit", "-q", "-a", "-m", "reword")
    start, content = head(repo), path.read_text()
    result = apply_overlay(repo, two_patches)
    assert result.status is OverlayStatus.FAILED and result.reduced
    assert result.failed_patch == two_patches.patches[1].name
    assert re.fullmatch(r"mm/page_hinting\.c:\d+ @@ -\d+,\d+ \+\d+,\d+ @@.*", result.failed_hunk)
    assert head(repo) == start and path.read_text() == content
    assert git(repo, "status", "--porcelain") == ""


def test_the_one_line_names_the_patch_and_the_hunk() -> None:
    result = OverlayResult(
        OverlayStatus.FAILED,
        failed_patch="0002-mm-page_hinting-Count-hinting-activity-per-zone-in-d.patch",
        failed_hunk="mm/page_hinting.c:151 @@ -151,11 +188,14 @@ static void page_hinting_cycle(",
    )
    line = result.line("user:reworded")
    assert "\n" not in line
    assert line == (
        "user:reworded: instrumentation overlay not applied "
        "(0002-mm-page_hinting-Count-hinting-activity-per-zone-in-d.patch, hunk "
        "mm/page_hinting.c:151 @@ -151,11 +188,14 @@ static void page_hinting_cycle(): "
        "built without instrumentation, verdicts reduced"
    )
    applied = OverlayResult(OverlayStatus.APPLIED, applied=("a", "b"), present=("c",))
    assert (
        applied.line("v2")
        == "v2: instrumentation overlay applied: 2 patches (1 provided by the series)"
    )


def test_an_overlay_patch_must_say_what_it_provides(repo: Path, tmp_path: Path) -> None:
    bare = make_overlay(repo, tmp_path / "overlay", [("mm: x", "line 3", "line 3 x")])
    patch = bare.patches[0].path
    patch.write_text(re.sub(r"Harness-provides:.*\n", "", patch.read_text()))
    with pytest.raises(SeriesError, match=re.escape(patch.name)) as raised:
        load_overlay.__wrapped__(bare.directory)
    assert "Harness-provides" in raised.value.message
    assert "commit message" in raised.value.hint


def test_the_outcome_is_recorded_in_the_worktree_marker(tmp_path: Path) -> None:
    result = OverlayResult(OverlayStatus.FAILED, present=("a",), failed_patch="b", failed_hunk="h")
    marker = tmp_path / ".phh-series.json"
    marker.write_text(json.dumps(overlay.record({"series": "x"}, result)))
    assert recorded(marker) == result
    marker.write_text(json.dumps(overlay.record({"series": "x"}, None)))
    assert recorded(marker) is None
    marker.write_text(json.dumps({"series": "x"}))  # a marker from before the overlay
    assert recorded(marker) is None


def test_the_real_overlay_says_what_each_patch_provides() -> None:
    real = load_overlay()
    assert real.directory == PATCHES_DIR / "instrumentation"
    assert len(real.patches) == 4
    provided = {(m.path, m.text) for p in real.patches for m in p.provides}
    assert ("mm/page_hinting.c", 'debugfs_create_u32("react_delay_ms"') in provided
    assert ("mm/vmstat.c", "hinted_order_") in provided
    assert ("drivers/virtio/virtio_ring.c", "ALLOW_ERROR_INJECTION(virtqueue_add_inbuf") in provided


def test_every_hinting_revision_gets_the_overlay_and_stock_none() -> None:
    assert for_revision(HINTING_V2) is load_overlay()
    assert for_revision(HINTING_V2_FIXED.with_debug()) is load_overlay()
    assert for_revision(STOCK) is None


def test_the_built_in_revisions_carry_only_their_own_patches() -> None:
    """No copy of the instrumentation in a revision: it is the overlay's alone."""
    for revision in (HINTING_V2, HINTING_V2_FIXED):
        assert revision.series is not None
        for patch in load_series(revision.series).patches:
            assert "Harness-provides:" not in patch.read_text(), patch


# --- the real patches on the real files ---------------------------------------------------


def _touched(patches: list[Path]) -> set[str]:
    names: set[str] = set()
    for patch in patches:
        names |= set(re.findall(r"^diff --git a/(\S+) b/", patch.read_text(), re.MULTILINE))
    return names


@pytest.fixture(scope="module")
def kernel_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repo of just the files of the pristine kernel that the revisions, the overlay,
    the reworded fixture and the mutants touch (git am needs nothing else)."""
    from harness.build.source import obtain_source

    source = obtain_source()
    patches = [
        *load_series(HINTING_V2_FIXED.series).patches,
        *load_series(REWORDED_SERIES).patches,
        *(p.path for p in load_overlay().patches),
        *sorted((PATCHES_DIR / "mutants").glob("*.patch")),
    ]
    repo = tmp_path_factory.mktemp("kernel-files")
    for name in sorted(_touched(patches)):
        shown = subprocess.run(
            ["git", "show", f"{source.commit}:{name}"], cwd=source.path, capture_output=True
        )
        if shown.returncode == 0:  # else a file the series adds
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_bytes(shown.stdout)
    git(repo, "init", "-q")
    git(repo, "add", "-f", ".")
    git(repo, "commit", "-q", "-m", "pristine (the files the patches touch)")
    return repo


def _on_base(repo: Path) -> Path:
    git(repo, "reset", "-q", "--hard", git(repo, "rev-list", "--max-parents=0", "HEAD"))
    return repo


@pytest.mark.real
def test_the_overlay_applies_to_both_revisions_and_not_to_a_reworded_one(
    kernel_files: Path,
) -> None:
    real = load_overlay()
    for revision in (HINTING_V2, HINTING_V2_FIXED):
        apply_series(_on_base(kernel_files), load_series(revision.series))
        result = apply_overlay(kernel_files, real)
        assert result.status is OverlayStatus.APPLIED, (revision.name, result)
        assert result.applied == tuple(p.name for p in real.patches)
    apply_series(_on_base(kernel_files), load_series(REWORDED_SERIES))
    start = head(kernel_files)
    result = apply_overlay(kernel_files, real)
    assert result.status is OverlayStatus.FAILED
    assert result.failed_patch.startswith("0002-mm-page_hinting-Count-hinting-activity")
    assert result.failed_hunk.startswith("mm/page_hinting.c:151 @@ -151,11 ")
    assert result.failed_hunk.endswith("@@ static void page_hinting_cycle(struct zone *zone,")
    assert head(kernel_files) == start


@pytest.mark.real
def test_every_mutant_applies_on_the_instrumented_fixed_revision(
    kernel_files: Path, tmp_path: Path
) -> None:
    """Mutants are made on hinting-v2-fixed with the overlay (their series carries it), and
    the build then finds the overlay present."""
    from harness.campaigns import mutants

    for mutant in mutants.discover():
        series = load_series(mutants.materialise(mutant, tmp_path))
        apply_series(_on_base(kernel_files), series)  # raises if the mutant does not apply
        assert apply_overlay(kernel_files, load_overlay()).status is OverlayStatus.PRESENT
