"""The command line as a user meets it: exit statuses, one-line errors, no tracebacks."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from axvisor.cli import main

CONFIG = """
[base]
id = 7
name = "cli"
vm_type = 1
cpu_num = 1
arch = "riscv64"

[kernel]
entry_point = 0x8000_0000
kernel_path = "guest.bin"
kernel_load_addr = 0x8000_0000
memory_regions = [[0x8000_0000, 0x100_0000, 0x7, 0]]

[devices]
emu_devices = [["test", 0x10_0000, 0x1000, 0, 0x82, []]]
"""


def write(tmp_path: Path, text: str, name: str = "vm.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_check_ok_prints_summary_and_warns_about_missing_image(tmp_path, capsys) -> None:
    path = write(tmp_path, CONFIG)
    assert main(["check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert f"{path}: ok: VM 7 'cli', riscv64, 1 vCPU(s), 16 MiB RAM" in out
    assert out.rstrip().endswith("; riscv64 from [base] arch")
    assert "kernel.kernel_path" in err and "does not exist" in err


def test_check_bad_configs_exit_2_with_one_line_each(tmp_path, capsys) -> None:
    bad_type = write(tmp_path, CONFIG.replace("cpu_num = 1", "cpu_num = true"), "a.toml")
    no_base = write(tmp_path, CONFIG.split("[kernel]")[1].join(["[kernel]", ""]), "b.toml")
    no_arch = write(tmp_path, CONFIG.replace('arch = "riscv64"\n', ""), "c.toml")
    good = write(tmp_path, CONFIG, "d.toml")
    assert main(["check", str(bad_type), str(no_base), str(no_arch), str(good)]) == 2
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if not line.startswith("warning:")]
    assert lines == [
        f"{bad_type}: base.cpu_num: expected an integer, got boolean true",
        f"{no_base}: [base]: missing section",
        f"{no_arch}: base.arch: missing, and nothing else names the architecture: kernel.kernel_path "
        f"{tmp_path / 'guest.bin'} does not exist; the file name c.toml and its folders name no architecture "
        '(x86_64, aarch64, riscv64, loongarch64) or AxVisor board; add [base] arch = "x86_64" (or "aarch64", '
        '"riscv64", "loongarch64")',
    ]
    assert f"{good}: ok" in out


def test_check_merges_overlapping_regions_with_a_warning(tmp_path, capsys) -> None:
    """AxVisor accepts overlapping regions (its x86 Linux config maps a scratch region over an
    identity one), so check does too: one region, and a warning naming both."""
    overlap = write(tmp_path, CONFIG.replace("[[0x8000_0000, 0x100_0000, 0x7, 0]]",
                                             "[[0x8000_0000, 0x100_0000, 7, 0], [0x80ff_f000, 0x2000, 7, 0]]"))
    assert main(["check", str(overlap)]) == 0
    out, err = capsys.readouterr()
    assert f"{overlap}: ok: VM 7 'cli', riscv64, 1 vCPU(s), 16 MiB RAM in 1 region(s)" in out
    assert (f"warning: {overlap}: kernel.memory_regions[1]: [0x80fff000, 0x81001000) overlaps memory_regions[0] "
            "[0x80000000, 0x81000000); merged into one region [0x80000000, 0x81001000)") in err


AXVISOR_DATA = Path(__file__).parents[2] / "axvm" / "tests" / "data" / "axvisor"
AXVISOR_EXPECTED = tomllib.loads((AXVISOR_DATA / "expected-arch.toml").read_text())


@pytest.mark.parametrize("name", sorted(AXVISOR_EXPECTED))
def test_check_accepts_axvisors_configs_as_their_architecture(name: str, capsys) -> None:
    """Every AxVisor config form (0.1 to the 2026 keys; board and QEMU configs of x86_64, aarch64,
    riscv64, loongarch64) passes check, which prints the architecture and how it was decided."""
    path = AXVISOR_DATA / name
    assert main(["check", str(path)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(f"{path}: ok: ") and line.endswith(f"; {AXVISOR_EXPECTED[name]}")


def test_check_with_nothing_naming_the_architecture_is_one_line_exit_2(tmp_path, capsys) -> None:
    path = write(tmp_path, CONFIG.replace('arch = "riscv64"\n', ""), "guest.toml")
    assert main(["check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert err.startswith(f"{path}: base.arch: missing") and 'add [base] arch = "x86_64"' in err


def test_run_with_missing_image_or_backend_is_one_line(tmp_path, capsys) -> None:
    path = write(tmp_path, CONFIG)
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"{path}: ")
    assert "Traceback" not in err


def test_generate_writes_a_config_that_checks(tmp_path, capsys) -> None:
    out = tmp_path / "gen.toml"
    status = main(["generate", "-a", "riscv64", "-n", "gen", "-c", "2", "-k", "Image", "-l", "0x8020_0000",
                   "-m", "0x8000_0000:0x800_0000", "--cmdline", "console=ttyS0", "-O", str(out)])
    assert status == 0
    document = tomllib.loads(out.read_text())
    assert document["base"]["cpu_num"] == 2 and document["base"]["arch"] == "riscv64"
    assert document["kernel"]["kernel_path"] == "Image"
    assert document["kernel"]["memory_regions"] == [[0x8000_0000, 0x800_0000, 7, 0]]
    assert main(["check", str(out)]) == 0


def test_generate_rejects_bad_values(tmp_path, capsys) -> None:
    assert main(["generate", "-a", "riscv64", "-k", "Image", "-l", "0x8020_0000", "-m", "0x8000_0001:0x1000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("generate: kernel.memory_regions[0]: ")
    with pytest.raises(SystemExit) as info:
        main(["generate", "-a", "mips", "-k", "x", "-l", "0"])
    assert info.value.code == 2


def test_bad_flag_and_unknown_command_exit_2() -> None:
    for argv in (["--frobnicate"], ["explode"], ["run"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2


def test_version_and_info_as_a_process() -> None:
    version = subprocess.run([sys.executable, "-m", "axvisor", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("axvisor 0.1.0")
    info = subprocess.run([sys.executable, "-m", "axvisor", "info"], capture_output=True, text=True)
    assert info.returncode == 0 and "kvm: /dev/kvm" in info.stdout


def test_check_names_a_bad_netdev_spec(tmp_path, capsys) -> None:
    text = CONFIG.replace('emu_devices = [["test", 0x10_0000, 0x1000, 0, 0x82, []]]',
                          'emu_devices = [["net0", 0x1000_1000, 0x1000, 1, 0xE2, []]]\nnetdevs = { net0 = "tcp:x" }')
    path = write(tmp_path, text)
    assert main(["check", str(path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"{path}: devices.netdevs.net0: ") and "tap:IFNAME" in line


def test_check_goes_on_after_a_config_run_would_refuse(tmp_path, capsys) -> None:
    """A config that loads but that run would refuse (a device over RAM) fails alone; the next is checked."""
    (tmp_path / "guest.bin").write_bytes(b"\x6f\x00\x00\x00")  # j .
    over_ram = write(tmp_path, CONFIG.replace("0x10_0000, 0x1000, 0, 0x82", "0x8000_0000, 0x1000, 0, 0x82"), "a.toml")
    good = write(tmp_path, CONFIG, "b.toml")
    assert main(["check", str(over_ram), str(good)]) == 2
    out, err = capsys.readouterr()
    assert err.splitlines() == [f"{over_ram}: devices.emu_devices[0]: 'test': MMIO range [0x80000000, 0x80001000) "
                                "overlaps guest RAM [0x80000000, 0x81000000)"]
    assert f"{good}: ok: " in out and f"{over_ram}: ok" not in out
