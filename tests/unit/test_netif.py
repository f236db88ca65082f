"""Interface lookup (rdispy.netif) on the loopback, and `rdispy worker --discover-interface`."""

from __future__ import annotations

import socket
import sys
from unittest import mock

import pytest
from click.testing import CliRunner

from rdispy import netif
from rdispy.cli import main
from rdispy.errors import ConfigError

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ioctls are Linux's")


@linux
def test_loopback_has_its_address_netmask_and_broadcast():
    lo = netif.require("lo")
    assert lo.up and lo.loopback
    assert lo.address == "127.0.0.1" and lo.netmask == "255.0.0.0"
    assert lo.broadcast == "127.255.255.255"  # lo sets none: the directed one
    assert lo in netif.interfaces()


@linux
def test_broadcast_addresses_leave_out_the_loopback():
    addresses = netif.broadcast_addresses()
    assert addresses[-1] == "255.255.255.255" and "127.255.255.255" not in addresses


def test_an_unknown_interface_is_a_config_error_naming_the_real_ones():
    with pytest.raises(ConfigError, match=r"no network interface 'nope0'.*lo"):
        netif.require("nope0")
    assert netif.lookup("nope0") is None


@linux
def test_bind_to_device_pins_a_socket_to_the_loopback():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        if netif.bind_to_device(sock, "lo"):
            assert (
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16).rstrip(b"\0")
                == b"lo"
            )


def _discovered_with(args: list[str], env: dict[str, str] | None = None):
    """What `rdispy worker ARGS` passes to discovery (neither discovery nor the node runs)."""
    calls = []

    def fake_discover(cluster, secret, timeout, interface=None):
        calls.append(interface)
        return "redis://10.0.0.1:6380"

    class Fake:
        def __init__(self, config):
            calls.append(config.url)

        def run(self) -> int:
            return 0

    env = {"RDISPY_REDIS": "", **(env or {})}
    with (
        mock.patch("rdispy.relay.discovery.discover", fake_discover),
        mock.patch("rdispy.worker.supervisor.Supervisor", Fake),
    ):
        result = CliRunner().invoke(main, ["worker", *args], env=env)
    return result, calls


def test_discover_interface_reaches_discovery_and_implies_discover():
    result, calls = _discovered_with(["--discover-interface", "eth1"])
    assert result.exit_code == 0, result.output
    assert calls == ["eth1", "redis://10.0.0.1:6380"]
    result, calls = _discovered_with(["--discover"], {"RDISPY_DISCOVER_INTERFACE": "veth7"})
    assert calls == ["veth7", "redis://10.0.0.1:6380"]


def test_plain_discover_broadcasts_on_every_interface():
    result, calls = _discovered_with(["--discover"])
    assert result.exit_code == 0, result.output
    assert calls == [None, "redis://10.0.0.1:6380"]


def test_discover_on_an_unknown_interface_fails_with_one_line():
    result = CliRunner().invoke(
        main, ["worker", "--discover-interface", "nope0"], env={"RDISPY_REDIS": ""}
    )
    assert result.exit_code != 0
    assert "no network interface 'nope0'" in result.output + str(result.exception)
