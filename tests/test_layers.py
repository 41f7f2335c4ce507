"""The package structure the harness promises (docs/ARCHITECTURE.md): phases in order, no
module importing one of a later phase, and pass/fail rules only in the judge."""

from __future__ import annotations

import ast
from pathlib import Path

from harness.core.paths import REPO_ROOT

HARNESS = REPO_ROOT / "harness"
# The phases, in the order data flows; a module may import its own phase and earlier ones.
PHASES = (
    "core",
    "build",
    "guest",
    "observe",
    "drive",
    "model",
    "judge",
    "report",
    "pipeline",
    "pytest_plugin",
    "scenarios",
    "campaigns",
    "cli",
)
# Top-level modules that are phases of their own (orchestration).
TOP_LEVEL = {"pipeline.py": "pipeline", "cli.py": "cli", "__main__.py": "cli", "conftest.py": "cli"}


def phase_of(path: Path) -> str | None:
    relative = path.relative_to(HARNESS)
    if len(relative.parts) == 1:
        return TOP_LEVEL.get(relative.name)
    return relative.parts[0]


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under `if TYPE_CHECKING:`: annotations, not a dependency."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            skipped |= {id(inner) for inner in ast.walk(node)}
    return skipped


def imported_phases(path: Path) -> set[str]:
    found = set()
    tree = ast.parse(path.read_text())
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "harness" and len(parts) > 1 and parts[1] in PHASES:
                found.add(parts[1])
    return found


def test_every_module_belongs_to_a_phase() -> None:
    orphans = [
        str(p.relative_to(HARNESS))
        for p in HARNESS.rglob("*.py")
        if p.name != "__init__.py" and phase_of(p) is None
    ]
    assert orphans == []


def test_no_module_imports_a_later_phase() -> None:
    order = {phase: index for index, phase in enumerate(PHASES)}
    wrong = []
    for path in sorted(HARNESS.rglob("*.py")):
        own = phase_of(path)
        if own is None:
            continue
        for other in imported_phases(path):
            if order[other] > order[own]:
                wrong.append(f"{path.relative_to(HARNESS)} ({own}) imports harness.{other}")
    assert wrong == []


def _asserts(path: Path) -> list[ast.Assert]:
    return [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Assert)]


def _is_not_none(test: ast.expr) -> bool:
    """`x is not None` (or several joined by `and`): type narrowing, not a rule."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return all(_is_not_none(value) for value in test.values)
    return (
        isinstance(test, ast.Compare)
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.IsNot)
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value is None
    )


def test_pass_fail_rules_live_in_the_judge() -> None:
    """Scenarios assert one thing, a verdict's `.passed`; the rest of the harness outside
    the judge and the model asserts nothing on a measured value (only `is not None`)."""
    wrong = []
    for path in sorted(HARNESS.rglob("*.py")):
        phase = phase_of(path)
        if phase in ("judge", "model"):
            continue
        for node in _asserts(path):
            test = node.test
            verdict = isinstance(test, ast.Attribute) and test.attr == "passed"
            ok = verdict if phase == "scenarios" else _is_not_none(test)
            if not ok:
                wrong.append(f"{path.relative_to(HARNESS)}:{node.lineno}: {ast.unparse(test)}")
    assert wrong == []
