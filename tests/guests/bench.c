/* The exit-latency benchmark guest: N byte writes to port 0x80 (POST codes, no device behind
 * it), then power off. N comes from the command line ("n=NUMBER", default 100000). */
#include "guest.h"

int guest_main(u64 cpu, struct boot_info *info) {
    if (cpu != 0)
        for (;;)
            pause();
    u64 n = 0;
    const char *cmdline = (const char *)info->cmdline_gpa;
    for (u32 i = 0; i + 2 <= info->cmdline_len; i++)
        if (cmdline[i] == 'n' && cmdline[i + 1] == '=')
            for (u32 j = i + 2; j < info->cmdline_len && cmdline[j] >= '0' && cmdline[j] <= '9'; j++)
                n = n * 10 + (u64)(cmdline[j] - '0');
    if (!n)
        n = 100000;
    for (u64 i = 0; i < n; i++)
        outb(0x80, (u8)i);
    poweroff();
}
