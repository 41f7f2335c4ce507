"""Each revision builds, and Kconfig kept what the revision asked for."""

from __future__ import annotations

from harness.build.kconfig import read_config
from harness.build.kernel import BuildResult
from harness.build.revisions import Revision


def test_kconfig_has_the_mechanism(revision: Revision, built_kernel: BuildResult) -> None:
    """Hinting revisions carry CONFIG_PAGE_HINTING=y and not stock reporting (the two
    must never work on the same free lists); the stock baseline carries PAGE_REPORTING."""
    result = built_kernel
    config = read_config(result.config)
    if revision.hinting:
        assert config.get("PAGE_HINTING") == "y", result.config
        assert config.get("PAGE_REPORTING") != "y", result.config
    else:
        assert config.get("PAGE_REPORTING") == "y", result.config
        assert config.get("PAGE_HINTING", "n") == "n", result.config
    assert result.bzimage.stat().st_size > 500_000
