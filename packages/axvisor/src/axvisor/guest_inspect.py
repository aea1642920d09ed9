"""Looking inside a paused guest: its registers and its page tables.

Theory of operation. Both run on the paused vCPU's own thread (``PauseGate.call``), so the
backend's vCPU is only ever touched by the thread that runs it.

- Registers are read by name through ``ArchVCpu.get_register``; which names depends on the
  architecture (``register_names``).
- riscv64 (privileged spec v1.12: Sv39 4.4, Sv48 4.5, Sv57 4.6; ``riscv_mmu.SATP_MODES``):
  the walk is the soft backend's own (``riscv_mmu.translate``), the one its page-fault
  decoding trusts, run as the supervisor would see the address (S mode, SUM and MXR set, so
  user and execute-only pages show too) over the VM's guest memory, recording every entry it
  reads.
- x86_64 (Intel SDM vol. 3A 4.5, 4-level paging): PML4 -> PDPT (1 GiB pages) -> PD (2 MiB pages)
  -> PT, from CR3, with CR0.PG, CR4.PAE and EFER.LMA telling the mode; 5-level paging and the
  32-bit modes are named and refused. Writable and user are the AND of R/W and U/S over the
  levels, executable the absence of XD anywhere (when EFER.NXE is on).

Entries are read from guest RAM only (never a device window); an entry outside RAM ends the
walk with a fault, as it would on hardware with an abort, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable

from axaddrspace import GuestMemory
from axvcpu import VCpu

from .vmtypes import BadRequest, Translation

RISCV_CSRS = (
    "satp", "sstatus", "sepc", "scause", "stval", "stvec", "sie", "sip",
    "mstatus", "mepc", "mcause", "mtval", "mtvec", "mie", "mip",
)  # fmt: skip
RISCV_GPRS = (
    "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1", "a0", "a1", "a2", "a3", "a4", "a5",
    "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "t3", "t4", "t5", "t6",
)  # fmt: skip
X86_REGISTERS = (
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags",
    "cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base",
)  # fmt: skip

PAGE_SHIFT = 12
U64_MASK = (1 << 64) - 1


def register_names(arch: str) -> tuple[str, ...]:
    """The registers ``registers`` reports for a guest architecture."""
    if arch == "riscv64":
        return ("pc", "priv", *RISCV_GPRS, *RISCV_CSRS)
    if arch == "x86_64":
        return X86_REGISTERS
    raise BadRequest("vcpu", f"no register list for {arch} guests")


def read_registers(vcpu: VCpu, arch: str) -> dict[str, int]:
    """Every register of ``register_names(arch)``, read from ``vcpu`` (its own thread)."""
    return {name: vcpu.get_register(name) for name in register_names(arch)}


def _ram_u64(memory: GuestMemory) -> Callable[[int], int | None]:
    def read(gpa: int) -> int | None:
        return memory.read_u64(gpa) if memory.contains(gpa, 8) else None

    return read


# -- riscv64 -----------------------------------------------------------------------------------

_PTE_V, _PTE_R, _PTE_W, _PTE_X, _PTE_U = 1, 2, 4, 8, 16


def translate_riscv(vcpu: VCpu, memory: GuestMemory, gva: int) -> Translation:
    """``gva`` through vCPU's satp, with the soft backend's walk (see the module docstring)."""
    from axvcpu.backends.soft.riscv_mmu import SATP_MODES, Access, translate
    from axvcpu.backends.soft.riscv_regs import PRIV_S

    satp = vcpu.get_register("satp")
    mode = SATP_MODES.get(satp >> 60)
    if mode is None:
        known = ", ".join(name for name, _ in SATP_MODES.values())
        raise BadRequest("vcpu", f"satp mode {satp >> 60} is not one this walker knows ({known})")
    name, levels = mode
    if levels == 0:
        return Translation(gva, gva, name, (), 1 << PAGE_SHIFT, True, True, True)
    read: list[tuple[int, int | None]] = []  # each entry the walk read, None outside RAM
    mstatus = (1 << 18) | (1 << 19)  # SUM, MXR: see user and execute-only pages as mapped
    gpa = translate(
        memory, gva, Access.LOAD, priv=PRIV_S, satp=satp, mstatus=mstatus, on_pte=lambda a, v: read.append((a, v))
    )
    steps = tuple((addr, value) for addr, value in read if value is not None)
    if gpa is None:
        return Translation(gva, None, name, steps, 0, False, False, False, _riscv_fault(read, levels, gva))
    pte = steps[-1][1]
    level = levels - len(steps)
    return Translation(
        gva, gpa, name, steps, 1 << (PAGE_SHIFT + 9 * level),
        writable=bool(pte & _PTE_W), user=bool(pte & _PTE_U), executable=bool(pte & _PTE_X),
    )  # fmt: skip


def _riscv_fault(steps: list[tuple[int, int | None]], levels: int, gva: int) -> str:
    """Why the riscv walk stopped, from the last entry it read."""
    if not steps:
        return f"{gva:#x} is not sign-extended from bit {PAGE_SHIFT + 9 * levels - 1}"
    level = levels - len(steps)
    addr, pte = steps[-1]
    if pte is None:
        return f"level {level} entry at {addr:#x} is outside guest RAM"
    if not pte & _PTE_V:
        return f"level {level} entry at {addr:#x} is not valid ({pte:#x})"
    if (pte & (_PTE_R | _PTE_W)) == _PTE_W:
        return f"level {level} entry at {addr:#x} is reserved: writable but not readable ({pte:#x})"
    if pte & (_PTE_R | _PTE_X):
        return f"level {level} leaf at {addr:#x} is a misaligned superpage ({pte:#x})"
    return f"level {level} entry at {addr:#x} points to another table below the last level ({pte:#x})"


# -- x86_64 ------------------------------------------------------------------------------------

_X86_P, _X86_RW, _X86_US, _X86_PS = 1, 2, 4, 0x80
_X86_XD = 1 << 63
_X86_ADDR = 0x000F_FFFF_FFFF_F000
_CR0_PG = 1 << 31
_CR4_PAE = 1 << 5
_CR4_LA57 = 1 << 12
_EFER_LMA = 1 << 10
_EFER_NXE = 1 << 11
_LEVEL_NAMES = ("PT", "PD", "PDPT", "PML4")


def translate_x86(vcpu: VCpu, memory: GuestMemory, gva: int) -> Translation:
    """``gva`` through the vCPU's 4-level page tables from CR3 (see the module docstring)."""
    cr0, cr4, efer = (vcpu.get_register(name) for name in ("cr0", "cr4", "efer"))
    cr3 = vcpu.get_register("cr3")
    if not cr0 & _CR0_PG:
        return Translation(gva, gva, "bare", (), 1 << PAGE_SHIFT, True, True, True)
    if cr4 & _CR4_LA57:
        raise BadRequest("vcpu", "the guest uses 5-level paging (CR4.LA57); this walker knows 4-level only")
    if not (efer & _EFER_LMA and cr4 & _CR4_PAE):
        raise BadRequest("vcpu", "the guest uses 32-bit paging (EFER.LMA clear); this walker knows 4-level only")
    mode = "x86-4level"
    if not (gva >> 47 == 0 or gva >> 47 == (1 << 17) - 1):
        return Translation(gva, None, mode, (), 0, False, False, False, f"{gva:#x} is not canonical (bits 63:47)")
    read = _ram_u64(memory)
    nx = bool(efer & _EFER_NXE)
    table = cr3 & _X86_ADDR
    steps: list[tuple[int, int]] = []
    writable = user = executable = True
    for level in range(3, -1, -1):
        addr = table + 8 * ((gva >> (PAGE_SHIFT + 9 * level)) & 0x1FF)
        entry = read(addr)
        if entry is None:
            fault = f"{_LEVEL_NAMES[level]} entry at {addr:#x} is outside guest RAM"
            return Translation(gva, None, mode, tuple(steps), 0, False, False, False, fault)
        steps.append((addr, entry))
        if not entry & _X86_P:
            fault = f"{_LEVEL_NAMES[level]} entry at {addr:#x} is not present ({entry:#x})"
            return Translation(gva, None, mode, tuple(steps), 0, False, False, False, fault)
        writable &= bool(entry & _X86_RW)
        user &= bool(entry & _X86_US)
        executable &= not (nx and entry & _X86_XD)
        if level == 0 or (level in (1, 2) and entry & _X86_PS):
            size = 1 << (PAGE_SHIFT + 9 * level)
            gpa = (entry & _X86_ADDR & ~(size - 1)) | (gva & (size - 1))
            return Translation(gva, gpa, mode, tuple(steps), size, writable, user, executable)
        table = entry & _X86_ADDR
    raise AssertionError("unreachable: level 0 always returns")


def translate(vcpu: VCpu, memory: GuestMemory, arch: str, gva: int) -> Translation:
    """Walk ``gva`` for a guest of ``arch``; BadRequest("gva") when it is not a 64-bit address."""
    if not 0 <= gva <= U64_MASK:
        raise BadRequest("gva", f"{gva:#x} is not a 64-bit guest virtual address")
    if arch == "riscv64":
        return translate_riscv(vcpu, memory, gva)
    if arch == "x86_64":
        return translate_x86(vcpu, memory, gva)
    raise BadRequest("vcpu", f"no page-table walker for {arch} guests")
