"""What a node may do through the relay: the commands rdispy's worker sends, on the cluster's own
keys, and nothing else.

Every command is checked before it is forwarded: its name (and subcommand) must be on the
allow-list below, every key it names must be under the cluster's prefix (``rdispy:{cluster}:``),
scripts run only by the SHA of one of rdispy's own Lua scripts, and a node record may only be
written whole by HSET.  With a secret, that HSET must carry the node's HMAC signature (the relay
checks it, so an unsigned or forged registration never reaches Redis).  The relay adds a
``relay`` field naming itself to every registration it forwards (unsigned, for display only).
A refused command gets a RESP error reply and is logged; the relay never uses its own
credentials for anything a node could not do on its own keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rdispy import scripts, wire
from rdispy.errors import RdispyError
from rdispy.keys import Keys
from rdispy.nodes import RELAY_FIELD

Args = Sequence[bytes]


class Refused(RdispyError):
    """A command the relay will not forward; the text goes back to the node as an error."""


def _none(args: Args) -> list[bytes]:
    return []


def _first(args: Args) -> list[bytes]:
    if len(args) < 2:
        raise Refused("missing key")
    return [args[1]]


def _rest(args: Args) -> list[bytes]:
    return list(args[1:])


def _second(args: Args) -> list[bytes]:
    if len(args) < 3:
        raise Refused("missing key")
    return [args[2]]


def _streams(args: Args) -> list[bytes]:
    """Keys of XREAD / XREADGROUP: the first half of what follows STREAMS."""
    i = 1
    if args[0].upper() == b"XREADGROUP":
        if len(args) < 4 or args[1].upper() != b"GROUP":
            raise Refused("XREADGROUP needs GROUP name consumer")
        i = 4
    while i < len(args) and args[i].upper() != b"STREAMS":
        option = args[i].upper()
        i += 2 if option in (b"COUNT", b"BLOCK") else 1
    rest = args[i + 1 :]
    if i >= len(args) or not rest or len(rest) % 2:
        raise Refused("malformed STREAMS list")
    return list(rest[: len(rest) // 2])


def _script_keys(args: Args) -> list[bytes]:
    try:
        count = int(args[2])
    except (IndexError, ValueError):
        raise Refused("malformed numkeys") from None
    if count < 0 or 3 + count > len(args):
        raise Refused("malformed numkeys")
    return list(args[3 : 3 + count])


#: Command -> where its keys are.  Exactly what rdispy/worker/, link.py, nodes.py, connection.py
#: and scripts.py send (plus redis-py's connection handshake); extend it only with them.
COMMANDS: dict[bytes, Callable[[Args], list[bytes]]] = {
    b"HELLO": _none,
    b"PING": _none,
    b"ECHO": _none,
    b"MULTI": _none,
    b"EXEC": _none,
    b"DISCARD": _none,
    b"SELECT": _none,
    b"CLIENT": _none,
    b"INFO": _none,
    b"SCRIPT": _none,
    b"EVALSHA": _script_keys,
    b"EVAL": _script_keys,
    b"GET": _first,
    b"EXISTS": _rest,
    b"DEL": _rest,
    b"EXPIRE": _first,
    b"PEXPIRE": _first,
    b"PERSIST": _first,
    b"HGET": _first,
    b"HGETALL": _first,
    b"HSET": _first,
    b"HINCRBY": _first,
    b"ZADD": _first,
    b"ZRANGE": _first,
    b"ZREM": _first,
    b"ZREMRANGEBYSCORE": _first,
    b"XADD": _first,
    b"XACK": _first,
    b"XDEL": _first,
    b"XRANGE": _first,
    b"XREVRANGE": _first,
    b"XPENDING": _first,
    b"XREAD": _streams,
    b"XREADGROUP": _streams,
    b"XGROUP": _second,
    b"XINFO": _second,
}

#: Subcommands allowed for the commands that have them.
SUBCOMMANDS: dict[bytes, frozenset[bytes]] = {
    b"CLIENT": frozenset({b"INFO", b"SETINFO", b"SETNAME", b"GETNAME", b"ID"}),
    b"SCRIPT": frozenset({b"LOAD", b"EXISTS"}),
    b"XGROUP": frozenset({b"CREATE", b"DELCONSUMER", b"CREATECONSUMER"}),
    b"XINFO": frozenset({b"CONSUMERS", b"GROUPS", b"STREAM"}),
}

#: Commands that may touch a node record (``node:<name>``); HSET only when signed (with a secret).
NODE_RECORD_COMMANDS = frozenset({b"HSET", b"HGET", b"HGETALL", b"PEXPIRE", b"EXPIRE", b"DEL"})


def script_shas() -> dict[bytes, str]:
    """SHA1 -> name of every Lua script in rdispy.scripts (module-level upper-case strings)."""
    found = {}
    for name, value in vars(scripts).items():
        if name.isupper() and isinstance(value, str) and "redis.call" in value:
            found[hashlib.sha1(value.encode()).hexdigest().encode()] = name
    return found


@dataclass
class Forward:
    """A command to forward (possibly rewritten) and what kind of reply to expect."""

    command: list[bytes]
    client_info: bool = False  # CLIENT INFO: the reply's addr= is rewritten to the node's


class Policy:
    """Checks (and, for registrations, marks) the commands of one cluster's nodes."""

    def __init__(self, keys: Keys, signer: wire.Signer, relay_name: str) -> None:
        self.keys = keys
        self.signer = signer
        self.relay_name = relay_name.encode()
        self._base = (keys.base + ":").encode()
        self._node_prefix = (keys.base + ":node:").encode()
        self._shas = script_shas()

    def check(self, command: Args) -> Forward:
        """The command to forward, or Refused saying why not."""
        if not command:
            raise Refused("empty command")
        name = command[0].upper()
        where = COMMANDS.get(name)
        if where is None:
            raise Refused(f"command {name.decode(errors='replace')!r} is not one rdispy uses")
        args = [name, *command[1:]]
        sub = SUBCOMMANDS.get(name)
        if sub is not None and (len(args) < 2 or args[1].upper() not in sub):
            what = args[1].decode(errors="replace") if len(args) > 1 else ""
            raise Refused(f"{name.decode()} {what!r} is not one rdispy uses")
        self._check_special(args)
        for key in where(args):
            self._check_key(name, key)
        if name == b"HSET" and self._node_name(args[1]) is not None:
            return Forward(self._registration(args))
        client_info = name == b"CLIENT" and args[1].upper() == b"INFO"
        return Forward(args, client_info)

    def _check_special(self, args: list[bytes]) -> None:
        name = args[0]
        if name == b"HELLO" and (len(args) > 2 or args[1:] not in ([], [b"2"], [b"3"])):
            raise Refused(
                "HELLO with options: nodes do not authenticate at the relay (give the relay "
                "the Redis password, and nodes redis://RELAY:PORT)"
            )
        if name == b"SELECT" and args[1:] != [b"0"]:
            raise Refused("only database 0")
        if name == b"INFO" and [a.lower() for a in args[1:]] != [b"memory"]:
            raise Refused("INFO memory only (the eviction policy)")
        if name == b"EVALSHA" and (len(args) < 2 or args[1].lower() not in self._shas):
            raise Refused("EVALSHA of a script that is not one of rdispy's")
        if name == b"EVAL" and self._sha(args) not in self._shas:
            raise Refused("EVAL of a script that is not one of rdispy's")
        if name == b"SCRIPT" and args[1].upper() == b"LOAD" and self._sha(args) not in self._shas:
            raise Refused("SCRIPT LOAD of a script that is not one of rdispy's")

    @staticmethod
    def _sha(args: list[bytes]) -> bytes:
        body = args[2] if args[0] == b"SCRIPT" else args[1] if len(args) > 1 else b""
        return hashlib.sha1(body).hexdigest().encode()

    def _check_key(self, command: bytes, key: bytes) -> None:
        if not key.startswith(self._base):
            raise Refused(f"key {key[:80].decode(errors='replace')!r} is outside this cluster")
        if self._node_name(key) is not None and command not in NODE_RECORD_COMMANDS:
            raise Refused(f"{command.decode()} on a node record")

    def _node_name(self, key: bytes) -> bytes | None:
        """The node name if ``key`` is a node record (``<base>:node:<name>``)."""
        if not key.startswith(self._node_prefix):
            return None
        name = key[len(self._node_prefix) :]
        return name if name and b":" not in name else None

    def _registration(self, args: list[bytes]) -> list[bytes]:
        """A node record written through the relay: signed by the node (with a secret), for the
        name in its key, and marked with this relay."""
        key, flat = args[1], args[2:]
        if not flat or len(flat) % 2:
            raise Refused("malformed HSET")
        it = iter(flat)
        fields = dict(zip(it, it, strict=True))
        fields.pop(RELAY_FIELD, None)
        if fields.get(b"name") != self._node_name(key):
            raise Refused("node record names another node")
        try:
            self.signer.verify(key.decode(), fields)
        except RdispyError as exc:
            raise Refused(f"unsigned or forged node registration: {exc}") from exc
        marked = [args[0], key]
        for field, value in fields.items():
            marked += [field, value]
        return [*marked, RELAY_FIELD, self.relay_name]
