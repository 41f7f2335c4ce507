"""Kconfig fragments: parsing, merging, dropped options; configure() on a fake and a real tree."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harness.build import kconfig_symbols
from harness.build.kconfig import (
    configure,
    find_dropped,
    merge_fragments,
    parse_fragment,
    read_config,
)
from harness.build.kconfig_scan import ScanLookup
from harness.build.kconfig_symbols import load_lookup, read_kconfig, suggestion
from harness.build.kernel import make_env, make_variables, prepare_worktree
from harness.build.series import load_series
from harness.build.source import make_worktree, obtain_source
from harness.core.errors import KconfigError
from harness.core.paths import KCONFIG_DIR, PATCHES_DIR


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


def test_regex_fallback_explains_dependencies_and_choice(tmp_path: Path) -> None:
    write(
        tmp_path / "mm/Kconfig",
        'choice\n\tprompt "allocator"\nconfig SLUB\n\tbool "SLUB"\n'
        'config SLOB\n\tbool "SLOB"\nendchoice\n\n'
        'config HINTING\n\tbool "hinting"\n\tdepends on SLUB && \\\n\t\tBALLOON\n'
        "\tselect FOO\n\nconfig OTHER\n\tdepends on NOPE\n",
    )
    actual = {"SLOB": "y", "BALLOON": "y"}
    lookup = ScanLookup(tmp_path, "test")
    hinting = lookup.reasons("HINTING", "y", actual)
    assert len(hinting) == 1
    assert "mm/Kconfig:9: depends on SLUB && BALLOON" in hinting[0]
    assert "[BALLOON=y, SLUB=n]" in hinting[0]
    slub = lookup.reasons("SLUB", "y", actual)
    assert slub == ("mm/Kconfig:3: member of a choice (SLUB, SLOB); chosen: SLOB",)
    misspelled = lookup.reasons("HINTNIG", "y", actual)
    assert misspelled == (
        "CONFIG_HINTNIG is defined in no Kconfig file of this tree (for x86): misspelled? "
        "did you mean CONFIG_HINTING?",
    )


# A small tree as kconfiglib reads the kernel's: a top Kconfig sourcing the others, a menu
# and an `if` around symbols, a choice, a tristate needing MODULES, and 5.13's bare
# `modules` attribute (which kconfiglib 14.1 does not know).
SMALL_KCONFIG = {
    "Kconfig": 'mainmenu "Linux/$(SRCARCH) $(KERNELVERSION)"\n'
    'source "scripts/Kconfig.include"\nsource "init/Kconfig"\n'
    'source "mm/Kconfig"\nsource "arch/$(SRCARCH)/Kconfig"\n',
    "init/Kconfig": 'config MODULES\n\tbool "modules"\n\tmodules\n\n'
    'config EXPERT\n\tbool "expert"\n\n'
    'config CC_IS_GCC\n\tdef_bool $(success,test "$(CC)" = gcc)\n',
    "mm/Kconfig": 'choice\n\tprompt "allocator"\nconfig SLUB\n\tbool "SLUB"\n'
    'config SLOB\n\tbool "SLOB"\n\tdepends on EXPERT\nendchoice\n\n'
    'menu "hinting"\n\tdepends on CC_IS_GCC\n'
    'config BALLOON\n\ttristate "balloon"\n\n'
    'config PAGE_HINTING\n\tbool "hinting"\n\tdepends on SLUB && \\\n\t\tBALLOON\n'
    "\tselect HINTING_HELPER\n\nconfig HINTING_HELPER\n\tbool\nendmenu\n\n"
    'config PAGE_REPORTING\n\tbool "reporting" if EXPERT\n\tdepends on !PAGE_HINTING\n'
    'config NEEDS_TOOL\n\tbool "needs a tool"\n\tdepends on $(success,false)\n',
    "scripts/Kconfig.include": "if-success = $(shell,{ $(1); } >/dev/null 2>&1 && echo "
    '"$(2)" || echo "$(3)")\nsuccess = $(if-success,$(1),y,n)\n',
    "arch/x86/Kconfig": "config X86\n\tdef_bool y\n",
    "arch/arm/Kconfig": 'config ARM_ONLY\n\tbool "arm"\n',
}


@pytest.fixture
def small_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "small"
    for name, text in SMALL_KCONFIG.items():
        write(tree / name, text)
    write(tree / "Makefile", "VERSION = 6\nPATCHLEVEL = 1\n")
    return tree


def test_kconfiglib_reads_a_tree_with_the_bare_modules_attribute(small_tree: Path) -> None:
    """Plain kconfiglib 14.1 stops at the bare `modules` line; the filtered read does not,
    and the environment it needed (ARCH, srctree, CC) is put back afterwards."""
    import kconfiglib

    with pytest.raises(kconfiglib.KconfigError, match="couldn't parse 'modules'"):
        read_kconfig(small_tree, filtered=False)
    before = dict(os.environ)
    lookup = load_lookup(small_tree)
    assert dict(os.environ) == before
    assert lookup.reader == "kconfiglib"
    assert {"MODULES", "SLUB", "PAGE_HINTING", "X86"} <= set(lookup.names())
    assert "ARM_ONLY" not in lookup.names()  # another architecture's symbol


def test_kconfiglib_names_unmet_dependencies_with_their_values(small_tree: Path) -> None:
    write(
        small_tree / ".config",
        "CONFIG_MODULES=y\nCONFIG_SLOB=y\nCONFIG_EXPERT=y\nCONFIG_BALLOON=m\n",
    )
    lookup = load_lookup(small_tree)
    actual = read_config(small_tree / ".config")
    assert lookup.reasons("PAGE_HINTING", "y", actual) == (
        "mm/Kconfig:15: depends on SLUB && BALLOON  [BALLOON=m, SLUB=n]",
    )
    assert lookup.reasons("SLUB", "y", actual) == (
        "mm/Kconfig:3: member of a choice (SLUB, SLOB); chosen: SLOB",
    )
    helper = lookup.reasons("HINTING_HELPER", "y", actual)
    assert "has no prompt: a fragment cannot set it, only `select` (PAGE_HINTING [=n])" in helper[0]
    tool = lookup.reasons("NEEDS_TOOL", "y", actual)
    assert "depends on n (a $(...) test of the toolchain" in tool[0]


def test_kconfiglib_names_the_menu_and_if_conditions(small_tree: Path) -> None:
    """A prompt's condition includes its `if` and the menu around it; a module needs
    MODULES."""
    write(small_tree / ".config", "# CONFIG_EXPERT is not set\n# CONFIG_MODULES is not set\n")
    lookup = load_lookup(small_tree, make_args=["CC=cc-not-gcc"])
    actual = read_config(small_tree / ".config")
    reporting = lookup.reasons("PAGE_REPORTING", "y", actual)
    assert reporting == ("mm/Kconfig:25: depends on EXPERT  [EXPERT=n]",)
    balloon = lookup.reasons("BALLOON", "m", actual)
    assert "a module (m) needs CONFIG_MODULES=y, which is n" in balloon
    assert "mm/Kconfig:12: depends on CC_IS_GCC  [CC_IS_GCC=n]" in balloon


def test_misspelled_option_gets_the_nearest_name(small_tree: Path) -> None:
    lookup = load_lookup(small_tree)
    assert lookup.reasons("PAGE_HINTNG", "y", {}) == (
        "CONFIG_PAGE_HINTNG is defined in no Kconfig file of this tree (for x86): "
        "misspelled? did you mean CONFIG_PAGE_HINTING?",
    )
    arm = lookup.reasons("ARM_ONLY", "y", {})[0]
    assert "misspelled, or from another kernel version?" in arm
    assert suggestion("page_hintng", {"PAGE_HINTING", "PAGE_REPORTING"}) == (
        "did you mean CONFIG_PAGE_HINTING?"
    )
    names = {"PAGE_HINTING", "PAGE_HINTINGS", "PAGE_REPORTING"}
    assert suggestion("PAGE_HINTNG", names) == (
        "did you mean CONFIG_PAGE_HINTING? (or CONFIG_PAGE_HINTINGS)"
    )
    assert suggestion("SLAB_X", {"SLUB", "PAGE_HINTING"}) == ""


def test_a_tree_kconfiglib_cannot_parse_falls_back_to_the_regex_walk(small_tree: Path) -> None:
    """Newer syntax than kconfiglib knows (6.18's `transitional`): the regex walk answers
    and says why."""
    write(small_tree / "mm/Kconfig", 'config PAGE_HINTING\n\tbool "h"\n\ttransitional\n')
    lookup = load_lookup(small_tree)
    assert isinstance(lookup, ScanLookup)
    assert lookup.reader.startswith("regex walk over the Kconfig files (kconfiglib cannot parse")
    assert "transitional" in lookup.reader
    assert "did you mean CONFIG_PAGE_HINTING?" in lookup.reasons("PAGE_HINTNG", "y", {})[0]


def test_without_kconfiglib_the_regex_walk_answers(
    small_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "kconfiglib", None)  # import fails
    lookup = load_lookup(small_tree)
    assert "kconfiglib is not installed" in lookup.reader


def test_kconfig_environment_takes_make_variables(small_tree: Path) -> None:
    env = kconfig_symbols.kconfig_environment(
        small_tree, ["CC=/cache/tools/ccache-gcc", "KBUILD_BUILD_USER=x"], {"LD": "ld.bfd"}
    )
    assert env["CC"] == "/cache/tools/ccache-gcc"
    assert env["LD"] == "ld.bfd"
    assert (env["ARCH"], env["SRCARCH"], env["srctree"]) == ("x86", "x86", str(small_tree))
    assert env["KERNELVERSION"] == "6.1"
    assert "KBUILD_BUILD_USER" not in env


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
    write(
        tree / "Kconfig",
        'config NEEDS_BAR\n\tbool "x"\n\tdepends on BAR && BASE\n'
        'config BASE\n\tbool "base"\nconfig FOO\n\tbool "foo"\n',
    )
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
    assert "Kconfig:1: depends on BAR  [BAR=n]" in message  # BASE=y is met
    assert "(Kconfig read by kconfiglib)" in message
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


@pytest.fixture(scope="module")
def hinting_worktree() -> Path:
    """A worktree with hinting-v2-fixed applied (it defines CONFIG_PAGE_HINTING)."""
    source = obtain_source()
    series = load_series(PATCHES_DIR / "hinting-v2-fixed")
    return prepare_worktree(source, series, "test-kconfig-hinting")


@pytest.mark.real
def test_real_kconfiglib_reads_linux_6_1_through_the_modules_filter(
    real_worktree: Path, capsys: pytest.CaptureFixture
) -> None:
    """Which reader answers on 6.1: plain kconfiglib 14.1 cannot parse it (5.13's bare
    `modules`); with the filter it can, and the regex walk is not needed."""
    import time

    import kconfiglib

    with pytest.raises(kconfiglib.KconfigError, match=r"kernel/module/Kconfig:\d+.*'modules'"):
        read_kconfig(real_worktree, make_variables(), make_env(real_worktree), filtered=False)
    started = time.monotonic()
    lookup = load_lookup(real_worktree, make_variables(), make_env(real_worktree))
    seconds = time.monotonic() - started
    with capsys.disabled():
        print(f"\nkconfiglib read {real_worktree.name} in {seconds:.1f} s")
    assert lookup.reader == "kconfiglib"
    assert len(lookup.names()) > 10_000
    assert {"PAGE_REPORTING", "VIRTIO_BALLOON", "KASAN", "X86_64"} <= set(lookup.names())
    assert "ARM64" not in lookup.names()  # x86's view, not every architecture's


@pytest.mark.real
def test_real_misspelled_hinting_option_suggests_the_real_name(
    hinting_worktree: Path, tmp_path: Path
) -> None:
    config = hinting_worktree / ".config"
    before = config.read_bytes() if config.exists() else None
    typo = write(tmp_path / "typo.config", "CONFIG_PAGE_HINTNG=y\n")
    with pytest.raises(KconfigError) as caught:
        configure(hinting_worktree, [typo], make_args=make_variables())
    message = str(caught.value)
    assert "CONFIG_PAGE_HINTNG: requested y, got n" in message
    assert "did you mean CONFIG_PAGE_HINTING?" in message
    assert "(Kconfig read by kconfiglib)" in message
    assert (config.read_bytes() if config.exists() else None) == before


@pytest.mark.real
def test_real_hinting_and_reporting_exclude_each_other(
    hinting_worktree: Path, tmp_path: Path
) -> None:
    """An unmet dependency named with its value: the series makes PAGE_REPORTING depend on
    !PAGE_HINTING."""
    both = write(tmp_path / "both.config", "CONFIG_PAGE_HINTING=y\nCONFIG_PAGE_REPORTING=y\n")
    with pytest.raises(KconfigError) as caught:
        configure(hinting_worktree, [KCONFIG_DIR / "base.config", both], make_args=make_variables())
    message = str(caught.value)
    assert "CONFIG_PAGE_REPORTING: requested y, got n" in message
    assert "mm/Kconfig:" in message
    assert ": depends on !PAGE_HINTING  [PAGE_HINTING=y]" in message
