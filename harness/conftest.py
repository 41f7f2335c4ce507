"""`pytest harness/` runs the scenario suite; its options, fixtures and hooks live in
harness/plugin.py, loaded as a plugin."""

pytest_plugins = ["harness.plugin"]
