/*
 * Entry of the x86_64 test guests. The VMM enters here in 64-bit mode at CPL0 with identity
 * page tables (user-accessible), RDI = vCPU index, RSI = boot info, RSP = a boot stack
 * (docs in packages/axvm/src/axvm/machines/x86/layout.py and bootinfo.py).
 *
 * On PVM (software nested KVM) CPL0 code is emulated at ~1 us per instruction and some
 * instructions are not emulated, so this file does the least possible at CPL0: read this vCPU's
 * CPUID APIC id (CPUID at CPL3 is not intercepted on PVM and shows the host's), load an IDT,
 * give this vCPU its own TSS (a stack for interrupts arriving at CPL3, and an all-zero I/O
 * permission bitmap: on PVM, IOPL=3 alone does not let CPL3 reach the ports), and IRETQ to CPL3
 * with IOPL=3 so C code can do port I/O and cli/sti natively. Only absolute addressing is used
 * at CPL0 (a RIP-relative LEA with a negative displacement was seen mis-emulated).
 */
    .set USER_CS, 0x2b
    .set USER_DS, 0x23
    .set KERNEL_DS, 0x18
    .set RFLAGS_IOPL3, 0x3002
    .set MAX_CPUS, 16
    .set TSS_SIZE, 0x2100                /* 0x68 TSS + 8 KiB I/O bitmap + the 0xff terminator */
    .set IO_BITMAP, 0x68
    .set TSS_LIMIT, 0x2068

    .section .text.start, "ax"
    .globl _start
_start:
    cli
    mov %rdi, %r12                      /* vCPU index */
    mov %rsi, %r13                      /* boot info */

    /* CPUID leaf 1 EBX[31:24]: the initial APIC id KVM gives this vCPU. */
    mov $1, %eax
    xor %ecx, %ecx
    cpuid
    shr $24, %ebx
    mov %ebx, cpuid_apic_ids(,%r12,4)

    /* This vCPU's TSS: RSP0 = its own interrupt stack, an I/O bitmap allowing every port. */
    mov %r12, %rax
    imul $TSS_SIZE, %rax, %rbx
    add $tss_area, %rbx                 /* rbx = this vCPU's TSS */
    mov %r12, %rax
    inc %rax
    shl $12, %rax
    add $irq_stacks, %rax
    mov %rax, 4(%rbx)                   /* RSP0 */
    movw $IO_BITMAP, 0x66(%rbx)         /* the bitmap (zeroed .bss: all ports allowed) follows */
    movb $0xff, TSS_LIMIT(%rbx)         /* the byte after the bitmap must be all ones */

    /* Its TSS descriptor in this vCPU's GDT copy (the VMM's GDT is shared by every vCPU). */
    mov %r12, %rax
    imul $64, %rax, %rdi
    add $gdt_area, %rdi                 /* rdi = this vCPU's GDT (8 entries) */
    mov $gdt_template, %rsi
    mov $8, %rcx
1:  mov (%rsi), %rax
    mov %rax, (%rdi)
    add $8, %rsi
    add $8, %rdi
    dec %rcx
    jnz 1b
    sub $64, %rdi
    mov %rbx, %rax                      /* TSS descriptor: base 15:0 -> 31:16, 23:16 -> 39:32, 31:24 -> 63:56 */
    and $0xffff, %rax
    shl $16, %rax
    mov %rbx, %rdx
    shr $16, %rdx
    and $0xff, %rdx
    shl $32, %rdx
    or %rdx, %rax
    mov %rbx, %rdx
    shr $24, %rdx
    and $0xff, %rdx
    shl $56, %rdx
    or %rdx, %rax
    mov $0x0000890000002068, %rdx       /* present, type 9 (available 64-bit TSS), limit 0x2068 */
    or %rdx, %rax
    mov %rax, 0x30(%rdi)
    mov %rbx, %rax
    shr $32, %rax
    mov %rax, 0x38(%rdi)

    mov %r12, %rax
    imul $16, %rax, %rdx
    add $gdtr_area, %rdx
    movw $63, (%rdx)
    mov %rdi, 2(%rdx)
    lgdt (%rdx)
    mov $0x30, %ax
    ltr %ax
    lidt idtr

    /* A guest that defines stay_at_cpl0 = 1 (the interrupt test: on PVM, CPL3 code cannot sti, and
     * interrupts would need a return to CPL0) runs its C code here, emulated but complete. */
    cmpb $0, stay_at_cpl0
    jne user_entry

    /* CPL3 with IOPL=3: push SS, RSP, RFLAGS, CS, RIP and IRETQ. */
    mov %r12, %rax
    inc %rax
    shl $14, %rax
    add $user_stacks, %rax
    push $USER_DS
    push %rax
    push $RFLAGS_IOPL3
    push $USER_CS
    push $user_entry
    iretq

user_entry:
    call install_exception_handlers
    mov %r12, %rdi
    mov %r13, %rsi
    call guest_main
    mov %eax, %edi
    call guest_exit
2:  jmp 2b

/* Interrupt and exception stubs (CPL0). Each counts its vector; device vectors acknowledge
 * their source; exceptions report the vector through isa-debug-exit and stop the VM. */
    .macro exception_stub vector
    .globl vector_\vector
vector_\vector:
    mov $\vector, %al
    mov $0xe9, %dx
    jmp exception_common
    .endm
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    exception_stub \v
    .endr

exception_common:
    /* Status 0x40 + vector tells the host which exception hit (exit status (v << 1) | 1). */
    add $0x40, %al
    mov $0xf4, %dx
    out %al, %dx
3:  jmp 3b

    .globl vector_timer
vector_timer:                            /* LAPIC timer, vector 0x40 */
    push %rax
    mov $irq_counts, %eax                /* a register base: PVM's emulator is kinder to it */
    incq 0x40 * 8(%rax)                  /* one vCPU takes interrupts here: no lock needed */
    mov $0xfee000b0, %eax                /* LAPIC EOI (a 32-bit absolute would sign-extend) */
    movl $0, (%rax)
    pop %rax
    iretq

    .globl vector_uart
vector_uart:                             /* COM1 through the IOAPIC, vector 0x41 */
    push %rax
    push %rdx
    mov $irq_counts, %eax
    incq 0x41 * 8(%rax)
    mov $0x3fa, %dx
    in %dx, %al                          /* reading IIR acknowledges THRE */
    mov $0xfee000b0, %eax
    movl $0, (%rax)
    pop %rdx
    pop %rax
    iretq

    .section .data
    .weak stay_at_cpl0
stay_at_cpl0: .byte 0
    .balign 8
gdt_template:
    .quad 0
    .quad 0x00cf9b000000ffff             /* 0x08 code32 */
    .quad 0x00af9b000000ffff             /* 0x10 code64 */
    .quad 0x00cf93000000ffff             /* 0x18 data */
    .quad 0x00cff3000000ffff             /* 0x20 user data */
    .quad 0x00affb000000ffff             /* 0x28 user code64 */
    .quad 0, 0                           /* 0x30 TSS, filled per vCPU */

    .balign 16
idtr:
    .word 256 * 16 - 1
    .quad idt

    .section .bss
    .balign 4096
    .globl idt
idt:        .skip 256 * 16
    .globl irq_counts
irq_counts: .skip 256 * 8
gdt_area:   .skip 64 * MAX_CPUS
gdtr_area:  .skip 16 * MAX_CPUS
    .globl cpuid_apic_ids
cpuid_apic_ids: .skip 4 * MAX_CPUS
    .balign 16
tss_area:   .skip TSS_SIZE * MAX_CPUS
    .balign 4096
irq_stacks: .skip 4096 * MAX_CPUS
user_stacks: .skip 16384 * MAX_CPUS

    .section .note.GNU-stack, "", @progbits
