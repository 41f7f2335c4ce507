"""Where the harness keeps its caches and finds its own files."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
KCONFIG_DIR = REPO_ROOT / "kconfigs"
PATCHES_DIR = REPO_ROOT / "patches"
IMAGES_DIR = REPO_ROOT / "images"


def cache_root() -> Path:
    """Root of every cache (sources, worktrees, builds, images): never inside the repo."""
    root = Path(os.environ.get("PHH_CACHE", Path.home() / ".cache" / "phh"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir(*parts: str) -> Path:
    """A sub-directory of the cache root, created on demand."""
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_results_dir() -> Path:
    return Path(os.environ.get("PHH_RESULTS", REPO_ROOT / "results"))
