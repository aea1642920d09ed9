"""Libraries of the guest image scripts: the cpio writer and kernel module ordering."""
