/* Interrupts from the in-kernel LAPIC timer and from COM1 (its THR-empty interrupt, through the
 * in-kernel IOAPIC). This guest stays at CPL0 (PVM emulates it): a CPL3 sti faults on PVM. It
 * waits with hlt, prints the counts and powers off, or exits 5 if either source stays silent. */
#include "guest.h"

const u8 stay_at_cpl0 = 1;

#define LAPIC_SVR 0xf0
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_DIV 0x3e0
#define TIMER_PERIODIC (1u << 17)
#define WANT_TICKS 5
#define WAIT_LIMIT 100000UL /* halts: each ends at an interrupt (the timer keeps coming) */

static void ioapic_route(u32 pin, u32 vector, u32 apic_id) {
    mmio_write32(IOAPIC, 0x10 + 2 * pin);
    mmio_write32(IOAPIC + 0x10, vector); /* fixed delivery, physical, edge, active high, unmasked */
    mmio_write32(IOAPIC, 0x11 + 2 * pin);
    mmio_write32(IOAPIC + 0x10, apic_id << 24);
}

static int wait_for(int vector, u64 count) {
    for (u64 halts = 0; halts < WAIT_LIMIT; halts++) {
        if (irq_counts[vector] >= count)
            return 1;
        hlt(); /* interrupts are enabled: wakes at the next one */
    }
    return 0;
}

int guest_main(u64 cpu, struct boot_info *info) {
    (void)info;
    if (cpu != 0)
        for (;;)
            pause();
    idt_set(TIMER_VECTOR, vector_timer);
    idt_set(UART_VECTOR, vector_uart);

    outb(0x21, 0xff); /* mask the 8259 PICs: KVM wires the BSP's LINT0 to them (virtual wire), */
    outb(0xa1, 0xff); /* so unmasked they would deliver IRQ 4 at their reset vector base, 4 */
    mmio_write32(LAPIC + LAPIC_SVR, 0x1ff); /* APIC software enable, spurious vector 0xff */
    mmio_write32(LAPIC + LAPIC_TIMER_DIV, 0xb); /* divide by 1 */
    mmio_write32(LAPIC + LAPIC_LVT_TIMER, TIMER_PERIODIC | TIMER_VECTOR);
    mmio_write32(LAPIC + LAPIC_TIMER_INIT, 1000000);
    sti();
    int timer_ok = wait_for(TIMER_VECTOR, WANT_TICKS);

    ioapic_route(4, UART_VECTOR, mmio_read32(LAPIC + 0x20) >> 24);
    outb(COM1 + 1, 0x02); /* IER: THR-empty interrupt; THR is empty, so it fires at once */
    int uart_ok = wait_for(UART_VECTOR, 1); /* the timer still ticks, so hlt cannot hang */
    outb(COM1 + 1, 0x00);
    cli();
    mmio_write32(LAPIC + LAPIC_LVT_TIMER, 1u << 16); /* mask the timer again */

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
