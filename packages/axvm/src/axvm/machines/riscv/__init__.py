"""QEMU's riscv64 virt board: layout, device tree, and the machine that wires it."""
