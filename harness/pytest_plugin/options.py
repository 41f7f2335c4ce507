"""The suite's command-line options, the revisions they select, and the pipeline they
describe; scenarios are parametrised from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.build.revisions import Revision, resolve
from harness.pipeline import Pipeline

DEFAULT_REVISIONS = "stock,hinting-v2,hinting-v2-fixed"


DEFAULT_DEBUG_REVISIONS = "hinting-v2,hinting-v2-fixed"


# The parameters a scenario takes its kernel from: release revisions, debug revisions, and
# the hinting revisions in both flavours.
REVISION_PARAMS = ("revision", "debug_revision", "hinting_revision")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "page hinting harness")
    group.addoption(
        "--kernel-source",
        default=None,
        metavar="PATH",
        help="kernel tree to build (default: Debian's linux-source-6.1)",
    )
    group.addoption(
        "--series",
        action="append",
        default=[],
        metavar="PATH",
        help="a user's series (quilt dir, dir of *.patch, or mbox) to validate "
        "beside the built-in revisions; repeatable",
    )
    group.addoption(
        "--revisions",
        default=DEFAULT_REVISIONS,
        metavar="LIST",
        help=f"comma-separated revisions to validate (default: {DEFAULT_REVISIONS})",
    )
    group.addoption(
        "--debug-revisions",
        default=DEFAULT_DEBUG_REVISIONS,
        metavar="LIST",
        help="revisions also built with kconfigs/debug.config ('' for none)",
    )
    group.addoption(
        "--kconfig",
        action="append",
        default=[],
        metavar="FRAGMENT",
        help="extra kconfig fragment merged after the revision's own; repeatable",
    )
    group.addoption(
        "--accel",
        default="auto",
        choices=("auto", "kvm", "tcg"),
        help="QEMU accelerator (auto: prove KVM by booting, else TCG)",
    )
    group.addoption(
        "--guest-mem",
        type=int,
        default=2048,
        metavar="MIB",
        help="guest memory in MiB (default 2048)",
    )
    group.addoption(
        "--release-mib",
        type=int,
        default=1200,
        metavar="MIB",
        help="memory the release workload allocates and frees (default 1200)",
    )
    group.addoption(
        "--results", default=None, metavar="DIR", help="results directory (default: ./results)"
    )
    group.addoption("--jobs", type=int, default=3, help="make -j for kernel builds")


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def selected_revisions(config: pytest.Config) -> list[Revision]:
    extra = tuple(Path(p).resolve() for p in config.getoption("--kconfig"))
    revs = [resolve(name) for name in _split(config.getoption("--revisions"))]
    revs += [resolve(str(Path(p).resolve())) for p in config.getoption("--series")]
    return [r.with_extra_fragments(extra) for r in revs]


def selected_debug_revisions(config: pytest.Config) -> list[Revision]:
    extra = tuple(Path(p).resolve() for p in config.getoption("--kconfig"))
    names = _split(config.getoption("--debug-revisions"))
    return [resolve(name).with_debug().with_extra_fragments(extra) for name in names]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "revision" in metafunc.fixturenames:
        revs = selected_revisions(metafunc.config)
        hinting_only = metafunc.definition.get_closest_marker("hinting") is not None
        if hinting_only:
            revs = [r for r in revs if r.hinting]
        metafunc.parametrize("revision", revs, ids=[r.name for r in revs], scope="session")
    if "debug_revision" in metafunc.fixturenames:
        revs = selected_debug_revisions(metafunc.config)
        metafunc.parametrize("debug_revision", revs, ids=[r.name for r in revs], scope="session")
    if "hinting_revision" in metafunc.fixturenames:
        # scenarios judged on the release and the debug kernels of the hinting revisions
        revs = [r for r in selected_revisions(metafunc.config) if r.hinting]
        revs += [r for r in selected_debug_revisions(metafunc.config) if r.hinting]
        metafunc.parametrize("hinting_revision", revs, ids=[r.name for r in revs], scope="session")


def pipeline_from_options(config: pytest.Config) -> Pipeline:
    tree = config.getoption("--kernel-source")
    return Pipeline(
        kernel_tree=Path(tree).resolve() if tree else None,
        accel_request=config.getoption("--accel"),
        memory_mib=config.getoption("--guest-mem"),
        jobs=config.getoption("--jobs"),
    )
