/* Fills every RAM region the boot info lists (above 1 MiB and outside this image) with a
 * pattern derived from each qword's address, reads it all back, reports the byte count and
 * powers off, leaving the pattern for the host to check (or exits 9 on a mismatch). */
#include "guest.h"

#define PATTERN(addr) ((addr) * 0x9E3779B97F4A7C15UL ^ 0xA5A5A5A5A5A5A5A5UL)
#define LOW_LIMIT 0x400000UL /* the image, its bss and stacks live below 4 MiB */

extern u8 __image_end[];

int guest_main(u64 cpu, struct boot_info *info) {
    if (cpu != 0)
        for (;;)
            pause();
    u64 bytes = 0, bad = 0;
    u64 floor = (u64)__image_end > LOW_LIMIT ? (u64)__image_end : LOW_LIMIT;
    for (u32 pass = 0; pass < 2; pass++) {
        for (u32 r = 0; r < info->region_count; r++) {
            struct boot_region *region = &info->regions[r];
            if (region->type != 1)
                continue;
            u64 start = region->gpa < floor ? floor : region->gpa;
            u64 end = region->gpa + region->size;
            for (u64 a = (start + 7) & ~7UL; a + 8 <= end; a += 8) {
                if (pass == 0) {
                    *(volatile u64 *)a = PATTERN(a);
                    bytes += 8;
                } else if (*(volatile u64 *)a != PATTERN(a)) {
                    bad++;
                }
            }
        }
    }
    puts("memory: wrote and checked ");
    put_dec(bytes);
    puts(" bytes, ");
    put_dec(bad);
    puts(" bad\n");
    if (bad)
        return 9;
    poweroff();
}
