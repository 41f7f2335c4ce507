"""Phase 6, report: each run's own directory, JUnit and comparisons, plots, the reply for
the list (report.txt), index.html and patch coverage."""
