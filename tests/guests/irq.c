/* Interrupts from the in-kernel LAPIC timer and from COM1 (its THR-empty interrupt, through the
 * in-kernel IOAPIC), taken while running at CPL3 with interrupts enabled. Prints the counts and
 * powers off, or exits 5 if either source stays silent. */
#include "guest.h"

#define LAPIC_SVR 0xf0
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_DIV 0x3e0
#define TIMER_PERIODIC (1u << 17)
#define WANT_TICKS 5
#define SPIN_LIMIT 2000000000UL

static void ioapic_route(u32 pin, u32 vector, u32 apic_id) {
    mmio_write32(IOAPIC, 0x10 + 2 * pin);
    mmio_write32(IOAPIC + 0x10, vector); /* fixed delivery, physical, edge, active high, unmasked */
    mmio_write32(IOAPIC, 0x11 + 2 * pin);
    mmio_write32(IOAPIC + 0x10, apic_id << 24);
}

static int wait_for(int vector, u64 count) {
    for (u64 spins = 0; spins < SPIN_LIMIT; spins++)
        if (irq_counts[vector] >= count)
            return 1;
        else
            pause();
    return 0;
}

int guest_main(u64 cpu, struct boot_info *info) {
    (void)info;
    if (cpu != 0)
        for (;;)
            pause();
    idt_set(TIMER_VECTOR, vector_timer);
    idt_set(UART_VECTOR, vector_uart);

    mmio_write32(LAPIC + LAPIC_SVR, 0x1ff); /* APIC software enable, spurious vector 0xff */
    mmio_write32(LAPIC + LAPIC_TIMER_DIV, 0xb); /* divide by 1 */
    mmio_write32(LAPIC + LAPIC_LVT_TIMER, TIMER_PERIODIC | TIMER_VECTOR);
    mmio_write32(LAPIC + LAPIC_TIMER_INIT, 1000000);
    sti();
    int timer_ok = wait_for(TIMER_VECTOR, WANT_TICKS);
    mmio_write32(LAPIC + LAPIC_LVT_TIMER, 1u << 16); /* mask the timer again */

    ioapic_route(4, UART_VECTOR, mmio_read32(LAPIC + 0x20) >> 24);
    outb(COM1 + 1, 0x02); /* IER: THR-empty interrupt; THR is empty, so it fires at once */
    int uart_ok = wait_for(UART_VECTOR, 1);
    outb(COM1 + 1, 0x00);
    cli();

    puts("timer interrupts: ");
    put_dec(irq_counts[TIMER_VECTOR]);
    puts(", uart interrupts: ");
    put_dec(irq_counts[UART_VECTOR]);
    putc('\n');
    if (!timer_ok || !uart_ok)
        return 5;
    puts("irq ok\n");
    poweroff();
}
