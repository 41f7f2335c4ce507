"""`pytest harness/` runs the scenario suite; its options, fixtures and hooks live in
harness/pytest_plugin/, loaded as a plugin, and the scenarios' reduced forms (for a revision
built without the instrumentation overlay) in harness/scenarios/reduced.py."""

pytest_plugins = ["harness.pytest_plugin", "harness.scenarios.reduced"]
