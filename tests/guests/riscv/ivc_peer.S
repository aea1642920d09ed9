# A bare-metal riscv64 guest for the riscv virt machine (soft CPU) that answers an x86 guest over
# an inter-VM channel (tests/guests/ivc.c publishes it: VM PUBLISHER, key 0x42). The VMM starts
# the hart in M mode at _start; an M-mode ecall would trap to M mode itself, so it opens all of
# memory to S mode (PMP entry 0: NAPOT over everything, RWX) and drops to S mode with mret.
# There it subscribes to the channel with AxVisor's hypercall (ecall, a7 = 0x485643 "HVC",
# a6 = HIVCSubscribChannel 4, a0..a3 = publisher, key, &base, &size; a0 = SBI error), retrying
# while the answer is INVALID_PARAM (-3: not published yet), waits for the message (state word
# 1), prints it on the UART, writes its reply and state 2, and powers off (sifive_test, 0x5555).
# Another error prints "riscv: subscribe failed" and powers off with status 3 (0x3333).
# Channel layout: see tests/guests/ivc.c. Build: riscv64-linux-gnu-as + ld -Ttext=0x80000000.

    .equ UART, 0x10000000
    .equ FINISHER, 0x100000
    .equ EID_HVC, 0x485643
    .equ HIVC_SUBSCRIBE, 4
    .equ INVALID_PARAM, -3
    .ifndef PUBLISHER
    .equ PUBLISHER, 60
    .endif
    .equ KEY, 0x42

    .text
    .globl _start
_start:
    li t0, -1
    csrw pmpaddr0, t0
    li t0, 0x1f                       # NAPOT | X | W | R
    csrw pmpcfg0, t0
    li t0, 3 << 11                    # mstatus.MPP: clear, then S (01)
    csrc mstatus, t0
    li t0, 1 << 11
    csrs mstatus, t0
    la t0, supervisor
    csrw mepc, t0
    mret

supervisor:
    la sp, stack_top
subscribe:
    li a0, PUBLISHER
    li a1, KEY
    la a2, channel_base
    la a3, channel_size
    li a6, HIVC_SUBSCRIBE
    li a7, EID_HVC
    ecall
    beqz a0, subscribed
    li t0, INVALID_PARAM
    bne a0, t0, failed
    li t0, 20000                      # not published yet: wait a little and ask again
1:  addi t0, t0, -1
    bnez t0, 1b
    j subscribe

subscribed:
    la t0, channel_base
    ld s0, 0(t0)                      # s0 = the channel
    li t1, 1
2:  ld t0, 0(s0)                      # wait for the message
    bne t0, t1, 2b
    fence r, r
    la a0, got
    call puts
    addi a0, s0, 0x10
    call puts
    la a0, newline
    call puts
    la a0, reply                      # the reply at 0x100, NUL included
    addi a1, s0, 0x100
3:  lbu t0, 0(a0)
    sb t0, 0(a1)
    addi a0, a0, 1
    addi a1, a1, 1
    bnez t0, 3b
    fence w, w
    li t0, 2
    sd t0, 0(s0)
    li t0, 0x5555                     # power off, status 0
    j finish

failed:
    la a0, failure
    call puts
    li t0, 0x33333                    # FAIL (0x3333) with code 3 in the upper half
finish:
    li t1, FINISHER
    sw t0, 0(t1)
4:  j 4b

# puts(a0): the NUL-terminated string at a0 to the UART's transmit register.
puts:
    li t1, UART
5:  lbu t0, 0(a0)
    beqz t0, 6f
    sb t0, 0(t1)
    addi a0, a0, 1
    j 5b
6:  ret

    .section .rodata
got:
    .asciz "riscv read the message: "
newline:
    .asciz "\n"
reply:
    .asciz "pong from riscv over IVC"
failure:
    .asciz "riscv: subscribe failed\n"

    .data
    .balign 8
channel_base:
    .dword 0
channel_size:
    .dword 0
    .balign 16
    .space 1024
stack_top:
