/* An interactive guest: echoes what arrives on COM1 (polling LSR), upper-cased so the test can
 * tell the echo from the terminal's own; a '.' on its own line powers off. */
#include "guest.h"

int guest_main(u64 cpu, struct boot_info *info) {
    (void)info;
    if (cpu != 0)
        for (;;)
            pause();
    puts("echo ready\n");
    char previous = '\n';
    for (;;) {
        while (!(inb(COM1 + 5) & 0x01))
            pause();
        char c = (char)inb(COM1);
        if (c == '\r')
            c = '\n';
        if (c == '\n' && previous == '.') {
            puts("\nbye\n");
            poweroff();
        }
        putc(c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c);
        previous = c;
    }
}
