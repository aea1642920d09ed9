"""/dev/kvm: availability messages, capabilities, supported CPUID, the kind of KVM, error naming."""

from __future__ import annotations

import errno
import pickle
from pathlib import Path

import pytest

from axvcpu.backends.kvm import Kvm, KvmError, KvmUnavailable, probe, system
from axvcpu.backends.kvm.cpuid import HYPERVISOR_BIT, CpuidEntry, for_vcpu

from .kvm_guest import require_kvm


def test_kvm_reports_api_12_capabilities_and_cpuid() -> None:
    require_kvm()
    assert probe() is None
    with Kvm() as kvm:
        assert kvm.api_version == 12
        assert kvm.check_extension(kvm.lib.KVM_CAP_USER_MEMORY) > 0
        assert kvm.check_extension(0x7FFF_FFF0) == 0  # no such capability
        assert kvm.vcpu_mmap_size >= 2 * 4096  # kvm_run plus at least the PIO data page
        leaves = {entry.function for entry in kvm.supported_cpuid()}
        assert {0, 1} <= leaves
        assert kvm.supported_cpuid() is kvm.supported_cpuid()  # asked once per Kvm


def test_kind_matches_the_loaded_modules() -> None:
    require_kvm()
    with Kvm() as kvm:
        kind = kvm.kind
    assert kind in ("hardware (vmx)", "hardware (svm)", "pvm (software nested virtualization)", "unknown")
    if Path("/sys/module/kvm_pvm").exists():
        assert kind.startswith("pvm")


@pytest.mark.parametrize(("modules", "flags", "kind"), [
    (["kvm", "kvm_pvm"], "fpu hypervisor", "pvm (software nested virtualization)"),
    (["kvm", "kvm_intel"], "fpu vmx", "hardware (vmx)"),
    (["kvm"], "fpu svm", "hardware (svm)"),
    (["kvm", "kvm_amd"], "fpu", "hardware (svm)"),
    (["kvm"], "fpu", "unknown"),
])
def test_kind_detection(tmp_path: Path, modules: list[str], flags: str, kind: str) -> None:
    for module in modules:
        (tmp_path / "module" / module).mkdir(parents=True)
    (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert system.kvm_kind(tmp_path / "module", tmp_path / "cpuinfo") == kind


def test_missing_device_is_one_line_naming_it_and_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(system, "DEVICE", str(tmp_path / "kvm"))
    with pytest.raises(KvmUnavailable) as caught:
        Kvm()
    message = str(caught.value)
    assert str(tmp_path / "kvm") in message and "load the kvm module" in message and "\n" not in message
    assert probe() == message


def test_permission_denied_names_the_group(monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(path: str, flags: int) -> int:
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(system.os, "open", denied)
    reason = probe()
    assert reason is not None and "/dev/kvm" in reason and "group kvm" in reason


def test_kvm_error_names_the_ioctl_and_errno() -> None:
    error = KvmError("KVM_CREATE_VCPU", errno.EEXIST)
    assert str(error) == "KVM_CREATE_VCPU failed: EEXIST (File exists)"
    assert isinstance(error, OSError) and error.errno == errno.EEXIST
    again = pickle.loads(pickle.dumps(KvmError("KVM_RUN", errno.EFAULT, "vCPU 2")))
    assert str(again) == "KVM_RUN failed: EFAULT (Bad address): vCPU 2"


def test_cpuid_patch_sets_the_apic_ids_of_the_vcpu() -> None:
    leaves = [
        CpuidEntry(0, 0, 0, 0xD, 0, 0, 0),
        CpuidEntry(1, 0, 0, 0x806C1, 0x0B10_0800, 0x1, 0x2),
        CpuidEntry(0xB, 0, 1, 1, 1, 0x100, 7),
        CpuidEntry(0xB, 1, 1, 4, 2, 0x201, 7),
    ]
    patched = for_vcpu(leaves, 5)
    assert patched[0] == leaves[0]
    assert patched[1].ebx == 0x0510_0800  # only bits 31:24 change
    assert patched[1].ecx == 0x1 | HYPERVISOR_BIT
    assert [entry.edx for entry in patched[2:]] == [5, 5]
    assert for_vcpu(leaves, 0x1_05)[1].ebx >> 24 == 0x05  # leaf 1 keeps the low 8 bits
    with pytest.raises(ValueError, match="vCPU id -1"):
        for_vcpu(leaves, -1)


def test_the_skip_rule_skips_with_the_reason_or_fails_when_kvm_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    from . import kvm_guest

    monkeypatch.setattr(kvm_guest, "probe", lambda: "/dev/kvm does not exist: load the kvm module")
    monkeypatch.delenv("AXVISOR_REQUIRE_KVM", raising=False)
    with pytest.raises(pytest.skip.Exception, match="/dev/kvm does not exist"):
        kvm_guest.require_kvm()
    monkeypatch.setenv("AXVISOR_REQUIRE_KVM", "1")
    with pytest.raises(pytest.fail.Exception, match="AXVISOR_REQUIRE_KVM=1 but KVM is unusable: /dev/kvm does not"):
        kvm_guest.require_kvm()
