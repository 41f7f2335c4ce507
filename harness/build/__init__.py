"""Phase 1, build: the kernel source, the series applied with git am, the kconfig
fragments, make (cached by the tree the series produces), and what a revision declares."""
