"""The pipeline a scenario stands on: source -> series -> kconfig -> build -> image -> VM.

Each step is cached, so asking for the same revision twice costs only the cache look-up.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.build import gcov_objects as coverage_objects
from harness.build import kernel as build
from harness.build import overlay as instrumentation
from harness.build import source
from harness.build.revisions import STOCK, Revision
from harness.build.series import load_series
from harness.core.errors import HarnessError
from harness.core.host import describe_host
from harness.guest import accel, image
from harness.guest.cmdline import VMConfig, qemu_binary_version
from harness.guest.session import Guest
from harness.guest.ssh import GuestSSH, generate_run_key
from harness.guest.vm import GuestVM
from harness.observe.gcov import collect, next_collection
from harness.report.reply import ReplyContext

log = logging.getLogger("harness")

# `Pipeline.guest` as the scenarios get it (the `new_guest` fixture): revision, workdir and
# options in, a not-yet-started Guest out.
GuestFactory = Callable[..., Guest]

# Debug kernels boot with a second vCPU (ACPI's MADT lists it: kconfigs/base.config), so that
# lockdep and KASAN see the worker and the workloads run concurrently.
DEBUG_SMP = 2


@dataclass
class Pipeline:
    """Builds revisions and boots guests, memoising everything for one run."""

    kernel_tree: Path | None = None  # None: Debian's linux-source-6.1
    accel_request: str = "auto"
    memory_mib: int = 2048
    smp: int = 1  # release guests: one vCPU keeps the model's predictions exact
    jobs: int = 3
    _source: source.KernelSource | None = None
    _builds: dict[str, build.BuildResult] = field(default_factory=dict)
    # A failed build is remembered too: asked again, the same error comes back at once.
    _failed_builds: dict[str, HarnessError] = field(default_factory=dict)
    _image: image.GuestImage | None = None
    _accel: str | None = None

    @property
    def source(self) -> source.KernelSource:
        if self._source is None:
            self._source = source.obtain_source(self.kernel_tree)
        return self._source

    def remember_failure(self, revision_name: str, error: HarnessError) -> None:
        """Raise `error` for this revision from now on instead of building it (an xdist
        worker is told which builds failed in the controller)."""
        self._failed_builds[revision_name] = error

    def build(self, revision: Revision) -> build.BuildResult:
        if revision.name in self._failed_builds:
            raise self._failed_builds[revision.name]
        if revision.name not in self._builds:
            try:
                request = build.BuildRequest(
                    source=self.source,
                    series=load_series(revision.series),
                    fragments=revision.fragments,
                    jobs=self.jobs,
                    overlay=instrumentation.for_revision(revision),
                )
                result = build.build_kernel(request)
            except HarnessError as error:
                self._failed_builds[revision.name] = error
                raise
            if result.overlay is not None and result.overlay.reduced:
                log.warning("%s", result.overlay.line(revision.name))  # the run's one line
            self._builds[revision.name] = result
        return self._builds[revision.name]

    @property
    def image(self) -> image.GuestImage:
        if self._image is None:
            self._image = image.build_image()
        return self._image

    @property
    def accel(self) -> str:
        """ "kvm" or "tcg", probed once (no kernel of any revision needed: accel.py)."""
        if self._accel is None:
            self._accel = accel.select_accel(self.accel_request)
        return self._accel

    def guest(
        self,
        revision: Revision,
        workdir: Path,
        *,
        balloon: bool = True,
        free_page_reporting: bool = True,
        balloon_page_poison: bool = True,
        extra_cmdline: str = "",
        boot_timeout: float = 60.0,
        memory_mib: int | None = None,
        smp: int | None = None,
        hotplug_mib: int = 0,
        keep_key_file: bool = False,
    ) -> Guest:
        """A not-yet-started guest (VM + SSH) of `revision`; use it as a context manager."""
        kernel = self.build(revision).bzimage
        key = generate_run_key()
        run_initrd = image.make_run_initrd(self.image, key.public_line, workdir)
        if keep_key_file:  # for a person's `ssh -i` (never in a results directory)
            key.private.write_private_key_file(str(workdir / "ssh_key"))
        config = VMConfig(
            kernel=kernel,
            initrd=run_initrd,
            workdir=workdir,
            memory_mib=memory_mib or self.memory_mib,
            smp=smp or (DEBUG_SMP if revision.debug else self.smp),
            accel=self.accel,
            balloon=balloon,
            free_page_reporting=free_page_reporting,
            balloon_page_poison=balloon_page_poison,
            extra_cmdline=extra_cmdline,
            boot_timeout=boot_timeout,
            hotplug_mib=hotplug_mib,
        )
        return Guest(GuestVM(config), key.private, coverage_collector(kernel, workdir))


def tested_with(pipeline: Pipeline, series: Path | None) -> ReplyContext:
    """What a run's reply says was tested: the series, the base kernel, QEMU, the
    accelerator and the host (each left empty when it cannot be told: the reply is still
    written)."""

    def quietly(read: Callable[[], str]) -> str:
        try:
            return read()
        except (OSError, HarnessError, ValueError):
            return ""

    return ReplyContext(
        series=series,
        base_kernel=quietly(lambda: pipeline.source.version),
        qemu=quietly(qemu_binary_version),
        accel=quietly(lambda: pipeline.accel),
        host=quietly(describe_host),
    )


def coverage_collector(kernel: Path, workdir: Path) -> Callable[[GuestSSH], None] | None:
    """For a coverage kernel (its build keeps a gcov bundle): read the guest's counters
    into workdir/gcov-N/ before each shutdown or reset."""
    bundle = kernel.parent / coverage_objects.BUNDLE
    if not bundle.is_dir():
        return None

    def read_counters(ssh: GuestSSH) -> None:
        collect(ssh, bundle, next_collection(workdir))

    return read_counters


def ssh_command(vm: Guest | GuestVM) -> str:
    """What a person pastes to log into the guest."""
    key = vm.config.workdir / "ssh_key"
    return (
        f"ssh -i {key} -p {vm.ssh_port} -o StrictHostKeyChecking=no "
        "-o UserKnownHostsFile=/dev/null root@127.0.0.1"
    )


def stock_kernel() -> Path:
    """The stock 6.1 guest kernel, built (or taken from the build cache) on first use.

    The harness's own real-VM tests boot this. `PHH_TEST_KERNEL` points them at another
    bzImage instead (e.g. one built by hand).
    """
    override = os.environ.get("PHH_TEST_KERNEL")
    if override:
        return Path(override)
    return _stock_pipeline().build(STOCK).bzimage


@functools.cache
def _stock_pipeline() -> Pipeline:
    return Pipeline()
