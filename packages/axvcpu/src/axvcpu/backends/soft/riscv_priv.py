"""riscv privilege levels as the privileged spec encodes them (section 1.2: U=0, S=1, M=3).

Kept apart from ``riscv_regs`` (which needs unicorn) so the pure parts of the soft backend, such
as the page-table walk, import no engine.
"""

from __future__ import annotations

PRIV_U = 0
PRIV_S = 1
PRIV_M = 3
