"""Phase 3, drive: the workloads and QMP lifecycle events that move the guest (memory
pressure, hugetlb, the series' test hooks, balloon, DIMMs)."""
