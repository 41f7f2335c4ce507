"""Scenarios on a revision the instrumentation overlay did not apply to: reduced verdicts.

A hinting revision that rewrote the code the harness's instrumentation hooks is built
without it (harness/build/overlay.py). Its scenarios must not read what the kernel does
not have (17 SSH errors on `cat page_hinting/state`); instead:

* a scenario with a reduced form runs that form in its place, with the same fixtures: the
  same workload, judged on what needs no instrumentation (the forms are registered with
  `reduced_form` by harness/scenarios/reduced.py, which harness/conftest.py loads);
* one registered with `runs_as_is` reads no instrumentation and runs as it is;
* any other is skipped, "reduced: not judged: needs ..." (`module_needs` says what), and a
  module of such scenarios is skipped before its shared guest boots.

Each test of such a revision carries the JUnit property `reduced` (the one line that names
the overlay patch and hunk that failed), the terminal summary repeats that line once per
revision, and report.txt says so (harness/report/reduced.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from harness.build.overlay import OverlayResult
from harness.build.revisions import Revision
from harness.pytest_plugin.options import REVISION_PARAMS
from harness.pytest_plugin.scheduling import SHARED_GUESTS
from harness.report.run_results import REDUCED_PROPERTY

F = TypeVar("F", bound=Callable[..., None])

REDUCED = pytest.StashKey[OverlayResult]()
PROPERTY = REDUCED_PROPERTY  # the JUnit property report/ reads
SKIP_PREFIX = "reduced: not judged"
DEFAULT_NEEDS = "debugfs page_hinting/state"

FORMS: dict[str, Callable[..., None]] = {}  # "test_module::test_name" -> its reduced form
AS_IS: set[str] = set()  # scenarios that read no instrumentation
NEEDS: dict[str, str] = {}  # module -> what its scenarios without a form need
# skip reason of a module skipped at its shared guest -> the property line (this process)
_SKIPPED_MODULES: dict[str, str] = {}


def key(module: str, test: str) -> str:
    return f"{module}::{test}"


def reduced_form(module: str, test: str) -> Callable[[F], F]:
    """Register the decorated function as the reduced form of `module`'s `test`; it takes
    fixtures of the same names as the scenario."""

    def register(form: F) -> F:
        FORMS[key(module, test)] = form
        return form

    return register


def runs_as_is(module: str, test: str) -> None:
    AS_IS.add(key(module, test))


def module_needs(module: str, needs: str) -> None:
    NEEDS[module] = needs


def has_forms(module: str) -> bool:
    """Whether any scenario of `module` is judged (reduced or as it is) without the overlay."""
    return any(name.startswith(f"{module}::") for name in (*FORMS, *AS_IS))


def _module(node: pytest.Item | pytest.Collector) -> str:
    return node.path.stem if node.path else ""


def _revision(item: pytest.Item) -> Revision | None:
    params = getattr(getattr(item, "callspec", None), "params", {})
    return next((params[n] for n in REVISION_PARAMS if isinstance(params.get(n), Revision)), None)


def reduced_overlay(
    request: pytest.FixtureRequest, revision: Revision | None
) -> OverlayResult | None:
    """The overlay's failure for a hinting revision built without it, else None (the build
    is the pipeline's, memoised: a failed build raises its error here as it would anyway)."""
    if revision is None or not revision.hinting:
        return None
    result = request.getfixturevalue("pipeline").build(revision).overlay
    return result if result is not None and result.reduced else None


def skip_reason(module: str, overlay: OverlayResult, revision: str) -> str:
    return f"{SKIP_PREFIX}: needs {NEEDS.get(module, DEFAULT_NEEDS)}; {overlay.line(revision)}"


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest) -> None:
    """A shared guest of a module with no reduced form is not booted for a reduced
    revision: every scenario on it is skipped at once."""
    if fixturedef.argname not in SHARED_GUESTS:
        return
    module = _module(request.node)
    if has_forms(module):
        return
    param = next((name for name in fixturedef.argnames if name in REVISION_PARAMS), None)
    revision = request.getfixturevalue(param) if param else None
    overlay = reduced_overlay(request, revision)
    if overlay is not None and revision is not None:
        reason = skip_reason(module, overlay, revision.name)
        _SKIPPED_MODULES[reason] = overlay.line(revision.name)
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def _reduced_revision(request: pytest.FixtureRequest) -> None:
    """Mark a test of a reduced revision: stash the overlay's outcome for the call, and
    the JUnit property."""
    item = request.node
    revision = _revision(item)
    overlay = reduced_overlay(request, revision)
    if overlay is None or revision is None:
        return
    item.stash[REDUCED] = overlay
    item.user_properties.append((PROPERTY, overlay.line(revision.name)))


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """On a reduced revision, the scenario's reduced form instead of the scenario."""
    overlay = pyfuncitem.stash.get(REDUCED, None)
    if overlay is None:
        return None
    module = _module(pyfuncitem)
    name = key(module, pyfuncitem.originalname)
    if name in AS_IS:
        return None
    form = FORMS.get(name)
    if form is None:
        revision = _revision(pyfuncitem)
        pytest.skip(skip_reason(module, overlay, revision.name if revision else "?"))
    wanted = inspect.signature(form).parameters
    form(**{arg: pyfuncitem.funcargs[arg] for arg in wanted})
    return True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A scenario skipped with its module's shared guest carries the property too."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not report.skipped or not isinstance(report.longrepr, tuple):
        return
    reason = str(report.longrepr[2]).removeprefix("Skipped: ")
    line = _SKIPPED_MODULES.get(reason)
    if line is not None and all(name != PROPERTY for name, _ in item.user_properties):
        # the item's: pytest's JUnit takes a test's properties from its teardown report
        item.user_properties.append((PROPERTY, line))
        report.user_properties.append((PROPERTY, line))


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Once per reduced revision: the line naming the overlay patch and hunk, and how many
    of its scenarios were judged reduced or not judged."""
    tests: dict[str, tuple[str, bool]] = {}  # node id -> (line, skipped)
    for reports in terminalreporter.stats.values():
        for report in reports:
            line = next(
                (str(v) for n, v in getattr(report, "user_properties", ()) if n == PROPERTY), None
            )
            if line is not None and report.when != "teardown":
                skipped = report.skipped or tests.get(report.nodeid, ("", False))[1]
                tests[report.nodeid] = (line, skipped)
    if not tests:
        return
    terminalreporter.write_sep("-", "reduced verdicts (no instrumentation)")
    for line in dict.fromkeys(line for line, _ in tests.values()):
        skipped = sum(1 for held, gone in tests.values() if held == line and gone)
        judged = sum(1 for held, _ in tests.values() if held == line) - skipped
        terminalreporter.write_line(line)
        terminalreporter.write_line(f"  {judged} scenarios judged reduced, {skipped} not judged")
