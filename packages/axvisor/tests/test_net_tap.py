"""TAP backends: the ioctl constants against the kernel headers, and a real TAP interface in a
throwaway network namespace answering an ARP request the backend sends."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from axvisor.net import NetBackendError, TapBackend, tap

from .host_tools import require

HEADER_PROBE = r"""
#include <stdio.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <net/if.h>
#include <linux/if_tun.h>
int main(void) {
    printf("%lu %d %d %zu %zu %d\n", (unsigned long)TUNSETIFF, IFF_TAP, IFF_NO_PI,
           sizeof(struct ifreq), offsetof(struct ifreq, ifr_flags), IFNAMSIZ);
    return 0;
}
"""


def test_constants_match_the_kernel_headers(tmp_path: Path) -> None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        require("gcc", why="a C compiler builds the <linux/if_tun.h> probe")
    if compiler is None or not Path("/usr/include/linux/if_tun.h").exists():
        pytest.skip("needs a C compiler and <linux/if_tun.h> (linux-libc-dev)")
    source = tmp_path / "probe.c"
    source.write_text(HEADER_PROBE)
    subprocess.run([compiler, str(source), "-o", str(tmp_path / "probe")], check=True)
    values = subprocess.run([str(tmp_path / "probe")], check=True, capture_output=True, text=True).stdout.split()
    assert [int(value) for value in values] == [tap.TUNSETIFF, tap.IFF_TAP, tap.IFF_NO_PI, tap.IFREQ.size, 16,
                                                tap.IFNAMSIZ]


def test_a_bad_name_is_refused_before_opening_anything() -> None:
    with pytest.raises(NetBackendError, match=r"TAP interface 'a-name-far-too-long': the name is longer than 15"):
        TapBackend("a-name-far-too-long")


def test_a_missing_tun_device_names_the_fix(monkeypatch) -> None:
    monkeypatch.setattr(tap, "TUN_DEVICE", "/nonexistent/net/tun")
    with pytest.raises(NetBackendError) as caught:
        TapBackend("axtap0")
    assert str(caught.value) == ("TAP interface axtap0: cannot open /nonexistent/net/tun: No such file or directory; "
                                 "the tun driver is missing; load it (modprobe tun), or in a container pass "
                                 "--device /dev/net/tun")


# Runs inside the namespace: creates the TAP through the backend, configures it with ip(8), asks
# the kernel for 10.99.0.1's MAC address and prints what happened as one JSON object.
IN_NAMESPACE = r"""
import json, queue, subprocess, sys, time
from axvisor.net import NetBackendError, TapBackend, parse_netdev

GUEST_MAC = bytes.fromhex("525400123456")
result = {}
link = parse_netdev("tap:axvtap0")
result["ifname"] = link.ifname
for name in ("axvtap0", "lo"):  # the first is attached already, the second is no TAP
    try:
        TapBackend(name)
    except NetBackendError as error:
        result["error_" + name] = str(error)
subprocess.run(["ip", "addr", "add", "10.99.0.1/24", "dev", "axvtap0"], check=True)
subprocess.run(["ip", "link", "set", "axvtap0", "up"], check=True)
frames = queue.Queue()
link.start(lambda frame: frames.put(frame) or True)
arp = (b"\xff" * 6 + GUEST_MAC + b"\x08\x06"            # Ethernet: broadcast, ARP
       + bytes.fromhex("0001 0800 06 04 0001")           # Ethernet/IPv4, request
       + GUEST_MAC + bytes([10, 99, 0, 2])               # sender 10.99.0.2
       + b"\0" * 6 + bytes([10, 99, 0, 1]))              # who has 10.99.0.1?
link.send(arp)
deadline = time.monotonic() + 5
while time.monotonic() < deadline:
    try:
        frame = frames.get(timeout=0.2)
    except queue.Empty:
        continue
    if frame[12:14] == b"\x08\x06" and frame[20:22] == b"\x00\x02":
        result["reply"] = frame[:42].hex()
        break
result["tx_frames"], result["tx_errors"] = link.tx_frames, link.tx_errors
link.close()
result["closed"] = not link.running
shown = subprocess.run(["ip", "link", "show", "axvtap0"], capture_output=True)
result["gone_after_close"] = shown.returncode != 0
print(json.dumps(result))
"""


def _tap_skip_reason() -> str | None:
    if shutil.which("ip") is None:
        return "needs ip(8) (iproute2) to make a network namespace"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun (the tun driver)"
    if os.geteuid() != 0:
        return "needs root to create a network namespace and a TAP interface"
    return None


@pytest.fixture
def namespace() -> Iterator[str]:
    reason = _tap_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    name = f"axv-test-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    assert made.returncode == 0, f"ip netns add {name} failed as root: {made.stderr.strip()}"
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def test_the_kernel_answers_an_arp_request_sent_through_the_tap(namespace: str, tmp_path: Path) -> None:
    script = tmp_path / "in_namespace.py"
    script.write_text(IN_NAMESPACE)
    done = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, str(script)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ifname"] == "axvtap0"
    assert result["error_axvtap0"] == ("TAP interface axvtap0: TUNSETIFF failed: Device or resource busy; another "
                                       "process has axvtap0 open; stop it or choose another interface name")
    assert result["error_lo"].startswith("TAP interface lo: TUNSETIFF failed: Invalid argument; an interface named lo")
    assert (result["tx_frames"], result["tx_errors"]) == (1, 0)
    reply = bytes.fromhex(result["reply"])
    assert reply[:6] == bytes.fromhex("525400123456")  # to the guest
    assert reply[20:22] == b"\x00\x02"  # an ARP reply
    assert reply[28:32] == bytes([10, 99, 0, 1]) and reply[22:28] == reply[6:12]  # 10.99.0.1 is at the tap's MAC
    assert reply[38:42] == bytes([10, 99, 0, 2])
    assert result["closed"] and result["gone_after_close"]
