"""QEMU's arm virt board: its layout and device tree, PSCI answered by the VMM, CPU power states."""
