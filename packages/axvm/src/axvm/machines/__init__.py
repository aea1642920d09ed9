"""Machine descriptions the guest reads: memory maps, boot structures and firmware tables of the
boards our guests already know (the x86 PC in ``x86``, QEMU's riscv virt in ``riscv``)."""
