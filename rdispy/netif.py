"""This host's IPv4 network interfaces, without dependencies: names from ``socket.if_nameindex``;
on Linux, flags, address, netmask and broadcast address from the SIOCGIF* ioctls.

Everything platform-specific about interfaces is here: ``rdispy worker --discover`` uses it to
choose where its broadcast goes (all interfaces that are up, or only ``--discover-interface``),
and ``bind_to_device`` pins a socket to one interface (SO_BINDTODEVICE, Linux).
"""

from __future__ import annotations

import logging
import socket
import struct
import sys
from dataclasses import dataclass

from rdispy.errors import ConfigError

log = logging.getLogger(__name__)

# <linux/sockios.h> and <net/if.h>
_SIOCGIFFLAGS, _SIOCGIFADDR, _SIOCGIFBRDADDR, _SIOCGIFNETMASK = 0x8913, 0x8915, 0x8919, 0x891B
_IFF_UP, _IFF_BROADCAST, _IFF_LOOPBACK = 0x1, 0x2, 0x8
_IFNAMSIZ = 16


@dataclass(frozen=True)
class Interface:
    """One IPv4 interface: its name, whether it is up or the loopback, its address, netmask and
    broadcast address (the directed one from address and netmask when the interface sets none)."""

    name: str
    up: bool
    loopback: bool
    address: str
    netmask: str
    broadcast: str


def _ioctl_address(sock: socket.socket, request: int, name: str) -> int:
    import fcntl

    packed = struct.pack("256s", name.encode()[: _IFNAMSIZ - 1])
    return int(struct.unpack("!I", fcntl.ioctl(sock, request, packed)[20:24])[0])


def _flags(sock: socket.socket, name: str) -> int:
    import fcntl

    packed = struct.pack("256s", name.encode()[: _IFNAMSIZ - 1])
    return int(struct.unpack("H", fcntl.ioctl(sock, _SIOCGIFFLAGS, packed)[16:18])[0])


def _ntoa(value: int) -> str:
    return socket.inet_ntoa(struct.pack("!I", value & 0xFFFFFFFF))


def lookup(name: str) -> Interface | None:
    """The IPv4 interface ``name``, or None when it has no IPv4 address (Linux only: elsewhere
    always None)."""
    if not sys.platform.startswith("linux"):
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            flags = _flags(sock, name)
            addr = _ioctl_address(sock, _SIOCGIFADDR, name)
            mask = _ioctl_address(sock, _SIOCGIFNETMASK, name)
            brd = _ioctl_address(sock, _SIOCGIFBRDADDR, name) if flags & _IFF_BROADCAST else 0
        except OSError:
            return None  # no such interface, or no IPv4 address on it
    return Interface(
        name,
        bool(flags & _IFF_UP),
        bool(flags & _IFF_LOOPBACK),
        _ntoa(addr),
        _ntoa(mask),
        _ntoa(brd or addr | ~mask),
    )


def interfaces() -> list[Interface]:
    """Every interface with an IPv4 address, in ``if_nameindex`` order."""
    found = (lookup(name) for _, name in socket.if_nameindex())
    return [iface for iface in found if iface is not None]


def require(name: str) -> Interface:
    """The interface ``name``, up and with an IPv4 address, else ConfigError saying which exist."""
    names = [n for _, n in socket.if_nameindex()]
    if name not in names:
        raise ConfigError(f"no network interface {name!r} on this host (there are: {names})")
    iface = lookup(name)
    if iface is None:
        where = "" if sys.platform.startswith("linux") else " (addresses are read on Linux only)"
        raise ConfigError(f"network interface {name!r} has no IPv4 address{where}")
    if not iface.up:
        raise ConfigError(f"network interface {name!r} is down")
    return iface


def broadcast_addresses() -> list[str]:
    """The broadcast address of every IPv4 interface that is up but the loopback, then
    255.255.255.255 (only the latter off Linux)."""
    found = [i.broadcast for i in interfaces() if i.up and not i.loopback]
    return [*dict.fromkeys(found), "255.255.255.255"]


def bind_to_device(sock: socket.socket, name: str) -> bool:
    """Pin ``sock`` to interface ``name`` (SO_BINDTODEVICE): whatever it sends leaves by that
    interface only.  False where that is not possible (not Linux, or not permitted)."""
    option = getattr(socket, "SO_BINDTODEVICE", None)
    if option is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, option, name.encode())
    except OSError as exc:
        log.debug("SO_BINDTODEVICE %s not possible: %s", name, exc)
        return False
    return True
