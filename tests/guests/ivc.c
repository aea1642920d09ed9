/* Publishes an inter-VM channel (AxVisor's IVC, key 0x42) through the hypercall doorbell, writes
 * a message into it and waits for a peer's reply there (tests/guests/riscv/ivc_peer.S), prints the
 * reply and powers off. Any hypercall error is printed and the guest exits with status 3.
 *
 * Hypercalls on KVM: the code in rax, arguments in rdi, rsi, rdx, rcx, then `out %eax, $0xe0`
 * (the x86 machine's doorbell, packages/axvm/src/axvm/machines/x86/machine.py); rax = result.
 *
 * The channel's layout (shared with the peer): a u64 state word at 0 (1: the message is there,
 * 2: the reply is there), the message at 0x10, the reply at 0x100, both NUL-terminated. */
#include "guest.h"

#define HIVC_PUBLISH 3
#define CHANNEL_KEY 0x42
#define MESSAGE "ping from x86 over IVC"

static u64 hypercall3(u64 code, u64 a0, u64 a1, u64 a2) {
    u64 ret;
    __asm__ volatile("outl %%eax, $0xe0" : "=a"(ret) : "a"(code), "D"(a0), "S"(a1), "d"(a2) : "memory");
    return ret;
}

static volatile u64 channel_base, channel_size;

int guest_main(u64 cpu, struct boot_info *info) {
    (void)info;
    if (cpu != 0)
        for (;;)
            pause();
    channel_size = 0x1000;
    u64 ret = hypercall3(HIVC_PUBLISH, CHANNEL_KEY, (u64)&channel_base, (u64)&channel_size);
    if (ret) {
        puts("x86: publish failed: ");
        put_hex(ret);
        putc('\n');
        guest_exit(3);
    }
    volatile char *channel = (volatile char *)channel_base;
    const char *message = MESSAGE;
    u64 i = 0;
    for (; message[i]; i++)
        channel[0x10 + i] = message[i];
    channel[0x10 + i] = 0;
    __asm__ volatile("" ::: "memory");
    *(volatile u64 *)channel = 1;
    while (*(volatile u64 *)channel != 2)
        pause();
    puts("x86 read the reply: ");
    for (i = 0; i < 0xf0 && channel[0x100 + i]; i++)
        putc(channel[0x100 + i]);
    putc('\n');
    poweroff();
}
