"""How the ``vm`` commands print: tables (rich), JSON, hexdumps, registers, a page walk.

Pure functions from the manager's dataclasses to text or rich renderables, so the shell (the
manager in-process) and ``axvisor ctl`` (the API) print the same bytes for the same VM.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable

from rich.table import Table

from ..api.schema import info_to_json, metrics_to_json, state_name
from ..manager import Translation, VmInfo, VmMetrics

_PRINTABLE = frozenset(string.printable.encode()) - frozenset(b"\t\n\r\x0b\x0c")


def size_text(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} B"


def duration_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def vm_table(infos: Iterable[VmInfo]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("ID", "NAME", "STATE", "ARCH", "BACKEND", "CPUS", "MEMORY", "UPTIME"):
        table.add_column(column, no_wrap=True, justify="right" if column in ("ID", "CPUS") else "left")
    for info in infos:
        table.add_row(
            str(info.id),
            info.name,
            state_name(info.state),
            info.arch,
            info.backend,
            str(info.cpus),
            size_text(info.memory_bytes),
            duration_text(info.uptime_s),
        )
    return table


def vm_json(infos: Iterable[VmInfo]) -> str:
    return json.dumps([info_to_json(info) for info in infos], indent=2)


def vm_details(info: VmInfo) -> list[tuple[str, str]]:
    rows = [
        ("id", str(info.id)),
        ("name", info.name),
        ("state", state_name(info.state)),
        ("arch", info.arch),
        ("backend", info.backend),
        ("vCPUs", str(info.cpus)),
        ("memory", size_text(info.memory_bytes)),
        ("uptime", duration_text(info.uptime_s)),
        ("resets", str(info.resets)),
    ]
    if info.exit_code is not None or info.reason:
        rows.append(("last end", f"{info.reason or ''} (status {info.exit_code})".strip()))
    rows.append(("config", info.config_path or "(TOML text)"))
    if info.log_path:
        rows.append(("console log", info.log_path))
    return rows


def key_values(rows: Iterable[tuple[str, str]], title: str | None = None) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False, title=title, title_justify="left", title_style="bold")
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    return table


def metrics_rows(metrics: VmMetrics) -> list[tuple[str, str]]:
    boot, dev = metrics.boot, metrics.devices

    def secs(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}s"

    rows = [
        ("uptime", f"{duration_text(metrics.uptime_s)} ({duration_text(metrics.paused_s)} paused)"),
        ("host CPU", f"{metrics.host_cpu_s:.2f}s"),
        (
            "boot: first instruction",
            f"{secs(boot.start_to_first_instruction_s)} after start, "
            f"{secs(boot.process_to_first_instruction_s)} after the VMM started",
        ),
        (
            "boot: first console byte",
            f"{secs(boot.start_to_first_console_byte_s)} after start, "
            f"{secs(boot.process_to_first_console_byte_s)} after the VMM started",
        ),
        ("console bytes", f"{dev.uart_tx_bytes} out, {dev.uart_rx_bytes} in"),
        ("virtio", f"{dev.virtio_requests} requests, {dev.virtio_bytes} bytes, {dev.virtio_errors} errors"),
        ("unmapped accesses", str(dev.unmapped_accesses)),
        ("device errors", str(dev.device_errors)),
    ]
    for vcpu in metrics.vcpus:
        exits = ", ".join(f"{kind} {count}" for kind, count in sorted(vcpu.exits.items(), key=lambda kv: -kv[1]))
        rows.append((f"vCPU {vcpu.vcpu}", f"{vcpu.host_cpu_s:.2f}s CPU; exits: {exits or 'none'}"))
    for device, counters in sorted(metrics.devices.per_device.items()):
        rows.append((f"  {device}", ", ".join(f"{k} {v}" for k, v in sorted(counters.items()))))
    return rows


def metrics_json(metrics: VmMetrics) -> str:
    return json.dumps(metrics_to_json(metrics), indent=2)


def hexdump(data: bytes, base: int) -> str:
    """16 bytes a line: the guest physical address, the bytes, and their printable characters."""
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        hex_part = " ".join(f"{b:02x}" for b in chunk[:8]) + "  " + " ".join(f"{b:02x}" for b in chunk[8:])
        text = "".join(chr(b) if b in _PRINTABLE else "." for b in chunk)
        lines.append(f"{base + offset:016x}  {hex_part:<48}  |{text}|")
    return "\n".join(lines)


def registers_text(vcpu: int, registers: dict[str, int], per_line: int = 4) -> str:
    items = [f"{name:>7} {value:#018x}" for name, value in registers.items()]
    lines = [f"vCPU {vcpu}:"]
    lines += ["  " + "  ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
    return "\n".join(lines)


def translation_text(t: Translation) -> str:
    lines = [f"gva {t.gva:#x} ({t.mode}):"]
    for level, (address, entry) in enumerate(t.levels):
        lines.append(f"  step {level}: entry at {address:#x} = {entry:#018x}")
    if t.gpa is None:
        lines.append(f"  fault: {t.fault or 'not mapped'}")
    else:
        flags = "".join(flag if on else "-" for flag, on in (("w", t.writable), ("u", t.user), ("x", t.executable)))
        lines.append(f"  -> gpa {t.gpa:#x} (page {size_text(t.page_size) if t.page_size else '-'}, {flags})")
    return "\n".join(lines)
