"""``SbiCodeFence``: the riscv SBI calls after which every hart must drop its translated code.

Theory of operation. A supervisor asks the firmware for services with ``ecall`` from S mode;
the SBI specification (section "Binary Encoding") puts the extension ID in a7 and the
function ID in a6. Two kinds of call tell the firmware that other harts must run code RAM
holds now:

- remote fence.i: the RFENCE extension's function 0, or legacy extension 5 (legacy calls
  have no function ID): Linux follows code it wrote (modules, kprobes) with one;
- hart start: the HSM extension's function 0: the started hart (a0) runs code the caller may
  have just written (Linux's secondary entry). Only that hart needs to drop its code: with
  ``drop_code`` (the backend's per-hart drop) the fence asks that of the started hart alone and
  answers False, so the running harts keep their translations (a flush of every hart per
  secondary start made the boot hart retranslate its working set three times on 4 harts).

The riscv virt machine (axvm) installs this observer on a soft backend; the CPU model knows
none of it (see ``axvcpu.ecall``). The module imports no engine.
"""

from __future__ import annotations

from collections.abc import Callable

from .ecall import GprReader

PRIV_S = 1
"""Supervisor mode, where SBI calls come from (privileged spec 1.2)."""
SBI_EXT_LEGACY_REMOTE_FENCE_I = 0x05
SBI_EXT_RFENCE = 0x5246_4E43  # "RFNC"
SBI_RFENCE_REMOTE_FENCE_I = 0
SBI_EXT_HSM = 0x0048_534D  # "HSM"
SBI_HSM_HART_START = 0
_A0, _A6, _A7 = 10, 16, 17
EID_HVC = 0x48_5643
"""AxVisor's hypercall extension ("HVC"): an ecall with a7 = EID_HVC from S or U mode is a
``Hypercall(nr=a6, args=(a0..a5))`` exit to the VMM, as AxVisor's riscv vCPU reports it, never
a trap into the guest's own firmware or kernel (a7 holds no Linux syscall number that large)."""


class SbiCodeFence:
    """An ``EcallObserver``: True for an S-mode SBI remote fence.i or hart start."""

    watched_calls = (
        (PRIV_S, SBI_EXT_LEGACY_REMOTE_FENCE_I, None),
        (PRIV_S, SBI_EXT_RFENCE, SBI_RFENCE_REMOTE_FENCE_I),
        (PRIV_S, SBI_EXT_HSM, SBI_HSM_HART_START),
    )
    """(priv, a7, a6 or None for any) of every call ``on_ecall`` may answer True for: a CPU
    engine that handles ecalls natively hands only these to the observer."""

    def __init__(self, drop_code: Callable[[int], None] | None = None) -> None:
        self._drop_code = drop_code

    def on_ecall(self, hart: int, priv: int, gpr: GprReader) -> bool:
        if priv != PRIV_S:
            return False  # from U mode an ecall goes to the supervisor; from M, nowhere SBI
        extension = gpr(_A7)
        if extension == SBI_EXT_LEGACY_REMOTE_FENCE_I:
            return True
        if extension == SBI_EXT_RFENCE:
            return gpr(_A6) == SBI_RFENCE_REMOTE_FENCE_I
        if extension == SBI_EXT_HSM:
            if gpr(_A6) != SBI_HSM_HART_START:
                return False
            if self._drop_code is None:
                return True
            self._drop_code(gpr(_A0))
            return False
        return False

    def __repr__(self) -> str:
        return "SbiCodeFence()" if self._drop_code is None else "SbiCodeFence(drop_code)"
