"""Phase 3, observe: what the guest and the host show (/proc, the series' debugfs, the
QEMU RSS, the kernel log, gcov counters), parsed into typed values."""
