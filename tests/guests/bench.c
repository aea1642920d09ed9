/* The exit-latency benchmark guest: N byte writes to one port (default 0x80, POST codes, no
 * device behind it), then power off. The command line sets both: "n=NUMBER" (default 100000),
 * "port=NUMBER" (decimal). */
#include "guest.h"

static u64 number_after(const char *cmdline, u32 len, const char *key, u32 key_len) {
    for (u32 i = 0; i + key_len <= len; i++) {
        u32 k = 0;
        while (k < key_len && cmdline[i + k] == key[k])
            k++;
        if (k != key_len || (i > 0 && cmdline[i - 1] != ' '))
            continue;
        u64 n = 0;
        for (u32 j = i + key_len; j < len && cmdline[j] >= '0' && cmdline[j] <= '9'; j++)
            n = n * 10 + (u64)(cmdline[j] - '0');
        return n;
    }
    return 0;
}

int guest_main(u64 cpu, struct boot_info *info) {
    if (cpu != 0)
        for (;;)
            pause();
    const char *cmdline = (const char *)info->cmdline_gpa;
    u64 n = number_after(cmdline, info->cmdline_len, "n=", 2);
    u64 port = number_after(cmdline, info->cmdline_len, "port=", 5);
    if (!n)
        n = 100000;
    if (!port || port > 0xffff)
        port = 0x80;
    for (u64 i = 0; i < n; i++)
        outb((u16)port, (u8)i);
    poweroff();
}
