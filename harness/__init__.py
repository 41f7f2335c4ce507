"""Test harness for the free page hinting kernel series."""

__version__ = "0.1.0"
