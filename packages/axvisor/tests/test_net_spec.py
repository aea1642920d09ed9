"""Netdev specs: the two forms, and one line naming the expected forms for anything else."""

from __future__ import annotations

import socket

import pytest

from axvisor.net import FORMS, DgramBackend, NetHost, TapSpec, UdpSpec, parse_netdev, parse_netdev_spec


@pytest.mark.parametrize(("spec", "parsed"), [
    ("tap:axtap0", TapSpec("axtap0")),
    ("tap:tap%d", TapSpec("tap%d")),
    ("udp:127.0.0.1:5000:127.0.0.1:5001", UdpSpec(("127.0.0.1", 5000), ("127.0.0.1", 5001))),
    ("udp:localhost:1:example.org:65535", UdpSpec(("localhost", 1), ("example.org", 65535))),
    ("udp:[::1]:5000:[fe80::1%eth0]:5001", UdpSpec(("::1", 5000), ("fe80::1%eth0", 5001))),
])
def test_good_specs(spec: str, parsed: object) -> None:
    assert parse_netdev_spec(spec) == parsed


@pytest.mark.parametrize(("spec", "problem"), [
    ("", "unknown netdev ''"),
    ("axtap0", "unknown netdev 'axtap0'"),
    ("user:", "unknown netdev 'user:'"),
    ("tap:", "the interface name '' is empty"),
    ("tap:a-name-far-too-long", "is longer than 15 bytes"),
    ("tap:a/b", "contains '/'"),
    ("udp:127.0.0.1:5000", "does not have four fields"),
    ("udp:127.0.0.1:5000:127.0.0.1:5001:7", "does not have four fields"),
    ("udp::5000:127.0.0.1:5001", "the local host is empty"),
    ("udp:127.0.0.1:http:127.0.0.1:5001", "the local port 'http' is not a number 1-65535"),
    ("udp:127.0.0.1:5000:127.0.0.1:70000", "the remote port '70000' is not a number 1-65535"),
    ("udp:127.0.0.1:0:127.0.0.1:5001", "the local port '0'"),
])
def test_bad_specs_are_one_line_with_the_expected_forms(spec: str, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_netdev(spec)
    message = str(caught.value)
    assert problem in message and message.endswith(FORMS) and "\n" not in message


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_parse_netdev_opens_an_unstarted_backend() -> None:
    link = parse_netdev(f"udp:127.0.0.1:{free_port()}:127.0.0.1:9")
    try:
        assert isinstance(link, DgramBackend) and not link.running
        assert link.remote_address == ("127.0.0.1", 9)
    finally:
        link.close()


def test_net_host_opens_netdevs() -> None:
    link = NetHost().open_netdev(f"udp:127.0.0.1:{free_port()}:127.0.0.1:9")
    try:
        assert isinstance(link, DgramBackend)
    finally:
        link.close()
