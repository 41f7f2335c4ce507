"""The harness's one definition of its units (x86-64 guests: 4 KiB pages)."""

from __future__ import annotations

MiB = 1 << 20
PAGE_SIZE = 4096
