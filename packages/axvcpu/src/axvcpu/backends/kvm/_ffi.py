"""The cffi binding to the kernel's <linux/kvm.h>, compiled once per host into a cache folder.

Theory of operation. cffi's API (out-of-line) mode hands ``CDEF`` to the C compiler together with
the real header: every struct below ends in ``...;``, so cffi asks the compiler for its size and
field offsets, and every ``#define NAME ...`` makes the compiler supply the ioctl number or flag.
Nothing here hand-types an offset; tests/test_kvm_ffi.py checks a few against known values to
prove the header was used.

The header's exit union members (``io``, ``mmio``...) are anonymous struct types, which cffi
cannot complete partially; ``SOURCE`` names them with ``__typeof__`` so they can be.

Calls into a compiled cffi module release the GIL, so a vCPU thread blocked in KVM_RUN does not
stop other Python threads. The ioctl wrappers take ``unsigned long`` arguments (fcntl.ioctl's C
``int`` overflows for KVM_SET_TSS_ADDR 0xfffbd000) and return ``-errno`` on failure, so the
error travels with the result instead of through thread-local state.

The build is lazy (first ``load()``, not import) and lands in ``$AXVISOR_CACHE/cffi/<hash>``
(default ``~/.cache/axvisor``), the hash covering the cdef, the source, the headers and cffi's
version, so each host compiles once per header and the result is replaced atomically.
"""

from __future__ import annotations

import platform
import sysconfig
import threading
from pathlib import Path
from types import ModuleType

from ... import cffi_build
from .errors import KvmUnavailable

MODULE_NAME = "_axvcpu_kvm_cffi"
KVM_HEADER = Path("/usr/include/linux/kvm.h")
APT_HINT = "apt-get install gcc linux-libc-dev"

CDEF = r"""
/* --- kvm_run: the page shared with KVM_RUN, and the exit union members we decode ----------- */
typedef struct { uint64_t hardware_exit_reason; ...; } axv_exit_hw;
typedef struct { uint64_t hardware_entry_failure_reason; uint32_t cpu; ...; } axv_exit_fail_entry;
typedef struct { uint32_t exception; uint32_t error_code; ...; } axv_exit_ex;
typedef struct { uint8_t direction; uint8_t size; uint16_t port; uint32_t count; uint64_t data_offset; ...; }
    axv_exit_io;
typedef struct { uint64_t phys_addr; uint8_t data[8]; uint32_t len; uint8_t is_write; ...; } axv_exit_mmio;
typedef struct { uint32_t suberror; uint32_t ndata; uint64_t data[16]; ...; } axv_exit_internal;
typedef struct { uint32_t suberror; uint32_t ndata; uint64_t flags; uint8_t insn_size; uint8_t insn_bytes[15]; ...; }
    axv_exit_emulation_failure;
typedef struct { uint32_t type; uint64_t flags; ...; } axv_exit_system_event;
struct kvm_debug_exit_arch { uint32_t exception; uint64_t pc, dr6, dr7; ...; };
typedef struct { struct kvm_debug_exit_arch arch; ...; } axv_exit_debug;

struct kvm_run {
    uint8_t request_interrupt_window;
    uint8_t immediate_exit;
    uint32_t exit_reason;
    uint8_t ready_for_interrupt_injection;
    uint8_t if_flag;
    uint16_t flags;
    uint64_t cr8;
    uint64_t apic_base;
    axv_exit_hw hw;
    axv_exit_fail_entry fail_entry;
    axv_exit_ex ex;
    axv_exit_io io;
    axv_exit_mmio mmio;
    axv_exit_internal internal;
    axv_exit_emulation_failure emulation_failure;
    axv_exit_system_event system_event;
    axv_exit_debug debug;
    ...;
};

/* --- x86 vCPU state --------------------------------------------------------------------------- */
struct kvm_regs {
    uint64_t rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
    uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
    uint64_t rip, rflags;
    ...;
};
struct kvm_segment {
    uint64_t base; uint32_t limit; uint16_t selector;
    uint8_t type, present, dpl, db, s, l, g, avl, unusable;
    ...;
};
struct kvm_dtable { uint64_t base; uint16_t limit; ...; };
struct kvm_sregs {
    struct kvm_segment cs, ds, es, fs, gs, ss, tr, ldt;
    struct kvm_dtable gdt, idt;
    uint64_t cr0, cr2, cr3, cr4, cr8, efer, apic_base;
    uint64_t interrupt_bitmap[...];
    ...;
};
struct kvm_fpu {
    uint8_t fpr[8][16];
    uint16_t fcw, fsw;
    uint8_t ftwx;
    uint16_t last_opcode;
    uint64_t last_ip, last_dp;
    uint8_t xmm[16][16];
    uint32_t mxcsr;
    ...;
};
struct kvm_xsave { uint32_t region[1024]; ...; };
struct kvm_msr_entry { uint32_t index; uint64_t data; ...; };
struct kvm_msrs { uint32_t nmsrs; struct kvm_msr_entry entries[]; ...; };
struct kvm_cpuid_entry2 { uint32_t function, index, flags, eax, ebx, ecx, edx; ...; };
struct kvm_cpuid2 { uint32_t nent; struct kvm_cpuid_entry2 entries[]; ...; };
struct kvm_lapic_state { char regs[...]; ...; };
struct kvm_mp_state { uint32_t mp_state; ...; };
struct kvm_translation {
    uint64_t linear_address, physical_address;
    uint8_t valid, writeable, usermode;
    ...;
};
struct kvm_interrupt { uint32_t irq; ...; };
struct kvm_guest_debug_arch { uint64_t debugreg[8]; ...; };
struct kvm_guest_debug { uint32_t control; struct kvm_guest_debug_arch arch; ...; };

/* --- VM objects --------------------------------------------------------------------------------- */
struct kvm_userspace_memory_region {
    uint32_t slot, flags;
    uint64_t guest_phys_addr, memory_size, userspace_addr;
    ...;
};
struct kvm_irq_level { uint32_t irq; uint32_t level; ...; };
struct kvm_irqfd { uint32_t fd, gsi, flags, resamplefd; ...; };
struct kvm_ioeventfd { uint64_t datamatch, addr; uint32_t len; int32_t fd; uint32_t flags; ...; };
struct kvm_dirty_log { uint32_t slot; void *dirty_bitmap; ...; };
struct kvm_pit_config { uint32_t flags; ...; };
struct kvm_enable_cap { uint32_t cap, flags; uint64_t args[4]; ...; };
struct kvm_clock_data { uint64_t clock; uint32_t flags; ...; };

/* --- saved as opaque kernel-ABI blobs by a snapshot (kvm/state.py): only their sizes are needed -- */
struct kvm_vcpu_events { ...; };
struct kvm_debugregs { ...; };
struct kvm_xcrs { ...; };
struct kvm_irqchip { uint32_t chip_id; ...; };
struct kvm_pit_state2 { ...; };

/* --- ioctl numbers -------------------------------------------------------------------------------- */
#define KVM_GET_API_VERSION ...
#define KVM_CREATE_VM ...
#define KVM_CHECK_EXTENSION ...
#define KVM_GET_VCPU_MMAP_SIZE ...
#define KVM_GET_SUPPORTED_CPUID ...
#define KVM_SET_TSS_ADDR ...
#define KVM_SET_IDENTITY_MAP_ADDR ...
#define KVM_CREATE_IRQCHIP ...
#define KVM_CREATE_PIT2 ...
#define KVM_SET_USER_MEMORY_REGION ...
#define KVM_IRQ_LINE ...
#define KVM_IRQFD ...
#define KVM_IOEVENTFD ...
#define KVM_GET_DIRTY_LOG ...
#define KVM_ENABLE_CAP ...
#define KVM_GET_CLOCK ...
#define KVM_SET_CLOCK ...
#define KVM_CREATE_VCPU ...
#define KVM_RUN ...
#define KVM_GET_REGS ...
#define KVM_SET_REGS ...
#define KVM_GET_SREGS ...
#define KVM_SET_SREGS ...
#define KVM_GET_FPU ...
#define KVM_SET_FPU ...
#define KVM_GET_XSAVE ...
#define KVM_SET_XSAVE ...
#define KVM_GET_MSRS ...
#define KVM_SET_MSRS ...
#define KVM_SET_CPUID2 ...
#define KVM_GET_LAPIC ...
#define KVM_SET_LAPIC ...
#define KVM_GET_MP_STATE ...
#define KVM_SET_MP_STATE ...
#define KVM_TRANSLATE ...
#define KVM_INTERRUPT ...
#define KVM_SET_GUEST_DEBUG ...
#define KVM_GET_VCPU_EVENTS ...
#define KVM_SET_VCPU_EVENTS ...
#define KVM_GET_DEBUGREGS ...
#define KVM_SET_DEBUGREGS ...
#define KVM_GET_XCRS ...
#define KVM_SET_XCRS ...
#define KVM_GET_IRQCHIP ...
#define KVM_SET_IRQCHIP ...
#define KVM_GET_PIT2 ...
#define KVM_SET_PIT2 ...
#define KVM_IRQCHIP_PIC_MASTER ...
#define KVM_IRQCHIP_PIC_SLAVE ...
#define KVM_IRQCHIP_IOAPIC ...

/* --- capabilities, flags and codes ------------------------------------------------------------------ */
#define KVM_API_VERSION ...
#define KVM_CAP_IRQCHIP ...
#define KVM_CAP_PIT2 ...
#define KVM_CAP_USER_MEMORY ...
#define KVM_CAP_SET_TSS_ADDR ...
#define KVM_CAP_EXT_CPUID ...
#define KVM_CAP_MP_STATE ...
#define KVM_CAP_XSAVE ...
#define KVM_CAP_NR_MEMSLOTS ...
#define KVM_CAP_MAX_VCPUS ...
#define KVM_CAP_MAX_VCPU_ID ...
#define KVM_CAP_READONLY_MEM ...
#define KVM_CAP_IRQFD ...
#define KVM_CAP_IOEVENTFD ...
#define KVM_CAP_IMMEDIATE_EXIT ...
#define KVM_CAP_INTERNAL_ERROR_DATA ...
#define KVM_CAP_EXIT_ON_EMULATION_FAILURE ...
#define KVM_CAP_ADJUST_CLOCK ...
#define KVM_CAP_SET_GUEST_DEBUG ...
#define KVM_GUESTDBG_ENABLE ...
#define KVM_GUESTDBG_SINGLESTEP ...
#define KVM_GUESTDBG_USE_SW_BP ...
#define KVM_GUESTDBG_USE_HW_BP ...

#define KVM_MEM_LOG_DIRTY_PAGES ...
#define KVM_MEM_READONLY ...
#define KVM_IOEVENTFD_FLAG_DATAMATCH ...
#define KVM_IOEVENTFD_FLAG_PIO ...
#define KVM_PIT_SPEAKER_DUMMY ...
#define KVM_IOAPIC_NUM_PINS ...
#define KVM_APIC_REG_SIZE ...
#define KVM_NR_INTERRUPTS ...
#define KVM_CPUID_FLAG_SIGNIFCANT_INDEX ...

#define KVM_MP_STATE_RUNNABLE ...
#define KVM_MP_STATE_UNINITIALIZED ...
#define KVM_MP_STATE_INIT_RECEIVED ...
#define KVM_MP_STATE_HALTED ...
#define KVM_MP_STATE_SIPI_RECEIVED ...

#define KVM_EXIT_IO_IN ...
#define KVM_EXIT_IO_OUT ...
#define KVM_SYSTEM_EVENT_SHUTDOWN ...
#define KVM_SYSTEM_EVENT_RESET ...
#define KVM_SYSTEM_EVENT_CRASH ...
#define KVM_INTERNAL_ERROR_EMULATION ...
#define KVM_INTERNAL_ERROR_SIMUL_EX ...
#define KVM_INTERNAL_ERROR_DELIVERY_EV ...
#define KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON ...
#define KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES ...

#define KVM_EXIT_UNKNOWN ...
#define KVM_EXIT_EXCEPTION ...
#define KVM_EXIT_IO ...
#define KVM_EXIT_HYPERCALL ...
#define KVM_EXIT_DEBUG ...
#define KVM_EXIT_HLT ...
#define KVM_EXIT_MMIO ...
#define KVM_EXIT_IRQ_WINDOW_OPEN ...
#define KVM_EXIT_SHUTDOWN ...
#define KVM_EXIT_FAIL_ENTRY ...
#define KVM_EXIT_INTR ...
#define KVM_EXIT_SET_TPR ...
#define KVM_EXIT_TPR_ACCESS ...
#define KVM_EXIT_NMI ...
#define KVM_EXIT_INTERNAL_ERROR ...
#define KVM_EXIT_WATCHDOG ...
#define KVM_EXIT_EPR ...
#define KVM_EXIT_SYSTEM_EVENT ...
#define KVM_EXIT_IOAPIC_EOI ...
#define KVM_EXIT_HYPERV ...
#define KVM_EXIT_X86_RDMSR ...
#define KVM_EXIT_X86_WRMSR ...
#define KVM_EXIT_DIRTY_RING_FULL ...
#define KVM_EXIT_AP_RESET_HOLD ...
#define KVM_EXIT_X86_BUS_LOCK ...
#define KVM_EXIT_XEN ...

/* --- C helpers (SOURCE) ------------------------------------------------------------------------------- */
int axv_ioctl_ptr(int fd, unsigned long request, void *arg);
int axv_ioctl_int(int fd, unsigned long request, unsigned long arg);
int axv_install_noop_handler(int signum);
int axv_tgkill(int tid, int signum);
long long axv_decode(struct kvm_run *run, unsigned long map_size, uint64_t *mmio);
long long axv_run(int fd, struct kvm_run *run, unsigned long map_size, uint64_t *mmio, uint8_t *quiet,
                  uint64_t *quiet_counts);
#define AXV_QUIET_BITMAP ...
#define AXV_EXIT_QUIET ...
#define AXV_EXIT_OTHER ...
#define AXV_EXIT_PIO_OUT ...
#define AXV_EXIT_PIO_IN ...
#define AXV_EXIT_MMIO_WRITE ...
#define AXV_EXIT_MMIO_READ ...
"""

SOURCE = r"""
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/kvm.h>

/* Names for the anonymous struct types of kvm_run's exit union, so the cdef can use them. */
typedef __typeof__(((struct kvm_run *)0)->hw) axv_exit_hw;
typedef __typeof__(((struct kvm_run *)0)->fail_entry) axv_exit_fail_entry;
typedef __typeof__(((struct kvm_run *)0)->ex) axv_exit_ex;
typedef __typeof__(((struct kvm_run *)0)->io) axv_exit_io;
typedef __typeof__(((struct kvm_run *)0)->mmio) axv_exit_mmio;
typedef __typeof__(((struct kvm_run *)0)->internal) axv_exit_internal;
typedef __typeof__(((struct kvm_run *)0)->emulation_failure) axv_exit_emulation_failure;
typedef __typeof__(((struct kvm_run *)0)->system_event) axv_exit_system_event;
typedef __typeof__(((struct kvm_run *)0)->debug) axv_exit_debug;

/* ioctl with a pointer argument; -errno on failure. */
int axv_ioctl_ptr(int fd, unsigned long request, void *arg)
{
    int r = ioctl(fd, request, arg);
    return r < 0 ? -errno : r;
}

/* ioctl with an integer argument as wide as the kernel's (unsigned long); -errno on failure. */
int axv_ioctl_int(int fd, unsigned long request, unsigned long arg)
{
    int r = ioctl(fd, request, arg);
    return r < 0 ? -errno : r;
}

static void axv_noop_handler(int signum) { (void)signum; }

/* A do-nothing handler, so a kick signal interrupts KVM_RUN (EINTR) instead of killing the
   process; installed in C so any thread can do it. SA_RESTART keeps other system calls of the
   vCPU thread transparent; KVM_RUN itself is never restarted (it returns -EINTR). */
int axv_install_noop_handler(int signum)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = axv_noop_handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    return sigaction(signum, &sa, NULL) < 0 ? -errno : 0;
}

/* Signal one thread of this process by its kernel thread id. Unlike pthread_kill, a thread
   that has exited meanwhile is harmless (ESRCH, or at worst a no-op signal to a new thread). */
int axv_tgkill(int tid, int signum)
{
    return syscall(SYS_tgkill, getpid(), tid, signum) < 0 ? -errno : 0;
}

/* The hot exits packed into one integer, so Python reads no kvm_run field through cffi (each
   such read builds a Python object): bits 0-2 the kind, 3-6 the access size, 8-23 the port,
   24-55 the data of an OUT or the data offset of an IN. MMIO puts its address (and the data of
   a write) in mmio[0] (mmio[1]). Reads get their data bytes set to all-ones, the value of a
   read nobody answers. Anything else (string I/O, odd sizes, every other exit) is
   AXV_EXIT_OTHER and is decoded in Python from the page. Hosts are little-endian x86. */
#define AXV_EXIT_OTHER 0
#define AXV_EXIT_PIO_OUT 1
#define AXV_EXIT_PIO_IN 2
#define AXV_EXIT_MMIO_WRITE 3
#define AXV_EXIT_MMIO_READ 4

long long axv_decode(struct kvm_run *run, unsigned long map_size, uint64_t *mmio)
{
    if (run->exit_reason == KVM_EXIT_IO) {
        unsigned long size = run->io.size, offset = run->io.data_offset;
        if (run->io.count != 1 || (size != 1 && size != 2 && size != 4) || offset > map_size
            || map_size - offset < size)
            return AXV_EXIT_OTHER;
        unsigned char *data = (unsigned char *)run + offset;
        long long head = (long long)run->io.port << 8 | (long long)size << 3;
        if (run->io.direction == KVM_EXIT_IO_OUT) {
            uint32_t value = 0;
            memcpy(&value, data, size);
            return (long long)value << 24 | head | AXV_EXIT_PIO_OUT;
        }
        memset(data, 0xff, size);
        return (long long)offset << 24 | head | AXV_EXIT_PIO_IN;
    }
    if (run->exit_reason == KVM_EXIT_MMIO) {
        unsigned long len = run->mmio.len;
        if (len != 1 && len != 2 && len != 4 && len != 8)
            return AXV_EXIT_OTHER;
        mmio[0] = run->mmio.phys_addr;
        if (run->mmio.is_write) {
            uint64_t value = 0;
            memcpy(&value, run->mmio.data, len);
            mmio[1] = value;
            return (long long)len << 3 | AXV_EXIT_MMIO_WRITE;
        }
        memset(run->mmio.data, 0xff, len);
        return (long long)len << 3 | AXV_EXIT_MMIO_READ;
    }
    return AXV_EXIT_OTHER;
}

/* Quiet ports: ports no device answers, which the VM marks in the first AXV_QUIET_BITMAP bytes
   of ``quiet`` (bit port % 8 of byte port / 8). An access to them gets the bus's defined answer
   (a read is all-ones, a write is dropped) here, counted in quiet_counts (reads, writes), and
   KVM_RUN is entered again without returning to Python. The first access to each such port
   still goes to Python, so the bus logs it as it logs any unhandled address: the next
   AXV_QUIET_BITMAP bytes record the ports seen once. Every port of the access must be quiet. */
#define AXV_QUIET_BITMAP 8192
#define AXV_EXIT_QUIET (1LL << 56)

static int axv_quiet(uint8_t *quiet, unsigned long port, unsigned long size)
{
    for (unsigned long p = port; p < port + size; p++)
        if (p > 0xffff || !(quiet[p >> 3] & (1u << (p & 7))))
            return 0;
    uint8_t *seen = quiet + AXV_QUIET_BITMAP;
    if (seen[port >> 3] & (1u << (port & 7)))
        return 1;
    seen[port >> 3] |= (uint8_t)(1u << (port & 7));  /* another vCPU may do the same: harmless */
    return 0;
}

/* KVM_RUN (the GIL is released for the whole call) until an exit Python must see, then
   axv_decode of it; -errno on failure. AXV_EXIT_QUIET is added to the result when quiet port
   accesses were counted meanwhile (they stay in quiet_counts after an error, too). */
long long axv_run(int fd, struct kvm_run *run, unsigned long map_size, uint64_t *mmio, uint8_t *quiet,
                  uint64_t *quiet_counts)
{
    long long flag = 0;
    for (;;) {
        if (ioctl(fd, KVM_RUN, 0) < 0)
            return -errno;
        if (run->exit_reason == KVM_EXIT_IO && run->io.count == 1) {
            unsigned long size = run->io.size, offset = run->io.data_offset;
            if ((size == 1 || size == 2 || size == 4) && offset <= map_size && map_size - offset >= size
                && axv_quiet(quiet, run->io.port, size)) {
                if (run->io.direction == KVM_EXIT_IO_OUT) {
                    quiet_counts[1]++;
                } else {
                    memset((unsigned char *)run + offset, 0xff, size);
                    quiet_counts[0]++;
                }
                flag = AXV_EXIT_QUIET;
                continue;
            }
        }
        return axv_decode(run, map_size, mmio) | flag;
    }
}
"""

_lock = threading.Lock()
_loaded: ModuleType | None = None


def load() -> ModuleType:
    """The compiled module (``.ffi``, ``.lib``), building it on first use; KvmUnavailable if it cannot."""
    global _loaded
    with _lock:
        if _loaded is None:
            extension = _extension()  # the headers are read once
            _loaded = cffi_build.import_module(extension, cffi_build.built_module(extension))
        return _loaded


def _kvm_headers() -> list[Path]:
    """The header files the build reads: linux/kvm.h and the architecture's asm/kvm.h."""
    if not KVM_HEADER.is_file():
        raise KvmUnavailable(f"cannot build the KVM bindings: {KVM_HEADER} is missing ({APT_HINT})")
    found = [KVM_HEADER]
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    for candidate in (Path("/usr/include", multiarch, "asm/kvm.h"), Path("/usr/include/asm/kvm.h")):
        if candidate.is_file():
            found.append(candidate)
            break
    return found


def _extension() -> cffi_build.Extension:
    if platform.machine() not in ("x86_64", "AMD64"):
        raise KvmUnavailable(f"the KVM backend supports x86_64 hosts only (this host is {platform.machine()})")
    headers = tuple(header.read_bytes() for header in _kvm_headers())
    return cffi_build.Extension(MODULE_NAME, CDEF, SOURCE, "the KVM bindings", KvmUnavailable, APT_HINT, headers)


def _built_module() -> Path:
    """Path of the compiled extension for this host, compiling it if the cache lacks it."""
    return cffi_build.built_module(_extension())
