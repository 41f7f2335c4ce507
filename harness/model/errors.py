"""Errors of the reference model."""

from __future__ import annotations

from harness.core.errors import HarnessError


class ModelInvariantError(HarnessError):
    """The model reached a state v2 must never be in (a model bug or a disproved claim)."""


class ModelUsageError(HarnessError):
    """The model was asked to do something the kernel cannot (free what is not allocated)."""
