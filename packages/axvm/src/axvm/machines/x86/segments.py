"""The segments of the boot GDT, described once and used both for the GDT bytes and for the
vCPU's hidden segment registers (which must agree with the descriptors)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SegmentSpec:
    type: int
    s: int
    dpl: int
    l: int  # noqa: E741 - the SDM's name for the 64-bit code flag
    db: int
    g: int


CODE32 = SegmentSpec(type=0xB, s=1, dpl=0, l=0, db=1, g=1)  # execute/read, accessed
CODE64 = SegmentSpec(type=0xB, s=1, dpl=0, l=1, db=0, g=1)
DATA = SegmentSpec(type=0x3, s=1, dpl=0, l=0, db=1, g=1)  # read/write, accessed
USER_DATA = SegmentSpec(type=0x3, s=1, dpl=3, l=0, db=1, g=1)
USER_CODE64 = SegmentSpec(type=0xB, s=1, dpl=3, l=1, db=0, g=1)
TSS64 = SegmentSpec(type=0xB, s=0, dpl=0, l=0, db=0, g=0)  # 64-bit TSS (busy, as KVM expects for TR)
