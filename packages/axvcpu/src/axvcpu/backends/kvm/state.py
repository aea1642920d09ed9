"""A KVM x86 vCPU's and VM's full state as plain data, for VM snapshots, and back.

Theory of operation. KVM hands each piece of a vCPU's state out as one kernel structure, whose
layout is the kernel's ABI (<linux/kvm.h>); a snapshot keeps each as its bytes (hex), checked
against the structure's size on this host when put back, and the MSRs as a table. The order
of the puts follows what KVM needs (and what QEMU's kvm_arch_put_registers does): general
registers, XSAVE (FPU/SSE/AVX) and XCR0, special registers (EFER, CR0/3/4, segments: they
decide which MSRs make sense), MSRs, the multiprocessing state, the local APIC, pending events
(exceptions, interrupts, NMI, SMI), debug registers. The VM's own part is the in-kernel PIC
pair, the IOAPIC, the PIT and the kvmclock.

MSRs saved: ``SAVED_MSRS`` that KVM reads on this host (asked one by one; one KVM refuses is
left out and named in ``msrs_skipped``), which covers SYSCALL/SYSENTER, PAT, the TSC and its
deadline and adjust, MISC_ENABLE, TSC_AUX, KERNEL_GS_BASE, MTRRdefType and KVM's paravirtual
clock, async page fault, steal time and PV EOI MSRs. FS/GS base and EFER are in the special
registers; the APIC base too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .errors import KvmError

STATE_VERSION = 1

SAVED_MSRS = (
    0x10,  # IA32_TIME_STAMP_COUNTER
    0x3B,  # IA32_TSC_ADJUST
    0x174, 0x175, 0x176,  # IA32_SYSENTER_CS/ESP/EIP
    0x1A0,  # IA32_MISC_ENABLE
    0x277,  # IA32_PAT
    0x2FF,  # IA32_MTRR_DEF_TYPE
    0x6E0,  # IA32_TSC_DEADLINE
    0xC0000081, 0xC0000082, 0xC0000083, 0xC0000084,  # STAR, LSTAR, CSTAR, SFMASK
    0xC0000102, 0xC0000103,  # KERNEL_GS_BASE, TSC_AUX
    0x4B564D00, 0x4B564D01,  # KVM wall clock, system time (kvmclock)
    0x4B564D02, 0x4B564D03, 0x4B564D04,  # KVM async PF, steal time, PV EOI
)  # fmt: skip

VCPU_BLOBS = (
    ("regs", "struct kvm_regs", "KVM_GET_REGS", "KVM_SET_REGS"),
    ("xsave", "struct kvm_xsave", "KVM_GET_XSAVE", "KVM_SET_XSAVE"),
    ("xcrs", "struct kvm_xcrs", "KVM_GET_XCRS", "KVM_SET_XCRS"),
    ("sregs", "struct kvm_sregs", "KVM_GET_SREGS", "KVM_SET_SREGS"),
    ("fpu", "struct kvm_fpu", "KVM_GET_FPU", None),  # in the XSAVE image too; kept for reading
    ("mp_state", "struct kvm_mp_state", "KVM_GET_MP_STATE", "KVM_SET_MP_STATE"),
    ("lapic", "struct kvm_lapic_state", "KVM_GET_LAPIC", "KVM_SET_LAPIC"),
    ("vcpu_events", "struct kvm_vcpu_events", "KVM_GET_VCPU_EVENTS", "KVM_SET_VCPU_EVENTS"),
    ("debugregs", "struct kvm_debugregs", "KVM_GET_DEBUGREGS", "KVM_SET_DEBUGREGS"),
)
"""(key, structure, get ioctl, set ioctl) in the order they are put back; MSRs go after sregs."""

Ioctl = Callable[[str, int, Any], int]


class KvmStateError(ValueError):
    """A saved state this vCPU or VM cannot take (names the part)."""


def _get(ffi: Any, lib: Any, ioctl: Ioctl, ctype: str, name: str, prepare: Callable[[Any], None] | None = None) -> str:
    value = ffi.new(f"{ctype} *")
    if prepare is not None:
        prepare(value)
    ioctl(name, getattr(lib, name), value)
    return bytes(ffi.buffer(value)).hex()


def _put(ffi: Any, lib: Any, ioctl: Ioctl, ctype: str, name: str, key: str, data: object) -> None:
    if not isinstance(data, str):
        raise KvmStateError(f"{key}: expected a hex string")
    try:
        raw = bytes.fromhex(data)
    except ValueError:
        raise KvmStateError(f"{key}: not hex") from None
    size = ffi.sizeof(ctype)
    if len(raw) != size:
        raise KvmStateError(f"{key}: {len(raw)} bytes, this host's {ctype} has {size}")
    value = ffi.new(f"{ctype} *")
    ffi.memmove(value, raw, size)
    ioctl(name, getattr(lib, name), value)


def save_vcpu(ffi: Any, lib: Any, ioctl: Ioctl, read_msr: Callable[[int], int | None]) -> dict[str, Any]:
    """Everything above for one vCPU (call it between runs, on the vCPU's thread)."""
    state: dict[str, Any] = {"version": STATE_VERSION, "arch": "x86_64"}
    for key, ctype, get, _ in VCPU_BLOBS:
        state[key] = _get(ffi, lib, ioctl, ctype, get)
    msrs, skipped = {}, []
    for index in SAVED_MSRS:
        value = read_msr(index)
        if value is None:
            skipped.append(index)
        else:
            msrs[f"{index:#x}"] = value
    state["msrs"] = msrs
    state["msrs_skipped"] = [f"{index:#x}" for index in skipped]
    return state


def load_vcpu(
    ffi: Any, lib: Any, ioctl: Ioctl, write_msrs: Callable[[dict[int, int]], None], state: Mapping[str, Any]
) -> None:
    """Put ``state`` back into a vCPU (KvmStateError naming a bad part; KvmError naming the
    ioctl KVM refused)."""
    if not isinstance(state, Mapping) or state.get("version") != STATE_VERSION or state.get("arch") != "x86_64":
        raise KvmStateError(f"expected an x86_64 KVM vCPU state of version {STATE_VERSION}")
    missing = [key for key, *_ in VCPU_BLOBS if key not in state]
    if missing or not isinstance(state.get("msrs"), Mapping):
        raise KvmStateError(f"missing {', '.join(missing) or 'msrs'}")
    msrs: dict[int, int] = {}
    for index, value in state["msrs"].items():
        try:
            msrs[int(index, 16)] = int(value)
        except (TypeError, ValueError):
            raise KvmStateError(f"msrs: {index!r} = {value!r} is not an MSR index and value") from None
    for key, ctype, _, put in VCPU_BLOBS:
        if put is None:
            continue
        _put(ffi, lib, ioctl, ctype, put, key, state[key])
        if key == "sregs" and msrs:
            write_msrs(msrs)


def save_vm(ffi: Any, lib: Any, ioctl: Ioctl, irqchip: bool, clock_ns: int) -> dict[str, Any]:
    """The VM's in-kernel devices (with ``irqchip``: PIC master and slave, IOAPIC, PIT) and its
    kvmclock (``clock_ns``, read by the caller, frozen while the VM is paused)."""
    state: dict[str, Any] = {"version": STATE_VERSION, "arch": "x86_64", "clock_ns": clock_ns, "irqchip": irqchip}
    if irqchip:
        for key, chip in (("pic_master", lib.KVM_IRQCHIP_PIC_MASTER), ("pic_slave", lib.KVM_IRQCHIP_PIC_SLAVE),
                          ("ioapic", lib.KVM_IRQCHIP_IOAPIC)):  # fmt: skip

            def select(value: Any, chip: int = chip) -> None:
                value.chip_id = chip

            state[key] = _get(ffi, lib, ioctl, "struct kvm_irqchip", "KVM_GET_IRQCHIP", select)
        state["pit"] = _get(ffi, lib, ioctl, "struct kvm_pit_state2", "KVM_GET_PIT2")
    return state


def load_vm(ffi: Any, lib: Any, ioctl: Ioctl, irqchip: bool, state: Mapping[str, Any]) -> int:
    """Put the in-kernel devices back; returns the kvmclock value to set (the caller sets it
    last, right before the vCPUs run)."""
    if not isinstance(state, Mapping) or state.get("version") != STATE_VERSION:
        raise KvmStateError(f"expected an x86_64 KVM VM state of version {STATE_VERSION}")
    if bool(state.get("irqchip")) != irqchip:
        raise KvmStateError(f"saved with irqchip={state.get('irqchip')!r}, this VM has irqchip={irqchip}")
    if irqchip:
        for key in ("pic_master", "pic_slave", "ioapic"):
            _put(ffi, lib, ioctl, "struct kvm_irqchip", "KVM_SET_IRQCHIP", key, state.get(key))
        _put(ffi, lib, ioctl, "struct kvm_pit_state2", "KVM_SET_PIT2", "pit", state.get("pit"))
    clock = state.get("clock_ns")
    if isinstance(clock, bool) or not isinstance(clock, int) or clock < 0:
        raise KvmStateError(f"clock_ns = {clock!r} is not a count of nanoseconds")
    return clock


def readable_msr(read: Callable[[list[int]], dict[int, int]]) -> Callable[[int], int | None]:
    """One MSR at a time through ``read`` (KvmVCpu.get_msrs); None for one KVM refuses."""

    def one(index: int) -> int | None:
        try:
            return read([index])[index]
        except KvmError:
            return None

    return one
