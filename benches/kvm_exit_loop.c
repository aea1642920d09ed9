/*
 * The C peer of benches/exit_latency.py: runs the same guest (memory image and vCPU state saved
 * by the Python side after its own boot setup) with a bare KVM_RUN loop, and reports how long
 * the guest's port writes took. Usage: kvm_exit_loop RAM_IMAGE STATE_FILE
 * STATE_FILE lines: "reg NAME VALUE", "seg NAME base limit selector type present dpl db s l g",
 * "dt NAME base limit" (what the Python vCPU holds before its first run).
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) { perror(what); exit(2); }

static struct kvm_segment *segment(struct kvm_sregs *s, const char *name) {
    if (!strcmp(name, "cs")) return &s->cs;
    if (!strcmp(name, "ds")) return &s->ds;
    if (!strcmp(name, "es")) return &s->es;
    if (!strcmp(name, "fs")) return &s->fs;
    if (!strcmp(name, "gs")) return &s->gs;
    if (!strcmp(name, "ss")) return &s->ss;
    if (!strcmp(name, "tr")) return &s->tr;
    if (!strcmp(name, "ldt")) return &s->ldt;
    return NULL;
}

static void set_reg(struct kvm_regs *r, struct kvm_sregs *s, const char *name, unsigned long long v) {
#define R(n) if (!strcmp(name, #n)) { r->n = v; return; }
    R(rax) R(rbx) R(rcx) R(rdx) R(rsi) R(rdi) R(rsp) R(rbp) R(r8) R(r9) R(r10) R(r11) R(r12) R(r13)
    R(r14) R(r15) R(rip) R(rflags)
#undef R
#define S(n) if (!strcmp(name, #n)) { s->n = v; return; }
    S(cr0) S(cr2) S(cr3) S(cr4) S(cr8) S(efer) S(apic_base)
#undef S
}

static double clock_seconds(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s RAM_IMAGE STATE_FILE\n", argv[0]); return 2; }
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) die("/dev/kvm");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) die("KVM_CREATE_VM");
    if (ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000UL) < 0) die("KVM_SET_TSS_ADDR");
    unsigned long long identity = 0xfffbc000ULL;
    if (ioctl(vm, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0) die("KVM_SET_IDENTITY_MAP_ADDR");
    if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0) die("KVM_CREATE_IRQCHIP");
    struct kvm_pit_config pit = {0};
    if (ioctl(vm, KVM_CREATE_PIT2, &pit) < 0) die("KVM_CREATE_PIT2");

    int ram_fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (ram_fd < 0 || fstat(ram_fd, &st) < 0) die(argv[1]);
    void *ram = mmap(NULL, st.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, ram_fd, 0);
    if (ram == MAP_FAILED) die("mmap RAM");
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = st.st_size, .userspace_addr = (unsigned long)ram};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");

    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) die("KVM_CREATE_VCPU");
    struct { struct kvm_cpuid2 c; struct kvm_cpuid_entry2 e[256]; } cpuid = {.c.nent = 256};
    if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &cpuid) < 0) die("KVM_GET_SUPPORTED_CPUID");
    if (ioctl(vcpu, KVM_SET_CPUID2, &cpuid) < 0) die("KVM_SET_CPUID2");
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) die("mmap kvm_run");

    struct kvm_regs regs;
    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_REGS, &regs) < 0 || ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_*REGS");
    FILE *state = fopen(argv[2], "r");
    if (!state) die(argv[2]);
    char kind[8], name[16];
    while (fscanf(state, "%7s %15s", kind, name) == 2) {
        if (!strcmp(kind, "reg")) {
            unsigned long long v;
            if (fscanf(state, "%llu", &v) != 1) die("state: reg");
            set_reg(&regs, &sregs, name, v);
        } else if (!strcmp(kind, "seg")) {
            unsigned long long base;
            unsigned limit, sel, type, present, dpl, db, s, l, g;
            if (fscanf(state, "%llu %u %u %u %u %u %u %u %u %u", &base, &limit, &sel, &type, &present, &dpl, &db,
                       &s, &l, &g) != 10) die("state: seg");
            struct kvm_segment *seg = segment(&sregs, name);
            if (!seg) die("state: segment name");
            *seg = (struct kvm_segment){.base = base, .limit = limit, .selector = sel, .type = type,
                                        .present = present, .dpl = dpl, .db = db, .s = s, .l = l, .g = g};
        } else if (!strcmp(kind, "dt")) {
            unsigned long long base;
            unsigned limit;
            if (fscanf(state, "%llu %u", &base, &limit) != 2) die("state: dt");
            struct kvm_dtable *dt = !strcmp(name, "gdt") ? &sregs.gdt : &sregs.idt;
            dt->base = base;
            dt->limit = limit;
        }
    }
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0 || ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_*REGS");

    unsigned long exits = 0, port80 = 0;
    double start = clock_seconds(CLOCK_MONOTONIC), cpu_start = clock_seconds(CLOCK_THREAD_CPUTIME_ID);
    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
        exits++;
        if (run->exit_reason == KVM_EXIT_IO) {
            unsigned char *data = (unsigned char *)run + run->io.data_offset;
            if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == 0x80) port80++;
            else if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == 0x604) break; /* ACPI power-off */
            else if (run->io.direction == KVM_EXIT_IO_IN) memset(data, 0xff, run->io.size * run->io.count);
        } else if (run->exit_reason != KVM_EXIT_MMIO) {
            fprintf(stderr, "unexpected exit %u\n", run->exit_reason);
            return 1;
        }
    }
    double cpu = clock_seconds(CLOCK_THREAD_CPUTIME_ID) - cpu_start;
    printf("exits %lu port80 %lu seconds %.6f cpu_seconds %.6f\n", exits, port80,
           clock_seconds(CLOCK_MONOTONIC) - start, cpu);
    return 0;
}
