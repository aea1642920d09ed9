/* The soft riscv64 hart's hot paths in C: slice ending (a block hook), the machine timer
 * interrupt (entered between two runs of one slice) and the two most frequent traps of a Linux
 * boot (an INTR hook: rdtime and ecall). fast_ffi.py compiles this file with
 * cffi at first use and explains the design; fast_slice.py drives it from Python.
 *
 * Nothing here links against libunicorn: the entry points are handed in at run time (addresses
 * of the functions the Python binding already loaded), so the module builds without unicorn's
 * headers. The AXV_REG_* numbers, AXV_UC_HOOK_EDGE_GENERATED and AXV_UC_CTL_TLB_FLUSH_WRITE are
 * prepended by fast_ffi.py from unicorn's own constants.
 */
#include <stdint.h>
#include <stddef.h>
#include <time.h>

typedef int (*axv_reg_read_fn)(void *uc, int regid, void *value);
typedef int (*axv_reg_rw_batch_fn)(void *uc, int const *regs, void *const *vals, int count);
typedef int (*axv_emu_stop_fn)(void *uc);
typedef int (*axv_emu_start_fn)(void *uc, uint64_t begin, uint64_t until, uint64_t timeout, size_t count);
typedef int (*axv_vmem_read_fn)(void *uc, uint64_t addr, int prot, void *bytes, size_t size);
typedef int (*axv_hook_add_fn)(void *uc, size_t *hh, int type, void *cb, void *user, uint64_t begin,
                               uint64_t end, ...);
typedef void (*axv_intr_fn)(void *uc, uint32_t intno, void *user);
typedef int (*axv_ctl_fn)(void *uc, int control, ...);
typedef uint64_t (*axv_mmio_read_fn)(void *uc, uint64_t offset, unsigned size, void *user);
typedef void (*axv_mmio_write_fn)(void *uc, uint64_t offset, unsigned size, uint64_t value, void *user);
typedef int (*axv_mmio_map_fn)(void *uc, uint64_t address, size_t size, axv_mmio_read_fn read, void *read_user,
                               axv_mmio_write_fn write, void *write_user);

#define AXV_UC_HOOK_INTR 1
#define AXV_UC_HOOK_BLOCK 8
#define AXV_UC_PROT_EXEC 4
#define AXV_NO_TIMER UINT64_MAX
#define AXV_PAGE_SIZE 4096ULL
#define AXV_ANY UINT64_MAX
#define AXV_SATP_PAGED (8ULL << 60) /* any non-Bare MODE in satp[63:60] */

/* Why a slice ended, when this module ended it (0: it did not). */
#define AXV_STOP_EVENT 1
#define AXV_STOP_BOUND 2
#define AXV_STOP_TIMER 3

/* What axv_enter_timer did. */
#define AXV_TIMER_ENTERED 1
#define AXV_TIMER_UNWANTED 0 /* mie.MTIE clear: nothing waits for this deadline */
#define AXV_TIMER_PYTHON -1  /* masked in M mode, or an engine error: the Python side decides */

#define AXV_EXC_ILLEGAL 2
#define AXV_EXC_ECALL 8 /* unicorn reports every ecall as the U-mode cause */

typedef struct axv_clock {
    int64_t t0_ns;     /* CLOCK_MONOTONIC ns at which mtime was 0 */
    int64_t paused_ns; /* < 0 while running; else the time the clock stopped at */
    int64_t ns_per_tick;
} axv_clock;

typedef struct axv_engine_fns {
    axv_reg_read_fn reg_read;
    axv_reg_rw_batch_fn reg_read_batch;
    axv_reg_rw_batch_fn reg_write_batch;
    axv_emu_stop_fn emu_stop;
    axv_vmem_read_fn vmem_read;
    axv_hook_add_fn hook_add;
    axv_ctl_fn ctl;
    axv_emu_start_fn emu_start;
    axv_mmio_map_fn mmio_map;
} axv_engine_fns;

typedef struct axv_hart {
    const axv_clock *clock;
    axv_engine_fns fns;
    volatile int32_t event;     /* set by any thread: end the running slice at the next block */
    volatile int32_t timer_armed;
    volatile uint64_t mtimecmp; /* the slice ends once mtime reaches it (when armed) */
    uint64_t blocks_left;       /* the slice's bound, in translation blocks */
    uint32_t check_every;       /* blocks between two looks at the clock */
    uint32_t countdown;
    int32_t stop_reason;
    int32_t ecall_mode;         /* 0: every ecall to Python; 1: in C unless it matches watch[] */
    uint32_t n_watch;
    uint64_t watch[8][3];       /* (priv, a7, a6 or AXV_ANY): ecalls the observer must see */
    uint64_t time_reads;
    uint64_t ecalls;
    uint64_t alias_flushes;     /* TLB flushes axv_new_block_hook made */
    int32_t paged_entries;      /* the TLB may hold entries filled with paging on */
    uint64_t timer_entries;
    axv_intr_fn fallback;       /* the Python handler, for every exception not done here */
    void *fallback_user;
    /* Device registers served here while Python allows (axv_map_window): this hart's mtimecmp
       in the CLINT's window, the polled transmit side of a 16550 UART. */
    uint64_t cmp_value;           /* the mtimecmp register (Python keeps it equal to the device's) */
    volatile int32_t cmp_posted;  /* written here since Python last replayed it */
    uint64_t cmp_writes;          /* guest writes to it taken here */
    volatile uint32_t uart_lsr;   /* what an LSR read answers; 0: every UART access goes to Python */
    uint32_t uart_len;            /* bytes in uart_tx */
    uint8_t uart_tx[256];         /* THR writes not yet handed to the device */
    uint64_t uart_accesses;       /* LSR reads and THR writes taken here */
    uint32_t uart_polls;          /* LSR reads answered here since one last went to Python */
    void (*uart_flush)(void);     /* Python: hand uart_tx to the device */
} axv_hart;

/* One device window mapped by axv_map_window: the registers served here start ``reg`` bytes
   into it; ``read``/``write`` (Python) serve every other access. */
typedef struct axv_window {
    axv_hart *hart;
    uint64_t reg;
    axv_mmio_read_fn read;
    axv_mmio_write_fn write;
} axv_window;

#define AXV_WINDOW_TIMER 1
#define AXV_WINDOW_UART 2
#define AXV_UART_THR 0
#define AXV_UART_LSR 5
#define AXV_UART_RECHECK 1024 /* every so many LSR reads one goes to Python: input arriving while
                                 the guest polls shows in LSR within ~100 us of guest polling */

static int64_t axv_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The same arithmetic as SoftRiscvBackend.mtime(): floor((now or paused) - t0) / ns per tick. */
uint64_t axv_mtime(const axv_clock *clock)
{
    int64_t paused = clock->paused_ns;
    int64_t now = paused >= 0 ? paused : axv_now_ns();
    int64_t elapsed = now - clock->t0_ns;
    int64_t ticks = elapsed / clock->ns_per_tick;
    if (elapsed % clock->ns_per_tick != 0 && elapsed < 0)
        ticks -= 1; /* Python's // floors */
    return (uint64_t)ticks;
}

static void axv_stop(axv_hart *h, void *uc, int32_t reason)
{
    if (h->stop_reason == 0) {
        h->stop_reason = reason;
        h->fns.emu_stop(uc);
    }
}

/* UC_HOOK_BLOCK: called at the start of every translation block; uc_emu_stop here leaves
   before the block runs, with the PC at its first instruction. (A PC written here would not
   stick: leaving the block restores the PC from it, so a due timer is entered by axv_run.) */
static void axv_block_hook(void *uc, uint64_t address, uint32_t size, void *user)
{
    axv_hart *h = user;
    (void)address;
    (void)size;
    if (h->event) {
        axv_stop(h, uc, AXV_STOP_EVENT);
        return;
    }
    if (--h->blocks_left == 0) {
        axv_stop(h, uc, AXV_STOP_BOUND);
        return;
    }
    if (--h->countdown == 0) {
        h->countdown = h->check_every;
        if (h->timer_armed && h->mtimecmp != AXV_NO_TIMER && axv_mtime(h->clock) >= h->mtimecmp)
            axv_stop(h, uc, AXV_STOP_TIMER);
    }
}

/* rdtime and its read-only forms: csrrs/csrrc rd, time, x0 and csrrsi/csrrci rd, time, 0
   (riscv_decode.CsrOp.is_read_only on CSR 0xC01). */
static int axv_time_read_rd(uint32_t insn)
{
    uint32_t funct3 = (insn >> 12) & 7;
    if ((insn & 0x7F) != 0x73 || (insn >> 20) != 0xC01 || ((insn >> 15) & 0x1F) != 0)
        return -1;
    if (funct3 != 2 && funct3 != 3 && funct3 != 6 && funct3 != 7)
        return -1;
    return (int)((insn >> 7) & 0x1F);
}

static int axv_ecall_watched(const axv_hart *h, void *uc, uint64_t priv)
{
    int regs[2] = {AXV_REG_X0 + 17, AXV_REG_X0 + 16};
    uint64_t a7 = 0, a6 = 0;
    void *vals[2] = {&a7, &a6};
    uint32_t i;
    if (h->ecall_mode == 0)
        return 1;
    if (h->fns.reg_read_batch(uc, regs, vals, 2) != 0)
        return 1;
    for (i = 0; i < h->n_watch && i < 8; i++) {
        if (h->watch[i][0] == priv && h->watch[i][1] == a7 && (h->watch[i][2] == AXV_ANY || h->watch[i][2] == a6))
            return 1;
    }
    return 0;
}

/* riscv_trap.enter_trap for a synchronous exception, in one read and one write batch (the
   host at PRIV=M first: unicorn checks host CSR access like the guest's). */
static int axv_enter_exception(axv_hart *h, void *uc, uint64_t cause, uint64_t epc, uint64_t priv)
{
    const uint64_t SIE = 1 << 1, MIE = 1 << 3, SPIE = 1 << 5, MPIE = 1 << 7, SPP = 1 << 8, MPP = 3ULL << 11;
    uint64_t m = 3, medeleg = 0, mstatus = 0, mtvec = 0, stvec = 0, zero = 0, status, target, handler;
    int rregs[4] = {AXV_REG_MEDELEG, AXV_REG_MSTATUS, AXV_REG_MTVEC, AXV_REG_STVEC};
    void *rvals[4] = {&medeleg, &mstatus, &mtvec, &stvec};
    int priv_reg = AXV_REG_PRIV;
    void *priv_val[1] = {&m};
    int wregs[6];
    void *wvals[6];
    if (h->fns.reg_write_batch(uc, &priv_reg, priv_val, 1) != 0)
        return -1;
    if (h->fns.reg_read_batch(uc, rregs, rvals, 4) != 0)
        return -1;
    target = (priv <= 1 && (medeleg >> cause & 1)) ? 1 : 3;
    if (target == 1) {
        status = mstatus & ~(SPIE | SIE | SPP);
        status |= (mstatus & SIE) ? SPIE : 0;
        status |= priv == 1 ? SPP : 0;
        handler = stvec & ~3ULL;
        wregs[0] = AXV_REG_SEPC;
        wregs[1] = AXV_REG_SCAUSE;
        wregs[2] = AXV_REG_STVAL;
    } else {
        status = mstatus & ~(MPIE | MIE | MPP);
        status |= (mstatus & MIE) ? MPIE : 0;
        status |= (priv & 3) << 11;
        handler = mtvec & ~3ULL;
        wregs[0] = AXV_REG_MEPC;
        wregs[1] = AXV_REG_MCAUSE;
        wregs[2] = AXV_REG_MTVAL;
    }
    wvals[0] = &epc;
    wvals[1] = &cause;
    wvals[2] = &zero;
    wregs[3] = AXV_REG_MSTATUS;
    wvals[3] = &status;
    wregs[4] = AXV_REG_PRIV;
    wvals[4] = &target;
    wregs[5] = AXV_REG_PC;
    wvals[5] = &handler;
    h->ecalls++; /* counted first: a PC write may leave this function by longjmp */
    return h->fns.reg_write_batch(uc, wregs, wvals, 6);
}

/* The machine timer interrupt (MTIP, cause 7), taken at the PC of a stopped engine, as
   riscv_trap.enter_trap does it: MTIP is never delegated (mideleg's bit 7 is read-only zero),
   so it goes to M mode, taken from S or U always and from M only with mstatus.MIE (privileged
   spec 3.1.9). unicorn does not deliver M-level interrupts itself (NOTES.md). ``*next_pc``: where
   the engine goes on (the handler, or the PC it stopped at). */
static int axv_enter_timer(axv_hart *h, void *uc, uint64_t *next_pc)
{
    const uint64_t MTIE = 1 << 7, MIE = 1 << 3, MPIE = 1 << 7, MPP = 3ULL << 11;
    uint64_t pc = 0, priv = 0, m = 3, mie = 0, mstatus = 0, mtvec = 0, zero = 0, status, handler;
    uint64_t cause = (1ULL << 63) | 7;
    int priv_reg = AXV_REG_PRIV;
    int at[2] = {AXV_REG_PC, AXV_REG_PRIV};
    void *at_vals[2] = {&pc, &priv};
    void *priv_val[1] = {&priv};
    void *m_val[1] = {&m};
    int rregs[3] = {AXV_REG_MIE, AXV_REG_MSTATUS, AXV_REG_MTVEC};
    void *rvals[3] = {&mie, &mstatus, &mtvec};
    int wregs[6] = {AXV_REG_MEPC, AXV_REG_MCAUSE, AXV_REG_MTVAL, AXV_REG_MSTATUS, AXV_REG_PRIV, AXV_REG_PC};
    void *wvals[6] = {&pc, &cause, &zero, &status, &m, &handler};
    int taken;
    if (h->fns.reg_read_batch(uc, at, at_vals, 2) != 0)
        return AXV_TIMER_PYTHON;
    *next_pc = pc;
    priv &= 3;
    if (h->fns.reg_write_batch(uc, &priv_reg, m_val, 1) != 0)
        return AXV_TIMER_PYTHON;
    if (h->fns.reg_read_batch(uc, rregs, rvals, 3) != 0) {
        h->fns.reg_write_batch(uc, &priv_reg, priv_val, 1);
        return AXV_TIMER_PYTHON;
    }
    taken = (mie & MTIE) ? (priv < 3 || (mstatus & MIE)) : -1;
    if (taken != 1) {
        h->fns.reg_write_batch(uc, &priv_reg, priv_val, 1);
        return taken < 0 ? AXV_TIMER_UNWANTED : AXV_TIMER_PYTHON;
    }
    status = mstatus & ~(MPIE | MIE | MPP);
    status |= (mstatus & MIE) ? MPIE : 0;
    status |= priv << 11;
    handler = (mtvec & ~3ULL) + ((mtvec & 3) == 1 ? 4 * 7 : 0);
    if (h->fns.reg_write_batch(uc, wregs, wvals, 6) != 0)
        return AXV_TIMER_PYTHON;
    *next_pc = handler;
    h->timer_entries++;
    return AXV_TIMER_ENTERED;
}

/* One slice: uc_emu_start from ``begin``; when the block hook ended the run at a timer deadline
   the guest takes now, enter that interrupt and run on from its handler, in the same slice
   (its bound of blocks still counts). Ending the slice so Python could enter it cost a fifth
   of a Linux boot. Returns unicorn's error; stop_reason tells why the slice ended (0: not by
   the block hook: a wfi, an error, or a stop by a Python hook). */
int axv_run(axv_hart *h, void *uc, uint64_t begin, uint64_t until)
{
    for (;;) {
        int err = h->fns.emu_start(uc, begin, until, 0, 0);
        int done;
        if (err != 0 || h->stop_reason != AXV_STOP_TIMER || h->event)
            return err;
        done = axv_enter_timer(h, uc, &begin);
        if (done == AXV_TIMER_PYTHON)
            return 0;
        if (done == AXV_TIMER_UNWANTED)
            h->timer_armed = 0; /* until mtimecmp is written again */
        h->stop_reason = 0;
    }
}

/* UC_HOOK_INTR: unicorn calls every INTR hook for each synchronous exception (PC already + 4)
   and has no "handled" answer, so this is the only one, and it calls the Python handler for
   whatever it leaves. */
static void axv_intr_hook(void *uc, uint32_t intno, void *user)
{
    axv_hart *h = user;
    int regs[2] = {AXV_REG_PC, AXV_REG_PRIV};
    uint64_t pc = 0, priv = 0;
    void *vals[2] = {&pc, &priv};
    if (intno == AXV_EXC_ILLEGAL || intno == AXV_EXC_ECALL) {
        if (h->fns.reg_read_batch(uc, regs, vals, 2) != 0)
            goto python;
        pc -= 4;
        priv &= 3;
        if (intno == AXV_EXC_ILLEGAL) {
            uint32_t insn = 0;
            int rd;
            if (h->fns.vmem_read(uc, pc, AXV_UC_PROT_EXEC, &insn, 4) != 0)
                goto python;
            rd = axv_time_read_rd(insn);
            if (rd < 0)
                goto python;
            h->time_reads++;
            if (rd) {
                int reg = AXV_REG_X0 + rd;
                uint64_t now = axv_mtime(h->clock);
                void *val[1] = {&now};
                h->fns.reg_write_batch(uc, &reg, val, 1);
            }
            return;
        }
        if (axv_ecall_watched(h, uc, priv))
            goto python;
        if (axv_enter_exception(h, uc, AXV_EXC_ECALL + priv, pc, priv) == 0)
            return;
    }
python:
    h->fallback(uc, intno, h->fallback_user);
}

/* UC_HOOK_EDGE_GENERATED: called right after unicorn translated a new block (cpu-exec.c,
   tb_find). Translating marks the block's physical page clean for code, but unicorn then
   re-protects only the TLB entries of the block's own virtual page (translate-all.c,
   tb_link_page: tlb_reset_dirty_by_vaddr): another mapping of that page whose TLB entry is
   already dirty would store into the code unnoticed. A TLB flush makes every such mapping
   refill as not-dirty, so its next store takes the slow path that invalidates the code.

   Without paging there is no other mapping: every TLB entry maps a page to itself, and the
   block's own page is the one unicorn re-protects. So while satp is Bare, and no entry filled
   with paging on can be left (none since the last flush made here), the flush is skipped:
   firmware translating new code all the time (OpenSBI, U-Boot) otherwise flushed after every
   block, and each flush sent its next stores to every page down the slow path. In U mode the
   host cannot read satp (unicorn then answers the read with a stale value and no error), and U
   mode is taken as paged. (satp itself changing does not flush unicorn's TLB unless the ASID
   changes, so paging is looked at on every new block.) */
static void axv_new_block_hook(void *uc, void *cur_tb, void *prev_tb, void *user)
{
    axv_hart *h = user;
    int regs[2] = {AXV_REG_PRIV, AXV_REG_SATP};
    uint64_t priv = 0, satp = AXV_SATP_PAGED;
    void *vals[2] = {&priv, &satp};
    int paged;
    (void)cur_tb;
    (void)prev_tb;
    paged = h->fns.reg_read_batch(uc, regs, vals, 2) != 0 || (priv & 3) == 0 || (satp >> 60) != 0;
    if (!paged && !h->paged_entries)
        return;
    h->paged_entries = paged;
    h->alias_flushes++;
    h->fns.ctl(uc, AXV_UC_CTL_TLB_FLUSH_WRITE);
}

/* Install the hooks on engine ``uc`` for hart ``h``; 0 or unicorn's error number. */
int axv_install(axv_hart *h, void *uc)
{
    size_t block = 0, intr = 0, edge = 0;
    int err = h->fns.hook_add(uc, &block, AXV_UC_HOOK_BLOCK, (void *)axv_block_hook, h, 1, 0);
    if (err == 0)
        err = h->fns.hook_add(uc, &intr, AXV_UC_HOOK_INTR, (void *)axv_intr_hook, h, 1, 0);
    if (err == 0)
        err = h->fns.hook_add(uc, &edge, AXV_UC_HOOK_EDGE_GENERATED, (void *)axv_new_block_hook, h, 1, 0);
    return err;
}

/* Drop the translated code of the ``n`` guest physical pages at ``pages``, with the host at
   PRIV=M: uc_ctl_remove_cache translates its start as a fetch through the current MMU, which in
   M mode is the identity. 0 or unicorn's first error. */
int axv_invalidate_pages(axv_hart *h, void *uc, const uint64_t *pages, size_t n)
{
    int priv_reg = AXV_REG_PRIV;
    uint64_t priv = 0, m = 3;
    void *priv_val[1] = {&priv};
    void *m_val[1] = {&m};
    size_t i;
    int err = h->fns.reg_read_batch(uc, &priv_reg, priv_val, 1);
    if (err == 0)
        err = h->fns.reg_write_batch(uc, &priv_reg, m_val, 1);
    if (err != 0)
        return err;
    for (i = 0; i < n && err == 0; i++)
        err = h->fns.ctl(uc, AXV_UC_CTL_REMOVE_CACHE_WRITE, pages[i], pages[i] + AXV_PAGE_SIZE);
    h->fns.reg_write_batch(uc, &priv_reg, priv_val, 1);
    return err;
}

/* Arm hart ``h`` for one slice of at most ``blocks`` translation blocks. */
void axv_slice_begin(axv_hart *h, uint64_t blocks, int32_t timer_armed)
{
    h->blocks_left = blocks ? blocks : 1;
    h->countdown = h->check_every;
    h->timer_armed = timer_armed;
    h->stop_reason = 0;
}

/* MMIO read in the timer window: this hart's mtimecmp from cmp_value (8 bytes, or a 4-byte
   half); anything else from the Python handler. */
static uint64_t axv_timer_read(void *uc, uint64_t offset, unsigned size, void *user)
{
    axv_window *w = user;
    axv_hart *h = w->hart;
    uint64_t at = offset - w->reg; /* huge when below the register */
    if (size == 8 && at == 0)
        return h->cmp_value;
    if (size == 4 && (at == 0 || at == 4))
        return (uint32_t)(h->cmp_value >> (8 * at));
    return w->read(uc, offset, size, NULL);
}

/* MMIO write in the timer window: an aligned 8-byte or 4-byte write to this hart's mtimecmp
   becomes its timer deadline at once (armed, as a Python write would arm it) and is posted for
   Python to replay to the device (cmp_posted); anything else goes to the Python handler, which
   replays a posted value first. A Linux boot writes mtimecmp thousands of times (every SBI
   set_timer, in two halves), each a Python call otherwise. */
static void axv_timer_write(void *uc, uint64_t offset, unsigned size, uint64_t value, void *user)
{
    axv_window *w = user;
    axv_hart *h = w->hart;
    uint64_t at = offset - w->reg;
    uint64_t v = h->cmp_value;
    if (size == 8 && at == 0)
        v = value;
    else if (size == 4 && at == 0)
        v = (v & 0xffffffff00000000ULL) | (value & 0xffffffffULL);
    else if (size == 4 && at == 4)
        v = (v & 0xffffffffULL) | (value << 32);
    else {
        w->write(uc, offset, size, value, NULL);
        return;
    }
    h->cmp_value = v;
    h->mtimecmp = v;
    h->timer_armed = 1;
    h->cmp_posted = 1;
    h->cmp_writes++;
}

/* MMIO read in a UART window: while Python allows it (uart_lsr set), a byte read of LSR
   answers uart_lsr, but every AXV_UART_RECHECK-th one; everything else goes to the Python
   handler, which first hands the device the bytes collected here and decides again after.
   Firmware and Linux's console poll LSR before every byte. */
static uint64_t axv_uart_read(void *uc, uint64_t offset, unsigned size, void *user)
{
    axv_window *w = user;
    axv_hart *h = w->hart;
    uint32_t lsr = h->uart_lsr;
    if (lsr && size == 1 && offset == w->reg + AXV_UART_LSR && ++h->uart_polls < AXV_UART_RECHECK) {
        h->uart_accesses++;
        return lsr;
    }
    h->uart_polls = 0;
    return w->read(uc, offset, size, NULL);
}

/* MMIO write in a UART window: while Python allows it, a byte write of THR joins uart_tx,
   handed to the device (uart_flush) at a newline, when full, and by Python at the end of the
   slice; everything else goes to the Python handler. */
static void axv_uart_write(void *uc, uint64_t offset, unsigned size, uint64_t value, void *user)
{
    axv_window *w = user;
    axv_hart *h = w->hart;
    if (h->uart_lsr && size == 1 && offset == w->reg + AXV_UART_THR) {
        h->uart_tx[h->uart_len++] = (uint8_t)value;
        h->uart_accesses++;
        if (h->uart_len == sizeof(h->uart_tx) || value == '\n')
            h->uart_flush();
        return;
    }
    w->write(uc, offset, size, value, NULL);
}

/* Map the device window [start, +size) on engine ``uc`` with the registers of ``kind``
   (AXV_WINDOW_TIMER, AXV_WINDOW_UART) ``w->reg`` bytes into it served here and every other
   access by w->read/w->write; 0 or unicorn's error number. */
int axv_map_window(axv_window *w, void *uc, uint64_t start, uint64_t size, int kind)
{
    axv_hart *h = w->hart;
    if (kind == AXV_WINDOW_TIMER)
        return h->fns.mmio_map(uc, start, (size_t)size, axv_timer_read, w, axv_timer_write, w);
    return h->fns.mmio_map(uc, start, (size_t)size, axv_uart_read, w, axv_uart_write, w);
}
