"""Runs compose.yaml's services in Linux network namespaces: one namespace per service, one
bridge per network, a veth pair per (service, network) with a /24 address, and
/etc/netns/<ns>/hosts so that service names resolve as they do under Docker Compose.  Each
service runs its compose command with the local interpreter (``rdispy ...`` becomes
``sys.executable -m rdispy ...``, ``python`` becomes ``sys.executable``).

The root namespace gets an address on the first network only (``main``), so the test process
can play a client there; other networks (``isolated``) are reachable only through services
attached to them.  ``Cluster.close()`` kills every process and removes namespaces, veths,
bridges and hosts files, also after a failure; stale objects of a dead test process are removed
before a new cluster starts.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rdispy.processes import pid_alive

IP = shutil.which("ip") or "/usr/sbin/ip"
ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
PREFIX = "rdc"


def available() -> str | None:
    """Why namespace tests cannot run here, or None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    try:
        import yaml  # noqa: F401
    except ImportError:
        return "PyYAML is not installed (pip install -e '.[test]')"
    if not os.path.exists(IP):
        return "iproute2 (/usr/sbin/ip) is not installed"
    probe = f"{PREFIX}probe{os.getpid()}"
    made = subprocess.run([IP, "netns", "add", probe], capture_output=True)
    subprocess.run([IP, "netns", "del", probe], capture_output=True)
    if made.returncode:
        return f"cannot create network namespaces: {made.stderr.decode().strip()}"
    return None


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([IP, *args], capture_output=True, text=True)
    if check and done.returncode:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


_VAR = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${NAME}`` and ``${NAME:-default}``."""
    return _VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)


@dataclass
class Service:
    name: str
    command: list[str]
    networks: list[str]
    environment: dict[str, str]
    namespace: str = ""
    addresses: dict[str, str] = field(default_factory=dict)  # network -> address
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None


def load_services(path: Path = COMPOSE, env: dict[str, str] | None = None) -> dict[str, Service]:
    """The services of a compose file, with variables interpolated from ``env``."""
    import yaml  # the test extra's pyyaml; checked by available()

    env = dict(os.environ if env is None else env)
    spec: dict[str, Any] = yaml.safe_load(path.read_text())
    services = {}
    for name, raw in spec["services"].items():
        command = raw.get("command")
        if not isinstance(command, list):
            raise ValueError(f"service {name}: write its command as a list")
        environment = raw.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        networks = raw.get("networks") or ["default"]
        if isinstance(networks, dict):
            networks = list(networks)
        services[name] = Service(
            name,
            [interpolate(str(a), env) for a in command],
            list(networks),
            {k: interpolate(str(v), env) for k, v in environment.items()},
        )
    return services


def local_command(command: list[str]) -> list[str]:
    """A compose command run with this interpreter."""
    if command[0] == "rdispy":
        return [sys.executable, "-m", "rdispy", *command[1:]]
    if command[0] in ("python", "python3"):
        return [sys.executable, *command[1:]]
    return command


def cleanup_stale() -> None:
    """Remove namespaces, links and hosts files left by test processes that died."""
    pattern = re.compile(rf"^{PREFIX}(\d+)")
    names = ip("netns", "list", check=False).stdout.split()
    links = re.findall(r"^\d+: ([^:@]+)", ip("-o", "link", "show", check=False).stdout, re.M)
    for name in [n for n in names if pattern.match(n)] + [lk for lk in links if pattern.match(lk)]:
        match = pattern.match(name)
        assert match is not None
        pid = int(match.group(1))
        if pid != os.getpid() and pid_alive(pid):
            continue
        if name in names:
            _kill_namespace(name)
            ip("netns", "del", name, check=False)
            shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)
        else:
            ip("link", "del", name, check=False)


def _kill_namespace(namespace: str) -> None:
    pids = ip("netns", "pids", namespace, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


class Cluster:
    """compose.yaml's services in namespaces; ``start(name)`` each, ``close()`` at the end."""

    def __init__(self, workdir: Path, env: dict[str, str], path: Path = COMPOSE) -> None:
        self.workdir = workdir
        self.env = env
        self.tag = f"{PREFIX}{os.getpid()}"
        self.services = load_services(path, {**os.environ, **env})
        self.networks = list(dict.fromkeys(n for s in self.services.values() for n in s.networks))
        self.bridges: dict[str, str] = {}
        self.subnets: dict[str, str] = {}
        self.links: list[str] = []
        self.root_address = ""

    # -- topology ------------------------------------------------------------------------------

    def create(self) -> Cluster:
        cleanup_stale()
        self.close()  # leftovers of an earlier cluster of this process
        base = 100 + os.getpid() % 100
        for i, network in enumerate(self.networks):
            bridge = f"{self.tag}b{i}"
            ip("link", "add", bridge, "type", "bridge")
            ip("link", "set", bridge, "up")
            self.bridges[network] = bridge
            self.subnets[network] = f"10.{base}.{i + 1}"
        self.root_address = f"{self.subnets[self.networks[0]]}.1"
        ip("addr", "add", f"{self.root_address}/24", "dev", self.bridges[self.networks[0]])
        for j, service in enumerate(self.services.values()):
            service.namespace = f"{self.tag}-{service.name}"[:64]
            ip("netns", "add", service.namespace)
            ip("-n", service.namespace, "link", "set", "lo", "up")
            for k, network in enumerate(service.networks):
                host_end = f"{self.tag}v{j}n{k}"
                self.links.append(host_end)
                ip("link", "add", host_end, "type", "veth", "peer", "name", f"eth{k}",
                   "netns", service.namespace)  # fmt: skip
                ip("link", "set", host_end, "master", self.bridges[network], "up")
                address = f"{self.subnets[network]}.{10 + j}"
                service.addresses[network] = address
                ip("-n", service.namespace, "addr", "add", f"{address}/24", "dev", f"eth{k}")
                ip("-n", service.namespace, "link", "set", f"eth{k}", "up")
        for service in self.services.values():
            self._write_hosts(service)
        return self

    def _write_hosts(self, service: Service) -> None:
        lines = ["127.0.0.1 localhost", f"127.0.1.1 {service.name}"]
        for other in self.services.values():
            for network in service.networks:
                if network in other.addresses and other is not service:
                    lines.append(f"{other.addresses[network]} {other.name}")
                    break
        folder = Path("/etc/netns") / service.namespace
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "hosts").write_text("\n".join(lines) + "\n")

    def address(self, service: str, network: str | None = None) -> str:
        addresses = self.services[service].addresses
        return addresses[network] if network else next(iter(addresses.values()))

    def veth(self, service: str, network: str | None = None) -> str:
        """The host end of a service's link to a network."""
        j = list(self.services).index(service)
        svc = self.services[service]
        k = svc.networks.index(network) if network else 0
        return f"{self.tag}v{j}n{k}"

    # -- processes -----------------------------------------------------------------------------

    def exec_args(self, service: str, command: list[str]) -> list[str]:
        return [IP, "netns", "exec", self.services[service].namespace, *command]

    def start(self, name: str, extra_env: dict[str, str] | None = None) -> Service:
        """Start (or restart) a service's compose command in its namespace."""
        service = self.services[name]
        if service.proc is not None and service.proc.poll() is None:
            raise RuntimeError(f"service {name} is running")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env, **service.environment}
        env.update(extra_env or {})
        service.log = self.workdir / f"{name}.log"
        with service.log.open("ab") as log:
            service.proc = subprocess.Popen(
                self.exec_args(name, local_command(service.command)),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
            )
        return service

    def run(
        self, service: str, command: list[str], timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a command to completion in a service's namespace."""
        args = self.exec_args(service, local_command(command))
        env = {**os.environ, **self.env}
        return subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
        )

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal a service's main process (its children die with it: pdeathsig)."""
        proc = self.services[name].proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(15)

    def delete_namespace(self, name: str) -> None:
        """The host is gone: every process in the namespace killed, the namespace deleted."""
        service = self.services[name]
        _kill_namespace(service.namespace)
        if service.proc is not None:
            service.proc.wait(15)
        ip("netns", "del", service.namespace)
        shutil.rmtree(f"/etc/netns/{service.namespace}", ignore_errors=True)

    def link_down(self, name: str, network: str | None = None) -> None:
        """Cut a service off a network (its bridge port goes down; nothing passes)."""
        ip("link", "set", self.veth(name, network), "down")

    def link_up(self, name: str, network: str | None = None) -> None:
        ip("link", "set", self.veth(name, network), "up")

    def output(self, name: str) -> str:
        log = self.services[name].log
        return log.read_text(errors="replace") if log and log.exists() else ""

    def close(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL) and remove everything created."""
        running = [s for s in self.services.values() if s.proc and s.proc.poll() is None]
        for service in running:
            assert service.proc is not None
            with contextlib.suppress(ProcessLookupError):
                service.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for service in running:
            assert service.proc is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.proc.wait(max(0.1, deadline - time.monotonic()))
        for service in self.services.values():
            ns = service.namespace or f"{self.tag}-{service.name}"
            if ns in ip("netns", "list", check=False).stdout.split():
                _kill_namespace(ns)  # whatever is left, consumers included
            if service.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    service.proc.wait(5)
            ip("netns", "del", ns, check=False)
            shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)
        for link in self.links:
            ip("link", "del", link, check=False)
        self.links.clear()
        for bridge in self.bridges.values():
            ip("link", "del", bridge, check=False)
