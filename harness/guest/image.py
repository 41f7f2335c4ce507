"""Guest initramfs: busybox-static + dropbear + the C workloads of images/, and a per-run key.

The base image (`build_image`) is cached under cache_dir("images", key), where key is a content
hash of everything that goes into it. The per-run SSH key is never baked into that cached
image: `make_run_initrd` appends a tiny second cpio archive holding only
/root/.ssh/authorized_keys (the kernel unpacks concatenated archives in one initrd).

The cpio (newc) archives are written by Python, not by `cpio`, so that owners, modes and
device nodes are right without root privileges and the output is reproducible.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import stat
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from harness.core.errors import ImageError
from harness.core.fsutil import atomic_directory
from harness.core.paths import IMAGES_DIR, cache_dir
from harness.core.progress import step

INITRAMFS_NAME = "initramfs.cpio.gz"
MANIFEST_NAME = "manifest.json"
RUN_INITRD_NAME = "initrd.img"
HOST_KEY_PATH = "etc/dropbear/dropbear_ed25519_host_key"
BUSYBOX = Path("/bin/busybox")
DROPBEAR = Path("/usr/sbin/dropbear")
DROPBEARKEY = Path("/usr/bin/dropbearkey")
DYNAMIC_LOADER = "/lib64/ld-linux-x86-64.so.2"
INSTALL_HINT = "apt-get install busybox-static dropbear-bin gcc"
# The guest's unprivileged directories: everything else in the archive is root-owned 0755.
GUEST_DIRS = (
    "bin", "sbin", "usr", "usr/bin", "usr/sbin", "lib", "lib64", "lib/x86_64-linux-gnu",
    "etc", "etc/dropbear", "dev", "proc", "sys", "tmp", "run", "var", "var/log", "root",
)  # fmt: skip
ETC_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
    "etc/group": "root:x:0:\ntty:x:5:\n",
    "etc/shells": "/bin/sh\n/bin/ash\n",
    "etc/hosts": "127.0.0.1 localhost\n10.0.2.15 phh-guest\n",
}


@dataclass(frozen=True)
class GuestImage:
    """A built base initramfs (without any SSH key) and the content key it is cached under."""

    initramfs: Path
    key: str


# --------------------------------------------------------------------------- cpio (newc)


class CpioWriter:
    """Writes a newc cpio archive entry by entry (all entries owned by root)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._inode = 1000
        self._names: set[str] = set()

    def add_dir(self, name: str, mode: int = 0o755) -> None:
        self._add(name, stat.S_IFDIR | mode, b"")

    def add_file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._add(name, stat.S_IFREG | mode, data)

    def add_symlink(self, name: str, target: str) -> None:
        self._add(name, stat.S_IFLNK | 0o777, target.encode())

    def add_char_device(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._add(name, stat.S_IFCHR | mode, b"", rdev=(major, minor))

    def finish(self) -> None:
        self._write_entry("TRAILER!!!", 0, b"", ino=0, nlink=1, rdev=(0, 0))

    def _add(self, name: str, mode: int, data: bytes, rdev: tuple[int, int] = (0, 0)) -> None:
        name = name.strip("/")
        if not name or name in self._names:
            raise ImageError(f"cpio entry {name!r} is empty or added twice", "fix the image recipe")
        self._names.add(name)
        self._inode += 1
        nlink = 2 if stat.S_ISDIR(mode) else 1
        self._write_entry(name, mode, data, ino=self._inode, nlink=nlink, rdev=rdev)

    def _write_entry(
        self, name: str, mode: int, data: bytes, ino: int, nlink: int, rdev: tuple[int, int]
    ) -> None:
        encoded = name.encode() + b"\0"
        # magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
        # rdevmajor, rdevminor, namesize, check: 13 fields of 8 hex digits.
        fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, *rdev, len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % value for value in fields)
        self._write_padded(header + encoded)
        self._write_padded(data)

    def _write_padded(self, chunk: bytes) -> None:
        self._out.write(chunk)
        self._out.write(b"\0" * (-len(chunk) % 4))


# --------------------------------------------------------------------------- inputs


def _require(path: Path) -> Path:
    if not path.exists():
        raise ImageError(f"{path} is missing on the host", INSTALL_HINT)
    return path


def _run(command: list[str], what: str) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError as error:
        raise ImageError(f"{what}: {command[0]} not found", INSTALL_HINT) from error
    if result.returncode != 0:
        raise ImageError(
            f"{what} failed (exit {result.returncode}): {' '.join(command)}\n{result.stderr}",
            INSTALL_HINT,
        )
    return result.stdout


def shared_libraries(binary: Path) -> list[str]:
    """Absolute paths of the shared libraries `binary` needs (ldd), loader included."""
    libraries = []
    for line in _run(["ldd", str(binary)], f"ldd {binary}").splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) > parts.index("=>") + 1:
            target = parts[parts.index("=>") + 1]
            if target.startswith("/"):
                libraries.append(target)
        elif parts and parts[0].startswith("/"):
            libraries.append(parts[0])
    if DYNAMIC_LOADER not in libraries:
        libraries.append(DYNAMIC_LOADER)
    return sorted(set(libraries))


def busybox_applets() -> list[str]:
    """Install paths (relative, e.g. "sbin/ip") of busybox's applets."""
    output = _run([str(_require(BUSYBOX)), "--list-full"], "busybox --list-full")
    return sorted(line.strip() for line in output.splitlines() if "/" in line.strip())


# images/kvm-probe/ is the accelerator probe's program (accel.py), not part of the image.
PROBE_RECIPE = "kvm-probe"


def recipe_files() -> list[Path]:
    """Every file of the images/ recipe (init, workloads, README)."""
    if not (IMAGES_DIR / "init").is_file():
        raise ImageError(f"{IMAGES_DIR}/init is missing", "restore images/ from git")
    return sorted(
        path
        for path in IMAGES_DIR.rglob("*")
        if path.is_file() and PROBE_RECIPE not in path.relative_to(IMAGES_DIR).parts
    )


def workload_sources() -> list[Path]:
    return sorted((IMAGES_DIR / "workloads").glob("*.c"))


def gcc_version() -> str:
    return _run(["gcc", "--version"], "gcc --version").splitlines()[0]


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def image_inputs() -> dict[str, str]:
    """What goes into the image, as name -> content hash or version (the cache key's input)."""
    inputs = {f"recipe:{p.relative_to(IMAGES_DIR)}": _file_digest(p) for p in recipe_files()}
    # The assembly code is part of the recipe too: a layout change must invalidate the cache.
    inputs["builder:image.py"] = _file_digest(Path(__file__))
    for binary in (BUSYBOX, DROPBEAR, DROPBEARKEY):
        inputs[f"host:{binary}"] = _file_digest(_require(binary))
    for library in shared_libraries(DROPBEAR):
        inputs[f"host:{library}"] = _file_digest(Path(library))
    inputs["gcc"] = gcc_version()
    return inputs


def image_key(inputs: dict[str, str]) -> str:
    canonical = json.dumps(inputs, sort_keys=True).encode()
    return hashlib.sha256(canonical).hexdigest()[:20]


# --------------------------------------------------------------------------- build


def compile_workloads(out_dir: Path) -> dict[str, Path]:
    """gcc -O2 -static each images/workloads/*.c; returns program name -> binary."""
    binaries = {}
    for source in workload_sources():
        binary = out_dir / source.stem
        _run(
            ["gcc", "-O2", "-static", "-Wall", "-o", str(binary), str(source)],
            f"compiling workload {source.name}",
        )
        binaries[source.stem] = binary
    return binaries


def generate_host_key(out_dir: Path) -> bytes:
    """A dropbear ed25519 host key made on the host (key generation under TCG is slow)."""
    key_path = out_dir / "host_key"
    _run([str(_require(DROPBEARKEY)), "-t", "ed25519", "-f", str(key_path)], "dropbearkey")
    return key_path.read_bytes()


def _parent_dirs(paths: Iterable[str]) -> list[str]:
    parents = set()
    for path in paths:
        parent = Path(path.strip("/")).parent
        while str(parent) != ".":
            parents.add(str(parent))
            parent = parent.parent
    return sorted(parents)


def write_base_archive(
    writer: CpioWriter, workloads: dict[str, Path], host_key: bytes, applets: list[str]
) -> None:
    """Everything of the base image, in an order where each parent comes before its children."""
    libraries = shared_libraries(DROPBEAR)
    files = [*libraries, "bin/busybox", "usr/sbin/dropbear", *applets, HOST_KEY_PATH]
    dirs = sorted(set(GUEST_DIRS) | set(_parent_dirs(files)))
    for directory in dirs:
        writer.add_dir(directory, 0o700 if directory == "root" else 0o755)
    writer.add_char_device("dev/console", 5, 1)
    writer.add_char_device("dev/null", 1, 3, 0o666)
    writer.add_file("init", (IMAGES_DIR / "init").read_bytes(), 0o755)
    writer.add_file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    for applet in applets:
        if applet != "bin/busybox":
            writer.add_symlink(applet, "/bin/busybox")
    writer.add_file("usr/sbin/dropbear", DROPBEAR.read_bytes(), 0o755)
    for library in libraries:
        writer.add_file(library, Path(library).read_bytes(), 0o755)
    for name, binary in sorted(workloads.items()):
        writer.add_file(f"usr/bin/{name}", binary.read_bytes(), 0o755)
    writer.add_file(HOST_KEY_PATH, host_key, 0o600)
    for name, text in ETC_FILES.items():
        writer.add_file(name, text.encode())
    writer.finish()


def _assemble(staging: Path, inputs: dict[str, str]) -> None:
    workloads = compile_workloads(staging)
    host_key = generate_host_key(staging)
    applets = busybox_applets()
    # mtime=0: the same inputs give the same bytes (except for the random host key).
    with (
        open(staging / INITRAMFS_NAME, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as compressed,
    ):
        write_base_archive(CpioWriter(compressed), workloads, host_key, applets)
    for leftover in [*workloads.values(), staging / "host_key", staging / "host_key.pub"]:
        leftover.unlink(missing_ok=True)
    (staging / MANIFEST_NAME).write_text(json.dumps(inputs, indent=2, sort_keys=True) + "\n")


def build_image(force: bool = False) -> GuestImage:
    """Return the cached base image for the current inputs, building it first if needed."""
    inputs = image_inputs()
    key = image_key(inputs)
    images = cache_dir("images")
    final = images / key
    if (final / INITRAMFS_NAME).is_file() and not force:
        return GuestImage(initramfs=final / INITRAMFS_NAME, key=key)
    # replace: a forced rebuild replaces the cached one; a concurrent builder's is equal
    with atomic_directory(final) as staging, step(f"building guest image {key}", phase="image"):
        _assemble(staging, inputs)
    return GuestImage(initramfs=final / INITRAMFS_NAME, key=key)


# --------------------------------------------------------------------------- per run


def authorized_keys_archive(public_key_line: str) -> bytes:
    """An uncompressed cpio holding only /root/.ssh/authorized_keys (root-owned, 0600)."""
    line = public_key_line.strip()
    if not line or "\n" in line:
        raise ImageError(
            f"not a single authorized_keys line: {public_key_line!r}",
            "pass one 'type base64 comment' line, e.g. RunKey.public_line",
        )
    buffer = io.BytesIO()
    writer = CpioWriter(buffer)
    writer.add_dir("root", 0o700)
    writer.add_dir("root/.ssh", 0o700)
    writer.add_file("root/.ssh/authorized_keys", (line + "\n").encode(), 0o600)
    writer.finish()
    return buffer.getvalue()


def make_run_initrd(image: GuestImage, public_key_line: str, run_dir: Path) -> Path:
    """Write run_dir/initrd.img = base image + authorized_keys archive; return its path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    target = run_dir / RUN_INITRD_NAME
    temporary = target.with_suffix(".tmp")
    with open(temporary, "wb") as out:
        with open(image.initramfs, "rb") as base:
            shutil.copyfileobj(base, out)
        # The kernel only recognises an uncompressed archive that starts 4-byte aligned in the
        # initrd; it skips the zero padding in between.
        out.write(b"\0" * (-out.tell() % 4))
        out.write(authorized_keys_archive(public_key_line))
    temporary.replace(target)
    return target
