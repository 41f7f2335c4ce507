"""Read a coverage guest's gcda files before it shuts down (or resets: counters start
again at a new boot).

The kernel keeps one gcda per profiled object under /sys/kernel/debug/gcov, at the path of
the object in the tree it was built in. debugfs reports size 0 for them (tar would copy
nothing), so each is printed with base64, behind a `@@ <path>` line. A guest that cannot be
read (it panicked, QEMU died) contributes nothing, and says why in `missing.txt`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from pathlib import Path

from harness.build.gcov_objects import read_manifest
from harness.core.errors import HarnessError

log = logging.getLogger("harness.coverage")

GCOV_ROOT = "/sys/kernel/debug/gcov"
DUMP = f'cd {GCOV_ROOT} && for f in $(find . -name \'*.gcda\'); do echo "@@ $f"; base64 "$f"; done'
KERNEL = "kernel.json"  # in each collection: which build's bundle the gcda files belong to
MISSING = "missing.txt"


def parse_dump(text: str) -> dict[str, bytes]:
    """`@@ <path>` + base64 lines -> {guest path: gcda bytes}."""
    files: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@@ "):
            current = files.setdefault(line[3:].strip(), [])
        elif current is not None and line.strip():
            current.append(line.strip())
    try:
        return {path: base64.b64decode("".join(lines)) for path, lines in files.items()}
    except binascii.Error as error:
        raise ValueError(f"gcov dump is not base64: {error}") from error


def place(files: dict[str, bytes], objects: list[str]) -> dict[str, bytes]:
    """Guest paths (the build tree's absolute path, then the object's) -> tree-relative gcda
    names of the profiled objects; anything else is not ours."""
    placed = {}
    for obj in objects:
        wanted = obj[:-2] + ".gcda"
        for path, data in files.items():
            if path.endswith("/" + wanted):
                placed[wanted] = data
    return placed


def collect(ssh, bundle: Path, target: Path) -> int:
    """Copy the guest's gcda files of this bundle's objects to `target`; how many."""
    target.mkdir(parents=True, exist_ok=True)
    (target / KERNEL).write_text(json.dumps({"bundle": str(bundle)}) + "\n")
    try:
        result = ssh.check(DUMP, timeout=120)
        placed = place(parse_dump(result.stdout), list(read_manifest(bundle)["objects"]))
    except (HarnessError, OSError, ValueError) as error:
        (target / MISSING).write_text(f"{error}\n")
        log.warning("coverage: no gcda from this guest (%s)", str(error).splitlines()[0])
        return 0
    for name, data in placed.items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(data)
    return len(placed)


def next_collection(workdir: Path) -> Path:
    """workdir/gcov-1, gcov-2, ...: one per boot of the guest."""
    n = 1
    while (workdir / f"gcov-{n}").exists():
        n += 1
    return workdir / f"gcov-{n}"
