"""Hand-assembled x86_64 guest programs for the KVM tests (GNU as, Intel syntax, loaded at CODE).

Each constant shows its assembly; the bytes were produced with ``as --64`` and ``objdump -d``.
"""

from __future__ import annotations

OUT_A = bytes.fromhex(
    "66 ba f8 03"  # mov dx, 0x3f8
    "b0 41"  # mov al, 'A'
    "ee"  # out dx, al
    "f4"  # hlt
)

OUT_WORD = bytes.fromhex(
    "66 ba f8 03"  # mov dx, 0x3f8
    "66 b8 ef be"  # mov ax, 0xbeef
    "66 ef"  # out dx, ax
    "f4"  # hlt
)

IN_PLUS_ONE = bytes.fromhex(
    "66 ba 71 00"  # mov dx, 0x71
    "ec"  # in al, dx
    "fe c0"  # inc al
    "66 ba f8 03"  # mov dx, 0x3f8
    "ee"  # out dx, al          ; the answer + 1 comes back
    "f4"  # hlt
)

MMIO = bytes.fromhex(
    "b8 78 56 34 12"  # mov eax, 0x12345678
    "89 04 25 00 00 00 10"  # mov dword ptr [0x10000000], eax
    "8b 04 25 08 00 00 10"  # mov eax, dword ptr [0x10000008]
    "66 ba f8 03"  # mov dx, 0x3f8
    "ef"  # out dx, eax         ; the dword read comes back
    "48 8b 04 25 10 00 00 10"  # mov rax, qword ptr [0x10000010]
    "48 89 04 25 18 00 00 10"  # mov qword ptr [0x10000018], rax   ; the qword read comes back
    "f4"  # hlt
)

REP_OUTSB_HELLO = bytes.fromhex(
    "48 8d 35 0d 00 00 00"  # lea rsi, [rip + msg]
    "b9 05 00 00 00"  # mov ecx, 5
    "66 ba f8 03"  # mov dx, 0x3f8
    "fc"  # cld
    "f3 6e"  # rep outsb
    "f4"  # hlt
) + b"hello"  # msg: .ascii "hello"

REP_INSB_ECHO = bytes.fromhex(
    "48 8d 3d 1f 00 00 00"  # lea rdi, [rip + buf]
    "b9 03 00 00 00"  # mov ecx, 3
    "66 ba 71 00"  # mov dx, 0x71
    "fc"  # cld
    "f3 6c"  # rep insb             ; three answers into buf
    "48 8d 35 0c 00 00 00"  # lea rsi, [rip + buf]
    "b9 03 00 00 00"  # mov ecx, 3
    "66 ba f8 03"  # mov dx, 0x3f8
    "f3 6e"  # rep outsb            ; and back out in order
    "f4"  # hlt
    "00 00 00"  # buf: .byte 0, 0, 0
)

UD2 = bytes.fromhex("0f 0b")  # ud2   ; with an empty IDT: #UD -> #GP -> #DF -> triple fault

IRETQ_TO_CPL3 = bytes.fromhex(
    "6a 23"  # push 0x23             ; SS: user data, RPL 3
    "68 00 70 00 00"  # push 0x7000  ; RSP
    "68 02 30 00 00"  # push 0x3002  ; RFLAGS: IOPL 3
    "6a 2b"  # push 0x2b             ; CS: user code, RPL 3
    "48 8d 05 03 00 00 00"  # lea rax, [rip + user]
    "50"  # push rax
    "48 cf"  # iretq
    # user:
    "66 ba f8 03"  # mov dx, 0x3f8
    "b0 55"  # mov al, 'U'
    "ee"  # out dx, al            ; port I/O from CPL3
    "66 8c c8"  # mov ax, cs
    "ee"  # out dx, al            ; the CS selector, whose RPL is the CPL
    "eb f3"  # jmp user
)

CPUID_APIC_IDS = bytes.fromhex(
    "b8 01 00 00 00"  # mov eax, 1
    "0f a2"  # cpuid
    "c1 eb 18"  # shr ebx, 24
    "89 d8"  # mov eax, ebx
    "66 ba f8 03"  # mov dx, 0x3f8
    "ee"  # out dx, al            ; xAPIC id, CPUID.1:EBX[31:24]
    "b8 0b 00 00 00"  # mov eax, 0xb
    "31 c9"  # xor ecx, ecx
    "0f a2"  # cpuid
    "89 d0"  # mov eax, edx
    "66 ba f8 03"  # mov dx, 0x3f8
    "ee"  # out dx, al            ; x2APIC id, CPUID.0xB:EDX
    "f4"  # hlt
)

STI_HLT = bytes.fromhex(
    "fb"  # sti
    "f4"  # hlt
    "eb fc"  # jmp back to sti
)
HANDLER_OUT_I = bytes.fromhex(
    "66 ba f8 03"  # mov dx, 0x3f8
    "b0 49"  # mov al, 'I'
    "ee"  # out dx, al
    "f4"  # hlt
)

SPIN = bytes.fromhex("eb fe")  # jmp .

COUNTER = 0x3_8000
"""Where COUNT_IN_MEMORY counts: past the TSS and its I/O bitmap, a page nothing else uses."""
COUNT_IN_MEMORY = bytes.fromhex(
    "48 ff 04 25 00 80 03 00"  # inc qword [0x38000]  <-+
    "eb f6"  # jmp back to inc ------------------------------+
)

COUNT_DOWN_RCX = bytes.fromhex(
    "48 ff c9"  # dec rcx
    "75 fb"  # jnz back to dec
    "66 ba f8 03"  # mov dx, 0x3f8
    "ee"  # out dx, al
    "eb f4"  # jmp back to dec
)

OUT_FOREVER = bytes.fromhex(
    "66 ba f8 03"  # mov dx, 0x3f8
    "ee"  # out dx, al   <-+
    "fe c0"  # inc al      |
    "eb fb"  # jmp --------+
)

READ_ONLY_PROBE = bytes.fromhex(
    "8a 04 25 00 00 80 00"  # mov al, byte ptr [0x800000]
    "66 ba f8 03"  # mov dx, 0x3f8
    "ee"  # out dx, al                       ; reading read-only RAM works
    "c6 04 25 00 00 80 00 77"  # mov byte ptr [0x800000], 0x77   ; writing it exits as MMIO
    "f4"  # hlt
)

DIRTY_ONE_PAGE = bytes.fromhex(
    "c6 04 25 00 00 20 00 01"  # mov byte ptr [0x200000], 1
    "66 ba f8 03"  # mov dx, 0x3f8
    "ee"  # out dx, al
    "f4"  # hlt
)

OUT_0X500_THEN_COM1 = bytes.fromhex(
    "66 ba 00 05"  # mov dx, 0x500
    "b0 01"  # mov al, 1
    "ee"  # out dx, al            ; an ioeventfd may swallow this one
    "66 ba f8 03"  # mov dx, 0x3f8
    "b0 02"  # mov al, 2
    "ee"  # out dx, al
    "f4"  # hlt
)

FPU_CONTROL_WORDS = bytes.fromhex(
    "48 83 ec 10"  # sub rsp, 16
    "d9 3c 24"  # fnstcw word ptr [rsp]
    "0f b7 04 24"  # movzx eax, word ptr [rsp]
    "66 ba f8 03"  # mov dx, 0x3f8
    "ef"  # out dx, eax           ; the x87 control word the guest sees
    "0f ae 1c 24"  # stmxcsr dword ptr [rsp]
    "8b 04 24"  # mov eax, dword ptr [rsp]
    "ef"  # out dx, eax           ; and its MXCSR
    "eb fe"  # jmp .
)
