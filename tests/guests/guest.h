/* The test guests' tiny runtime: port and MMIO access, COM1 output, exit, interrupts.
 * Everything here runs at CPL3 with IOPL=3 (see start.S). */
#ifndef GUEST_H
#define GUEST_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;

#define COM1 0x3f8
#define DEBUG_EXIT 0xf4
#define ACPI_PM1A_CNT 0x604
#define LAPIC 0xfee00000UL
#define IOAPIC 0xfec00000UL
#define TIMER_VECTOR 0x40
#define UART_VECTOR 0x41

struct boot_region { u64 gpa, size; u32 type, reserved; };
struct boot_info {
    u32 magic, version, cpu_count, region_count;
    u64 cmdline_gpa;
    u32 cmdline_len, reserved;
    struct boot_region regions[];
};
#define BOOT_INFO_MAGIC 0x42565841u

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void pause(void) { __asm__ volatile("pause"); }
/* sti/cli/hlt: only for guests that stay at CPL0 (PVM faults a CPL3 sti even with IOPL=3). */
static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void hlt(void) { __asm__ volatile("hlt" ::: "memory"); }

#define MMIO_ACCESSORS(bits, type) \
    static inline type mmio_read##bits(u64 a) { return *(volatile type *)a; } \
    static inline void mmio_write##bits(u64 a, type v) { *(volatile type *)a = v; }
MMIO_ACCESSORS(8, u8)
MMIO_ACCESSORS(16, u16)
MMIO_ACCESSORS(32, u32)
MMIO_ACCESSORS(64, u64)

void putc(char c);
void puts(const char *s);
void put_hex(u64 v);
void put_dec(u64 v);
void guest_exit(int status) __attribute__((noreturn));
void poweroff(void) __attribute__((noreturn));
void idt_set(int vector, void (*handler)(void));
void install_exception_handlers(void);
void lock(volatile u32 *l);
void unlock(volatile u32 *l);
int guest_main(u64 cpu, struct boot_info *info);

extern volatile u64 irq_counts[256];
extern volatile u32 cpuid_apic_ids[];
extern void vector_timer(void), vector_uart(void);

#endif
