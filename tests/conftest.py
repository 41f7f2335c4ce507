"""Fixtures shared by the harness's own tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.guest import image
from harness.guest.ssh import RunKey, generate_run_key

REPO = Path(__file__).resolve().parents[1]
# Subprocesses (pytest, python3 -m harness) import this checkout's harness, not the tree an
# editable install happens to point at.
os.environ["PYTHONPATH"] = os.pathsep.join(
    part for part in (str(REPO), os.environ.get("PYTHONPATH")) if part
)


@pytest.fixture(scope="module")
def run_key() -> RunKey:
    """A per-module SSH key pair, as a run of the suite makes one."""
    return generate_run_key()


@pytest.fixture(scope="module")
def run_initrd(tmp_path_factory: pytest.TempPathFactory, run_key: RunKey) -> Path:
    """The guest image (built once, cached by content) with the module's key."""
    base = image.build_image()
    return image.make_run_initrd(base, run_key.public_line, tmp_path_factory.mktemp("run"))


@pytest.fixture(autouse=True)
def _subprocesses_are_no_xdist_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under `pytest tests/ -n N` each worker has PYTEST_XDIST_WORKER set: a pytest session a
    test starts in a subprocess would inherit it and take itself for a worker of the suite
    (results/gw1/). Per test, not at import: pytest also imports this file in the scenario
    suite's xdist workers (a `test*` directory under the rootdir), which need it."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
