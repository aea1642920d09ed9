#include "guest.h"

extern void vector_0(void), vector_1(void), vector_2(void), vector_3(void), vector_4(void), vector_5(void),
    vector_6(void), vector_7(void), vector_8(void), vector_9(void), vector_10(void), vector_11(void),
    vector_12(void), vector_13(void), vector_14(void), vector_15(void), vector_16(void), vector_17(void),
    vector_18(void), vector_19(void), vector_20(void), vector_21(void), vector_22(void), vector_23(void),
    vector_24(void), vector_25(void), vector_26(void), vector_27(void), vector_28(void), vector_29(void),
    vector_30(void), vector_31(void);
extern u8 idt[];

void putc(char c) {
    while (!(inb(COM1 + 5) & 0x20))
        pause();
    outb(COM1, (u8)c);
}

void puts(const char *s) {
    while (*s)
        putc(*s++);
}

void put_hex(u64 v) {
    puts("0x");
    for (int shift = 60; shift >= 0; shift -= 4)
        putc("0123456789abcdef"[(v >> shift) & 15]);
}

void put_dec(u64 v) {
    char buf[21];
    int i = 20;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    puts(buf + i);
}

void guest_exit(int status) {
    /* isa-debug-exit: the VMM exits with (status << 1) | 1; 0x7f is "guest asked for 0". */
    outb(DEBUG_EXIT, (u8)status);
    for (;;)
        pause();
}

void poweroff(void) {
    /* ACPI PM1a control: SLP_EN with SLP_TYP 0 (soft off); the VMM exits with status 0. */
    __asm__ volatile("outw %0, %1" : : "a"((u16)0x2000), "Nd"((u16)ACPI_PM1A_CNT));
    for (;;)
        pause();
}

void idt_set(int vector, void (*handler)(void)) {
    u64 a = (u64)handler;
    u8 *e = idt + vector * 16;
    /* 64-bit interrupt gate: offset 15:0, selector 0x10, IST 0, type 0xE, DPL, present. */
    e[0] = a & 0xff; e[1] = (a >> 8) & 0xff;
    e[2] = 0x10; e[3] = 0;
    e[4] = 0; e[5] = 0x8e;
    e[6] = (a >> 16) & 0xff; e[7] = (a >> 24) & 0xff;
    *(u32 *)(e + 8) = (u32)(a >> 32);
    *(u32 *)(e + 12) = 0;
}

void lock(volatile u32 *l) {
    while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
        pause();
}

void unlock(volatile u32 *l) { __atomic_store_n(l, 0, __ATOMIC_RELEASE); }

void install_exception_handlers(void) {
    void (*handlers[32])(void) = {
        vector_0, vector_1, vector_2, vector_3, vector_4, vector_5, vector_6, vector_7, vector_8, vector_9,
        vector_10, vector_11, vector_12, vector_13, vector_14, vector_15, vector_16, vector_17, vector_18,
        vector_19, vector_20, vector_21, vector_22, vector_23, vector_24, vector_25, vector_26, vector_27,
        vector_28, vector_29, vector_30, vector_31};
    for (int v = 0; v < 32; v++)
        idt_set(v, handlers[v]);
}
