"""Mapping permission and attribute flags, with AxVisor's bit values.

Configs carry these as plain integers (``memory_regions = [[gpa, size, 0x7, 0]]`` means
READ | WRITE | EXECUTE), so the values must match axaddrspace's ``MappingFlags`` exactly.
"""

from __future__ import annotations

import enum


class MappingFlags(enum.IntFlag):
    READ = 1 << 0
    WRITE = 1 << 1
    EXECUTE = 1 << 2
    USER = 1 << 3
    DEVICE = 1 << 4
    UNCACHED = 1 << 5

    @classmethod
    def all_bits(cls) -> int:
        return sum(int(flag) for flag in cls)

    @classmethod
    def parse(cls, value: int) -> MappingFlags:
        """Convert a config integer, rejecting bits AxVisor does not define."""
        unknown = value & ~cls.all_bits()
        if value < 0 or unknown:
            raise ValueError(f"mapping flags {value:#x} set undefined bits {unknown:#x}")
        return cls(value)
