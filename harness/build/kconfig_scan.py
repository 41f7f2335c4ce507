"""The fallback reader of kconfig_symbols: a regex walk over a tree's Kconfig files, for a
tree kconfiglib cannot parse. It sees every architecture's symbols, and only the literal
`depends on` lines of a symbol (not the menus and ifs around it)."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from pathlib import Path

from harness.build.kconfig_symbols import undefined_reason

KCONFIG_DEFINITION = re.compile(r"^\s*(?:menu)?config\s+(\w+)\s*$")
KCONFIG_BLOCK_END = re.compile(
    r"^\s*(config|menuconfig|choice|endchoice|comment|menu|endmenu|if|endif|source)\b"
)


class ScanLookup:
    """SymbolLookup by regex; `why` says why kconfiglib did not answer."""

    def __init__(self, tree: Path, why: str) -> None:
        self.tree = tree
        self.reader = f"regex walk over the Kconfig files ({why})"
        self._files: list[tuple[Path, list[str]]] | None = None
        self._names: frozenset[str] | None = None

    def _kconfig_files(self) -> list[tuple[Path, list[str]]]:
        if self._files is None:
            self._files = [
                (path, path.read_text(errors="replace").splitlines())
                for path in sorted(self.tree.rglob("Kconfig*"))
                if path.is_file()
            ]
        return self._files

    def names(self) -> Collection[str]:
        if self._names is None:
            self._names = frozenset(
                match.group(1)
                for _, lines in self._kconfig_files()
                for line in lines
                if (match := KCONFIG_DEFINITION.match(line))
            )
        return self._names

    def reasons(self, name: str, requested: str, actual: Mapping[str, str]) -> tuple[str, ...]:
        return kconfig_dependencies(self, name, actual)


def kconfig_dependencies(
    lookup: ScanLookup, name: str, actual: Mapping[str, str]
) -> tuple[str, ...]:
    """The `depends on` lines of `config NAME` (symbols shown with their final values),
    and for a `choice` member, which member the choice took instead."""
    found: list[str] = []
    for kconfig, lines in lookup._kconfig_files():
        for index, line in enumerate(lines):
            defined = KCONFIG_DEFINITION.match(line)
            if defined is None or defined.group(1) != name:
                continue
            where = f"{kconfig.relative_to(lookup.tree)}:{index + 1}"
            found.extend(_block_dependencies(lines[index + 1 :], where, actual))
            found.extend(_choice_note(lines, index, where, actual))
    names = lookup.names()
    if name not in names:
        return (undefined_reason(name, names),)
    return tuple(found) or (f"no `depends on` found for {name} in the Kconfig files",)


def _choice_note(lines: list[str], index: int, where: str, actual: Mapping[str, str]) -> list[str]:
    """If line `index` is inside a choice block, name the member that was chosen."""
    start = next(
        (i for i in range(index, -1, -1) if re.match(r"^\s*(choice|endchoice)\b", lines[i])),
        None,
    )
    if start is None or not lines[start].strip().startswith("choice"):
        return []
    members = []
    for line in lines[start + 1 :]:
        if re.match(r"^\s*endchoice\b", line):
            break
        if match := re.match(r"^\s*config\s+(\w+)", line):
            members.append(match.group(1))
    chosen = [m for m in members if actual.get(m) == "y"] or ["none"]
    return [f"{where}: member of a choice ({', '.join(members)}); chosen: {', '.join(chosen)}"]


def _block_dependencies(block: list[str], where: str, actual: Mapping[str, str]) -> list[str]:
    """Continuation-joined `depends on` lines of one config block, with symbol values."""
    deps = []
    for line in _join_continuations(block):
        if KCONFIG_BLOCK_END.match(line):
            break
        stripped = line.strip()
        if stripped.startswith("depends on"):
            symbols = sorted(set(re.findall(r"\b[A-Z][A-Z0-9_]+\b", stripped[len("depends on") :])))
            values = ", ".join(f"{s}={actual.get(s, 'n')}" for s in symbols)
            deps.append(f"{where}: {' '.join(stripped.split())}  [{values}]")
    return deps


def _join_continuations(lines: list[str]) -> list[str]:
    joined: list[str] = []
    pending = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    return joined
