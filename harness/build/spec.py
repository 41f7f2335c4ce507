"""What a revision of the series declares about itself: `params.toml` beside its patches.

The judge compares the running kernel against these numbers, not against what the kernel
reports about itself: a revision that changes PAGE_HINTING_HWM must fail, not be judged
by its own new threshold. A series without a manifest is held to v2's values.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from harness.core.errors import SeriesError

MANIFEST_NAME = "params.toml"


@dataclass(frozen=True)
class HintingSpec:
    """The v2 design's parameters (seed: PAGE_HINTING_MIN_ORDER, PAGE_HINTING_HWM, ...)."""

    min_order: int = 9  # pageblock_order on x86-64 with HUGETLB_PAGE
    hwm: int = 32  # PAGE_HINTING_HWM
    capacity: int = 32  # virtio-balloon's batch: scatterlist entries per react()
    delay_ms: int = 100  # schedule_delayed_work(..., HZ / 10)

    @property
    def delay_s(self) -> float:
        return self.delay_ms / 1000


V2_SPEC = HintingSpec()


def load_spec(series_dir: Path | None) -> HintingSpec:
    """`series_dir/params.toml`, or v2's values when the series has no manifest."""
    if series_dir is None or not series_dir.is_dir():
        return V2_SPEC
    manifest = series_dir / MANIFEST_NAME
    if not manifest.is_file():
        return V2_SPEC
    try:
        data = tomllib.loads(manifest.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SeriesError(
            f"{manifest}: not a readable TOML file ({exc})",
            "fix the manifest or remove it to use v2's parameters",
        ) from exc
    table = data.get("hinting", {})
    known = {f.name for f in fields(HintingSpec)}
    unknown = sorted(set(table) - known)
    bad = sorted(k for k, v in table.items() if k in known and not isinstance(v, int))
    if unknown or bad or set(data) - {"hinting"}:
        raise SeriesError(
            f"{manifest}: unknown keys {unknown + sorted(set(data) - {'hinting'})} "
            f"or non-integer values {bad}",
            f"use a [hinting] table with integer {', '.join(sorted(known))}",
        )
    return HintingSpec(**table)
