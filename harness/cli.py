"""Command line: `python -m harness build|boot|run`.

build  build one revision's kernel (cached) and print where the bzImage is
boot   build, boot it in QEMU, print the ssh command, and keep it up until Ctrl-C
run    the scenario suite (`pytest harness/` with the same options; two workers by default)
mutants  the mutant campaign: the suite on each seeded defect of patches/mutants/
bisect   the first patch of a series at which the verdict turns red, and the failing check
coverage the suite on a revision's coverage flavour, and which lines its series changes ran
report   merge the results of several runs (CI shards) into one junit.xml and compare.md
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import shlex
import signal
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

from harness.build.revisions import DEFAULT_SERIES, resolve
from harness.core import diskspace
from harness.core.errors import HarnessError
from harness.core.paths import REPO_ROOT, cache_dir, cache_root, default_results_dir
from harness.pipeline import Pipeline, ssh_command

WATCH_SECONDS = 0.5  # how often `boot` checks that its QEMU is still there
BOOT_HOTPLUG_MIB = 2048  # room for pc-dimms a person adds over QMP


def _revision(args: argparse.Namespace):
    rev = resolve(args.revision)
    extra = tuple(Path(p).resolve() for p in args.kconfig)
    rev = rev.with_extra_fragments(extra)
    return rev.with_debug() if args.debug else rev


def _pipeline(args: argparse.Namespace) -> Pipeline:
    tree = Path(args.kernel_source).resolve() if args.kernel_source else None
    return Pipeline(
        kernel_tree=tree,
        accel_request=getattr(args, "accel", "auto"),
        memory_mib=getattr(args, "guest_mem", 2048),
        jobs=args.jobs,
    )


def cmd_build(args: argparse.Namespace) -> int:
    revision = _revision(args)
    result = _pipeline(args).build(revision)
    print(f"bzImage: {result.bzimage}\nconfig:  {result.config}\nlog:     {result.log}")
    if result.overlay is not None:
        print(f"overlay: {result.overlay.line(revision.name)}")
    return 0


def cmd_boot(args: argparse.Namespace) -> int:
    pipeline = _pipeline(args)
    rev = _revision(args)
    workdir = Path(tempfile.mkdtemp(prefix="boot-", dir=cache_dir("runs")))
    guest = pipeline.guest(
        rev,
        workdir,
        free_page_reporting=not args.no_reporting,
        hotplug_mib=BOOT_HOTPLUG_MIB,
        keep_key_file=True,
    )
    with guest as vm:
        print(f"{rev.name} is up (QEMU pid {vm.pid}, console log {vm.console_log}).")
        print("ssh command:\n  " + ssh_command(vm))
        if args.qmp:
            print(f"QMP socket (one client at a time): {vm.paths.qmp_socket}")
        print("Ctrl-C to shut it down.", flush=True)
        try:
            death = None
            while death is None:
                death = vm.wait_for_exit(WATCH_SECONDS)
        except KeyboardInterrupt:
            print("\nshutting down")
            return 0
        tail = vm.console_tail(15)
    print(f"error: QEMU (pid {vm.pid}) {death}\n--- console (tail) ---\n{tail}", file=sys.stderr)
    print(f"  -> console log: {vm.console_log}; QEMU log: {vm.paths.qemu_log}", file=sys.stderr)
    return 1


def default_workers(pytest_args: list[str]) -> list[str]:
    """`-n auto` unless the user chose (`-n N`, `-n 0` for serial, `-p no:xdist`): xdist
    then asks the suite's plugin how many workers (harness/pytest_plugin/scheduling.py
    `pytest_xdist_auto_num_workers`); the kernels are built before the workers start."""
    chosen = any(a == "no:xdist" or a.startswith(("-n", "--numprocesses")) for a in pytest_args)
    return [] if chosen else ["-n", "auto"]


def cmd_run(args: argparse.Namespace, pytest_args: list[str]) -> int:
    import pytest

    workers = default_workers(pytest_args)
    argv = [str(REPO_ROOT / "harness"), "-p", "no:cacheprovider", "-v", *workers, *pytest_args]
    return int(pytest.main([*suite_plugins(pytest_args, os.environ), *argv]))


def suite_plugins(pytest_args: list[str], env: MutableMapping[str, str]) -> list[str]:
    """The scenario suite needs only xdist besides its own plugin (harness/conftest.py):
    other installed plugins (hypothesis, pytest-benchmark: the harness's own tests use
    them) are not autoloaded, which saves ~0.9 s in the controller and in each worker
    (the workers inherit the environment). A user who set PYTEST_DISABLE_PLUGIN_AUTOLOAD
    keeps their choice."""
    if env.setdefault("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1") != "1":
        return []
    return [] if "no:xdist" in pytest_args else ["-p", "xdist"]


def cmd_coverage(args: argparse.Namespace, pytest_args: list[str]) -> int:
    """The scenario suite on the coverage flavour of one revision (and, with --debug, its
    debug flavour too), then the patch coverage report from the guests' counters."""
    import pytest

    from harness.report import coverage as report

    spec = str(Path(args.series).resolve()) if args.series else args.revision
    revision = resolve(spec).with_coverage()
    if revision.series is None:
        raise HarnessError(
            f"{revision.name} carries no series: there are no changed lines to cover",
            "pass --revision hinting-v2, hinting-v2-fixed, or --series PATH",
        )
    label = re.sub(r"[^A-Za-z0-9_.+-]+", "_", revision.name.removeprefix("user:"))
    results = Path(args.results or REPO_ROOT / "results" / f"coverage-{label}").resolve()
    suite = [
        "--revisions", f"{spec}+coverage",
        "--debug-revisions", f"{spec}+coverage" if args.debug else "",
        "--results", str(results),
    ]  # fmt: skip
    workers = default_workers([*suite, *pytest_args])
    argv = [str(REPO_ROOT / "harness"), "-p", "no:cacheprovider", "-v", *workers]
    code = int(pytest.main([*suite_plugins(pytest_args, os.environ), *argv, *suite, *pytest_args]))
    collections = report.find_collections(results)
    if not collections:
        print(f"error: no coverage counters under {results} (did a scenario run?)", file=sys.stderr)
        return code or 1
    result = report.build_report(revision.name, collections, results)
    _rewrite_run_pages(results, revision.series)  # now with the coverage total
    print(f"{result.total_line()}\nreport: {results / 'coverage.md'}  "
          f"Cobertura: {results / 'coverage.xml'}")  # fmt: skip
    return code


def _rewrite_run_pages(run: Path, series: Path | None) -> None:
    from harness.pipeline import tested_with
    from harness.report.index_page import write_index
    from harness.report.reply import write_reply

    write_reply(run, tested_with(Pipeline(), series))
    write_index(run)


def cmd_mutants(args: argparse.Namespace) -> int:
    from harness.campaigns import mutants

    results = Path(args.results).resolve()
    results.mkdir(parents=True, exist_ok=True)
    code = mutants.campaign(args.only, results, include_clean=not args.no_clean)
    print(f"report: {results / 'mutants.md'}  JUnit: {results / 'mutants-junit.xml'}")
    return code


def cmd_bisect(args: argparse.Namespace, pytest_args: list[str]) -> int:
    """Build every prefix of the series, then search for the first red one with the suite
    (harness/campaigns/bisect.py): exit 1 when a first bad patch is found, 0 when the series
    passes."""
    from harness.campaigns import bisect
    from harness.report import rundir

    series_path = Path(args.series).expanduser().resolve()
    series = bisect.load_checked(series_path, args.good)  # bad input: before any directory
    results = rundir.claim(rundir.plan(args.results, default_results_dir() / "bisect")).path
    request = bisect.Request(
        series=series_path,
        results=results,
        good=args.good,
        pytest_args=tuple(pytest_args),
        kernel_source=Path(args.kernel_source).resolve() if args.kernel_source else None,
        kconfig=tuple(Path(p).resolve() for p in args.kconfig),
        jobs=args.jobs,
    )
    return bisect.exit_code(bisect.run(request, series, lambda line: print(line, flush=True)))


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report import junit as report
    from harness.report import rundir

    out = Path(args.results).resolve()
    shards = [rundir.resolve_run(Path(s).resolve()) for s in args.shards]
    data = report.merge_shards(shards, out)
    print(
        f"merged {len(shards)} runs ({len(data.measurements)} release measurements): "
        f"{out / 'junit.xml'}, {out / 'compare.md'}"
    )
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kernel-source", metavar="PATH", help="kernel tree (default: Debian's linux-source-6.1)"
    )
    p.add_argument(
        "--revision",
        default=DEFAULT_SERIES.name,
        help="stock | hinting-v2 | hinting-v2-fixed | PATH to a series or mbox "
        f"(default {DEFAULT_SERIES.name})",
    )
    p.add_argument(
        "--kconfig",
        action="append",
        default=[],
        metavar="FRAGMENT",
        help="extra kconfig fragment; repeatable",
    )
    p.add_argument("--debug", action="store_true", help="add kconfigs/debug.config")
    p.add_argument("--jobs", type=int, default=3)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m harness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", required=True)
    _common(sub.add_parser("build", help="build a revision's kernel"))
    boot = sub.add_parser("boot", help="boot a revision and print the ssh command")
    _common(boot)
    boot.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    boot.add_argument("--guest-mem", type=int, default=2048)
    boot.add_argument(
        "--no-reporting", action="store_true", help="free-page-reporting=off on the balloon"
    )
    boot.add_argument(
        "--qmp", action="store_true", help="print the QMP socket path, to drive QEMU by hand"
    )
    sub.add_parser(
        "run",
        help="run the scenario suite; other arguments go to pytest "
        "(e.g. --revisions stock --series DIR --results DIR)",
    )
    coverage = sub.add_parser(
        "coverage",
        help="the suite on a revision's coverage flavour (kernel GCOV), then which lines the "
        "series changes ran: coverage.md, coverage.xml (Cobertura); other arguments go to pytest",
    )
    which = coverage.add_mutually_exclusive_group()
    which.add_argument("--revision", default="hinting-v2-fixed", help="a built-in revision")
    which.add_argument("--series", metavar="PATH", help="a user's series (dir or mbox)")
    coverage.add_argument(
        "--debug", action="store_true", help="also run the debug scenarios (coverage+debug)"
    )
    coverage.add_argument("--results", metavar="DIR", help="default: results/coverage-<revision>")
    mutants = sub.add_parser(
        "mutants", help="run the suite on each seeded defect; non-zero if one is missed"
    )
    mutants.add_argument("--only", nargs="+", default=[], metavar="ID", help="mutant ids")
    mutants.add_argument(
        "--no-clean", action="store_true", help="skip the clean hinting-v2-fixed run"
    )
    mutants.add_argument("--results", default="results", metavar="DIR")
    bisect = sub.add_parser(
        "bisect",
        help="the first patch of a series at which the suite turns red (each prefix built, "
        "then judged by binary search); other arguments go to pytest (e.g. -k detection)",
    )
    bisect.add_argument("--series", required=True, metavar="PATH", help="dir or mbox")
    bisect.add_argument(
        "--good", type=int, default=0, metavar="N",
        help="the first N patches are known good (default 0: the base kernel)",
    )  # fmt: skip
    bisect.add_argument("--results", metavar="DIR", help="default: results/bisect/<stamp>/")
    bisect.add_argument("--kernel-source", metavar="PATH", help="default: linux-source-6.1")
    bisect.add_argument(
        "--kconfig", action="append", default=[], metavar="FRAGMENT",
        help="extra kconfig fragment; repeatable",
    )  # fmt: skip
    bisect.add_argument("--jobs", type=int, default=3)
    merge = sub.add_parser(
        "report", help="merge the results directories of several runs (e.g. CI shards)"
    )
    merge.add_argument("shards", nargs="+", metavar="RESULTS_DIR")
    merge.add_argument("--results", default="results", metavar="DIR", help="where to write")
    return top


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (a CI runner's cancel, `kill`) unwinds like Ctrl-C: the cleanup on every path
    then stops make and QEMU instead of leaving them running."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args, rest = parser().parse_known_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args, rest)
        if args.command == "coverage":
            return cmd_coverage(args, rest)
        if args.command == "bisect":
            return cmd_bisect(args, rest)
        if rest:
            parser().error("unrecognised arguments: " + shlex.join(rest))
        commands = {
            "build": cmd_build,
            "boot": cmd_boot,
            "mutants": cmd_mutants,
            "report": cmd_report,
        }
        return commands[args.command](args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"error: {diskspace.from_os_error(exc, cache_root())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
