"""riscv privilege levels (privileged spec 1.2: U=0, S=1, M=3) and exception codes (mcause,
table 3.6), as the spec encodes them.

Kept apart from ``riscv_regs`` (which needs unicorn) so the pure parts of the soft backend, such
as the page-table walk, import no engine.
"""

from __future__ import annotations

PRIV_U = 0
PRIV_S = 1
PRIV_M = 3

EXC_INSN_MISALIGNED = 0
EXC_INSN_ACCESS = 1
EXC_ILLEGAL_INSN = 2
EXC_BREAKPOINT = 3
EXC_LOAD_MISALIGNED = 4
EXC_LOAD_ACCESS = 5
EXC_STORE_MISALIGNED = 6
EXC_STORE_ACCESS = 7
EXC_ECALL_U = 8
EXC_ECALL_S = 9
EXC_ECALL_M = 11
EXC_INSN_PAGE_FAULT = 12
EXC_LOAD_PAGE_FAULT = 13
EXC_STORE_PAGE_FAULT = 15
