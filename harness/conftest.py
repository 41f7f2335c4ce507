"""`pytest harness/` runs the scenario suite; its options, fixtures and hooks live in
harness/pytest_plugin/, loaded as a plugin."""

pytest_plugins = ["harness.pytest_plugin"]
