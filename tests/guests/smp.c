/* Every vCPU reports its index, its CPUID initial APIC id and its in-kernel LAPIC's id; the last one to
 * report checks that every id matched and powers off (or exits 7). */
#include "guest.h"

static volatile u32 print_lock;
static volatile u32 reported;
static volatile u32 mismatches;

int guest_main(u64 cpu, struct boot_info *info) {
    u32 cpuid_id = cpuid_apic_ids[cpu]; /* read at CPL0 by start.S */
    u32 lapic_id = mmio_read32(LAPIC + 0x20) >> 24;
    lock(&print_lock);
    puts("cpu ");
    put_dec(cpu);
    puts(" apic ");
    put_dec(cpuid_id);
    puts(" lapic ");
    put_dec(lapic_id);
    putc('\n');
    if (cpuid_id != cpu || lapic_id != cpu)
        mismatches++;
    unlock(&print_lock);
    if (__atomic_add_fetch(&reported, 1, __ATOMIC_ACQ_REL) != info->cpu_count)
        for (;;)
            pause();
    lock(&print_lock);
    puts("all ");
    put_dec(info->cpu_count);
    puts(" cpus reported\n");
    unlock(&print_lock);
    if (mismatches)
        return 7;
    poweroff();
}
