"""Hypothesis stateful tests: random frees, allocations, splits, time and worker steps.

Small parameters (orders 0..4, hinting from order 3, HWM 3, capacity 3) so that short
runs reach every branch of fill/drain; min_order == max_order - 2 as on x86-64, which is
what keeps hinted pages at the list tails (see test_model_idle.py for the other case).
After every step: all model invariants, the idle guarantee, and the judge's verdict on
the model rendered as guest observations.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from harness.judge import judge_kernel
from harness.model import HintingSystem, MigrateType, Params, Phase, idle_bound_for
from harness.model.observe import declared_spec, observe

MTS = (MigrateType.UNMOVABLE, MigrateType.MOVABLE, MigrateType.HIGHATOMIC)
PARAMS = Params(max_order=5, min_order=3, hwm=3, capacity=3, migratetypes=MTS)
TOP_BLOCKS = 8
PAGEBLOCKS = TOP_BLOCKS << (PARAMS.top_order - PARAMS.pageblock_order)


class HintingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.system: HintingSystem | None = None

    @rule(pageblock_types=st.lists(st.sampled_from(MTS), min_size=PAGEBLOCKS, max_size=PAGEBLOCKS))
    @precondition(lambda self: self.system is None)
    def boot(self, pageblock_types: list[MigrateType]) -> None:
        self.system = HintingSystem(PARAMS, TOP_BLOCKS << PARAMS.top_order, pageblock_types)

    @rule(order=st.integers(0, PARAMS.top_order), mt=st.sampled_from(MTS))
    @precondition(lambda self: self.system is not None)
    def alloc(self, order: int, mt: MigrateType) -> None:
        self.system.alloc(order, mt)

    @rule(pick=st.integers(0, 10_000), as_type=st.none() | st.sampled_from(MTS))
    @precondition(lambda self: self.system is not None and self.system.zone.allocated)
    def free(self, pick: int, as_type: MigrateType | None) -> None:
        allocated = sorted(self.system.zone.allocated.items())
        pfn, order = allocated[pick % len(allocated)]
        self.system.free(pfn, order, as_type)

    @rule(pick=st.integers(0, 10_000))
    @precondition(lambda self: self.system is not None and self.system.zone.allocated)
    def split(self, pick: int) -> None:
        allocated = sorted(self.system.zone.allocated)
        self.system.split(allocated[pick % len(allocated)])

    @rule(seconds=st.sampled_from([0.02, 0.05, 0.1, 0.5]))
    @precondition(lambda self: self.system is not None)
    def advance(self, seconds: float) -> None:
        self.system.advance(seconds)

    @rule(steps=st.integers(1, 3))
    @precondition(lambda self: self.system is not None)
    def worker_step(self, steps: int) -> None:
        for _ in range(steps):
            self.system.worker_step()

    @rule()
    @precondition(lambda self: self.system is not None)
    def settle(self) -> None:
        self.system.settle()
        assert self.system.idle
        assert self.system.worker.phase is Phase.IDLE

    @invariant()
    def model_invariants_hold(self) -> None:
        if self.system is not None:
            self.system.check_invariants()

    @invariant()
    def idle_zone_within_the_stated_bound(self) -> None:
        if self.system is None or not self.system.idle:
            return
        snap = self.system.snapshot()
        for order in PARAMS.hinting_orders:
            bound = idle_bound_for(PARAMS, order)
            assert snap.unhinted(order) <= bound, (order, snap.unhinted(order), bound)

    @invariant()
    def judge_accepts_every_reachable_state(self) -> None:
        if self.system is not None:
            verdict = judge_kernel(observe(self.system), spec=declared_spec(self.system))
            assert verdict.passed, str(verdict)


HintingMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestHintingMachine = HintingMachine.TestCase
