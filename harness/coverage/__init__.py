"""Patch coverage: which lines the series changes ran in the suite's guests.

objects.py  what to profile (the objects whose C files the series changes) and the bundle a
            coverage build keeps beside its bzImage (gcno files, the series' diff, sources)
collect.py  the guests' gcda files, read from /sys/kernel/debug/gcov before shutdown
report.py   gcovr per guest, merged; diff-cover against the series' diff; coverage.md,
            Cobertura XML and a one-line total
"""
