"""Kconfig fragments: parsing, merging, dropped options; configure() on a fake and a real tree."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harness.build.kconfig import (
    configure,
    find_dropped,
    kconfig_dependencies,
    merge_fragments,
    parse_fragment,
    read_config,
)
from harness.build.kernel import make_variables
from harness.build.source import make_worktree, obtain_source
from harness.core.errors import KconfigError
from harness.core.paths import KCONFIG_DIR


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_parse_fragment_values(tmp_path: Path) -> None:
    fragment = write(
        tmp_path / "a.config",
        '# comment\n\nCONFIG_A=y\nCONFIG_B=m\nCONFIG_C="hello world"\n'
        "CONFIG_D=123\nCONFIG_E=0x10\n# CONFIG_F is not set\n",
    )
    assert parse_fragment(fragment) == {
        "A": "y",
        "B": "m",
        "C": '"hello world"',
        "D": "123",
        "E": "0x10",
        "F": "n",
    }


def test_parse_fragment_rejects_garbage_with_file_and_line(tmp_path: Path) -> None:
    fragment = write(tmp_path / "bad.config", "CONFIG_A=y\nKASAN=y\n")
    with pytest.raises(KconfigError, match=r"bad.config:2: not a Kconfig option line"):
        parse_fragment(fragment)


def test_merge_in_order_and_same_value_twice_is_fine(tmp_path: Path) -> None:
    a = write(tmp_path / "a.config", "CONFIG_A=y\nCONFIG_B=y\n")
    b = write(tmp_path / "b.config", "CONFIG_B=y\n# CONFIG_C is not set\n")
    assert merge_fragments([a, b]) == {"A": "y", "B": "y", "C": "n"}


def test_conflicts_list_every_pair(tmp_path: Path) -> None:
    a = write(tmp_path / "a.config", "CONFIG_SLUB=y\nCONFIG_HZ=100\nCONFIG_X=y\n")
    b = write(tmp_path / "b.config", "# CONFIG_SLUB is not set\nCONFIG_HZ=250\nCONFIG_X=y\n")
    with pytest.raises(KconfigError) as caught:
        merge_fragments([a, b])
    message = str(caught.value)
    assert f"CONFIG_SLUB: {a} says y, {b} says n" in message
    assert f"CONFIG_HZ: {a} says 100, {b} says 250" in message
    assert "CONFIG_X" not in message


def test_read_config_and_find_dropped(tmp_path: Path) -> None:
    config = write(
        tmp_path / ".config",
        "#\n# Automatically generated file; DO NOT EDIT.\n#\nCONFIG_A=y\n"
        '# CONFIG_B is not set\nCONFIG_C=m\nCONFIG_S="x"\n',
    )
    actual = read_config(config)
    assert actual == {"A": "y", "B": "n", "C": "m", "S": '"x"'}
    requested = {"A": "y", "B": "y", "C": "y", "D": "n", "E": "y", "S": '"x"'}
    dropped = {d.name: (d.requested, d.actual) for d in find_dropped(requested, actual)}
    # D=n is satisfied by absence; E absent counts as n.
    assert dropped == {"B": ("y", "n"), "C": ("y", "m"), "E": ("y", "n")}


def test_dependencies_and_choice_are_explained(tmp_path: Path) -> None:
    write(
        tmp_path / "mm/Kconfig",
        'choice\n\tprompt "allocator"\nconfig SLUB\n\tbool "SLUB"\n'
        'config SLOB\n\tbool "SLOB"\nendchoice\n\n'
        'config HINTING\n\tbool "hinting"\n\tdepends on SLUB && \\\n\t\tBALLOON\n'
        "\tselect FOO\n\nconfig OTHER\n\tdepends on NOPE\n",
    )
    actual = {"SLOB": "y", "BALLOON": "y"}
    hinting = kconfig_dependencies(tmp_path, "HINTING", actual)
    assert len(hinting) == 1
    assert "mm/Kconfig:9: depends on SLUB && BALLOON" in hinting[0]
    assert "[BALLOON=y, SLUB=n]" in hinting[0]
    slub = kconfig_dependencies(tmp_path, "SLUB", actual)
    assert slub == ("mm/Kconfig:3: member of a choice (SLUB, SLOB); chosen: SLOB",)
    misspelled = kconfig_dependencies(tmp_path, "HINTNIG", actual)
    assert misspelled == (
        "CONFIG_HINTNIG is defined in no Kconfig file of this tree: misspelled? "
        "(did you mean CONFIG_HINTING?)",
    )


FAKE_MAKEFILE = """\
tinyconfig:
\techo run >> make-runs
\tprintf 'CONFIG_BASE=y\\n# CONFIG_FOO is not set\\nCONFIG_NEEDS_BAR=y\\n' > .config
olddefconfig:
\tsed -i -e '/^CONFIG_NEEDS_BAR=/d' .config
\tsort -o .config .config
"""


@pytest.fixture
def fake_tree(tmp_path: Path) -> Path:
    """A 'kernel' whose make targets are shell lines; olddefconfig drops NEEDS_BAR."""
    tree = tmp_path / "tree"
    write(tree / "Makefile", FAKE_MAKEFILE)
    write(tree / "Kconfig", 'config NEEDS_BAR\n\tbool "x"\n\tdepends on BAR && BASE\n')
    return tree


def test_configure_applies_fragments(fake_tree: Path, tmp_path: Path) -> None:
    fragment = write(tmp_path / "f.config", "CONFIG_FOO=y\nCONFIG_EXTRA=m\n")
    config = configure(fake_tree, [fragment])
    assert config == fake_tree / ".config"
    assert read_config(config) == {"BASE": "y", "FOO": "y", "EXTRA": "m"}


def test_configure_keeps_identical_config_untouched(fake_tree: Path, tmp_path: Path) -> None:
    fragment = write(tmp_path / "f.config", "CONFIG_FOO=y\n")
    config = configure(fake_tree, [fragment])
    os.utime(config, (1_000_000_000, 1_000_000_000))
    configure(fake_tree, [fragment])  # same request: the stamp says nothing to do
    assert (fake_tree / "make-runs").read_text().count("run") == 1
    (fake_tree / ".phh-config-stamp").unlink()
    configure(fake_tree, [fragment])  # regenerated, same content: old mtime kept
    assert (fake_tree / "make-runs").read_text().count("run") == 2
    assert config.stat().st_mtime == 1_000_000_000


def _commit_all(tree: Path, message: str) -> None:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=tree, check=True)
    subprocess.run(["git", "add", "-A"], cwd=tree, check=True)
    subprocess.run([*git, "commit", "-q", "-m", message], cwd=tree, check=True)


def test_configure_skipped_after_a_series_edit_outside_kconfig(
    fake_tree: Path, tmp_path: Path
) -> None:
    """The maintainer's loop: a patch edited in a .c file keeps the .config (no make run);
    a patch that changes a Kconfig file configures again."""
    (fake_tree / ".gitignore").write_text(".config\n.phh-config-stamp\nmake-runs\n")
    write(fake_tree / "mm" / "page_hinting.c", "int x;\n")
    _commit_all(fake_tree, "base")
    fragment = write(tmp_path / "f.config", "CONFIG_FOO=y\n")
    configure(fake_tree, [fragment])

    write(fake_tree / "mm" / "page_hinting.c", "int x; /* edited */\n")
    _commit_all(fake_tree, "series edited outside Kconfig")
    configure(fake_tree, [fragment])
    assert (fake_tree / "make-runs").read_text().count("run") == 1

    write(fake_tree / "mm" / "Kconfig", 'config HINTING\n\tbool "h"\n')
    _commit_all(fake_tree, "series adds a Kconfig option")
    configure(fake_tree, [fragment])
    assert (fake_tree / "make-runs").read_text().count("run") == 2


def test_configure_names_dropped_option_and_restores(fake_tree: Path, tmp_path: Path) -> None:
    good = write(tmp_path / "good.config", "CONFIG_FOO=y\n")
    config = configure(fake_tree, [good])
    before = config.read_bytes()
    os.utime(config, (1_000_000_000, 1_000_000_000))
    bad = write(tmp_path / "bad.config", "CONFIG_NEEDS_BAR=y\n")

    with pytest.raises(KconfigError) as caught:
        configure(fake_tree, [good, bad])

    message = str(caught.value)
    assert "CONFIG_NEEDS_BAR: requested y, got n" in message
    assert "Kconfig:1: depends on BAR && BASE  [BAR=n, BASE=y]" in message
    assert config.read_bytes() == before
    assert config.stat().st_mtime == 1_000_000_000


def test_configure_reports_make_failure(tmp_path: Path) -> None:
    tree = tmp_path / "broken"
    write(tree / "Makefile", "tinyconfig:\n\t@echo 'no Kconfig here' >&2; exit 2\n")
    with pytest.raises(KconfigError, match="no Kconfig here"):
        configure(tree, [])
    assert not (tree / ".config").exists()


# --- real kernel tree ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_worktree() -> Path:
    """A worktree of the pristine Debian tree used only for configure() tests."""
    return make_worktree(obtain_source(), "test-kconfig", reuse=True)


@pytest.mark.real
def test_real_unmet_dependency_is_named(real_worktree: Path, tmp_path: Path) -> None:
    config = real_worktree / ".config"
    before = config.read_bytes() if config.exists() else None
    slob = write(tmp_path / "slob-kasan.config", "CONFIG_SLOB=y\nCONFIG_KASAN=y\n")
    with pytest.raises(KconfigError) as caught:
        configure(real_worktree, [slob], make_args=make_variables())
    message = str(caught.value)
    assert "CONFIG_KASAN: requested y, got n" in message
    assert "lib/Kconfig.kasan" in message
    assert "SLUB=n" in message
    assert (config.read_bytes() if config.exists() else None) == before


@pytest.mark.real
def test_real_misspelled_option_is_named(real_worktree: Path, tmp_path: Path) -> None:
    typo = write(tmp_path / "typo.config", "CONFIG_PAGE_REPORTNG=y\n")
    with pytest.raises(KconfigError) as caught:
        configure(real_worktree, [typo], make_args=make_variables())
    message = str(caught.value)
    assert "CONFIG_PAGE_REPORTNG is defined in no Kconfig file" in message
    assert "did you mean CONFIG_PAGE_REPORTING?" in message
    assert "misspelled" in caught.value.hint


@pytest.mark.real
def test_real_debug_fragment_survives_olddefconfig(real_worktree: Path) -> None:
    fragments = [KCONFIG_DIR / name for name in ("base.config", "reporting.config", "debug.config")]
    config = read_config(configure(real_worktree, fragments, make_args=make_variables()))
    for option in (
        "DEBUG_VM",
        "PROVE_LOCKING",
        "PROVE_RCU",
        "DEBUG_LIST",
        "DEBUG_ATOMIC_SLEEP",
        "LOCKDEP",
        "DEBUG_SPINLOCK",
        "SLUB",
        "PAGE_REPORTING",
        "VIRTIO_BALLOON",
    ):
        assert config.get(option) == "y", option
