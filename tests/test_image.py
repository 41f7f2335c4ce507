"""Guest image: the cpio writer, the cache key, the per-run key archive, the C workloads,
and a real build of the initramfs from the host's busybox-static and dropbear."""

from __future__ import annotations

import gzip
import io
import re
import stat
import struct
import subprocess
from pathlib import Path

import pytest

from harness.core.errors import ImageError
from harness.guest import image
from harness.guest.image import CpioWriter, authorized_keys_archive, image_key
from harness.guest.ssh import generate_run_key


def parse_newc(data: bytes) -> dict[str, tuple[int, int, int, int, bytes]]:
    """name -> (mode, uid, rdevmajor, rdevminor, content) for every entry of a newc archive."""
    entries = {}
    offset = 0
    while True:
        assert data[offset : offset + 6] == b"070701", f"bad magic at {offset}"
        fields = [int(data[offset + 6 + 8 * i : offset + 14 + 8 * i], 16) for i in range(13)]
        mode, uid, size, namesize = fields[1], fields[2], fields[6], fields[11]
        name_start = offset + 110
        name = data[name_start : name_start + namesize - 1].decode()
        data_start = name_start + namesize + (-(110 + namesize) % 4)
        content = data[data_start : data_start + size]
        offset = data_start + size + (-size % 4)
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, uid, fields[9], fields[10], content)


def has_program_interpreter(elf: bytes) -> bool:
    """True if a 64-bit little-endian ELF has a PT_INTERP program header (dynamic linking)."""
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    pt_interp = 3
    types = [struct.unpack_from("<I", elf, phoff + i * phentsize)[0] for i in range(phnum)]
    return pt_interp in types


def write_sample_archive() -> bytes:
    buffer = io.BytesIO()
    writer = CpioWriter(buffer)
    writer.add_dir("etc")
    writer.add_file("etc/motd", b"hello\n", 0o600)
    writer.add_symlink("bin/sh", "/bin/busybox")
    writer.add_char_device("dev/console", 5, 1)
    writer.finish()
    return buffer.getvalue()


def test_cpio_writer_entries_round_trip() -> None:
    entries = parse_newc(write_sample_archive())
    assert set(entries) == {"etc", "etc/motd", "bin/sh", "dev/console"}
    mode, uid, _, _, content = entries["etc/motd"]
    assert (stat.S_ISREG(mode), stat.S_IMODE(mode), uid, content) == (True, 0o600, 0, b"hello\n")
    assert stat.S_ISLNK(entries["bin/sh"][0]) and entries["bin/sh"][4] == b"/bin/busybox"
    mode, _, major, minor, _ = entries["dev/console"]
    assert stat.S_ISCHR(mode) and (major, minor) == (5, 1)


def test_cpio_writer_output_is_readable_by_gnu_cpio() -> None:
    listing = subprocess.run(
        ["cpio", "-itv"], input=write_sample_archive(), capture_output=True, check=True
    ).stdout.decode()
    assert "etc/motd" in listing and "bin/sh -> /bin/busybox" in listing
    assert "crw-------" in listing


def test_cpio_writer_rejects_duplicate_names() -> None:
    writer = CpioWriter(io.BytesIO())
    writer.add_dir("etc")
    with pytest.raises(ImageError):
        writer.add_dir("/etc/")


def test_authorized_keys_archive_has_strict_modes() -> None:
    entries = parse_newc(authorized_keys_archive("ssh-ed25519 AAAAC3Nza test\n"))
    assert stat.S_IMODE(entries["root"][0]) == 0o700
    assert stat.S_IMODE(entries["root/.ssh"][0]) == 0o700
    mode, uid, _, _, content = entries["root/.ssh/authorized_keys"]
    assert (stat.S_IMODE(mode), uid, content) == (0o600, 0, b"ssh-ed25519 AAAAC3Nza test\n")


@pytest.mark.parametrize("bad", ["", "   ", "ssh-rsa AAA a\nssh-rsa BBB b"])
def test_authorized_keys_archive_rejects_bad_lines(bad: str) -> None:
    with pytest.raises(ImageError):
        authorized_keys_archive(bad)


def test_image_key_depends_on_every_input() -> None:
    inputs = {"recipe:init": "aa", "gcc": "gcc 12.2.0"}
    assert image_key(inputs) == image_key(dict(reversed(inputs.items())))
    assert image_key(inputs) != image_key({**inputs, "recipe:init": "ab"})
    assert image_key(inputs) != image_key({**inputs, "gcc": "gcc 12.3.0"})


def test_image_inputs_cover_recipe_packages_and_compiler() -> None:
    inputs = image.image_inputs()
    assert "recipe:init" in inputs and "recipe:workloads/memhog.c" in inputs
    assert f"host:{image.BUSYBOX}" in inputs and f"host:{image.DROPBEAR}" in inputs
    assert any(name.startswith("host:") and "libc.so" in name for name in inputs)
    assert inputs["gcc"].startswith("gcc")


def test_dropbear_libraries_include_loader_and_libc() -> None:
    libraries = image.shared_libraries(image.DROPBEAR)
    assert image.DYNAMIC_LOADER in libraries
    assert any(Path(lib).name == "libc.so.6" for lib in libraries)
    assert all(lib.startswith("/") for lib in libraries)


def test_run_key_line_is_ecdsa() -> None:
    key = generate_run_key()
    kind, blob, _ = key.public_line.split()
    assert kind == "ecdsa-sha2-nistp256" and blob == key.private.get_base64()


# ----------------------------------------------------------------- workloads on the host


@pytest.fixture(scope="module")
def workloads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return image.compile_workloads(tmp_path_factory.mktemp("workloads"))


def test_memhog_protocol(workloads: dict[str, Path]) -> None:
    result = subprocess.run(
        [workloads["memhog"], "16"], input="go\n", capture_output=True, text=True, timeout=30
    )
    assert (result.returncode, result.stdout) == (0, "touched 16\nreleased\n")


def test_memhog_cycles_and_eof(workloads: dict[str, Path]) -> None:
    result = subprocess.run(
        [workloads["memhog"], "--cycles", "3", "8"], input="", capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout == "touched 8\nreleased\n" * 3


@pytest.mark.parametrize("args", [[], ["0"], ["x"], ["--cycles", "0", "8"], ["1", "2"]])
def test_memhog_rejects_bad_arguments(workloads: dict[str, Path], args: list[str]) -> None:
    result = subprocess.run([workloads["memhog"], *args], capture_output=True, text=True)
    assert result.returncode == 1 and "usage" in result.stderr and result.stdout == ""


def test_pattern_rounds_verify(workloads: dict[str, Path]) -> None:
    result = subprocess.run(
        [workloads["pattern"], "8", "8", "3"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "round 0 ok\nround 1 ok\nround 2 ok\ndone 3 rounds, 48 MiB verified\n"


def test_memhog_trickles_its_release(workloads: dict[str, Path]) -> None:
    result = subprocess.run(
        [workloads["memhog"], "--trickle-ms", "1", "--cycles", "2", "3"],
        input="\n\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "touched 3\nreleased\ntouched 3\nreleased\n"


def test_faultbench_reports_a_rate(workloads: dict[str, Path]) -> None:
    result = subprocess.run(
        [workloads["faultbench"], "4", "1"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    words = result.stdout.split()
    assert words[0::2] == ["faults", "seconds", "per_s"]
    assert int(words[1]) > 0 and float(words[5]) > 0
    bad = subprocess.run([workloads["faultbench"], "0", "1"], capture_output=True, text=True)
    assert bad.returncode == 1 and "usage" in bad.stderr


def test_pattern_selftest_reports_the_zeroed_word(workloads: dict[str, Path]) -> None:
    result = subprocess.run(
        [workloads["pattern"], "--selftest-corrupt"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 3
    match = re.fullmatch(
        r"MISMATCH region=hold round=0 offset=0x2008 expected=([0-9a-f]{16}) "
        r"found=0000000000000000 words=1\n",
        result.stdout,
    )
    assert match is not None, result.stdout
    assert int(match.group(1), 16) != 0
    assert "0x2008" in result.stderr


def test_pattern_hold_until_line_verifies_after_the_line(workloads: dict[str, Path]) -> None:
    process = subprocess.Popen(
        [workloads["pattern"], "--hold-until-line", "4"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    assert process.stdout.readline() == "filled 4\n"
    assert process.poll() is None  # holds until told
    out, _ = process.communicate("\n", timeout=60)
    assert process.returncode == 0
    assert out == "round 0 ok\ndone 1 rounds, 4 MiB verified\n"


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["8", "8"],
        ["8", "8", "3", "4"],
        ["0", "8", "3"],
        ["8", "0", "3"],
        ["8", "8", "0"],
        ["x", "8", "3"],
        ["8", "-1", "3"],
        ["--selftest-corrupt", "1"],
        ["--selftest", "4", "4"],
        ["--hold-until-line"],
        ["--hold-until-line", "0"],
        ["--hold-until-line", "x"],
        ["--hold-until-line", "--hugetlb", "3"],
        ["--hold-until-line", "--huge", "4"],
        ["--hold-until-line", "--hugetlb", "4", "4"],
    ],
)
def test_pattern_rejects_bad_arguments(workloads: dict[str, Path], args: list[str]) -> None:
    result = subprocess.run([workloads["pattern"], *args], capture_output=True, text=True)
    assert result.returncode == 1 and "usage" in result.stderr and result.stdout == ""


@pytest.mark.parametrize("args", [[], ["0"], ["-2"], ["x"], ["4", "4"], ["99999999999999999999"]])
def test_hugepairs_rejects_bad_arguments(workloads: dict[str, Path], args: list[str]) -> None:
    result = subprocess.run([workloads["hugepairs"], *args], capture_output=True, text=True)
    assert result.returncode == 1 and "usage" in result.stderr and result.stdout == ""


def test_tmpfill_protocol(workloads: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "fill"
    process = subprocess.Popen(
        [workloads["tmpfill"], str(target), "4"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    assert process.stdout.readline() == "filled\n"
    assert target.stat().st_size == 4 << 20
    process.stdin.write("\n")
    process.stdin.flush()
    assert process.stdout.readline() == "deleted\n"
    assert process.wait(timeout=30) == 0
    assert not target.exists()


def test_tmpfill_reports_unwritable_path(workloads: dict[str, Path], tmp_path: Path) -> None:
    result = subprocess.run(
        [workloads["tmpfill"], str(tmp_path / "missing" / "f"), "1"], capture_output=True, text=True
    )
    assert result.returncode == 1 and "cannot create" in result.stderr


# ----------------------------------------------------------------- the real image


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PHH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.real
def test_build_image_contents(private_cache: Path) -> None:
    built = image.build_image()
    assert built.initramfs == private_cache / "images" / built.key / image.INITRAMFS_NAME
    entries = parse_newc(gzip.decompress(built.initramfs.read_bytes()))
    for name in ("init", "bin/busybox", "usr/sbin/dropbear", "usr/bin/memhog", "usr/bin/tmpfill"):
        assert stat.S_IMODE(entries[name][0]) == 0o755, name
    assert entries["sbin/ip"][4] == b"/bin/busybox"
    assert entries["lib64/ld-linux-x86-64.so.2"][4][:4] == b"\x7fELF"
    assert stat.S_ISCHR(entries["dev/console"][0])
    assert stat.S_IMODE(entries[image.HOST_KEY_PATH][0]) == 0o600
    assert entries["init"][4] == (image.IMAGES_DIR / "init").read_bytes()
    assert not any("authorized_keys" in name for name in entries)  # never in the cached image
    assert not has_program_interpreter(entries["usr/bin/memhog"][4])  # static
    assert has_program_interpreter(entries["usr/sbin/dropbear"][4])  # dynamic, needs the loader
    leftovers = [p.name for p in (private_cache / "images").iterdir() if p.name.startswith(".")]
    assert leftovers == []


@pytest.mark.real
def test_build_image_is_cached(private_cache: Path) -> None:
    first = image.build_image()
    stamp = first.initramfs.stat().st_mtime_ns
    second = image.build_image()
    assert second == first and second.initramfs.stat().st_mtime_ns == stamp
    rebuilt = image.build_image(force=True)
    assert rebuilt.key == first.key and rebuilt.initramfs.stat().st_mtime_ns != stamp


@pytest.mark.real
def test_run_initrd_is_base_plus_key_archive(private_cache: Path, tmp_path: Path) -> None:
    built = image.build_image()
    key = generate_run_key()
    initrd = image.make_run_initrd(built, key.public_line, tmp_path / "run")
    base = built.initramfs.read_bytes()
    data = initrd.read_bytes()
    assert data.startswith(base)
    appended = data[len(base) :]
    key_archive = appended.lstrip(b"\0")
    padding = len(appended) - len(key_archive)
    assert padding < 4 and (len(base) + padding) % 4 == 0  # the kernel needs it aligned
    keys = parse_newc(key_archive)
    assert keys["root/.ssh/authorized_keys"][4].decode().strip() == key.public_line
    assert base == built.initramfs.read_bytes()  # the cached base was not touched
