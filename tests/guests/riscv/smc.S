# Cross-modifying code as Linux allows it on riscv: one memfd page mapped twice, a writable view W
# and an executable view X. Each iteration writes a short function through W (an immediate and an
# instruction sequence that change every time), calls riscv_flush_icache(X, X + 4096, 0) as the
# kernel ABI requires, runs the function through X and compares what it returned with what the
# code just written computes. A stale translation of X's page returns the previous iteration's
# value. With THREADS=1 a second thread runs the code, moving to another hart every 8
# iterations (sched_setaffinity, errors ignored on one hart), so the writer's flush has to reach
# other harts (SBI remote fence.i, or the fence.i Linux does when the thread switches in).
# Assembled with --defsym THREADS=0|1 --defsym ITERATIONS=n. Prints one line:
#   smc: ok MODE ITERATIONS       or      smc: FAIL iteration I got V expected E
# THREADS=1 adds " harts MASK" to the ok line: the harts the second thread ran the code on.

    .include "sys.S"

    .equ SYS_GETCPU, 168
    .equ CLONE_THREAD_FLAGS, 0x50f00  # CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM
    .equ STACK_SIZE, 65536
    .equ PAGE, 4096

    .section .rodata
memfd_name:
    .asciz "smc"
ok_text:
    .ascii "smc: ok "
ok_end:
    .if THREADS
mode_text:
    .ascii "threads "
    .else
mode_text:
    .ascii "single "
    .endif
mode_end:
fail_text:
    .ascii "smc: FAIL iteration "
fail_end:
got_text:
    .ascii " got "
got_end:
expected_text:
    .ascii " expected "
expected_end:
harts_text:
    .ascii " harts "
harts_end:
setup_text:
    .ascii "smc: FAIL setup\n"
setup_end:
newline:
    .ascii "\n"
    .equ OK_LEN, ok_end - ok_text
    .equ MODE_LEN, mode_end - mode_text
    .equ FAIL_LEN, fail_end - fail_text
    .equ GOT_LEN, got_end - got_text
    .equ EXPECTED_LEN, expected_end - expected_text
    .equ SETUP_LEN, setup_end - setup_text
    .equ HARTS_LEN, harts_end - harts_text

    .data
    .balign 8
seq:    .word 0     # iteration the writer has published (threads)
done:   .word 0     # iteration the executor has run (threads)
result: .dword 0    # what the executor's call returned (threads)
harts:  .dword 0    # bit n: the executor ran the code on hart n (threads)

    .text
    .globl _start
_start:
    la a0, memfd_name
    li a1, 0
    SYSCALL SYS_MEMFD_CREATE
    bltz a0, setup_failed
    mv s1, a0
    li a1, PAGE
    SYSCALL SYS_FTRUNCATE
    bnez a0, setup_failed
    li a2, 3                    # PROT_READ | PROT_WRITE
    call map_shared
    mv s2, a0                   # W
    li a2, 5                    # PROT_READ | PROT_EXEC
    call map_shared
    mv s3, a0                   # X
    li s4, 1                    # iteration
    .if THREADS
    li a0, 0
    call pin                    # the writer stays on hart 0
    li a0, 0
    li a1, STACK_SIZE
    li a2, 3
    li a3, 0x22                 # MAP_PRIVATE | MAP_ANONYMOUS
    li a4, -1
    li a5, 0
    SYSCALL SYS_MMAP
    li t0, -4096
    bgeu a0, t0, setup_failed
    li t0, STACK_SIZE
    add a1, a0, t0
    li a0, CLONE_THREAD_FLAGS
    li a2, 0
    li a3, 0
    li a4, 0
    SYSCALL SYS_CLONE
    bltz a0, setup_failed
    beqz a0, executor
    .endif

loop:
    mv a0, s4
    call write_code
    mv s5, a0                   # expected
    mv a0, s3
    li t0, PAGE
    add a1, s3, t0
    li a2, 0                    # every hart running this mm
    SYSCALL SYS_RISCV_FLUSH_ICACHE
    bnez a0, setup_failed
    .if THREADS
    fence rw, w
    la t1, seq
    sw s4, 0(t1)
1:  la t1, done
    lw t0, 0(t1)
    beq t0, s4, 2f
    SYSCALL SYS_SCHED_YIELD
    j 1b
2:  fence r, rw
    la t1, result
    ld a0, 0(t1)
    .else
    jalr ra, 0(s3)
    .endif
    bne a0, s5, mismatch
    addi s4, s4, 1
    li t0, ITERATIONS
    ble s4, t0, loop

    la a0, ok_text
    li a1, OK_LEN
    call put_str
    la a0, mode_text
    li a1, MODE_LEN
    call put_str
    li a0, ITERATIONS
    call put_hex
    .if THREADS
    la a0, harts_text
    li a1, HARTS_LEN
    call put_str
    la t1, harts
    ld a0, 0(t1)
    call put_hex
    .endif
    call put_newline
    li a0, 0
    SYSCALL SYS_EXIT_GROUP

mismatch:
    mv s6, a0
    la a0, fail_text
    li a1, FAIL_LEN
    call put_str
    mv a0, s4
    call put_hex
    la a0, got_text
    li a1, GOT_LEN
    call put_str
    mv a0, s6
    call put_hex
    la a0, expected_text
    li a1, EXPECTED_LEN
    call put_str
    mv a0, s5
    call put_hex
    call put_newline
    li a0, 1
    SYSCALL SYS_EXIT_GROUP

setup_failed:
    la a0, setup_text
    li a1, SETUP_LEN
    call put_str
    li a0, 2
    SYSCALL SYS_EXIT_GROUP

    .if THREADS
# The second thread: waits for each published iteration, runs X, reports the result.
executor:
    li t0, ITERATIONS
    bgt s4, t0, 3f
    andi t0, s4, 7
    li t1, 1
    bne t0, t1, 1f
    srli a0, s4, 3              # at i = 1, 9, 17 ...: move to hart 1 + (i / 8) % 3
    li t0, 3
    remu a0, a0, t0
    addi a0, a0, 1
    call pin
1:  la t1, seq
    lw t0, 0(t1)
    beq t0, s4, 2f
    SYSCALL SYS_SCHED_YIELD
    j 1b
2:  fence r, rw
    jalr ra, 0(s3)
    mv s6, a0
    addi sp, sp, -16
    mv a0, sp
    li a1, 0
    li a2, 0
    SYSCALL SYS_GETCPU
    lw t0, 0(sp)
    addi sp, sp, 16
    li t1, 1
    sll t1, t1, t0
    la t2, harts
    ld t3, 0(t2)
    or t3, t3, t1
    sd t3, 0(t2)
    la t1, result
    sd s6, 0(t1)
    fence rw, w
    la t1, done
    sw s4, 0(t1)
    addi s4, s4, 1
    j executor
3:  li a0, 0
    SYSCALL SYS_EXIT            # this thread only
    .endif

# map_shared(a2 = prot) -> a0: the memfd (s1) page mapped MAP_SHARED
map_shared:
    li a0, 0
    li a1, PAGE
    li a3, 1                    # MAP_SHARED
    mv a4, s1
    li a5, 0
    li a7, SYS_MMAP
    ecall
    li t0, -4096
    bgeu a0, t0, setup_failed
    ret

# write_code(a0 = i) -> a0 = the value the written function returns.
# i even: addi a0, zero, imm; ret.  i odd: addi a0, zero, imm; slli a0, a0, 1; ret.
# imm = (i * 37) & 0x3ff, so consecutive iterations differ in both value and length.
write_code:
    li t0, 37
    mul t0, a0, t0
    andi t0, t0, 0x3ff
    slli t1, t0, 20
    ori t1, t1, 0x513           # addi a0, zero, imm
    sw t1, 0(s2)
    li t2, 0x8067               # ret (jalr zero, 0(ra))
    andi t3, a0, 1
    bnez t3, 1f
    sw t2, 4(s2)
    mv a0, t0
    ret
1:  li t1, 0x00151513           # slli a0, a0, 1
    sw t1, 4(s2)
    sw t2, 8(s2)
    slli a0, t0, 1
    ret

# pin(a0 = hart): sched_setaffinity(0, 8, {hart}); the result is ignored
pin:
    addi sp, sp, -16
    li t0, 1
    sll t0, t0, a0
    sd t0, 0(sp)
    li a0, 0
    li a1, 8
    mv a2, sp
    SYSCALL SYS_SCHED_SETAFFINITY
    addi sp, sp, 16
    ret

put_newline:
    la a0, newline
    li a1, 1
    j put_str

    ROUTINES
