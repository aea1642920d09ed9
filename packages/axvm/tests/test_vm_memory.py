"""A VM's guest memory has one owner: the address space hands it to the backend and frees it
only after the backend has unmapped every region; stopping the VM twice is safe."""

from __future__ import annotations

from axaddrspace import GuestMemoryRegion, GuestPhysAddr, InMemoryStage2, MappingFlags
from axvm import AxVM, ScriptedBackend, parse_config

CONFIG = """
[base]
id = 3
name = "mem"
vm_type = 1
cpu_num = 1
arch = "riscv64"

[kernel]
entry_point = 0x8000_0000
kernel_path = "fw.bin"
kernel_load_addr = 0x8000_0000
memory_regions = [[0x8000_0000, 0x10_0000, 0x7, 0], [0x9000_0000, 0x10_0000, 0x3, 0]]

[devices]
emu_devices = []
"""


class OrderRecordingStage2(InMemoryStage2):
    """Notes, at each unmap, whether any region it was given had been closed already."""

    def __init__(self) -> None:
        super().__init__()
        self.regions: list[GuestMemoryRegion] = []
        self.closed_at_unmap: list[bool] = []

    def map(self, region: GuestMemoryRegion, flags: MappingFlags) -> None:
        self.regions.append(region)
        super().map(region, flags)

    def unmap(self, gpa: GuestPhysAddr, size: int) -> None:
        self.closed_at_unmap.append(any(region.closed for region in self.regions))
        super().unmap(gpa, size)


class RecordingBackend(ScriptedBackend):
    def __init__(self) -> None:
        super().__init__({})
        self.recorder = OrderRecordingStage2()

    @property
    def stage2(self) -> OrderRecordingStage2:
        return self.recorder


def test_the_backend_reads_the_vms_one_memory_and_loses_it_only_after_unmapping() -> None:
    backend = RecordingBackend()
    vm = AxVM(parse_config(CONFIG), backend)
    assert backend.stage2.memory is vm.addrspace.memory
    vm.addrspace.memory.write(GuestPhysAddr(0x9000_0010), b"one map")
    assert backend.stage2.memory.read(GuestPhysAddr(0x9000_0010), 7) == b"one map"
    vm.mark_loaded()
    vm.stop()
    assert backend.stage2.closed_at_unmap == [False, False]  # every unmap before any region closed
    assert all(region.closed for region in backend.stage2.regions) and backend.stage2.mappings == ()
    assert vm.addrspace.memory.regions == () and backend.closed
    vm.stop()  # a second stop is a no-op
    vm.addrspace.close()  # and so is a second release of the memory
