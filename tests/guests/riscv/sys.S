# Shared by the riscv64 Linux test programs: raw syscalls (no libc) and hex output.
# Included at the top of each program (.include "sys.S"); ROUTINES, placed in .text, emits
# put_str, put_hex and checksum, which follow the normal calling convention.

    .equ SYS_WRITE, 64
    .equ SYS_EXIT, 93
    .equ SYS_EXIT_GROUP, 94
    .equ SYS_SCHED_SETAFFINITY, 122
    .equ SYS_SCHED_YIELD, 124
    .equ SYS_CLONE, 220
    .equ SYS_MMAP, 222
    .equ SYS_FTRUNCATE, 46
    .equ SYS_RISCV_FLUSH_ICACHE, 259
    .equ SYS_MEMFD_CREATE, 279

    .macro SYSCALL nr
    li a7, \nr
    ecall
    .endm

    .macro ROUTINES
# put_str(a0 = address, a1 = length): write(1, ...)
put_str:
    mv a2, a1
    mv a1, a0
    li a0, 1
    SYSCALL SYS_WRITE
    ret

# put_hex(a0 = value): 16 lower-case hex digits, no newline
put_hex:
    addi sp, sp, -32
    sd ra, 24(sp)
    li t0, 15
1:  andi t1, a0, 15
    li t2, 10
    blt t1, t2, 2f
    addi t1, t1, 'a' - '0' - 10
2:  addi t1, t1, '0'
    add t2, sp, t0
    sb t1, 0(t2)
    srli a0, a0, 4
    addi t0, t0, -1
    bgez t0, 1b
    mv a0, sp
    li a1, 16
    call put_str
    ld ra, 24(sp)
    addi sp, sp, 32
    ret

# checksum(a0 = start, a1 = end): s = s * FNV_PRIME + word over the 8-byte words of [start, end)
checksum:
    li t0, 0
    li t2, 0x100000001b3
1:  bgeu a0, a1, 2f
    ld t1, 0(a0)
    mul t0, t0, t2
    add t0, t0, t1
    addi a0, a0, 8
    j 1b
2:  mv a0, t0
    ret
    .endm
