"""The device kinds a VM config names, with AxVisor's numeric values.

Configs carry the kind as a plain integer (axvmconfig's ``emu_devices`` entries), so the values
AxVisor defines are kept exactly; ours take codes AxVisor leaves unused, so a config written for
AxVisor still means the same thing here.
"""

from __future__ import annotations

import enum


class EmuDeviceType(enum.IntEnum):
    """What an emulated device is; the value is the integer a VM config uses."""

    # AxVisor's values (axvmconfig EmulatedDeviceType, later axvm-types), unchanged. Those no
    # builder here models load with a warning: known, not emulated.
    Dummy = 0x0
    InterruptController = 0x1
    Console = 0x2
    FwCfg = 0x3  # QEMU fw_cfg (MMIO)
    IVCChannel = 0xA
    GPPTRedistributor = 0x20
    GPPTDistributor = 0x21
    GPPTITS = 0x22
    X86IoApic = 0x23
    X86Pit = 0x24  # the 8254 timer
    LoongArchPchPic = 0x25  # LS7A PCH-PIC
    PPPTGlobal = 0x30
    VirtioBlk = 0xE1
    VirtioNet = 0xE2
    VirtioConsole = 0xE3

    # Ours. Platform devices take 0x80..0x8F, a block AxVisor does not use, so a later AxVisor
    # value cannot collide with them unnoticed; new virtio devices continue AxVisor's 0xE_ run.
    DebugExit = 0x80  # QEMU isa-debug-exit
    ResetControl = 0x81  # i8042 reset line
    PowerControl = 0x82  # SiFive test finisher (sifive_test)
    Rtc = 0x83
    PciHost = 0x84
    Timer = 0x85  # riscv CLINT
    VirtioRng = 0xE4

    @classmethod
    def parse(cls, value: int | str) -> EmuDeviceType:
        """The kind for a config value: its integer code, or its name (any case).

        ValueError names the value and lists the known kinds, since this is what a user sees
        for a typo in a VM config.
        """
        if isinstance(value, str):
            for member in cls:
                if member.name.lower() == value.strip().lower():
                    return member
        elif isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        known = ", ".join(f"{m.name}={m.value:#x}" for m in cls)
        shown = f"{value:#x}" if isinstance(value, int) and not isinstance(value, bool) else repr(value)
        raise ValueError(f"unknown emulated device type {shown}; known types: {known}")

    @property
    def is_virtio(self) -> bool:
        """A virtio device (behind a virtio-mmio transport): the types of AxVisor's 0xE_ run,
        which ours continue. The one place that says which types are virtio."""
        return self & 0xF0 == 0xE0


def parse(value: int | str) -> EmuDeviceType:
    """Module-level spelling of ``EmuDeviceType.parse``."""
    return EmuDeviceType.parse(value)
