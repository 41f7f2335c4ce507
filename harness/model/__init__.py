"""Reference model of the v2 free page hinting boundary logic on Linux 6.1's buddy allocator.

Entry point: `HintingSystem`. See docs/MODEL.md for what is modelled and what is not.
"""

from harness.model.errors import ModelInvariantError, ModelUsageError
from harness.model.idle import idle_bound_for, idle_unhinted_bound
from harness.model.invariants import check_invariants, violations
from harness.model.params import MIGRATETYPE_BY_NAME, MigrateType, Params
from harness.model.snapshot import ListSnapshot, ZoneSnapshot
from harness.model.system import HintingSystem
from harness.model.worker import Phase

__all__ = [
    "MIGRATETYPE_BY_NAME",
    "HintingSystem",
    "ListSnapshot",
    "MigrateType",
    "ModelInvariantError",
    "ModelUsageError",
    "Params",
    "Phase",
    "ZoneSnapshot",
    "check_invariants",
    "idle_bound_for",
    "idle_unhinted_bound",
    "violations",
]
