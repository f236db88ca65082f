"""`rdispy worker --discover-interface`: the discovery broadcast leaves by the chosen interface
only.  Runs in network namespaces, never on this machine's own networks:

    worker ns:  ethA 10.N.1.2 ── veth ── relay ns:    eth0 10.N.1.1  (answers discovery)
                ethB 10.N.2.2 ── veth ── listener ns: eth0 10.N.2.1  (records what arrives)
                ethC 10.N.3.2 ── veth ── ethCp (also in the worker ns: a third interface)

Discovering on ethA finds the responder and nothing reaches the listener, with SO_BINDTODEVICE
and with its fallback (bound to ethA's address, sent to its broadcast address); discovering on
every interface reaches the listener too, which shows that the listener would have heard it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import netns

pytestmark = pytest.mark.slow

_why_not = netns.available()
PORT = 51350
CLUSTER = "nsdisc"

RESPONDER = """
import socket, sys
from rdispy.relay import discovery
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, peer = sock.recvfrom(2048)
    parsed = discovery.parse_request(data)
    if parsed:
        sock.sendto(discovery.answer(*parsed, sys.argv[2] + ":6380", None), peer)
"""

LISTENER = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, peer = sock.recvfrom(2048)
    print(peer[0], data.decode(errors="replace"), flush=True)
"""

SEEKER = """
import sys
from rdispy import netif
from rdispy.relay import discovery
if sys.argv[3] == "address":
    netif.bind_to_device = lambda sock, name: False
interface = None if sys.argv[2] == "-" else sys.argv[2]
print(discovery.discover(sys.argv[1], None, timeout=10, port=int(sys.argv[4]), interface=interface))
"""


class Net:
    """The three namespaces; ``run`` a command in one, ``spawn`` a long-lived one."""

    def __init__(self, workdir: Path) -> None:
        self.tag = f"{netns.PREFIX}{os.getpid()}"
        self.subnet = f"10.{200 + os.getpid() % 50}"
        self.ns = {role: f"{self.tag}-d{role}" for role in ("worker", "relay", "listener")}
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def create(self) -> Net:
        netns.cleanup_stale()
        for ns in self.ns.values():
            netns.ip("netns", "add", ns)
            netns.ip("-n", ns, "link", "set", "lo", "up")
        for i, (peer, name) in enumerate((("relay", "ethA"), ("listener", "ethB")), start=1):
            a, b = f"{self.tag}dw{i}", f"{self.tag}dp{i}"
            netns.ip("link", "add", a, "type", "veth", "peer", "name", b)
            netns.ip("link", "set", a, "netns", self.ns["worker"], "name", name)
            netns.ip("link", "set", b, "netns", self.ns[peer], "name", "eth0")
            self._address("worker", name, f"{self.subnet}.{i}.2/24")
            self._address(peer, "eth0", f"{self.subnet}.{i}.1/24")
        # a third interface, a veth pair with both ends in the worker namespace (no dummy module
        # needed); only ethC has an address
        worker = self.ns["worker"]
        netns.ip("-n", worker, "link", "add", "ethC", "type", "veth", "peer", "name", "ethCp")
        netns.ip("-n", worker, "link", "set", "ethCp", "up")
        self._address("worker", "ethC", f"{self.subnet}.3.2/24")
        return self

    def _address(self, role: str, dev: str, cidr: str) -> None:
        netns.ip("-n", self.ns[role], "addr", "add", cidr, "brd", "+", "dev", dev)
        netns.ip("-n", self.ns[role], "link", "set", dev, "up")

    def _args(self, role: str, code: str, *args: str) -> list[str]:
        return [netns.IP, "netns", "exec", self.ns[role], sys.executable, "-c", code, *args]

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(netns.ROOT), "PYTHONUNBUFFERED": "1"}

    def spawn(self, role: str, code: str, *args: str) -> Path:
        """Start a script in a namespace; its output file once it printed ``ready``."""
        out = self.workdir / f"{role}.out"
        with out.open("wb") as f:
            proc = subprocess.Popen(
                self._args(role, code, *args), stdout=f, stderr=subprocess.STDOUT, env=self._env()
            )
        self.procs.append(proc)
        deadline = time.monotonic() + 15
        while not out.read_text().startswith("ready"):
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.05)
        return out

    def run(self, role: str, code: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._args(role, code, *args), capture_output=True, text=True, timeout=30,
            env=self._env(),
        )  # fmt: skip

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        for ns in self.ns.values():
            for pid in netns.ip("netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            netns.ip("netns", "del", ns, check=False)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    if _why_not:
        pytest.skip(_why_not)
    made = Net(tmp_path)
    try:
        yield made.create()
    finally:
        made.close()


def _heard(out: Path) -> list[str]:
    return out.read_text().splitlines()[1:]


@pytest.mark.parametrize("pinning", ["device", "address"])
def test_discovery_on_one_interface_does_not_leave_by_the_others(net: Net, pinning: str) -> None:
    relay_ip = f"{net.subnet}.1.1"
    net.spawn("relay", RESPONDER, str(PORT), relay_ip)
    heard = net.spawn("listener", LISTENER, str(PORT))
    found = net.run("worker", SEEKER, CLUSTER, "ethA", pinning, str(PORT))
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == f"redis://{relay_ip}:6380"
    time.sleep(1.0)  # a stray broadcast would have arrived by now
    assert _heard(heard) == []
    # the control: discovering on every interface does reach the listener
    found = net.run("worker", SEEKER, CLUSTER, "-", pinning, str(PORT))
    assert found.stdout.strip() == f"redis://{relay_ip}:6380", found.stderr
    deadline = time.monotonic() + 5
    while not _heard(heard) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any("RDISPY-DISCOVER 1 nsdisc" in line for line in _heard(heard))
    assert all(line.startswith(f"{net.subnet}.2.2 ") for line in _heard(heard))


def test_worker_cli_discovers_on_the_named_interface_only(net: Net) -> None:
    relay_ip = f"{net.subnet}.1.1"
    net.spawn("relay", RESPONDER, str(PORT), relay_ip)
    heard = net.spawn("listener", LISTENER, str(PORT))
    # the answer points at a relay that is not there: the worker finds it, then gives up on Redis
    done = net.run(
        "worker",
        "import sys; from rdispy.cli import main; sys.exit(main())",
        "-v", "worker", "--cluster", CLUSTER, "--discover-interface", "ethA",
        "--connect-timeout", "1",
    )  # fmt: skip
    assert f"found relay {relay_ip}:6380" in done.stderr, done.stderr
    assert _heard(heard) == []
    missing = net.run(
        "worker",
        "import sys; from rdispy.cli import main; sys.exit(main())",
        "worker", "--discover-interface", "ethZ",
    )  # fmt: skip
    assert missing.returncode != 0 and "no network interface 'ethZ'" in missing.stderr
