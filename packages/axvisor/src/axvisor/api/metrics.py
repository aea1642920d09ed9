"""``GET /metrics``: every VM's metrics as Prometheus text, read from the manager at each scrape.

A custom collector (prometheus_client's pattern for values another object owns) rather than
gauges kept up to date: the manager already counts, so a scrape costs one ``metrics()`` per VM
and nothing is counted twice. Every family is labelled ``vm`` (the id) and ``name``; a VM
deleted between ``list`` and ``metrics`` is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from axvm import VMState

from ..manager import ManagerError, VmManager, VmMetrics

_DEVICE_COUNTERS = (
    ("uart_tx_bytes", "Bytes the guest wrote to its consoles"),
    ("uart_rx_bytes", "Bytes of host console input the guest took"),
    ("virtio_requests", "Requests virtio devices completed"),
    ("virtio_bytes", "Bytes virtio requests moved"),
    ("virtio_errors", "Virtio requests answered with an error"),
    ("unmapped_accesses", "Guest accesses that hit no device"),
    ("device_errors", "Guest accesses that made a device raise"),
)


class ManagerCollector(Collector):
    """Collects ``axvisor_vm_*`` families from a ``VmManager``."""

    def __init__(self, manager: VmManager) -> None:
        self.manager = manager

    def collect(self) -> Iterator[Metric]:
        snapshots: list[VmMetrics] = []
        for info in self.manager.list(all=True):
            try:
                snapshots.append(self.manager.metrics(info.id))
            except ManagerError:  # deleted meanwhile
                continue
        labels = ["vm", "name"]
        state = GaugeMetricFamily("axvisor_vm_state", "1 for the VM's current state", labels=[*labels, "state"])
        uptime = GaugeMetricFamily(
            "axvisor_vm_uptime_seconds", "Seconds Running or Paused since the last start", labels=labels
        )
        paused = GaugeMetricFamily("axvisor_vm_paused_seconds", "Seconds of that uptime spent Paused", labels=labels)
        cpu = CounterMetricFamily(
            "axvisor_vm_host_cpu_seconds", "Host CPU time of the VM's vCPU threads", labels=labels
        )
        resets = CounterMetricFamily("axvisor_vm_resets", "Rebuilds after a reset since the last start", labels=labels)
        boot = GaugeMetricFamily(
            "axvisor_vm_boot_seconds",
            "Seconds from the start (or the VMM process start) " "to the first guest instruction or console byte",
            labels=[*labels, "since", "until"],
        )
        exits = CounterMetricFamily("axvisor_vm_vcpu_exits", "vCPU exits by kind", labels=[*labels, "vcpu", "kind"])
        vcpu_cpu = CounterMetricFamily(
            "axvisor_vm_vcpu_host_cpu_seconds", "Host CPU time per vCPU thread", labels=[*labels, "vcpu"]
        )
        devices = {key: CounterMetricFamily(f"axvisor_vm_{key}", text, labels=labels) for key, text in _DEVICE_COUNTERS}
        for m in snapshots:
            vm = [str(m.id), m.name]
            for candidate in VMState:
                state.add_metric([*vm, candidate.name.title()], 1.0 if candidate is m.state else 0.0)
            uptime.add_metric(vm, m.uptime_s)
            paused.add_metric(vm, m.paused_s)
            cpu.add_metric(vm, m.host_cpu_s)
            resets.add_metric(vm, m.resets)
            for since, until, value in (
                ("start", "first_instruction", m.boot.start_to_first_instruction_s),
                ("start", "first_console_byte", m.boot.start_to_first_console_byte_s),
                ("process", "first_instruction", m.boot.process_to_first_instruction_s),
                ("process", "first_console_byte", m.boot.process_to_first_console_byte_s),
            ):
                if value is not None:
                    boot.add_metric([*vm, since, until], value)
            for vcpu in m.vcpus:
                vcpu_cpu.add_metric([*vm, str(vcpu.vcpu)], vcpu.host_cpu_s)
                for kind, count in sorted(vcpu.exits.items()):
                    exits.add_metric([*vm, str(vcpu.vcpu), kind], count)
            for key, family in devices.items():
                family.add_metric(vm, getattr(m.devices, key))
        yield from (state, uptime, paused, cpu, resets, boot, exits, vcpu_cpu, *devices.values())
