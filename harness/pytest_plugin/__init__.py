"""pytest plugin behind `pytest harness/` (loaded by harness/conftest.py).

The scenario suite in harness/scenarios/ asks for `pipeline`, `revision` (parametrised
from --revisions), `evidence` (a per-test results directory) and `judged` (where each
verdict is recorded as data), and gets cached builds and fresh VMs. The modules:

stash.py       what the modules share (pytest's stash, xdist's workerinput)
options.py     command-line options, the revisions they select, parametrisation
scheduling.py  guest groups on one xdist worker, worker count, kernels built first
outcomes.py    verdicts as data; infrastructure faults as errors; a panic or hang a check
fixtures.py    pipeline, built kernels, guest factory, evidence, `judged`
results.py     the run's own directory, time breakdown, session-end reports
disk_full.py   a full disk (cache or results): one message, no traceback, the session stops
reduced.py     a revision the instrumentation overlay did not apply to: reduced forms, skips
first_failure.py  the first failing check, printed when it fails (not only at the end)
"""

pytest_plugins = [
    "harness.pytest_plugin.options",
    "harness.pytest_plugin.scheduling",
    "harness.pytest_plugin.outcomes",
    "harness.pytest_plugin.fixtures",
    "harness.pytest_plugin.results",
    "harness.pytest_plugin.disk_full",
    "harness.pytest_plugin.reduced",
    "harness.pytest_plugin.first_failure",
]
