"""Revisions the harness knows how to build: a series plus the kconfig fragments it needs.

A revision is what a maintainer compares: stock 6.1 page reporting (the upstream
baseline), the faithful v2 port, and the port with the reviewers' defects fixed. Each can
also be built with the debug fragment (lockdep, PROVE_RCU, DEBUG_VM, DEBUG_LIST).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from harness.core.errors import SeriesError
from harness.core.paths import KCONFIG_DIR, PATCHES_DIR

BASE = KCONFIG_DIR / "base.config"
REPORTING = KCONFIG_DIR / "reporting.config"
HINTING = KCONFIG_DIR / "hinting.config"
DEBUG = KCONFIG_DIR / "debug.config"
COVERAGE = KCONFIG_DIR / "coverage.config"
FLAVOURS = ("debug", "coverage")  # name suffixes: NAME+debug, NAME+coverage, both
# A file of this name in a user's series directory says that the series does not provide
# CONFIG_PAGE_HINTING (e.g. a prefix of a series before the patch that adds the option:
# harness/campaigns/bisect.py): it is built with the stock fragments and judged as not hinting.
NOT_HINTING = "not-hinting"


@dataclass(frozen=True)
class Revision:
    """One buildable kernel: series (None = stock) and fragments, merged in order."""

    name: str
    series: Path | None
    fragments: tuple[Path, ...]
    hinting: bool  # the series provides CONFIG_PAGE_HINTING (v2-style hinting)
    debug: bool = False
    coverage: bool = False  # kernel GCOV on the objects the series changes

    def with_debug(self) -> Revision:
        if self.debug:
            return self
        return replace(
            self, name=f"{self.name}+debug", fragments=(*self.fragments, DEBUG), debug=True
        )

    def with_coverage(self) -> Revision:
        if self.coverage:
            return self
        return replace(
            self,
            name=f"{self.name}+coverage",
            fragments=(*self.fragments, COVERAGE),
            coverage=True,
        )

    def with_extra_fragments(self, extra: tuple[Path, ...]) -> Revision:
        return replace(self, fragments=(*self.fragments, *extra)) if extra else self


STOCK = Revision("stock", None, (BASE, REPORTING), hinting=False)
HINTING_V2 = Revision("hinting-v2", PATCHES_DIR / "hinting-v2", (BASE, HINTING), hinting=True)
HINTING_V2_FIXED = Revision(
    "hinting-v2-fixed", PATCHES_DIR / "hinting-v2-fixed", (BASE, HINTING), hinting=True
)
BUILTIN = {r.name: r for r in (STOCK, HINTING_V2, HINTING_V2_FIXED)}
DEFAULT_SERIES = HINTING_V2


def resolve(spec: str) -> Revision:
    """A built-in revision name or a path to a user's series, optionally with flavours
    ('+debug', '+coverage').

    A user series is assumed to provide CONFIG_PAGE_HINTING like the built-in ones, unless
    its directory holds a NOT_HINTING file.
    """
    name, *suffixes = spec.split("+")
    if Path(spec).expanduser().exists():  # a path that itself contains '+'
        name, suffixes = spec, []
    for suffix in suffixes:
        if suffix not in FLAVOURS:
            raise SeriesError(
                f"revision {spec!r}: unknown suffix {suffix!r}",
                "use NAME, NAME+debug, NAME+coverage or NAME+coverage+debug, NAME one of "
                + ", ".join(BUILTIN),
            )
    if name in BUILTIN:
        rev = BUILTIN[name]
    else:
        path = Path(name).expanduser()
        if not path.exists():
            raise SeriesError(
                f"revision {spec!r} is neither a built-in revision nor an existing path",
                "pass one of " + ", ".join(BUILTIN) + ", or a series directory or mbox file",
            )
        rev = user_revision(path.resolve())
    if "coverage" in suffixes:
        rev = rev.with_coverage()
    return rev.with_debug() if "debug" in suffixes else rev


def user_revision(path: Path) -> Revision:
    """A user's series: hinting (base + hinting fragments), or, with a NOT_HINTING file in
    its directory, a series judged like stock (base + reporting fragments)."""
    name = f"user:{path.name or 'user-series'}"
    if (path / NOT_HINTING).is_file():
        return Revision(name, path, (BASE, REPORTING), hinting=False)
    return Revision(name, path, (BASE, HINTING), hinting=True)
