"""Phase 2, guest: the initramfs, the accelerator, QEMU with QMP and its console, SSH into
the guest, and hang triage."""
