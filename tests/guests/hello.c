/* Prints a greeting (and the command line, if any). It powers off (status 0) unless the command
 * line says "exit=N", then it leaves through isa-debug-exit and the VMM exits with (N << 1) | 1. */
#include "guest.h"

static int parse_exit_status(const char *cmdline, u32 len) {
    for (u32 i = 0; i + 5 <= len; i++) {
        if (cmdline[i] == 'e' && cmdline[i + 1] == 'x' && cmdline[i + 2] == 'i' && cmdline[i + 3] == 't'
            && cmdline[i + 4] == '=') {
            int status = 0;
            for (u32 j = i + 5; j < len && cmdline[j] >= '0' && cmdline[j] <= '9'; j++)
                status = status * 10 + cmdline[j] - '0';
            return status;
        }
    }
    return -1;
}

int guest_main(u64 cpu, struct boot_info *info) {
    if (cpu != 0)
        for (;;)
            pause();
    puts("Hello from an x86_64 guest at CPL3\n");
    int status = -1;
    if (info->magic == BOOT_INFO_MAGIC && info->cmdline_len) {
        const char *cmdline = (const char *)info->cmdline_gpa;
        puts("cmdline: ");
        puts(cmdline);
        putc('\n');
        status = parse_exit_status(cmdline, info->cmdline_len);
    }
    if (status < 0)
        poweroff();
    return status;
}
