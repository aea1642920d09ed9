/* Writes and reads back the scratch register device (emu_type 0x0 at 0xd0000000) at every
 * access width, checks its identification value, and checks that an address with no device
 * reads all-ones. Prints "mmio ok" and powers off, or names the failing check and exits 3. */
#include "guest.h"

#define SCRATCH 0xd0000000UL
#define NOTHING 0xd0100000UL

static int failures;

static void check(const char *what, u64 got, u64 want) {
    if (got != want) {
        puts("mmio FAIL ");
        puts(what);
        puts(": got ");
        put_hex(got);
        puts(" want ");
        put_hex(want);
        putc('\n');
        failures++;
    }
}

int guest_main(u64 cpu, struct boot_info *info) {
    (void)info;
    if (cpu != 0)
        for (;;)
            pause();
    check("id", mmio_read64(SCRATCH), 0x4354415243535841UL); /* "AXSCRATC" */
    mmio_write64(SCRATCH + 8, 0x0123456789abcdefUL);
    check("u64", mmio_read64(SCRATCH + 8), 0x0123456789abcdefUL);
    check("u8 of u64", mmio_read8(SCRATCH + 8), 0xef);
    mmio_write32(SCRATCH + 0x10, 0xcafebabe);
    check("u32", mmio_read32(SCRATCH + 0x10), 0xcafebabe);
    mmio_write16(SCRATCH + 0x16, 0xbeef);
    check("u16", mmio_read16(SCRATCH + 0x16), 0xbeef);
    for (u64 i = 0; i < 64; i++)
        mmio_write8(SCRATCH + 0x100 + i, (u8)(i * 7));
    u64 sum = 0;
    for (u64 i = 0; i < 64; i++)
        sum += mmio_read8(SCRATCH + 0x100 + i);
    u64 want = 0;
    for (u64 i = 0; i < 64; i++)
        want += (u8)(i * 7);
    check("u8 bytes", sum, want);
    check("no device", mmio_read32(NOTHING), 0xffffffff);
    if (failures)
        return 3;
    puts("mmio ok\n");
    poweroff();
}
