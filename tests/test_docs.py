"""The architecture map (docs/ARCHITECTURE.md, linked from the README) names every module of
harness/, and names no module that is gone."""

from __future__ import annotations

import re

from harness.core.paths import REPO_ROOT

MAP = REPO_ROOT / "docs" / "ARCHITECTURE.md"


def test_architecture_map_matches_the_modules() -> None:
    modules = {p.name for p in (REPO_ROOT / "harness").glob("*.py") if p.name != "__init__.py"}
    table = MAP.read_text().split("## Modules", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([a-z_]+\.py)`", table))
    assert modules - named == set(), "modules missing from docs/ARCHITECTURE.md"
    assert named - modules == set(), "docs/ARCHITECTURE.md names modules that do not exist"
