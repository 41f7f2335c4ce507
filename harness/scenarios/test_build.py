"""Each revision builds, and Kconfig kept what the revision asked for."""

from __future__ import annotations

from harness.build.kconfig import read_config
from harness.build.kernel import BuildResult
from harness.build.revisions import Revision
from harness.judge import judge_kconfig


def test_kconfig_has_the_mechanism(revision: Revision, built_kernel: BuildResult, judged) -> None:
    """Hinting revisions carry CONFIG_PAGE_HINTING=y and not stock reporting (the two
    must never work on the same free lists); the stock baseline carries PAGE_REPORTING."""
    result = built_kernel
    verdict = judged(
        "kconfig",
        judge_kconfig(read_config(result.config), revision.hinting, result.bzimage.stat().st_size),
    )
    assert verdict.passed, f"{revision.name} ({result.config}):\n{verdict}"
