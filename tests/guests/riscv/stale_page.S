# A program whose code spans PAGES pages, each page adding its own constant (from ID and the page
# number) to a sum; it prints its ID, that sum, and checksums of its .text and .data computed by
# loads at run time. Assembled once per ID (--defsym ID=n): every program has the same layout and
# virtual addresses but different bytes, so a stale translation of a physical page that held
# another program's page at the same address prints another ID or sum (or crashes), while the
# checksums show what memory really holds. Output, one line:
#   stale-code ID SUM TEXT DATA        (16 hex digits each)

    .include "sys.S"

    .equ PAGES, 4

    .macro BLOCK page
    li t0, (ID << 16) | (\page << 8) | 0x5a
    add s0, s0, t0
    .endm

    .section .rodata
prefix:
    .ascii "stale-code "
prefix_end:
blank:
    .ascii " "
newline:
    .ascii "\n"

    .equ PREFIX_LEN, prefix_end - prefix

    .text
    .balign 8
    .globl _start
_start:
text_start:
    li s0, 0
    BLOCK 0
    j page1
    ROUTINES
finish:
    la a0, prefix
    li a1, PREFIX_LEN
    call put_str
    li a0, ID
    call put_hex
    call space
    mv a0, s0
    call put_hex
    call space
    la a0, text_start
    la a1, text_end
    call checksum
    call put_hex
    call space
    la a0, data_start
    la a1, data_end
    call checksum
    call put_hex
    la a0, newline
    li a1, 1
    call put_str
    li a0, 0
    SYSCALL SYS_EXIT_GROUP
space:
    addi sp, sp, -16
    sd ra, 8(sp)
    la a0, blank
    li a1, 1
    call put_str
    ld ra, 8(sp)
    addi sp, sp, 16
    ret

    .macro PAGE page, next
    .balign 4096
page\page:
    BLOCK \page
    j \next
    # the rest of the page differs between programs too
    .set word, 0
    .rept 64
    .quad (ID * 0x9e3779b1) ^ (\page << 40) ^ (word << 48)
    .set word, word + 1
    .endr
    .endm

    PAGE 1, page2
    PAGE 2, page3
    PAGE 3, finish
    .balign 8
text_end:

    .data
    .balign 8
data_start:
    .set word, 0
    .rept 1024
    .quad (ID << 32) | (word << 12) | 0xda7
    .set word, word + 1
    .endr
data_end:
