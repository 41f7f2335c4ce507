"""Parallel guests and sharded runs: per-worker ports and results, session data handed from
workers (or CI shards) to the reports, and `python3 -m harness report` merging shards."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from junitparser import JUnitXml
from xdist.scheduler.loadgroup import LoadGroupScheduling

from harness.core import workers as parallel
from harness.core.paths import REPO_ROOT
from harness.drive.workloads import ReleaseMeasurement
from harness.guest.ssh import pick_free_port
from harness.observe.rss import RssSample
from harness.pytest_plugin import fixtures, results, scheduling, stash
from harness.report.junit import ReportError, merge_shards
from harness.report.session_data import (
    SESSION_DATA_FILE,
    SessionData,
    gather_worker_data,
    read_session_data,
    write_session_data,
)
from tests.test_report import TINY, pytest_junit


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch):
    def become(name: str | None) -> None:
        if name is None:
            monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
        else:
            monkeypatch.setenv("PYTEST_XDIST_WORKER", name)

    return become


def test_each_worker_has_its_own_ports_and_results(worker, tmp_path: Path) -> None:
    worker(None)
    assert parallel.worker_port_range() is None
    assert parallel.own_results_dir(tmp_path) == tmp_path
    worker("gw0")
    first = parallel.worker_port_range()
    assert parallel.own_results_dir(tmp_path) == tmp_path / "gw0"
    worker("gw1")
    second = parallel.worker_port_range()
    assert parallel.own_results_dir(tmp_path) == tmp_path / "gw1"
    assert first is not None and second is not None
    assert not set(first) & set(second)
    assert second.stop <= 32768, "must stay below Linux's ephemeral ports"


def test_a_worker_picks_a_free_port_from_its_range_only(worker) -> None:
    worker("gw1")
    ports = parallel.worker_port_range()
    assert ports is not None
    picked = {pick_free_port() for _ in range(20)}
    assert picked <= set(ports)
    # A port held by someone else is never handed out.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", next(iter(picked))))
        holder.listen()
        held = holder.getsockname()[1]
        assert held not in {pick_free_port() for _ in range(200)}


def _measurement(label_rss: int) -> ReleaseMeasurement:
    samples = [RssSample(0.0, label_rss), RssSample(1.0, label_rss // 2)]
    return ReleaseMeasurement(1200, 100, label_rss, 0.5, label_rss // 2, 1.0, 2.5, samples)


def test_session_data_round_trips_and_workers_merge(tmp_path: Path) -> None:
    one = SessionData(
        measurements=[{"revision": "stock", "returned_bytes": 1}],
        release_series={"stock": _measurement(2000)},
        fault_rates={"stock": 100.0},
        time_spent={"make": 10.0, "boot": 2.0},
    )
    two = SessionData(
        measurements=[{"revision": "hinting-v2", "returned_bytes": 2}],
        release_series={"hinting-v2": _measurement(4000)},
        fault_rates={"hinting-v2": 90.0},
        time_spent={"make": 5.0, "boot": 3.0},
    )
    write_session_data(one, tmp_path / "gw0")
    write_session_data(two, tmp_path / "gw1")
    assert read_session_data(tmp_path / "gw0" / SESSION_DATA_FILE) == one
    merged = gather_worker_data(tmp_path)
    assert [m["revision"] for m in merged.measurements] == ["stock", "hinting-v2"]
    assert merged.release_series["hinting-v2"].samples[1] == RssSample(1.0, 2000)
    assert merged.fault_rates == {"stock": 100.0, "hinting-v2": 90.0}
    assert merged.time_spent == {"make": 15.0, "boot": 5.0}


def _shard(tmp_path: Path, name: str, revision: str, body: str) -> Path:
    shard = tmp_path / name
    shard.mkdir()
    pytest_junit(shard, name, body).rename(shard / "junit.xml")
    row = {"revision": revision, "returned_bytes": 1000 << 20, "seconds_to_90pct": 3.0}
    write_session_data(
        SessionData(measurements=[row], release_series={revision: _measurement(3000)}), shard
    )
    return shard


def test_shards_merge_into_one_junit_and_one_comparison(tmp_path: Path) -> None:
    shards = [
        _shard(tmp_path, "stock", "stock", TINY),
        _shard(tmp_path, "fixed", "hinting-v2-fixed", "def test_more():\n    pass\n"),
    ]
    out = tmp_path / "merged"
    merge_shards(shards, out)
    junit = JUnitXml.fromfile(str(out / "junit.xml"))
    assert (junit.tests, junit.failures, junit.errors) == (5, 1, 1)
    compare = (out / "compare.md").read_text()
    assert "stock" in compare and "hinting-v2-fixed" in compare
    assert (out / "compare-rss.png").is_file()
    lines = (out / "measurements.jsonl").read_text().splitlines()
    assert [json.loads(line)["revision"] for line in lines] == ["stock", "hinting-v2-fixed"]


def test_report_command_names_a_shard_without_results(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"no junit.xml in .*nothing"):
        merge_shards([tmp_path / "nothing"], tmp_path / "out")
    done = subprocess.run(
        [sys.executable, "-m", "harness", "report", str(tmp_path / "nothing"),
         "--results", str(tmp_path / "out")],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "no junit.xml in" in done.stderr and "nothing" in done.stderr


class FakeItem:
    """Just what the plugin's grouping reads of a pytest item."""

    def __init__(self, name: str, revision: str, fixture: str | None, module: str = "x") -> None:
        self.name = name
        self.fixturenames = ["revision", *([fixture] if fixture else [])]
        self.callspec = SimpleNamespace(params={"revision": SimpleNamespace(name=revision)})
        self.location = (f"harness/scenarios/test_{module}.py", len(name), name)
        self.marks: list[pytest.MarkDecorator] = []

    def add_marker(self, mark: pytest.MarkDecorator) -> None:
        self.marks.append(mark)

    def iter_markers(self, name: str) -> list[pytest.Mark]:
        return [m.mark for m in self.marks if m.name == name]


def test_tests_sharing_a_guest_are_one_xdist_group_per_module_and_revision() -> None:
    items = [
        FakeItem("a", "stock", "guest"),
        FakeItem("release", "stock", None),
        FakeItem("a", "hinting-v2", "guest"),
        FakeItem("b", "stock", "guest"),
        FakeItem("c", "hinting-v2", "guest", module="y"),
        FakeItem("b", "hinting-v2", "guest"),
    ]
    scheduling._group_by_revision(items, "guest")  # type: ignore[arg-type]
    groups = {(i.name, i.callspec.params["revision"].name): i.marks for i in items}
    assert groups[("release", "stock")] == []
    expected = {
        ("a", "stock"): "guest-x-stock",
        ("b", "stock"): "guest-x-stock",
        ("a", "hinting-v2"): "guest-x-hinting-v2",
        ("b", "hinting-v2"): "guest-x-hinting-v2",
        ("c", "hinting-v2"): "guest-y-hinting-v2",  # another module's guest: its own group
    }
    for (name, revision), group in expected.items():
        (mark,) = groups[(name, revision)]
        assert mark.name == "xdist_group" and mark.args == (group,)
        # the node id xdist's worker makes of it is scheduled as that group
        node_id = f"harness/scenarios/test_x.py::test_{name}[{revision}]@{mark.args[0]}"
        assert LoadGroupScheduling._split_scope(None, node_id) == mark.args[0]  # type: ignore[arg-type]
    # revision by revision, module by module, in definition order
    order = [(i.name, i.callspec.params["revision"].name) for i in items]
    assert order == [
        ("a", "stock"), ("release", "stock"), ("b", "stock"), ("a", "hinting-v2"),
        ("b", "hinting-v2"), ("c", "hinting-v2"),
    ]  # fmt: skip


def test_single_guest_scenarios_join_their_revisions_guest_groups() -> None:
    """Under two workers (the main job) each revision's groups take about as long: the
    negative control joins the detection guest's group, two zones the batches-out one, the
    release the lifecycle one; only when that group runs (stock has no batches-out guest)."""
    items = [
        FakeItem("test_boot", "v2", "guest", module="detection"),
        FakeItem("test_slow", "v2", "guest", module="batches_out"),
        FakeItem("test_oom", "v2", "lifecycle_guest", module="lifecycle"),
        FakeItem("test_negative_control_feature_off", "v2", None, module="release"),
        FakeItem("test_two_zones", "v2", None, module="detection"),
        FakeItem("test_release_returns_memory_to_host", "v2", None, module="release"),
        FakeItem("test_two_zones", "stock", None, module="detection"),
        FakeItem("test_kconfig_has_the_mechanism", "v2", None, module="build"),
    ]
    scheduling._group_by_revision(items, "guest")  # type: ignore[arg-type]
    scheduling._group_by_revision(items, "lifecycle_guest")  # type: ignore[arg-type]
    scheduling._join_guest_groups(items)  # type: ignore[arg-type]
    groups = {(i.name, i.callspec.params["revision"].name): [m.args[0] for m in i.marks]
              for i in items}  # fmt: skip
    assert groups[("test_negative_control_feature_off", "v2")] == ["guest-detection-v2"]
    assert groups[("test_two_zones", "v2")] == ["guest-batches_out-v2"]
    assert groups[("test_release_returns_memory_to_host", "v2")] == ["lifecycle_guest-lifecycle-v2"]
    assert groups[("test_two_zones", "stock")] == []
    assert groups[("test_kconfig_has_the_mechanism", "v2")] == []


def test_the_controller_hands_out_work_in_the_suites_order(tmp_path: Path) -> None:
    """loadgroup, without xdist's "most tests first" reordering (it put the debug
    scenarios after every guest group)."""
    config = pytest.Config.fromdictargs({}, [])  # type: ignore[attr-defined]
    config.option.xmlpath = str(tmp_path / "junit.xml")
    config.option.numprocesses = 2
    config.option.dist = "no"
    config.option.loadscopereorder = True
    results.pytest_configure(config)
    assert config.option.dist == "loadgroup"
    assert config.option.loadscopereorder is False


def test_a_worker_tags_groups_even_when_only_n_was_given() -> None:
    """An xdist worker parses `-n 2` again and sees --dist "no"; it must still tag the
    groups, or the controller's loadgroup scheduling splits a shared guest's tests."""
    config = pytest.Config.fromdictargs({}, [])  # type: ignore[attr-defined]
    config.workerinput = {"workerid": "gw0"}  # type: ignore[attr-defined]
    config.option.xmlpath = "/dev/null"
    config.option.dist = "no"
    results.pytest_configure(config)
    assert config.option.loadgroup is True


class FakeConfig:
    """What prebuild_kernels reads of a pytest config: the harness's options."""

    def __init__(self, **options: object) -> None:
        self.options = {"--kconfig": [], "--series": [], **options}

    def getoption(self, name: str) -> object:
        return self.options[name]


def test_prebuild_builds_the_whole_matrix_in_order_and_leaves_failures_to_the_workers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    built: list[str] = []

    class FakePipeline:
        def build(self, revision) -> None:
            built.append(revision.name)
            if revision.name == "hinting-v2+debug":
                raise scheduling.HarnessError("make failed", "see the log")

    monkeypatch.setattr(scheduling, "pipeline_from_options", lambda config: FakePipeline())
    config = FakeConfig(**{"--revisions": "stock,hinting-v2", "--debug-revisions": "hinting-v2"})
    seconds, failures = scheduling.prebuild_kernels(config)  # type: ignore[arg-type]
    assert built == ["stock", "hinting-v2", "hinting-v2+debug"]
    assert seconds >= 0
    assert "build of hinting-v2+debug failed" in caplog.text and "make failed" in caplog.text
    expected = {"type": "HarnessError", "message": "make failed", "hint": "see the log"}
    assert failures == {"hinting-v2+debug": expected}


def test_a_worker_raises_the_controllers_build_failure_instead_of_building(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every use of the revision's kernel in the worker (built_kernel, a guest) raises the
    controller's error; the build itself is never tried."""
    from harness.build.revisions import resolve
    from harness.core.errors import KconfigError
    from harness.pipeline import Pipeline

    def no_build(request):  # pragma: no cover - must not be called
        raise AssertionError("built again")

    monkeypatch.setattr("harness.pipeline.build.build_kernel", no_build)
    failed = {"type": "KconfigError", "message": "CONFIG_X dropped", "hint": "fix the fragment"}
    config = FakeConfig(**{"--kernel-source": None, "--accel": "tcg", "--guest-mem": 2048,
                           "--jobs": 3})  # fmt: skip
    config.workerinput = {stash.PREBUILD_FAILURES_KEY: {"stock": failed}}  # type: ignore[attr-defined]
    pipeline = fixtures.pipeline.__wrapped__(config)  # type: ignore[attr-defined]
    assert isinstance(pipeline, Pipeline)
    for _ in range(2):
        with pytest.raises(KconfigError, match="CONFIG_X dropped") as raised:
            pipeline.build(resolve("stock"))
        assert raised.value.hint == "fix the fragment"
    # a class name that is no harness error (a tampered workerinput) is a plain HarnessError
    odd = scheduling.build_failure({"type": "SystemExit", "message": "m", "hint": "h"})
    assert type(odd) is scheduling.HarnessError


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], ["-n", "auto"]),
        (["-n", "0"], []),
        (["-n4"], []),
        (["--numprocesses=3"], []),
        (["-p", "no:xdist"], []),
        (["--revisions", "stock"], ["-n", "auto"]),
    ],
)
def test_run_leaves_the_worker_count_to_xdist_unless_told(
    args: list[str], expected: list[str]
) -> None:
    from harness.cli import default_workers

    assert default_workers(args) == expected


GIB_KIB = 1024 * 1024


@pytest.mark.parametrize(
    ("debug_revisions", "cpus", "available_gib", "workers"),
    [
        ("hinting-v2", 2, 20, 2),
        ("hinting-v2", 8, 20, 2),
        ("", 2, 20, 5),
        ("", 2, 10, 3),  # three 3 GiB guests fit
        ("", 2, 4, 2),
        ("hinting-v2", 1, 20, 0),
        ("", None, 20, 0),
    ],
)
def test_auto_workers_follow_the_guests_and_the_memory(
    monkeypatch: pytest.MonkeyPatch,
    debug_revisions: str,
    cpus: int | None,
    available_gib: int,
    workers: int,
) -> None:
    """xdist's hook: two TCG guests on two cores; without the 2-vCPU debug guests one per
    guest group (five), as many as the host's available memory holds at 3 GiB each;
    serial on one CPU."""
    monkeypatch.setattr(scheduling.os, "cpu_count", lambda: cpus)
    monkeypatch.setattr(scheduling, "available_memory_kib", lambda: available_gib * GIB_KIB)
    config = FakeConfig(**{"--debug-revisions": debug_revisions, "--kconfig": []})
    assert scheduling.pytest_xdist_auto_num_workers(config) == workers  # type: ignore[arg-type]


def test_run_loads_only_xdist_and_its_own_plugin() -> None:
    from harness.cli import suite_plugins

    env: dict[str, str] = {}
    assert suite_plugins([], env) == ["-p", "xdist"]
    assert env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] == "1"  # inherited by the workers
    assert suite_plugins(["-p", "no:xdist"], {}) == []
    chosen = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "0"}
    assert suite_plugins([], chosen) == [] and chosen["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] == "0"


@pytest.mark.parametrize(
    ("args", "option", "whole"),
    [
        (["/repo/harness"], {}, True),
        (["/repo/harness"], {"keyword": "release"}, False),
        (["/repo/harness"], {"markexpr": "hinting"}, False),
        (["/repo/harness"], {"collectonly": True}, False),
        (["/repo/harness", "harness/scenarios/test_release.py"], {}, False),
        (["/repo/harness/scenarios/test_debug.py::test_x"], {}, False),
    ],
)
def test_prebuild_only_when_the_whole_suite_runs(
    args: list[str], option: dict, whole: bool
) -> None:
    """With a selection the controller cannot know which kernels are needed (it does not
    collect under xdist): then the workers build what their scenarios use."""
    options = {"collectonly": False, "keyword": "", "markexpr": "", **option}
    config = SimpleNamespace(args=args, option=SimpleNamespace(**options))
    assert results.runs_the_whole_suite(config) is whole  # type: ignore[arg-type]
