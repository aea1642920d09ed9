"""Target descriptions (GDB manual, appendix G) and the register layout of each guest arch.

gdb numbers registers by the ``regnum`` of the description; ``g``/``G`` carry every register
in regnum order, each ``bitsize / 8`` bytes little-endian, and ``p``/``P`` name one by regnum.

- riscv64: feature names and numbering as gdb's riscv-tdep expects: x0..x31 and pc are 0..32
  (org.gnu.gdb.riscv.cpu), f0..f31 33..64 and fflags/frm/fcsr 66..68 (org.gnu.gdb.riscv.fpu),
  a CSR at 65 + its CSR number (org.gnu.gdb.riscv.csr), the privilege level at 65 + 4096
  (org.gnu.gdb.riscv.virtual).
- x86_64: org.gnu.gdb.i386.core (rax..gs 0..23, st0..st7, the x87 control registers 24..39)
  and org.gnu.gdb.i386.sse (xmm0..xmm15, mxcsr 40..56), as gdb's amd64 tdep numbers them.

``Register.source`` is the name the vCPU's ``get_register`` knows, or None when the backend
has no such register (the stub reports it unavailable).
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import quoteattr


@dataclass(frozen=True, slots=True)
class Register:
    name: str
    regnum: int
    bitsize: int
    feature: str
    type: str = "int"
    source: str | None = None

    @property
    def size(self) -> int:
        return self.bitsize // 8


@dataclass(frozen=True, slots=True)
class TargetDescription:
    architecture: str
    registers: tuple[Register, ...]
    pc_regnum: int

    def by_regnum(self, regnum: int) -> Register | None:
        for register in self.registers:
            if register.regnum == regnum:
                return register
        return None

    def xml(self) -> bytes:
        features: dict[str, list[Register]] = {}
        for register in self.registers:
            features.setdefault(register.feature, []).append(register)
        lines = ['<?xml version="1.0"?>', '<!DOCTYPE target SYSTEM "gdb-target.dtd">', "<target>"]
        lines.append(f"  <architecture>{self.architecture}</architecture>")
        for feature, registers in features.items():
            lines.append(f"  <feature name={quoteattr(feature)}>")
            for r in registers:
                lines.append(
                    f'    <reg name={quoteattr(r.name)} bitsize="{r.bitsize}" '
                    f'regnum="{r.regnum}" type={quoteattr(r.type)}/>'
                )
            lines.append("  </feature>")
        lines.append("</target>")
        return ("\n".join(lines) + "\n").encode()


# -- riscv64 --------------------------------------------------------------------------------------

_RV_CPU, _RV_FPU, _RV_CSR, _RV_VIRT = (
    "org.gnu.gdb.riscv.cpu", "org.gnu.gdb.riscv.fpu", "org.gnu.gdb.riscv.csr", "org.gnu.gdb.riscv.virtual",
)  # fmt: skip
_RV_GPR_NAMES = (
    "zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "fp", "s1", "a0", "a1", "a2", "a3", "a4", "a5",
    "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "t3", "t4", "t5", "t6",
)  # fmt: skip
RISCV_CSR_NUMBERS = {
    "sstatus": 0x100, "sie": 0x104, "stvec": 0x105, "scounteren": 0x106, "sscratch": 0x140,
    "sepc": 0x141, "scause": 0x142, "stval": 0x143, "sip": 0x144, "satp": 0x180,
    "mstatus": 0x300, "misa": 0x301, "medeleg": 0x302, "mideleg": 0x303, "mie": 0x304,
    "mtvec": 0x305, "mcounteren": 0x306, "mscratch": 0x340, "mepc": 0x341, "mcause": 0x342,
    "mtval": 0x343, "mip": 0x344, "mhartid": 0xF14,
}  # fmt: skip
RISCV_FIRST_CSR = 65
RISCV_PRIV_REGNUM = RISCV_FIRST_CSR + 4096


def _riscv64() -> TargetDescription:
    regs = [Register(name, i, 64, _RV_CPU, "int", f"x{i}") for i, name in enumerate(_RV_GPR_NAMES)]
    regs[1] = Register("ra", 1, 64, _RV_CPU, "code_ptr", "x1")
    regs[2] = Register("sp", 2, 64, _RV_CPU, "data_ptr", "x2")
    regs.append(Register("pc", 32, 64, _RV_CPU, "code_ptr", "pc"))
    regs += [Register(f"f{i}", 33 + i, 64, _RV_FPU, "ieee_double", f"f{i}") for i in range(32)]
    regs += [
        Register("fflags", RISCV_FIRST_CSR + 1, 64, _RV_FPU, "int", "fflags"),
        Register("frm", RISCV_FIRST_CSR + 2, 64, _RV_FPU, "int", "frm"),
        Register("fcsr", RISCV_FIRST_CSR + 3, 64, _RV_FPU, "int", "fcsr"),
    ]
    regs += [Register(n, RISCV_FIRST_CSR + c, 64, _RV_CSR, "int", n) for n, c in RISCV_CSR_NUMBERS.items()]
    regs.append(Register("priv", RISCV_PRIV_REGNUM, 64, _RV_VIRT, "int", "priv"))
    return TargetDescription("riscv:rv64", tuple(regs), 32)


# -- x86_64 ---------------------------------------------------------------------------------------

_X86_CORE, _X86_SSE = "org.gnu.gdb.i386.core", "org.gnu.gdb.i386.sse"
_X86_GPRS = (
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
)  # fmt: skip
_X86_SEGMENTS = ("cs", "ss", "ds", "es", "fs", "gs")
_X87_CONTROL = ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop")


def _x86_64() -> TargetDescription:
    regs = [Register(name, i, 64, _X86_CORE, "int64", name) for i, name in enumerate(_X86_GPRS)]
    regs[6] = Register("rbp", 6, 64, _X86_CORE, "data_ptr", "rbp")
    regs[7] = Register("rsp", 7, 64, _X86_CORE, "data_ptr", "rsp")
    regs.append(Register("rip", 16, 64, _X86_CORE, "code_ptr", "rip"))
    regs.append(Register("eflags", 17, 32, _X86_CORE, "int32", "rflags"))
    regs += [Register(name, 18 + i, 32, _X86_CORE, "int32", name) for i, name in enumerate(_X86_SEGMENTS)]
    regs += [Register(f"st{i}", 24 + i, 80, _X86_CORE, "i387_ext") for i in range(8)]
    regs += [Register(name, 32 + i, 32, _X86_CORE, "int") for i, name in enumerate(_X87_CONTROL)]
    regs += [Register(f"xmm{i}", 40 + i, 128, _X86_SSE, "vec128") for i in range(16)]
    regs.append(Register("mxcsr", 56, 32, _X86_SSE, "int"))
    return TargetDescription("i386:x86-64", tuple(regs), 16)


DESCRIPTIONS: dict[str, TargetDescription] = {"riscv64": _riscv64(), "x86_64": _x86_64()}
"""By the config's arch name."""


def _vec128_types() -> str:
    return (
        '  <vector id="v4f" type="ieee_single" count="4"/>\n  <vector id="v2d" type="ieee_double" count="2"/>\n'
        '  <vector id="v16i8" type="int8" count="16"/>\n  <vector id="v8i16" type="int16" count="8"/>\n'
        '  <vector id="v4i32" type="int32" count="4"/>\n  <vector id="v2i64" type="int64" count="2"/>\n'
        '  <union id="vec128"><field name="v4_float" type="v4f"/><field name="v2_double" type="v2d"/>'
        '<field name="v16_int8" type="v16i8"/><field name="v8_int16" type="v8i16"/>'
        '<field name="v4_int32" type="v4i32"/><field name="v2_int64" type="v2i64"/>'
        '<field name="uint128" type="uint128"/></union>\n'
    )


def target_xml(arch: str) -> bytes:
    """The description gdb reads with ``qXfer:features:read:target.xml``."""
    text = DESCRIPTIONS[arch].xml()
    if arch == "x86_64":  # the sse feature's vec128 union must be defined inside that feature
        marker = f"  <feature name={quoteattr(_X86_SSE)}>\n".encode()
        text = text.replace(marker, marker + _vec128_types().encode())
    return text
