"""Kconfig fragments: parse, merge (conflicts are errors), configure a tree, verify the result.

Values are kept as Kconfig writes them: "y", "m", "n" (for `# CONFIG_X is not set`),
'"string"' (quotes kept) or a number. An option requested "n" is satisfied when the final
.config has it unset or does not mention it at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.build.kconfig_symbols import SymbolLookup, load_lookup, undefined_reason
from harness.core.diskspace import BUILD_NEEDS, disk_full, output_says_disk_full
from harness.core.errors import KconfigError
from harness.core.progress import step

SET_LINE = re.compile(r"^CONFIG_([A-Za-z0-9_]+)=(.*)$")
UNSET_LINE = re.compile(r"^# CONFIG_([A-Za-z0-9_]+) is not set$")
CONFIG_STAMP = ".phh-config-stamp"  # in the tree: which request produced the .config


@dataclass(frozen=True)
class DroppedOption:
    """A requested option whose final value differs, with the Kconfig reason if found."""

    name: str
    requested: str
    actual: str
    dependencies: tuple[str, ...] = ()

    def describe(self) -> str:
        text = f"CONFIG_{self.name}: requested {self.requested}, got {self.actual}"
        if self.dependencies:
            text += "".join(f"\n    {dep}" for dep in self.dependencies)
        return text


def parse_fragment(path: Path) -> dict[str, str]:
    """Options of one fragment; anything but option lines, comments and blanks is an error."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise KconfigError(
            f"cannot read Kconfig fragment {path}: {exc.strerror}", "check the path"
        ) from exc
    return parse_config_lines(lines, path, strict=True)


def read_config(path: Path) -> dict[str, str]:
    """Options of a .config (unset ones as "n")."""
    return parse_config_lines(path.read_text().splitlines(), path, strict=False)


def parse_config_lines(lines: list[str], origin: Path, *, strict: bool) -> dict[str, str]:
    options: dict[str, str] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if set_match := SET_LINE.match(line):
            options[set_match.group(1)] = set_match.group(2)
        elif unset_match := UNSET_LINE.match(line):
            options[unset_match.group(1)] = "n"
        elif strict and line and not line.startswith("#"):
            raise KconfigError(
                f"{origin}:{number}: not a Kconfig option line: {raw!r}",
                "write `CONFIG_NAME=value` or `# CONFIG_NAME is not set`",
            )
    return options


def merge_fragments(fragments: Sequence[Path]) -> dict[str, str]:
    """All fragments' options; one option with two different values is a KconfigError."""
    merged: dict[str, str] = {}
    origin: dict[str, Path] = {}
    conflicts: list[str] = []
    for fragment in fragments:
        for name, value in parse_fragment(fragment).items():
            if name in merged and not same_value(merged[name], value):
                conflicts.append(
                    f"CONFIG_{name}: {origin[name]} says {merged[name]}, {fragment} says {value}"
                )
                continue
            merged[name] = value
            origin.setdefault(name, fragment)
    if conflicts:
        raise KconfigError(
            "conflicting Kconfig fragments:\n  " + "\n  ".join(conflicts),
            "make the fragments agree, or drop the option from one of them",
        )
    return merged


def same_value(a: str, b: str) -> bool:
    return a == b


def is_satisfied(requested: str, actual: str | None) -> bool:
    if requested == "n":
        return actual in (None, "n")
    return actual == requested


def find_dropped(requested: dict[str, str], actual: dict[str, str]) -> list[DroppedOption]:
    """Requested options whose final value differs from the request."""
    return [
        DroppedOption(name, value, actual.get(name, "n"))
        for name, value in requested.items()
        if not is_satisfied(value, actual.get(name))
    ]


def configure(
    tree: Path,
    fragments: Sequence[Path],
    base_target: str = "tinyconfig",
    make_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Path:
    """`make <base_target>`, merge the fragments, `make olddefconfig`, verify; -> .config.

    Nothing is run when the .config came from the same request on the same Kconfig inputs
    (a series edit that touches no Kconfig file). A previous .config that equals the new
    one is left untouched (same mtime), so the next build is incremental; on error the
    previous .config is restored as it was.
    """
    requested = merge_fragments(fragments)
    config = tree / ".config"
    stamp = _request_stamp(tree, requested, base_target, make_args)
    if _stamp_matches(tree, stamp, config):
        return config
    previous = _Snapshot.take(config)
    try:
        with step(
            f"configuring {tree.name} ({base_target} + {len(fragments)} fragments)",
            phase="configure",
        ):
            _make(tree, [base_target], make_args, env)
            _apply_options(config, requested)
            _make(tree, ["olddefconfig"], make_args, env)
        actual = read_config(config)
        dropped = find_dropped(requested, actual)
        if dropped:
            lookup = load_lookup(tree, make_args, env)  # ~4 s: only once it failed
            raise dropped_error(lookup, fragments, dropped, requested, actual)
    except BaseException:
        previous.restore()
        raise
    previous.keep_if_unchanged()
    _write_stamp(tree, stamp, config)
    return config


def dropped_error(
    lookup: SymbolLookup,
    fragments: Sequence[Path],
    dropped: list[DroppedOption],
    requested: Mapping[str, str],
    actual: Mapping[str, str],
) -> KconfigError:
    """The options make did not keep, each with the reason Kconfig gives; and options
    requested "n" that no Kconfig file defines (satisfied, but surely misspelled)."""
    explained = [
        DroppedOption(d.name, d.requested, d.actual, lookup.reasons(d.name, d.requested, actual))
        for d in dropped
    ]
    names = lookup.names()
    unknown_n = [n for n, v in requested.items() if v == "n" and n not in names]
    lines = [d.describe() for d in explained] + [
        f"CONFIG_{n}: requested n\n    {undefined_reason(n, names)}" for n in unknown_n
    ]
    return KconfigError(
        f"Kconfig dropped {len(dropped)} requested option(s) from "
        f"{', '.join(str(f) for f in fragments)}:\n  "
        + "\n  ".join(lines)
        + f"\n(Kconfig read by {lookup.reader})",
        "fix a misspelled name; otherwise enable the unmet dependencies in a fragment too, "
        "or remove the option",
    )


def _apply_options(config: Path, requested: dict[str, str]) -> None:
    """Replace or append each requested option in .config (what merge_config.sh does)."""
    kept = [line for line in config.read_text().splitlines() if _option_name(line) not in requested]
    for name, value in requested.items():
        kept.append(f"# CONFIG_{name} is not set" if value == "n" else f"CONFIG_{name}={value}")
    config.write_text("\n".join(kept) + "\n")


def _option_name(line: str) -> str | None:
    match = SET_LINE.match(line) or UNSET_LINE.match(line)
    return match.group(1) if match else None


def _make(
    tree: Path, targets: list[str], make_args: Sequence[str], env: Mapping[str, str] | None
) -> None:
    cmd = ["make", "-s", *make_args, *targets]
    result = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        if output_says_disk_full(result.stdout + result.stderr, tree):
            raise disk_full(tree, f"make {' '.join(targets)}", BUILD_NEEDS)
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
        raise KconfigError(
            f"`{' '.join(cmd)}` failed in {tree} (exit {result.returncode}):\n{tail}",
            "check the kernel tree and the host tools (flex, bison, gcc)",
        )


class _Snapshot:
    """The previous .config (content + times), to restore or to keep untouched."""

    def __init__(self, path: Path, content: bytes | None, times: tuple[int, int] | None):
        self.path, self.content, self.times = path, content, times

    @classmethod
    def take(cls, path: Path) -> _Snapshot:
        if not path.is_file():
            return cls(path, None, None)
        stat = path.stat()
        return cls(path, path.read_bytes(), (stat.st_atime_ns, stat.st_mtime_ns))

    def restore(self) -> None:
        if self.content is None or self.times is None:
            self.path.unlink(missing_ok=True)
            return
        try:
            self.path.write_bytes(self.content)
        except OSError:  # a full disk: no .config rather than a truncated one
            self.path.unlink(missing_ok=True)
            raise
        os.utime(self.path, ns=self.times)

    def keep_if_unchanged(self) -> None:
        """Same content as before: put the old mtime back so make sees nothing new."""
        if self.times is not None and self.path.read_bytes() == self.content:
            os.utime(self.path, ns=self.times)


def _request_stamp(
    tree: Path, requested: dict[str, str], base_target: str, make_args: Sequence[str]
) -> str:
    """Identity of a configure request on this tree: the request and the files Kconfig
    reads, not the whole tree, so that a series edit outside them (the maintainer's loop:
    one patch changed) keeps the .config and skips configure (3.6 s)."""
    blob = json.dumps(
        [_kconfig_inputs(tree), base_target, list(make_args), sorted(requested.items())]
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _is_kconfig_input(path: str) -> bool:
    """What `make tinyconfig` / `olddefconfig` read: Kconfig files, config fragments
    (*/configs/*), the scripts Kconfig runs ($(shell,...), the conf tool), the Makefiles
    that define the targets."""
    name = path.rsplit("/", 1)[-1]
    return (
        name.startswith("Kconfig")
        or "configs/" in path
        or path.startswith("scripts/")
        or path in ("Makefile", "arch/x86/Makefile")
    )


def _kconfig_inputs(tree: Path) -> str:
    """Digest of the Kconfig inputs: their blob ids at HEAD in a git tree (0.2 s on the
    kernel), else their contents."""
    listing = subprocess.run(
        ["git", "ls-tree", "-r", "HEAD"], cwd=tree, capture_output=True, text=True
    )
    digest = hashlib.sha256()
    if listing.returncode == 0:
        for line in listing.stdout.splitlines():
            if _is_kconfig_input(line.split("\t", 1)[-1]):
                digest.update(line.encode() + b"\n")
        return digest.hexdigest()
    for path in sorted(tree.rglob("*")):
        relative = path.relative_to(tree).as_posix()
        if path.is_file() and _is_kconfig_input(relative):
            digest.update(relative.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _stamp_matches(tree: Path, stamp: str, config: Path) -> bool:
    """The .config was produced by this same request and not changed since."""
    stamp_file = tree / CONFIG_STAMP
    if not stamp_file.is_file() or not config.is_file():
        return False
    recorded = stamp_file.read_text().split()
    return recorded == [stamp, hashlib.sha256(config.read_bytes()).hexdigest()]


def _write_stamp(tree: Path, stamp: str, config: Path) -> None:
    config_hash = hashlib.sha256(config.read_bytes()).hexdigest()
    (tree / CONFIG_STAMP).write_text(f"{stamp} {config_hash}\n")
