"""The cffi bindings: layouts come from <linux/kvm.h>, the build is cached, failures say what to install."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from axvcpu.backends.kvm import KvmUnavailable, _ffi

from .kvm_guest import require_ffi


def test_struct_layouts_and_ioctl_numbers_come_from_the_header() -> None:
    module = require_ffi()
    ffi, lib = module.ffi, module.lib
    # Sizes and offsets of the x86_64 ABI, fixed since the structures were introduced.
    assert ffi.sizeof("struct kvm_regs") == 144
    assert ffi.sizeof("struct kvm_segment") == 24
    assert ffi.sizeof("struct kvm_sregs") == 312
    assert ffi.sizeof("struct kvm_userspace_memory_region") == 32
    assert ffi.sizeof("struct kvm_cpuid_entry2") == 40
    assert ffi.offsetof("struct kvm_run", "exit_reason") == 8
    assert ffi.offsetof("struct kvm_run", "io") == 32
    assert ffi.offsetof("struct kvm_run", "mmio") == 32  # the same union
    assert ffi.offsetof("axv_exit_io", "data_offset") == 8
    assert ffi.offsetof("axv_exit_mmio", "len") == 16
    assert ffi.offsetof("struct kvm_sregs", "cr0") == 8 * 24 + 2 * 16
    assert ffi.offsetof("struct kvm_fpu", "mxcsr") == 408
    # _IO(0xAE, 0x80) and _IO(0xAE, 0x47): the ioctl encoding of <asm-generic/ioctl.h>.
    assert lib.KVM_RUN == 0xAE80
    assert lib.KVM_SET_TSS_ADDR == 0xAE47
    assert lib.KVM_GET_REGS == (2 << 30) | (144 << 16) | (0xAE << 8) | 0x81  # _IOR(.., 0x81, struct kvm_regs)
    assert lib.KVM_API_VERSION == 12
    assert lib.KVM_EXIT_IO == 2 and lib.KVM_EXIT_MMIO == 6 and lib.KVM_EXIT_SHUTDOWN == 8


def test_build_lands_in_the_cache_named_by_a_content_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_ffi()  # the host can build at all
    monkeypatch.setenv("AXVISOR_CACHE", str(tmp_path))
    built = _ffi._built_module()
    assert built.is_file()
    assert built.parent.parent == tmp_path / "cffi"
    assert built.name.startswith(_ffi.MODULE_NAME)
    stamp = built.stat().st_mtime_ns
    assert _ffi._built_module() == built  # the second call finds it...
    assert built.stat().st_mtime_ns == stamp  # ...and does not compile again
    assert [p.name for p in built.parent.iterdir()] == [built.name]  # no build leftovers


def test_missing_compiler_names_it_and_the_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    header = tmp_path / "kvm.h"
    header.write_text("/* stand-in */\n")
    monkeypatch.setattr(_ffi, "KVM_HEADER", header)
    monkeypatch.setenv("AXVISOR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", "no-such-cc-axvisor")
    if os.uname().machine != "x86_64":
        pytest.skip("the KVM backend only builds on x86_64")
    with pytest.raises(KvmUnavailable) as caught:
        _ffi._built_module()
    message = str(caught.value)
    assert "no-such-cc-axvisor" in message and "apt-get install gcc linux-libc-dev" in message
    assert "\n" not in message


def test_missing_header_names_it_and_the_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.uname().machine != "x86_64":
        pytest.skip("the KVM backend only builds on x86_64")
    monkeypatch.setattr(_ffi, "KVM_HEADER", tmp_path / "linux" / "kvm.h")
    with pytest.raises(KvmUnavailable, match=r"linux/kvm.h is missing \(apt-get install gcc linux-libc-dev\)"):
        _ffi._built_module()
