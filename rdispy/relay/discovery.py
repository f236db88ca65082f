"""Finding a relay from an isolated network: ``rdispy worker --discover`` broadcasts a request
on UDP port DISCOVERY_PORT of each of its networks (and to 255.255.255.255); every relay of the
same cluster answers with the address nodes should connect to.  With ``--discover-interface
NAME`` the request goes out on that interface only (pinned with SO_BINDTODEVICE where possible,
else from the interface's address to its broadcast address).

Request:  ``RDISPY-DISCOVER 1 <cluster> <nonce>``
Answer:   ``RDISPY-RELAY 1 <cluster> <nonce> <host>:<port> <mac>``

``mac`` is an HMAC-SHA256 of the rest of the answer under the shared secret ("-" without one);
a worker that has a secret accepts only answers carrying a valid one, so a stranger cannot lure
it to another address.  The nonce keeps an old answer from being replayed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
import socket
import time
from collections.abc import Callable

from rdispy import netif
from rdispy.errors import BrokerError

log = logging.getLogger(__name__)

#: UDP port relays listen on for discovery broadcasts (documented in the README).
DISCOVERY_PORT = 51350
#: TCP port a relay listens on for nodes unless told otherwise.
RELAY_PORT = 6380

_REQUEST = b"RDISPY-DISCOVER"
_ANSWER = b"RDISPY-RELAY"
_VERSION = b"1"


def request(cluster: str, nonce: str) -> bytes:
    return b" ".join((_REQUEST, _VERSION, cluster.encode(), nonce.encode()))


def parse_request(data: bytes) -> tuple[str, str] | None:
    """(cluster, nonce) of a discovery request, None for anything else."""
    parts = data.split()
    if len(parts) != 4 or parts[0] != _REQUEST or parts[1] != _VERSION:
        return None
    return parts[2].decode(errors="replace"), parts[3].decode(errors="replace")


def _mac(secret: str | None, text: bytes) -> bytes:
    if not secret:
        return b"-"
    return hmac.new(secret.encode(), text, hashlib.sha256).hexdigest().encode()


def answer(cluster: str, nonce: str, address: str, secret: str | None) -> bytes:
    text = b" ".join((_ANSWER, _VERSION, cluster.encode(), nonce.encode(), address.encode()))
    return text + b" " + _mac(secret, text)


def parse_answer(data: bytes, cluster: str, nonce: str, secret: str | None) -> str | None:
    """The relay address ``host:port`` in a valid answer to our request, else None."""
    parts = data.split()
    if len(parts) != 6 or parts[0] != _ANSWER or parts[1] != _VERSION:
        return None
    if parts[2] != cluster.encode() or parts[3] != nonce.encode():
        return None
    if secret and not hmac.compare_digest(parts[5], _mac(secret, b" ".join(parts[:5]))):
        log.warning("ignoring a relay answer without a valid signature from the shared secret")
        return None
    return parts[4].decode(errors="replace")


def discover(
    cluster: str,
    secret: str | None = None,
    timeout: float | None = None,
    port: int = DISCOVERY_PORT,
    should_stop: Callable[[], bool] = lambda: False,
    interface: str | None = None,
) -> str:
    """Broadcast until a relay of ``cluster`` answers; its ``redis://host:port`` URL.  Backs off
    from 0.5 s to 5 s between rounds; BrokerError after ``timeout`` seconds (None: forever).

    ``interface``: broadcast on that network interface only (ConfigError if it has no IPv4
    address or is down); None: on every interface that is up but the loopback."""
    deadline = None if timeout is None else time.monotonic() + timeout
    nonce = secrets.token_hex(8)
    message = request(cluster, nonce)
    wait = 0.5
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        targets = _prepare(sock, interface)
        attempt = 0
        while True:
            attempt += 1
            for address in targets:
                with contextlib.suppress(OSError):  # a network without a route: try the others
                    sock.sendto(message, (address, port))
            found = _collect(sock, cluster, nonce, secret, wait)
            if found:
                log.info("found relay %s for cluster %s", found, cluster)
                return f"redis://{found}"
            if should_stop() or (deadline is not None and time.monotonic() >= deadline):
                raise BrokerError(
                    f"no rdispy relay of cluster {cluster!r} answered on UDP port {port} "
                    f"after {attempt} broadcasts; start `rdispy relay` on this network or pass "
                    "--redis redis://RELAY:PORT"
                )
            log.warning("no relay answered yet (attempt %d); broadcasting again", attempt)
            wait = min(wait * 2, 5.0)


def _prepare(sock: socket.socket, interface: str | None) -> list[str]:
    """Bind the discovery socket; the addresses to broadcast to."""
    if interface is None:
        sock.bind(("", 0))
        return netif.broadcast_addresses()
    iface = netif.require(interface)
    if netif.bind_to_device(sock, iface.name):
        sock.bind(("", 0))
        log.info("discovery on interface %s only (to %s)", iface.name, iface.broadcast)
    else:  # the route to the interface's own broadcast address leaves by that interface
        sock.bind((iface.address, 0))
        log.info("discovery from %s to %s only", iface.address, iface.broadcast)
    return [iface.broadcast]


def _collect(
    sock: socket.socket, cluster: str, nonce: str, secret: str | None, wait: float
) -> str | None:
    end = time.monotonic() + wait
    while (left := end - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data, _ = sock.recvfrom(2048)
        except OSError:  # timed out
            return None
        found = parse_answer(data, cluster, nonce, secret)
        if found:
            return found
    return None


def local_address_towards(peer: str) -> str:
    """This host's address on the route to ``peer`` (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((peer, 9))
        return str(sock.getsockname()[0])
