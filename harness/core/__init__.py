"""Foundations every phase uses: errors, paths, units, the status vocabulary, polling,
atomic directories, running tools, progress and xdist worker identity."""
