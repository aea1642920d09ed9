"""``axvisor check`` accepts exactly what ``axvisor run`` accepts: each bad config below gets the
same lines from both, one line naming the file and key, exit status 2, and run reports it before
any vCPU starts. Each case is a small change to one riscv or x86 config written to tmp_path."""

from __future__ import annotations

import os
import platform
import struct
from pathlib import Path

import pytest

from axaddrspace import GuestMemoryRegion
from axdevice import RawFileBackend
from axvisor.backends import REGISTRY, SOFT_MAX_VCPUS
from axvisor.cli import main
from axvisor.vmm import RunningVm
from axvm import BackendKind

RISCV = """
[base]
id = 7
name = "cv"
vm_type = 1
cpu_num = {cpus}
arch = "riscv64"

[kernel]
entry_point = 0x8000_0000
kernel_path = "{kernel}"
kernel_load_addr = 0x8000_0000
memory_regions = [{regions}]
{kernel_extra}

[devices]
emu_devices = [{devices}]
"""
X86 = """
[base]
id = 8
name = "cv86"
vm_type = 1
cpu_num = {cpus}
arch = "x86_64"

[kernel]
entry_point = 0x10_0000
kernel_path = "{kernel}"
kernel_load_addr = 0x10_0000
memory_regions = [{regions}]
{kernel_extra}

[devices]
emu_devices = [{devices}]
"""
RAM = "[0x8000_0000, 0x100_0000, 0x7, 0]"
# lui t0, 0x100; lui t1, 0x5; addi t1, t1, 0x555; sw t1, 0(t0); j . -- sifive_test power-off
POWEROFF = struct.pack("<5I", 0x001002B7, 0x00005337, 0x55530313, 0x0062A023, 0x0000006F)


def case(
    template: str = RISCV,
    *,
    cpus: int = 1,
    kernel: str = "guest.bin",
    regions: str = RAM,
    kernel_extra: str = "",
    devices: str = "",
) -> str:
    return template.format(cpus=cpus, kernel=kernel, regions=regions, kernel_extra=kernel_extra, devices=devices)


def x86(**fields: object) -> str:
    return case(X86, regions="[0, 0x400_0000, 0x7, 0]", **fields)  # type: ignore[arg-type]


# name: (config text, the expected line after "<file>: ")
CASES = {
    "unknown emu_type": (
        case(devices='["x", 0x1000_1000, 0x1000, 1, 0x99, []]'),
        "devices.emu_devices[0].emu_type: 'x': unknown emulated device type 0x99; known types: ",
    ),
    "device over RAM": (
        case(devices='["rng", 0x8000_0000, 0x1000, 1, 0xE4, []]'),
        "devices.emu_devices[0]: 'rng': MMIO range [0x80000000, 0x80001000) overlaps guest RAM "
        "[0x80000000, 0x81000000)",
    ),
    "devices overlap": (
        case(devices='["a", 0x1000_1000, 0x1000, 1, 0xE4, []], ' '["b", 0x1000_1800, 0x1000, 2, 0xE4, []]'),
        "devices.emu_devices[1]: 'b': mmio bus: VirtioMmioTransport (VirtioRng) at [0x10001800, "
        "0x10002800) overlaps VirtioMmioTransport (VirtioRng) at [0x10001000, 0x10002000)",
    ),
    "virtio-net without netdev": (
        case(devices='["net0", 0x1000_1000, 0x1000, 1, 0xE2, []]'),
        "devices.emu_devices[0]: 'net0': virtio-net 'net0' needs devices.netdevs.net0 ",
    ),
    "x86 image too big for RAM": (
        case(X86, kernel="big.bin", regions="[0, 0x20_0000, 0x7, 0]"),
        "kernel.kernel_path: big.bin (0x200000 bytes at 0x100000) does not fit in guest RAM: "
        "it runs to 0x300000, past the end of RAM at 0x200000; ",
    ),
    "ramdisk over kernel": (
        case(kernel_extra='ramdisk_path = "rd.bin"\nramdisk_load_addr = 0x8000_0000'),
        "kernel.ramdisk_load_addr: the ramdisk [0x80000000, 0x80001000) overlaps the kernel "
        "[0x80000000, 0x80000014); move one of them",
    ),
    "firmware over kernel": (
        case(kernel_extra='bios_path = "rd.bin"\nbios_load_addr = 0x8000_0000'),
        "kernel.bios_load_addr: the firmware (bios) [0x80000000, 0x80001000) overlaps the kernel "
        "[0x80000000, 0x80000014); move one of them",
    ),
    "ramdisk over the generated device tree": (
        case(kernel_extra='ramdisk_path = "rd.bin"\nramdisk_load_addr = 0x80ff_f000'),
        "kernel.ramdisk_load_addr: the ramdisk [0x80fff000, 0x81000000) overlaps the generated device tree "
        "[0x80e00000, 0x81000000); expected another load address",
    ),
    "first region too small for the device tree": (
        case(regions="[0x8000_0000, 0x10_0000, 0x7, 0]"),
        "kernel.memory_regions: the generated device tree must lie in guest RAM at [0x7ff00000, 0x80100000), but "
        "nothing in memory_regions covers 0x7ff00000; expected a larger memory region",
    ),
    "x86 kernel over the boot structures": (
        x86(kernel_extra="").replace("kernel_load_addr = 0x10_0000", "kernel_load_addr = 0x1_0000"),
        "kernel.kernel_load_addr: the kernel [0x10000, 0x10014) overlaps the x86 boot structures (GDT, page tables, "
        "boot stacks) [0x0, 0x40000); expected another load address",
    ),
    "negative gpa": (
        case(regions=f"[-4096, 0x2000, 0x7, 0], {RAM}"),
        "kernel.memory_regions[0].gpa: expected a guest physical address >= 0, got -0x1000",
    ),
    "region past the window": (
        case(regions=f"{RAM}, [0xffff_ffff_0000_0000, 0x1000, 0x7, 0]"),
        "kernel.memory_regions[1]: [0xffffffff00000000, 0xffffffff00001000) ends past the "
        "guest physical window [0x0, 0x1000000000000) (48 bits); ",
    ),
    "device length 2^64-1": (
        case(devices='["x", 0x1000_1000, 0xffff_ffff_ffff_ffff, 1, 0xE4, []]'),
        "devices.emu_devices[0].length: [0x10001000, 0x10000000010000fff) ends past the guest "
        "physical window [0x0, 0x1000000000000); ",
    ),
    "irq 100000": (
        case(devices='["x", 0x1000_1000, 0x1000, 100000, 0xE4, []]'),
        "devices.emu_devices[0].irq_id: 'x': PLIC source 100000 is not 1..95; expected an irq_id this " "machine has",
    ),
    "x86 irq 100000": (
        x86(devices='["com2", 0x2f8, 8, 100000, 0x2, []]'),
        "devices.emu_devices[0].irq_id: 'com2': irq 100000 is not an IOAPIC pin 0..23; ",
    ),
    "256 vCPUs on a raw x86 image": (
        x86(cpus=256),
        "base.cpu_num: 256 vCPUs, but an x86 image started raw (not a Linux or PVH "
        "kernel) gets at most 32, one boot stack each in the boot area; ",
    ),
    "more harts than the soft backend's bound": (
        case(cpus=SOFT_MAX_VCPUS + 1),
        f"base.cpu_num: {SOFT_MAX_VCPUS + 1} vCPUs, but the soft backend runs "
        f"at most {SOFT_MAX_VCPUS} in one VM (the soft backend's stated "
        "limit); expected cpu_num <= 32, or set AXVISOR_MAX_VCPUS=N to allow "
        "more",
    ),
    "kernel is a directory": (
        case(kernel="adir"),
        "kernel.kernel_path: {dir}/adir is a directory; expected a regular " "image file",
    ),
    "kernel is a FIFO": (
        case(kernel="fifo"),
        "kernel.kernel_path: {dir}/fifo is a FIFO (named pipe); expected a " "regular image file",
    ),
    "kernel is a device": (
        case(kernel="/dev/null"),
        "kernel.kernel_path: /dev/null is a character device; expected a " "regular image file",
    ),
}


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """The files the cases name."""
    (tmp_path / "guest.bin").write_bytes(POWEROFF)
    (tmp_path / "big.bin").write_bytes(bytes(0x20_0000))
    (tmp_path / "rd.bin").write_bytes(b"\1" * 0x1000)
    (tmp_path / "disk.img").write_bytes(bytes(0x10000))
    (tmp_path / "adir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    return tmp_path


@pytest.fixture
def images(files: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The files, and a run that records vCPU starts instead of starting them."""
    monkeypatch.setattr(RunningVm, "start_vcpu", lambda self, vcpu_id: STARTED.append(vcpu_id))
    STARTED.clear()
    return files


STARTED: list[int] = []


def kvm_usable() -> bool:
    return any(entry.kind is BackendKind.KVM and entry.probe() is None for entry in REGISTRY)


def both(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[tuple[int, list[str]], tuple[int, list[str]]]:
    """(status, error lines) of check, then of run, for one config."""
    results = []
    for command in ("check", "run"):
        status = main([command, str(path)])
        err = capsys.readouterr().err
        results.append((status, [line for line in err.splitlines() if not line.startswith("warning: ")]))
    return results[0], results[1]


@pytest.mark.parametrize("name", list(CASES))
def test_check_and_run_give_the_same_one_line_error(name: str, images: Path, capsys) -> None:
    text, expected = CASES[name]
    path = images / "vm.toml"
    path.write_text(text)
    check, run = both(path, capsys)
    if "x86" in name and not kvm_usable():  # run also says this host cannot run it (check warns)
        run = (run[0], [line for line in run[1] if ": base.backend: " not in line])
    assert check == run, "check and run disagree"
    status, lines = check
    assert status == 2
    assert len(lines) == 1 and lines[0].startswith(f"{path}: {expected.format(dir=images)}"), lines
    assert STARTED == [], "run started a vCPU"


def test_unreadable_kernel_is_one_line_not_a_traceback(images: Path, capsys, monkeypatch) -> None:
    """Tests run as root, who reads any file: os.access answers as for a chmod 000 file."""
    path = images / "vm.toml"
    path.write_text(case())
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode, **kw: False if Path(p).name == "guest.bin" else real_access(p, mode, **kw)
    )
    check, run = both(path, capsys)
    assert (
        check
        == run
        == (
            2,
            [
                f"{path}: kernel.kernel_path: {images}/guest.bin is not readable by this user "
                "(permission denied); expected a readable image file (check its mode and owner)"
            ],
        )
    )


def test_kernel_that_fails_to_read_is_one_line(images: Path, capsys, monkeypatch) -> None:
    """The file passed every check, then the read itself fails (an I/O error, a race)."""
    path = images / "vm.toml"
    path.write_text(case())
    real_open = Path.open

    def failing_open(self: Path, *args, **kwargs):
        if self.name == "guest.bin":
            raise OSError(5, "Input/output error")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", failing_open)
    check, run = both(path, capsys)
    assert (
        check
        == run
        == (
            2,
            [
                f"{path}: kernel.kernel_path: cannot read {images}/guest.bin: Input/output error; "
                "expected a readable image file"
            ],
        )
    )


def test_unreadable_disk_is_the_same_line_from_check_and_run(images: Path, capsys, monkeypatch) -> None:
    path = images / "vm.toml"
    path.write_text(case(kernel_extra='disk_path = "disk.img"', devices='["blk", 0x1000_1000, 0x1000, 1, 0xE1, []]'))
    real_open = os.open

    def refusing_open(file, flags, *args, **kwargs):
        if os.fspath(file).endswith("disk.img"):
            raise PermissionError(13, "Permission denied")
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    check, run = both(path, capsys)
    assert (
        check
        == run
        == (
            2,
            [
                f"{path}: devices.emu_devices[0]: 'blk': kernel.disk_path {images}/disk.img: "
                "Permission denied; expected a readable and writable disk image"
            ],
        )
    )
    assert STARTED == []


def test_files_not_made_yet_are_warnings_for_check_and_errors_for_run(images: Path, capsys) -> None:
    """The one difference: check is for configs whose images are not fetched or built yet."""
    path = images / "vm.toml"
    path.write_text(
        case(
            kernel="nokernel.bin",
            kernel_extra='disk_path = "nodisk.img"',
            devices='["blk", 0x1000_1000, 0x1000, 1, 0xE1, []]',
        )
    )
    assert main(["check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert f"{path}: ok: " in out
    assert err.splitlines() == [
        f"warning: {path}: kernel.kernel_path: {images}/nokernel.bin does not exist; expected an image file (fetch "
        "or build it, or fix the path)",
        f"warning: {path}: kernel.disk_path: {images}/nodisk.img does not exist; expected a disk image (make it, or "
        "fix the path)",
    ]
    assert main(["run", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{path}: kernel.kernel_path: {images}/nokernel.bin does not exist; expected an image file (fetch or build "
        "it, or fix the path)",
        f"{path}: devices.emu_devices[0]: 'blk': kernel.disk_path {images}/nodisk.img: No such file or directory; "
        "expected a readable and writable disk image",
    ]
    assert STARTED == []


def test_no_backend_here_is_a_warning_for_check_and_an_error_for_run(images: Path, capsys, monkeypatch) -> None:
    """Like images not fetched yet: the config may be right for another host (one with KVM)."""
    monkeypatch.setattr("axvisor.backends.REGISTRY", [])
    path = images / "vm.toml"
    path.write_text(case())
    line = (
        f"{path}: base.backend: cannot run a riscv64 guest on this {platform.machine()} host: no auto execution "
        "backend is implemented (available: none yet); nothing was run"
    )
    assert main(["check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert f"{path}: ok: " in out and "backend none usable here" in out
    assert err.splitlines() == [f"warning: {line}"]
    assert main(["run", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [line]


def test_guest_ram_is_bounded_by_host_memory(images: Path, capsys, monkeypatch) -> None:
    meminfo = images / "meminfo"
    meminfo.write_text("MemTotal:        8192 kB\nMemFree:         4096 kB\n")  # 8 MiB
    monkeypatch.setattr("axvisor.plan.MEMINFO", meminfo)
    monkeypatch.delenv("AXVISOR_MAX_RAM_MIB", raising=False)
    path = images / "vm.toml"
    path.write_text(case())  # 16 MiB
    check, run = both(path, capsys)
    assert (
        check
        == run
        == (
            2,
            [
                f"{path}: kernel.memory_regions: 16 MiB of guest RAM is more than the 8 MiB of this "
                "host's memory (MemTotal in /proc/meminfo); expected less, or set "
                "AXVISOR_MAX_RAM_MIB to allow more"
            ],
        )
    )


def test_a_64_gib_vm_is_checked_without_allocating_its_ram(images: Path, capsys, monkeypatch) -> None:
    def no_allocation(*args: object) -> GuestMemoryRegion:
        raise AssertionError("check allocated guest RAM")

    monkeypatch.setattr(GuestMemoryRegion, "anonymous", no_allocation)
    path = images / "vm.toml"
    path.write_text(case(regions="[0x8000_0000, 0x10_0000_0000, 0x7, 0]"))
    monkeypatch.setenv("AXVISOR_MAX_RAM_MIB", "32768")
    assert main(["check", str(path)]) == 2
    assert "65536 MiB of guest RAM is more than the 32768 MiB of AXVISOR_MAX_RAM_MIB=32768" in capsys.readouterr().err
    monkeypatch.setenv("AXVISOR_MAX_RAM_MIB", "65536")
    assert main(["check", str(path)]) == 0
    assert "65536 MiB RAM" in capsys.readouterr().out


def test_the_vcpu_bound_is_raised_by_its_variable(images: Path, capsys, monkeypatch) -> None:
    path = images / "vm.toml"
    path.write_text(case(cpus=SOFT_MAX_VCPUS + 1))
    monkeypatch.setenv("AXVISOR_MAX_VCPUS", str(SOFT_MAX_VCPUS + 1))
    assert main(["check", str(path)]) == 0
    monkeypatch.setenv("AXVISOR_MAX_VCPUS", "lots")
    assert main(["check", str(path)]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("AXVISOR_MAX_VCPUS='lots': expected a positive number of vCPUs " "(e.g. AXVISOR_MAX_VCPUS=64)")
    )


def test_every_problem_of_a_config_is_reported(images: Path, capsys) -> None:
    path = images / "vm.toml"
    path.write_text(
        case(
            kernel_extra='ramdisk_path = "rd.bin"\nramdisk_load_addr = 0x8000_0000',
            devices='["net0", 0x1000_1000, 0x1000, 1, 0xE2, []]',
        )
    )
    check, run = both(path, capsys)
    assert check == run
    assert [line.split(": ")[1] for line in check[1]] == ["kernel.ramdisk_load_addr", "devices.emu_devices[0]"]


def test_a_sound_config_checks_ok_and_runs(files: Path, capsys) -> None:
    """The control: the same config without a mistake checks ok, and run loads it and the guest
    powers off (so the cases above fail for their mistake, not for the base config)."""
    path = files / "vm.toml"
    path.write_text(case(kernel_extra='ramdisk_path = "rd.bin"\nramdisk_load_addr = 0x8010_0000'))
    assert main(["check", str(path)]) == 0
    assert f"{path}: ok: VM 7 'cv', riscv64, 1 vCPU(s), 16 MiB RAM" in capsys.readouterr().out
    assert main(["run", str(path)]) == 0


def test_a_disk_in_use_is_refused_by_check_as_by_run_and_check_leaves_no_lock(files: Path, capsys) -> None:
    """check opens disks as run does, image lock included, and closes them: a disk another VM
    holds read-write is the same one line from both, and once it is free again, so is the image."""
    path = files / "vm.toml"
    path.write_text(case(kernel_extra='disk_path = "disk.img"', devices='["blk", 0x1000_1000, 0x1000, 1, 0xE1, []]'))
    with RawFileBackend(files / "disk.img", read_only=False):
        check, run = both(path, capsys)
    assert check == run
    assert check[0] == 2 and len(check[1]) == 1
    assert check[1][0].startswith(f"{path}: devices.emu_devices[0]: 'blk': kernel.disk_path: disk image ")
    assert "is in use by another VM" in check[1][0]
    assert main(["check", str(path)]) == 0
    with RawFileBackend(files / "disk.img", read_only=False):  # check released its lock
        pass


def test_two_disks_on_one_image_are_refused_by_check_as_by_run(images: Path, capsys) -> None:
    """A config has one kernel.disk_path: a second virtio-blk device would open the same image.
    Found by the property test below; check took no lock then and said ok."""
    path = images / "vm.toml"
    path.write_text(
        case(
            kernel_extra='disk_path = "disk.img"',
            devices='["a", 0x1000_1000, 0x1000, 1, 0xE1, []], ' '["b", 0x1000_2000, 0x1000, 2, 0xE1, []]',
        )
    )
    check, run = both(path, capsys)
    assert check == run
    assert check[0] == 2 and len(check[1]) == 1
    assert check[1][0].startswith(f"{path}: devices.emu_devices[1]: 'b': kernel.disk_path: disk image ")
    assert STARTED == []


def test_run_reads_the_kernel_once(images: Path, capsys, monkeypatch) -> None:
    """run keeps the plan its check made for the load that follows (a bzImage is decompressed once)."""
    import axvisor.loaders.guest as guest

    reads: list[str] = []
    real_read = guest.read_image

    def counting_read(config, key, path):
        reads.append(key)
        return real_read(config, key, path)

    monkeypatch.setattr(guest, "read_image", counting_read)
    path = images / "vm.toml"
    path.write_text(case())
    main(["run", str(path)])  # vCPUs are not started here: it ends "stopped without a power-off"
    assert reads == ["kernel.kernel_path"]
    assert STARTED == [0]
