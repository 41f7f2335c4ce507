"""Errors from other tools (harness.core.tools): the explaining lines, the log, a fitting hint."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.build import source
from harness.core.errors import BuildError, DiskFull
from harness.core.tools import explaining_lines, hint_for, run_logged, tool_failure

TAR_FULL = (
    "".join(
        f"tar: linux-source-6.1/drivers/f{i}.c: Cannot write: No space left on device\n"
        for i in range(300)
    )
    + "tar: Exiting with failure status due to previous errors\n"
)


def test_repeated_errors_are_folded_and_the_disk_is_named(tmp_path: Path) -> None:
    lines = explaining_lines(TAR_FULL)
    assert lines[0].endswith("No space left on device  (300 lines like this)")
    assert len(lines) == 2
    hint = hint_for(TAR_FULL, tmp_path, "delete the package")
    assert hint.startswith("the disk is full") and str(tmp_path) in hint
    assert hint_for("xz: (stdin): Compressed data is corrupt", tmp_path, "delete the package") == (
        "delete the package"
    )


def test_a_failing_tool_is_logged_whole_and_summed_up(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "tool.log"
    script = f"printf '%s' \"{TAR_FULL}\" >&2; exit 2"
    result = run_logged(script, log, shell=True)
    error = tool_failure(BuildError, "unpacking x.deb", result, log, tmp_path, "delete x.deb")
    assert log.read_text().count("No space left on device") == 300
    assert len(str(error).splitlines()) < 10
    assert "(300 lines like this)" in error.message and str(log) in error.message
    assert isinstance(error, DiskFull)  # not the tool's input: the disk
    assert error.message.startswith(f"no space left on the file system of {tmp_path} (")
    assert "PHH_CACHE" in error.hint


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mountpoint = tmp_path / "full"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mountpoint)],
                   check=True)  # fmt: skip
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=False)


@pytest.mark.real
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_real_unpack_on_a_full_disk_names_the_disk(tmp_path: Path, small_tmpfs: Path) -> None:
    """A linux-source package unpacked onto a file system that fills up: a few lines and
    a hint about the disk, not hundreds of tar lines and a hint to download again."""
    tree = tmp_path / "pkg" / source.TREE_DIRNAME
    for index in range(200):  # 200 x 32 KiB of zeroes: a tiny .tar.xz, 6 MiB unpacked
        (tree / f"dir{index}").mkdir(parents=True)
        (tree / f"dir{index}" / "file.c").write_bytes(bytes(32 << 10))
    usr_src = tmp_path / "deb" / "usr" / "src"
    usr_src.mkdir(parents=True)
    subprocess.run(["tar", "-cJf", str(usr_src / f"{source.TREE_DIRNAME}.tar.xz"), "-C",
                    str(tree.parent), source.TREE_DIRNAME], check=True)  # fmt: skip
    (tmp_path / "deb" / "DEBIAN").mkdir()
    (tmp_path / "deb" / "DEBIAN" / "control").write_text(
        "Package: linux-source-6.1\nVersion: 6.1.0-0\nArchitecture: all\n"
        "Maintainer: test <t@example.org>\nDescription: test\n"
    )
    deb = tmp_path / "linux-source-6.1_6.1.0-0_all.deb"
    subprocess.run(["dpkg-deb", "--build", str(tmp_path / "deb"), str(deb)], check=True,
                   capture_output=True)  # fmt: skip
    with pytest.raises(DiskFull) as caught:
        source._extract_tarball(deb, small_tmpfs)
    message = str(caught.value)
    assert "No space left on device" in message
    assert len(message.splitlines()) < 15, message
    assert caught.value.message.startswith(f"no space left on the file system of {small_tmpfs}")
    assert "needs about 1.9 GiB" in caught.value.hint
