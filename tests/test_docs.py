"""The architecture map (docs/ARCHITECTURE.md, linked from the README) names every module of
harness/, and names no module that is gone."""

from __future__ import annotations

import re

from harness.core.paths import REPO_ROOT

MAP = REPO_ROOT / "docs" / "ARCHITECTURE.md"


def test_architecture_map_matches_the_modules() -> None:
    harness = REPO_ROOT / "harness"
    modules = {
        str(p.relative_to(harness))
        for p in harness.rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py", "conftest.py")
        and "model" not in p.parts
        and "scenarios" not in p.parts
    }
    table = MAP.read_text().split("## Packages and modules", 1)[1].split("\n## ", 1)[0]
    # the table's first column: one module each (scenarios/ and model/ are named as wholes)
    named = set(re.findall(r"^\| `([a-z_/]+\.py)`", table, re.MULTILINE))
    assert modules - named == set(), "modules missing from docs/ARCHITECTURE.md"
    assert named - modules == set(), "docs/ARCHITECTURE.md names modules that do not exist"
