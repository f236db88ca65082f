"""The relay's pure parts: finding reply boundaries, the command policy, discovery messages and
signed node records."""

from __future__ import annotations

import pytest

from rdispy import netif, scripts
from rdispy.keys import Keys
from rdispy.nodes import signed
from rdispy.relay import discovery
from rdispy.relay.policy import Policy, Refused, script_shas
from rdispy.relay.resp import ReplyScanner, encode_command
from rdispy.wire import Signer

REPLIES = [
    b"+OK\r\n",
    b"-ERR no\r\n",
    b":42\r\n",
    b"$-1\r\n",
    b"$5\r\nhe\r\no\r\n",
    b"*-1\r\n",
    b"*0\r\n",
    b"*2\r\n*2\r\n$3\r\nabc\r\n:1\r\n$0\r\n\r\n",
    b"%1\r\n+k\r\n*1\r\n_\r\n",
    b"=8\r\ntxt:abcd\r\n",
]


@pytest.mark.parametrize("reply", REPLIES)
def test_scanner_finds_the_end_of_each_reply_in_any_chunking(reply: bytes) -> None:
    stream = reply + b"+NEXT\r\n"
    for step in (1, 2, 3, len(stream)):
        scanner, buf = ReplyScanner(), bytearray()
        end = None
        for i in range(0, len(stream), step):
            buf += stream[i : i + step]
            end = scanner.scan(buf)
            if end is not None:
                break
        assert end == len(reply), (reply, step)
        assert ReplyScanner().scan(bytes(buf[end:]) + stream[len(buf) :]) in (None, 7)


def test_scanner_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        ReplyScanner().scan(b"?what\r\n")


def test_encode_command() -> None:
    assert encode_command([b"GET", b"k"]) == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"


@pytest.fixture
def policy() -> Policy:
    return Policy(Keys("c1"), Signer("s3cret"), "r1")


def test_policy_allows_the_workers_commands_on_its_keys(policy: Policy) -> None:
    base = b"rdispy:{c1}:"
    sha = next(iter(script_shas()))
    allowed = [
        [b"xreadgroup", b"GROUP", b"consumers", b"n/1/0/x", b"COUNT", b"1", b"BLOCK", b"1000",
         b"STREAMS", base + b"node:n:jobs", base + b"jobs", b">", b">"],
        [b"XADD", base + b"results:c", b"*", b"k", b"v"],
        [b"EVALSHA", sha, b"2", base + b"jobs", base + b"job:1", b"arg"],
        [b"SCRIPT", b"LOAD", scripts.PUBLISH.encode()],
        [b"XGROUP", b"CREATE", base + b"jobs", b"consumers", b"0", b"MKSTREAM"],
        [b"INFO", b"memory"],
        [b"HELLO", b"3"],
    ]  # fmt: skip
    for command in allowed:
        assert policy.check(command).command[0] == command[0].upper()


def test_policy_refuses_other_commands_keys_and_scripts(policy: Policy) -> None:
    base = b"rdispy:{c1}:"
    refused = [
        [b"FLUSHALL"],
        [b"GET", b"rdispy:{c2}:blob:x"],
        [b"DEL", base + b"jobs", b"elsewhere"],
        [b"XREAD", b"STREAMS", base + b"control", b"other", b"0", b"0"],
        [b"EVAL", b"return 1", b"0"],
        [b"EVALSHA", b"0" * 40, b"0"],
        [b"EVALSHA", next(iter(script_shas())), b"1", b"outside"],
        [b"CONFIG", b"SET", b"maxmemory-policy", b"allkeys-lru"],
        [b"CONFIG", b"GET", b"maxmemory-policy"],  # the policy is read from INFO memory
        [b"INFO"],
        [b"INFO", b"keyspace"],
        [b"CLIENT", b"KILL", b"ID", b"1"],
        [b"HELLO", b"3", b"AUTH", b"default", b"pw"],
        [b"HINCRBY", base + b"node:n", b"cpus", b"1"],
        [b"HSET", base + b"node:n", b"name", b"n"],  # unsigned, and a secret is set
        [b"XREADGROUP", b"GROUP", b"g", b"c", b"STREAMS", base + b"jobs"],
    ]
    for command in refused:
        with pytest.raises(Refused):
            policy.check(command)


def test_signed_registration_is_forwarded_with_the_relay_mark(policy: Policy) -> None:
    key = "rdispy:{c1}:node:n"
    fields = Signer("s3cret").sign(key, {b"name": b"n", b"cpus": b"2"})
    flat = [x for pair in fields.items() for x in pair] + [b"relay", b"fake"]
    out = policy.check([b"HSET", key.encode(), *flat]).command
    marked = dict(zip(out[2::2], out[3::2], strict=True))
    assert marked[b"relay"] == b"r1" and marked[b"cpus"] == b"2"
    assert signed(Signer("s3cret"), key, marked)
    forged = {**marked, b"cpus": b"64"}
    assert not signed(Signer("s3cret"), key, forged)
    assert not signed(Signer("other"), key, marked)


def test_discovery_answers_are_bound_to_cluster_nonce_and_secret() -> None:
    assert discovery.parse_request(discovery.request("c1", "n1")) == ("c1", "n1")
    assert discovery.parse_request(b"GET / HTTP/1.1") is None
    ans = discovery.answer("c1", "n1", "10.0.0.5:6380", "s")
    assert discovery.parse_answer(ans, "c1", "n1", "s") == "10.0.0.5:6380"
    assert discovery.parse_answer(ans, "c1", "n2", "s") is None
    assert discovery.parse_answer(ans, "c2", "n1", "s") is None
    assert discovery.parse_answer(ans, "c1", "n1", "t") is None
    unsigned = discovery.answer("c1", "n1", "10.0.0.5:6380", None)
    assert discovery.parse_answer(unsigned, "c1", "n1", None) == "10.0.0.5:6380"
    assert discovery.parse_answer(unsigned, "c1", "n1", "s") is None
    assert netif.broadcast_addresses()[-1] == "255.255.255.255"
