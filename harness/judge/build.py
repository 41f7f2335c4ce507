"""The build: Kconfig kept the mechanism the revision is about, and the image is a kernel."""

from __future__ import annotations

from harness.judge.verdict import Verdict, result

MIN_BZIMAGE_BYTES = 500_000  # tinyconfig's bzImage is ~1 MB: less is no bootable kernel


def judge_kconfig(config: dict[str, str], hinting: bool, bzimage_bytes: int) -> Verdict:
    """Hinting revisions carry CONFIG_PAGE_HINTING=y and not stock reporting (the two must
    never work on the same free lists); the stock baseline carries PAGE_REPORTING."""
    hinting_on = config.get("PAGE_HINTING") == "y"
    reporting_on = config.get("PAGE_REPORTING") == "y"
    want = (True, False) if hinting else (False, True)
    problems = (
        []
        if (hinting_on, reporting_on) == want
        else [
            f"PAGE_HINTING={config.get('PAGE_HINTING', 'n')} "
            f"PAGE_REPORTING={config.get('PAGE_REPORTING', 'n')}, want "
            f"{'hinting without reporting' if hinting else 'reporting without hinting'}"
        ]
    )
    small = [f"bzImage is {bzimage_bytes} bytes"] if bzimage_bytes < MIN_BZIMAGE_BYTES else []
    return Verdict(
        (
            result("kconfig_has_the_mechanism", problems, "the mechanism is configured"),
            result("bzimage_built", small, f"{bzimage_bytes} bytes"),
        )
    )
