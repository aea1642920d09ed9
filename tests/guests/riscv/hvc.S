# AxVisor hypercalls from a Linux user program (riscv64: ecall with a7 = EID_HVC, the code in a6,
# arguments in a0..a5, an SBI return: a0 = error, a1 = value). Three calls:
#   HyperVisorDebug (2) with arguments 0x11 0x22 0x33    -> error 0
#   code 0x40 with argument 21 (the test serves it)     -> error 0, value 42
#   code 0x7f, which nobody serves                      -> error -2 (SBI_ERR_NOT_SUPPORTED)
# and prints one line: "hvc: DEBUG_ERROR SERVED_ERROR SERVED_VALUE UNKNOWN_ERROR" in hex.

    .include "sys.S"

    .equ EID_HVC, 0x485643

    .section .rodata
prefix:
    .ascii "hvc:"
space:
    .ascii " "
newline:
    .ascii "\n"

    .text
    .globl _start
_start:
    li a0, 0x11
    li a1, 0x22
    li a2, 0x33
    li a6, 2
    li a7, EID_HVC
    ecall
    mv s0, a0

    li a0, 21
    li a6, 0x40
    li a7, EID_HVC
    ecall
    mv s1, a0
    mv s2, a1

    li a6, 0x7f
    li a7, EID_HVC
    ecall
    mv s3, a0

    la a0, prefix
    li a1, 4
    call put_str
    mv s4, zero
    la s5, results
    sd s0, 0(s5)
    sd s1, 8(s5)
    sd s2, 16(s5)
    sd s3, 24(s5)
1:  la a0, space
    li a1, 1
    call put_str
    slli t0, s4, 3
    add t0, s5, t0
    ld a0, 0(t0)
    call put_hex
    addi s4, s4, 1
    li t0, 4
    blt s4, t0, 1b
    la a0, newline
    li a1, 1
    call put_str
    li a0, 0
    SYSCALL SYS_EXIT_GROUP

    ROUTINES

    .bss
    .balign 8
results:
    .zero 32
