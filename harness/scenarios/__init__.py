"""The scenario suite: what `pytest harness/` runs against each revision."""
