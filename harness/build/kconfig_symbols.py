"""What a kernel tree's Kconfig says about a symbol: whether it exists (for x86), why the
final .config does not have the value a fragment asked for, and which defined name a
misspelled one is closest to.

kconfiglib reads the tree as `make ARCH=x86` would (the environment its Kconfig files
expand: srctree, CC, LD, ...). Reading Linux 6.1 takes about 4 s (89 `$(shell,...)`
compiler probes), as long as `make olddefconfig` itself, so it happens only when a
configure has already failed; make stays the authority for the .config.

kconfiglib 14.1 (its last release, 2020) predates Linux 5.13's bare `modules` attribute
(ulfalizer/Kconfiglib#106) and stops at kernel/module/Kconfig:4. The files are read
through a filter that writes that line as `option modules`, the form it replaced, which
kconfiglib understands. A tree kconfiglib still cannot parse (newer syntax, such as 6.18's
`transitional`) falls back to a regex walk over the Kconfig files (kconfig_scan), and the
error says which reader answered.
"""

from __future__ import annotations

import difflib
import io
import logging
import os
import re
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Protocol

log = logging.getLogger("harness.build.kconfig")

ARCH = "x86"
SUGGEST_CUTOFF = 0.8  # difflib ratio: PAGE_HINTNG -> PAGE_HINTING is 0.96
BARE_MODULES = re.compile(r"^(\s*)modules\s*$", re.MULTILINE)
# Tools the top Makefile names by default; Kconfig runs them in $(shell,...) probes.
TOOL_DEFAULTS = {
    "CC": "gcc",
    "LD": "ld",
    "HOSTCC": "gcc",
    "HOSTCXX": "g++",
    "RUSTC": "rustc",
    "BINDGEN": "bindgen",
    "PAHOLE": "pahole",
    "OBJCOPY": "objcopy",
    "NM": "nm",
    "AR": "ar",
}
NEEDED = {"y": 2, "m": 1}  # tristate value a request needs; strings and numbers need 1


class SymbolLookup(Protocol):
    """One reader's answers about the symbols of one tree."""

    reader: str  # "kconfiglib", or "regex walk (kconfiglib: <why not>)"

    def names(self) -> Collection[str]:
        """Every symbol defined for x86 (without CONFIG_)."""
        ...

    def reasons(self, name: str, requested: str, actual: Mapping[str, str]) -> tuple[str, ...]:
        """Why `name` is not `requested` in the final .config (`actual`), one line each."""
        ...


def suggestion(name: str, names: Collection[str]) -> str:
    """ "did you mean CONFIG_X?" for the closest defined name, with runners-up; or ""."""
    close = difflib.get_close_matches(name.upper(), names, n=3, cutoff=SUGGEST_CUTOFF)
    if not close:
        return ""
    others = f" (or {', '.join('CONFIG_' + c for c in close[1:])})" if close[1:] else ""
    return f"did you mean CONFIG_{close[0]}?{others}"


def undefined_reason(name: str, names: Collection[str]) -> str:
    guess = suggestion(name, names)
    return f"CONFIG_{name} is defined in no Kconfig file of this tree (for {ARCH}): " + (
        f"misspelled? {guess}" if guess else "misspelled, or from another kernel version?"
    )


def load_lookup(
    tree: Path, make_args: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> SymbolLookup:
    """kconfiglib's view of `tree` (its .config loaded, if any), else the regex walk."""
    from harness.build.kconfig_scan import ScanLookup

    try:
        import kconfiglib
    except ImportError:
        return ScanLookup(tree, "kconfiglib is not installed (pip install kconfiglib)")
    started = time.monotonic()
    try:
        kconf = read_kconfig(tree, make_args, env)
    except (kconfiglib.KconfigError, OSError) as error:
        why = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        log.warning("kconfiglib cannot read %s (%s): falling back to a regex walk", tree, why)
        return ScanLookup(tree, f"kconfiglib cannot parse this tree: {why}")
    config = tree / ".config"
    if config.is_file():
        kconf.load_config(str(config))
    log.info("kconfiglib read %s in %.1f s", tree, time.monotonic() - started)
    return KconfiglibLookup(kconf)


def kconfig_environment(
    tree: Path, make_args: Sequence[str], env: Mapping[str, str] | None
) -> dict[str, str]:
    """The variables the kernel's Kconfig files expand, as `make` would export them: the
    make variables given (CC=..., the harness's ccache wrapper) over the environment over
    the Makefile's defaults."""
    from harness.build.source import makefile_version
    from harness.core.errors import SourceError

    base = dict(os.environ if env is None else env)
    values = {name: base.get(name, default) for name, default in TOOL_DEFAULTS.items()}
    for arg in make_args:
        name, sep, value = arg.partition("=")
        if sep and name in values:
            values[name] = value
    try:
        version = makefile_version(tree)
    except (OSError, SourceError):  # only the mainmenu's title uses it
        version = ""
    return {
        **base,
        **values,
        "srctree": str(tree),
        "ARCH": ARCH,
        "SRCARCH": ARCH,
        "KERNELVERSION": version,
    }


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """kconfiglib reads os.environ while it parses: set it for that, then restore."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def read_kconfig(
    tree: Path,
    make_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    *,
    filtered: bool = True,
) -> Any:
    """kconfiglib.Kconfig of `tree` for x86; `filtered`: the Kconfig files are read with
    a bare `modules` line written as `option modules`."""
    import kconfiglib

    if not filtered:
        with _environment(kconfig_environment(tree, make_args, env)):
            return kconfiglib.Kconfig("Kconfig", warn=False)

    class FilteredKconfig(kconfiglib.Kconfig):  # type: ignore[misc]
        def _open(self, filename: str, mode: str) -> IO[str]:
            handle = super()._open(filename, mode)
            if mode != "r":
                return handle
            with handle:
                return io.StringIO(BARE_MODULES.sub(r"\1option modules", handle.read()))

    with _environment(kconfig_environment(tree, make_args, env)):
        return FilteredKconfig("Kconfig", warn=False)  # relative: names relative to the tree


class KconfiglibLookup:
    """Answers from kconfiglib's parse, with the symbols at their final .config values."""

    reader = "kconfiglib"

    def __init__(self, kconf: Any) -> None:
        self.kconf = kconf
        self._names = frozenset(s.name for s in kconf.unique_defined_syms)

    def names(self) -> Collection[str]:
        return self._names

    def reasons(self, name: str, requested: str, actual: Mapping[str, str]) -> tuple[str, ...]:
        sym = self.kconf.syms.get(name)
        if sym is None or not sym.nodes:
            return (undefined_reason(name, self._names),)
        needed = NEEDED.get(requested, 1)
        found = [*self._choice(sym), *self._modules(sym, requested)]
        prompted = [node for node in sym.nodes if node.prompt]
        for node in prompted:
            found.extend(self._unmet(node, needed))
        if not prompted:
            found.append(self._no_prompt(sym))
        found.extend(self._selected(sym, requested))
        return tuple(found) or (
            f"CONFIG_{name} can be set, yet make chose {actual.get(name, 'n')}: "
            "see its default and range in `make menuconfig`",
        )

    def _unmet(self, node: Any, needed: int) -> list[str]:
        """The conjuncts of the node's prompt condition (its `depends on`, `if`, the menus
        and ifs around it) that hold less than `needed`, with their symbols' values."""
        import kconfiglib

        unmet = [
            conj
            for conj in kconfiglib.split_expr(node.prompt[1], kconfiglib.AND)
            if kconfiglib.expr_value(conj) < needed
        ]
        if not unmet:
            return []
        text = " && ".join(_parenthesized(conj) for conj in unmet)
        where = f"{node.filename}:{node.linenr}"
        if any(_is_constant(conj) for conj in unmet):  # `depends on $(success,...)` was n
            text += " (a $(...) test of the toolchain in the Kconfig file came out n)"
        values = _values(unmet)
        return [f"{where}: depends on {text}" + (f"  [{values}]" if values else "")]

    def _choice(self, sym: Any) -> list[str]:
        choice = sym.choice
        if choice is None:
            return []
        members = ", ".join(s.name for s in choice.syms)
        chosen = choice.selection.name if choice.selection is not None else "none"
        node = sym.nodes[0]
        return [f"{node.filename}:{node.linenr}: member of a choice ({members}); chosen: {chosen}"]

    def _modules(self, sym: Any, requested: str) -> list[str]:
        modules = self.kconf.modules
        if requested != "m" or modules.tri_value != 0:
            return []
        return [f"a module (m) needs CONFIG_{modules.name}=y, which is n"]

    def _no_prompt(self, sym: Any) -> str:
        node = sym.nodes[0]
        return (
            f"{node.filename}:{node.linenr}: CONFIG_{sym.name} has no prompt: a fragment "
            f"cannot set it, only `select` ({_selectors(sym) or 'by nothing'}) or its default"
        )

    def _selected(self, sym: Any, requested: str) -> list[str]:
        """A symbol forced higher than requested (asked m or n, selected y)."""
        import kconfiglib

        if requested not in ("m", "n") or kconfiglib.expr_value(sym.rev_dep) <= NEEDED.get(
            requested, 0
        ):
            return []
        return [f"CONFIG_{sym.name} is selected by {_selectors(sym)}"]


def _selectors(sym: Any) -> str:
    """The symbols that `select` it, with their values (each OR term of the reverse
    dependency is the selecting symbol AND its own conditions)."""
    import kconfiglib

    selecting = [
        kconfiglib.split_expr(term, kconfiglib.AND)[0]
        for term in kconfiglib.split_expr(sym.rev_dep, kconfiglib.OR)
        if term is not sym.kconfig.n
    ]
    return ", ".join(
        f"{kconfiglib.expr_str(s)} [={kconfiglib.TRI_TO_STR[kconfiglib.expr_value(s)]}]"
        for s in selecting
    )


def _is_constant(expr: Any) -> bool:
    return not isinstance(expr, tuple) and bool(getattr(expr, "is_constant", False))


def _parenthesized(expr: Any) -> str:
    import kconfiglib

    text = kconfiglib.expr_str(expr)
    return f"({text})" if isinstance(expr, tuple) and expr[0] == kconfiglib.OR else text


def _values(exprs: list[Any]) -> str:
    """NAME=value for the symbols of `exprs`, sorted."""
    import kconfiglib

    symbols = {
        item
        for expr in exprs
        for item in kconfiglib.expr_items(expr)
        if isinstance(item, kconfiglib.Symbol) and not item.is_constant
    }
    return ", ".join(f"{s.name}={_value(s)}" for s in sorted(symbols, key=lambda s: s.name))


def _value(sym: Any) -> str:
    """Its value in the .config; n for a symbol no Kconfig file defines (kconfiglib would
    give its name, as for a constant)."""
    import kconfiglib

    if not sym.nodes or sym.orig_type in (kconfiglib.BOOL, kconfiglib.TRISTATE):
        return str(kconfiglib.TRI_TO_STR[sym.tri_value])
    return str(sym.str_value) or '""'
