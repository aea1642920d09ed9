"""The promise behind ``axvisor check``, as a property: for any config that loads, if check's
validation (``plan_vm``) accepts it then run's build (compose, load the images, prepare the boot)
succeeds, and if the build refuses it then check reported that same line. Configs are drawn from
riscv layouts with a few regions, images and devices at addresses chosen to collide often."""

from __future__ import annotations

from pathlib import Path

from hypothesis import event, given, settings
from hypothesis import strategies as st

from axdevice import RecordingNetBackend
from axvisor import UserError
from axvisor.plan import plan_vm
from axvisor.vmm import build_vm
from axvm import ConfigError, ScriptedBackend, parse_config
from axvm.host import LocalHost

# Repeats weight the draw towards layouts that work, so both answers come up often.
OFFSETS = [0x0] * 3 + [0x10_0000, 0xFF_F000, 0x3E0_0000, 0x3FF_F000]
"""Image addresses, from the first region's start: at its start, inside, near or at its end."""
SIZES = [0x400_0000] * 3 + [0x1000, 0x10_0000, 0x200_0000]
DEVICE_TYPES = [0xE3, 0xE4] * 2 + [0x1, 0x2, 0x82, 0x99, 0xE1, 0xE2]
DEVICE_BASES = [0x1000_1000, 0x1000_2000, 0x1000_3000] * 2 + [0x10_0000, 0x1000_0000, 0x1000_1800, 0x8000_0000]
IRQS = [1, 2, 3] * 2 + [0, 10, 95, 96, 100_000]


class OfflineLink(RecordingNetBackend):
    """The build side's network: parsed specs, nothing bound (examples must not fight over ports)."""

    def start(self, deliver) -> None:
        pass

    def rx_ready(self) -> None:
        pass

    def close(self) -> None:
        pass


class OfflineHost(LocalHost):
    def open_netdev(self, spec: str) -> OfflineLink:
        from axvisor.net.spec import parse_netdev_spec

        parse_netdev_spec(spec)
        return OfflineLink()


REGION_BASES = [0x8000_0000, 0x9000_0000, 0x0, 0x1000_0000]  # 0x1000_0000 apart: regions never overlap
region = st.tuples(st.sampled_from(REGION_BASES), st.sampled_from(SIZES))
device = st.tuples(
    st.sampled_from(DEVICE_BASES),
    st.sampled_from([0x100, 0x1000]),
    st.sampled_from(IRQS),
    st.sampled_from(DEVICE_TYPES),
)
image = st.tuples(st.sampled_from(OFFSETS), st.sampled_from([4, 0x1000, 0x30_0000]))


def write_config(tmp: Path, regions, kernel, ramdisk, devices, netdev: bool) -> Path:
    (tmp / "kernel.bin").write_bytes(b"\x6f\x00\x00\x00".ljust(kernel[1], b"\0"))
    extra = ""
    if ramdisk is not None:
        (tmp / "rd.bin").write_bytes(bytes(ramdisk[1]))
        extra = f'ramdisk_path = "rd.bin"\nramdisk_load_addr = {ramdisk[0]:#x}\n'
    (tmp / "disk.img").write_bytes(bytes(0x1000))
    entries = ", ".join(f'["d{i}", {b:#x}, {n:#x}, {irq}, {t:#x}, []]' for i, (b, n, irq, t) in enumerate(devices))
    text = f"""
[base]
id = 1
name = "prop"
vm_type = 1
cpu_num = 1
arch = "riscv64"
[kernel]
entry_point = {kernel[0]:#x}
kernel_path = "kernel.bin"
kernel_load_addr = {kernel[0]:#x}
disk_path = "disk.img"
{extra}memory_regions = [{", ".join(f"[{g:#x}, {s:#x}, 7, 0]" for g, s in regions)}]
[devices]
emu_devices = [{entries}]
{'netdevs = { d0 = "udp:127.0.0.1:5000:127.0.0.1:5001" }' if netdev else ""}
"""
    path = tmp / "vm.toml"
    path.write_text(text)
    return path


@settings(max_examples=60)
@given(
    regions=st.lists(region, min_size=1, max_size=2, unique_by=lambda r: r[0]),
    kernel=image,
    ramdisk=st.none() | image,
    devices=st.lists(device, max_size=3),
    netdev=st.booleans(),
)
def test_what_check_accepts_run_builds(tmp_path_factory, regions, kernel, ramdisk, devices, netdev) -> None:
    tmp = tmp_path_factory.mktemp("prop")
    kernel = (regions[0][0] + kernel[0], kernel[1])
    ramdisk = None if ramdisk is None else (regions[0][0] + ramdisk[0], ramdisk[1])
    path = write_config(tmp, regions, kernel, ramdisk, devices, netdev)
    try:
        config = parse_config(path.read_text(), path)
    except ConfigError:
        event("the loader refused")
        return  # the loader is the same for both: nothing to compare
    try:
        plan_vm(config)
        checked: list[str] = []
    except UserError as error:
        checked = str(error).splitlines()
    event("check refused" if checked else "check accepted")
    try:
        vm = build_vm(config, ScriptedBackend(), host=OfflineHost())
    except (UserError, ConfigError) as error:
        assert checked, f"check accepted what run refused: {error}"
        assert set(str(error).splitlines()) <= set(checked)
        return
    try:
        assert not checked, f"run built what check refused: {checked}"
        vm.boot()
    finally:
        vm.stop()
