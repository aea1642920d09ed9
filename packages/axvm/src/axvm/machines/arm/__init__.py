"""QEMU's arm virt board: what the VMM answers for it (PSCI), and later its layout and device tree."""
