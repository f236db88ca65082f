"""Forged envelopes, passwords and ACLs (faults.md tests 23, 24 and 25, in part).

An attacker with write access to Redis but without the shared secret XADDs into the shared job
stream, a node's own stream and a client's result stream.  Nothing they write is ever unpickled:
an audit hook on ``pickle.find_class`` (in the worker's processes through a ``sitecustomize`` on
PYTHONPATH, in the client's own process directly) stays silent, and the marker file that their
payload's reduce hook would create never appears.  Every refused job entry is acked, deleted and
recorded in the dead-letter stream with its reason; the real work goes on.

A worker or client with the wrong password stops with a clear error and never prints a secret;
an ACL user limited to the cluster's keys and the command categories in README.md's "Security"
section runs the whole flow.
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import rdispy
from rdispy import wire
from rdispy.keys import CONSUMER_GROUP, Keys
from tests.conftest import HEARTBEAT, ROOT
from tests.helpers import DEADLINE, executor, wait_until

pytestmark = pytest.mark.integration

SECRET = "s3cret-for-signing-9f2c"


class Booby:
    """What an attacker pickles: unpickling it creates ``marker`` (any code could run there)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def booby_pickle(marker: Path, padding: bytes = b"") -> bytes:
    """A job payload ``((Booby, padding), {})`` with plain pickle: it needs nothing of ours to
    load, so a worker or client that unpickled it would create the marker."""
    return pickle.dumps(((Booby(marker), padding), {}))


# -- 23: forged job entries ------------------------------------------------------------------------

AUDIT_HOOK = '''\
"""Test helper: log every pickle.find_class of this process and its forks to a file."""
import os
import sys

_LOG = os.environ.get("RDISPY_TEST_AUDIT_LOG")
if _LOG:

    def _audit(event, args, _log=_LOG, _open=open, _getpid=os.getpid):
        if event == "pickle.find_class":
            with _open(_log, "a") as f:
                f.write(f"{_getpid()} {args[0]}.{args[1]}\\n")

    sys.addaudithook(_audit)
'''


@pytest.fixture
def audited_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Workers started after this log every ``pickle.find_class`` (module.name) with their pid."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(AUDIT_HOOK)
    log = tmp_path / "audit.log"
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", f"{site}{os.pathsep}{path}" if path else str(site))
    monkeypatch.setenv("RDISPY_TEST_AUDIT_LOG", str(log))
    return log


def audit_lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def job_fields(**fields: object) -> dict[bytes, bytes]:
    """A job entry as the dispatcher's submit encodes it (before signing); ``fields`` replace
    its defaults (None leaves a field out)."""
    entry: dict[str, object] = {
        "id": "job-1",
        "c": "attacker",
        "fn": "0" * 64,
        "k": "call",
        "p": b"",
        "r": 0,
        "t": repr(time.time()),
    }
    return wire.encode({**entry, **fields})


def resign(stream: str, fields: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """Sign ``fields`` as they are, keeping a hand-made expiry (someone who holds the secret)."""
    fields[b"sig"] = wire.Signer(SECRET)._digest(stream, fields)
    return fields


def forged_entries(
    keys: Keys, node: str, marker: Path, blob_digest: str
) -> list[tuple[str, str, dict[bytes, bytes], str]]:
    """(case, stream, fields, expected dead-letter reason) for every attack of test 23.

    Every payload, and the function blob every entry names, is a Booby pickle: running or even
    decoding any of these entries would create the marker file.
    """
    shared, own = keys.jobs, keys.node_jobs(node)
    signer = wire.Signer(SECRET)

    def job(case: str, **extra: object) -> dict[bytes, bytes]:
        evil = {"id": f"evil-{case}", "fn": blob_digest, "p": booby_pickle(marker)}
        return job_fields(**{**evil, **extra})

    def signed(case: str, stream: str = shared, **extra: object) -> dict[bytes, bytes]:
        return signer.sign(stream, job(case, **extra))

    flipped = signed("flip", p=booby_pickle(marker, b"A" * 16))
    at = flipped[b"p"].index(b"A" * 16)
    flipped[b"p"] = flipped[b"p"][:at] + b"B" + flipped[b"p"][at + 1 :]  # still a valid pickle
    raised = signed("retries")
    raised[b"r"] = b"9"
    extra = signed("extra")
    extra[b"z"] = b"1"
    missing = signed("missing")
    del missing[b"t"]
    no_sig = "not signed"
    mismatch = "signature does not match"
    expired = "has expired"
    return [
        # (a) a raw pickle, and unsigned envelopes
        ("raw pickle", shared, {b"p": pickle.dumps(Booby(marker))}, no_sig),
        ("bare id", shared, {b"v": b"1", b"id": b"evil-bare"}, no_sig),
        ("unsigned", shared, job("unsigned"), no_sig),
        ("unsigned, node stream", own, job("unsigned-own"), no_sig),
        ("bogus signature", shared, {**job("bogus"), b"sig": b"0" * 64}, mismatch),
        ("binary junk", shared, {b"\xff\x00": b"\x80\x04", b"sig": b"\xfe"}, mismatch),
        # (b) valid envelopes, then altered
        ("payload byte flipped", shared, flipped, mismatch),
        ("retries raised", shared, raised, mismatch),
        ("extra field", shared, extra, mismatch),
        ("field removed", shared, missing, mismatch),
        # (c) replayed from another cluster, another stream, or expired; another secret
        ("other cluster", shared, signed("cluster", Keys(keys.cluster + "x").jobs), mismatch),
        ("shared into node stream", own, signed("replayed"), mismatch),
        ("result stream into jobs", shared, signed("result", keys.results("attacker")), mismatch),
        ("expired", shared, wire.Signer(SECRET, ttl=-60).sign(shared, job("expired")), expired),
        ("other secret", shared, wire.Signer("guess").sign(shared, job("guess")), mismatch),
        # (d) malformed, even though signed with the secret (a broken or foreign client)
        ("wrong version", shared, signed("version", v="2"), "unknown protocol version"),
        ("missing payload", shared, signed("nop", p=None), "lacks p"),
        ("empty client", shared, signed("noclient", c=""), "lacks c"),
        ("empty payload", own, signed("emptyp", own, p=b""), "lacks p"),
        ("unknown kind", shared, signed("kind", k="exec"), "unknown job kind"),
        ("retries not a number", shared, signed("r", r="many"), "malformed retry count"),
        ("oversized id", shared, signed("x" * 300), "malformed job id"),
        ("non-ascii id", shared, signed("\u00e9t\u00e9"), "malformed job id"),
        ("digest not hex", shared, signed("fn", fn="z" * 64), "malformed job id"),
        ("timeout not a number", shared, signed("to", to="never"), "malformed timeout"),
        ("expiry not a number", shared, resign(shared, {**job("x"), b"x": b"soon"}), expired),
    ]


def test_forged_job_entries_are_never_unpickled_and_are_dead_lettered(
    redis_url, rclient, cluster, start_worker, audited_workers, tmp_path
):
    keys = Keys(cluster)
    marker = tmp_path / "PWNED"
    pickle.loads(booby_pickle(marker))  # the payload is live: unpickling it makes the marker
    assert marker.exists()
    marker.unlink()
    evil_blob = pickle.dumps(Booby(marker))
    digest = wire.blob_digest(evil_blob)
    rclient.set(keys.blob(digest), evil_blob, ex=600)  # the function every forged entry names

    worker = start_worker(redis_url, 2, "node1", "--secret", SECRET)
    consumers = sorted(p.pid for p in worker.wait_consumers(2))
    entries = forged_entries(keys, "node1", marker, digest)
    pipe = rclient.pipeline(transaction=False)
    for _, stream, fields, _ in entries:
        pipe.xadd(stream, fields)  # type: ignore[arg-type]
    ids = pipe.execute()
    expected = {  # entry ids are unique per stream only
        (stream.encode(), eid): (case, reason)
        for eid, (case, stream, _, reason) in zip(ids, entries, strict=True)
    }

    def refused() -> int:
        return int(rclient.hget(keys.counters, "deadletters") or 0)

    wait_until(lambda: refused() >= len(entries), f"{len(entries)} dead letters")
    assert not marker.exists()
    assert audit_lines(audited_workers) == []  # no process of the worker unpickled anything
    for stream in (keys.jobs, keys.node_jobs("node1")):
        assert rclient.xpending(stream, CONSUMER_GROUP)["pending"] == 0, stream
        assert rclient.xlen(stream) == 0, stream
    letters: Any = rclient.xrange(keys.dead_letters)
    assert len(letters) == len(entries)
    for _, letter in letters:
        case, reason = expected.pop((letter[b"stream"], letter[b"entry"]))
        assert reason in letter[b"reason"].decode(), (case, letter[b"reason"])
        assert letter[b"node"] == b"node1"
    assert expected == {}

    # the node is unharmed, and a legitimate signed job still runs
    assert worker.proc.poll() is None
    assert sorted(p.pid for p in worker.wait_consumers(2)) == consumers
    with executor(redis_url, cluster=cluster, secret=SECRET) as ex:
        assert ex.submit(lambda a, b: a + b, 2, 3).result(DEADLINE) == 5
    assert refused() == len(entries)
    assert not marker.exists()
    # the hook works: the legitimate function was unpickled, in a consumer
    seen = [line.split() for line in audit_lines(audited_workers)]
    assert seen and {int(pid) for pid, _ in seen} <= set(consumers)
    assert any(name.startswith("cloudpickle") for _, name in seen)
    assert not any(name.endswith(".open") for _, name in seen)
    assert SECRET not in worker.output()


# -- 24: forged results ----------------------------------------------------------------------------

_client_finds: list[str] | None = None
_client_hook_installed = False


def _client_audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "pickle.find_class" and _client_finds is not None:
        _client_finds.append(f"{args[0]}.{args[1]}")


@pytest.fixture
def client_finds() -> Iterator[list[str]]:
    """``pickle.find_class`` lookups made in this process during the test.  An audit hook cannot
    be removed, so one is installed once and records only while a test holds this fixture."""
    global _client_finds, _client_hook_installed
    if not _client_hook_installed:
        sys.addaudithook(_client_audit)
        _client_hook_installed = True
    _client_finds = found = []
    pickle.loads(pickle.dumps(collections.OrderedDict()))  # the hook works
    assert found == ["collections.OrderedDict"]
    found.clear()
    yield found
    _client_finds = None


def gated(gate: str, value: object) -> object:
    """A job that finishes once the test creates ``gate``."""
    deadline = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    return value


def test_forged_results_are_never_unpickled_and_the_real_one_arrives(
    redis_url, rclient, cluster, start_worker, tmp_path, caplog, client_finds
):
    keys = Keys(cluster)
    marker, gate = tmp_path / "PWNED", tmp_path / "gate"
    pickle.loads(pickle.dumps(Booby(marker)))  # the payload is live: unpickling it makes the marker
    assert marker.exists() and client_finds
    marker.unlink()
    client_finds.clear()
    start_worker(redis_url, 1, "node1", "--secret", SECRET)
    with executor(redis_url, cluster=cluster, secret=SECRET) as ex:
        future = ex.submit(gated, str(gate), "the real one")
        stream = keys.results(ex.client_id)
        signer = wire.Signer(SECRET)

        def result(**extra: object) -> dict[bytes, bytes]:
            fields = {"id": future.job_id, "k": "ok", "p": pickle.dumps(Booby(marker))}
            return wire.encode({**fields, "node": "evil", "pid": 1, **extra})

        flipped = signer.sign(stream, result(out="A" * 8))
        flipped[b"out"] = b"B" * 8
        forged = [
            result(),  # unsigned
            {b"k": b"ok", b"p": pickle.dumps(Booby(marker))},  # unsigned, no id
            result(k="lost", why="forged crash"),  # an unsigned failure
            wire.Signer("guess").sign(stream, result()),  # another secret
            signer.sign(keys.results("someone-else"), result()),  # another client's stream
            signer.sign(keys.jobs, result()),  # the job stream
            wire.Signer(SECRET, ttl=-60).sign(stream, result()),  # expired
            flipped,  # altered after signing
            resign(stream, {**result(), b"x": b"soon"}),  # a malformed expiry
        ]
        with caplog.at_level(logging.ERROR, logger="rdispy"):
            for fields in forged:
                rclient.xadd(stream, fields)  # type: ignore[arg-type]

            def ignored() -> list[logging.LogRecord]:
                return [r for r in caplog.records if "ignoring a result entry" in r.getMessage()]

            wait_until(lambda: len(ignored()) >= len(forged), "the forged results to be read")
        assert len(ignored()) == len(forged)
        assert not future.done()
        gate.touch()
        assert future.result(DEADLINE) == "the real one"
        assert future.node == "node1" and future.pid != 1
    assert not marker.exists()
    assert client_finds == []  # the real result, a str, needs no find_class either


# -- 25: passwords and ACLs ------------------------------------------------------------------------

PASSWORD = "right-Pw-7c1e"
WRONG = "wrong-Pw-d41b"


@pytest.mark.parametrize(
    "url,expected",
    [
        (f"redis://:{WRONG}@127.0.0.1:PORT/0", "refused the credentials"),
        (f"redis://someone:{WRONG}@127.0.0.1:PORT/0", "refused the credentials"),
        (f"redis://127.0.0.1:PORT/0?password={WRONG}", "refused the credentials"),
        ("redis://127.0.0.1:PORT/0", "needs a password"),
    ],
    ids=["wrong password", "unknown user", "password in the query", "no password"],
)
def test_worker_with_wrong_credentials_exits_clearly_without_printing_them(
    private_server, start_worker, url, expected
):
    srv = private_server(password=PASSWORD)
    started = time.monotonic()
    worker = start_worker(
        url.replace("PORT", str(srv.port)), 1, "node1", "--connect-timeout", "2", wait_ready=False
    )
    code = worker.proc.wait(DEADLINE)
    out = worker.output()
    assert code != 0, out
    assert time.monotonic() - started < DEADLINE
    assert expected in out
    assert WRONG not in out and PASSWORD not in out
    assert "Traceback" not in out
    assert len(out.strip().splitlines()) == 1, out  # one clear line


@pytest.mark.parametrize(
    "url,expected",
    [
        (f"redis://:{WRONG}@127.0.0.1:PORT/0", "refused the credentials"),
        ("redis://127.0.0.1:PORT/0", "needs a password"),
    ],
    ids=["wrong password", "no password"],
)
def test_executor_with_wrong_credentials_raises_broker_error(
    private_server, cluster, url, expected
):
    srv = private_server(password=PASSWORD)
    with pytest.raises(rdispy.BrokerError, match=expected) as info:
        rdispy.Executor(url.replace("PORT", str(srv.port)), cluster=cluster, connect_timeout=2)
    assert WRONG not in str(info.value) and PASSWORD not in str(info.value)


def readme_acl() -> list[str]:
    """The ACL rules README.md's "Security" section documents (after the password)."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"ACL SETUSER rdispy on >PASSWORD (.+)", text)
    assert match, "README.md documents no ACL SETUSER line"
    return match.group(1).split()


def acl_user(admin: redis.Redis, cluster: str, *more: str) -> str:
    """Create user "rdispy" with README's rules, limited to one cluster's keys; its URL's auth."""
    rules = [f"~rdispy:{{{cluster}}}:*" if rule == "~rdispy:*" else rule for rule in readme_acl()]
    admin.execute_command("ACL", "SETUSER", "rdispy", "reset", "on", f">{PASSWORD}", *rules, *more)
    return f"rdispy:{PASSWORD}@"


def denied(admin: redis.Redis) -> list[str]:
    log: Any = admin.execute_command("ACL", "LOG")
    return [str(entry) for entry in log]


def crash_consumer() -> None:
    os._exit(3)


#: A client that submits three jobs held by a gate, and then waits to be killed.
CRASHING_CLIENT = textwrap.dedent("""
    import os, sys, time, rdispy

    def gated(gate, value):
        deadline = time.monotonic() + 60
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.01)
        return value

    url, cluster, gate = sys.argv[1:4]
    ex = rdispy.Executor(url, cluster=cluster, secret=os.environ["RDISPY_SECRET"])
    futures = [ex.submit(gated, gate, i) for i in range(3)]
    while not all(f.entry_id for f in futures):
        time.sleep(0.01)
    print(ex.client_id, flush=True)
    time.sleep(60)
""")


def crashed_client(url: str, cluster: str, gate: Path) -> str:
    """Run CRASHING_CLIENT until its jobs are sent, SIGKILL it; returns its client id."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHING_CLIENT, url, cluster, str(gate)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, RDISPY_SECRET=SECRET),
    )
    try:
        assert proc.stdout is not None
        return proc.stdout.readline().strip()
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()


def test_acl_user_limited_to_the_cluster_runs_the_whole_flow(
    private_server, start_worker, cluster, caplog, tmp_path
):
    srv = private_server(password=PASSWORD)
    admin = redis.Redis.from_url(srv.url)
    url = f"redis://{acl_user(admin, cluster)}127.0.0.1:{srv.port}/0"
    admin.execute_command("ACL", "LOG", "RESET")
    worker = start_worker(url, 2, "node1", "--secret", SECRET)
    with executor(url, cluster=cluster, secret=SECRET, max_retries=0) as ex:
        assert ex.submit(pow, 2, 10).result(DEADLINE) == 1024
        assert list(ex.map(pow, range(6), range(6))) == [pow(i, i) for i in range(6)]
        with pytest.raises(ZeroDivisionError):
            ex.submit(divmod, 1, 0).result(DEADLINE)
        with pytest.raises(rdispy.WorkerCrashed):  # consumer death: recovery scripts run too
            ex.submit(crash_consumer).result(DEADLINE)
        worker.wait_consumers(2)
        assert ex.submit(pow, 3, 3).result(DEADLINE) == 27
    # recover: a client that crashed reattaches and collects its jobs
    gate = tmp_path / "gate"
    client_id = crashed_client(url, cluster, gate)
    assert client_id
    gate.touch()
    with executor(url, cluster=cluster, secret=SECRET, client_id=client_id) as ex:
        assert sorted(f.result(DEADLINE) for f in ex.recover_jobs()) == [0, 1, 2]
    # a few more heartbeats and lost-node scans, all under the ACL
    node = Keys(cluster).node("node1")
    since = float(admin.hget(node, "hb") or 0)
    wait_until(lambda: float(admin.hget(node, "hb") or 0) > since + 3 * HEARTBEAT, "heartbeats")
    assert denied(admin) == []  # nothing rdispy ran was refused, not even in the background
    assert "NOPERM" not in worker.output() and "no permissions" not in worker.output()
    assert not [r for r in caplog.records if "no permissions" in r.getMessage()]
    # and the user cannot reach beyond its cluster
    user = redis.Redis.from_url(url)
    with pytest.raises(redis.exceptions.NoPermissionError):
        user.get(f"rdispy:{{{cluster}x}}:blob:0")
    with pytest.raises(redis.exceptions.NoPermissionError):
        user.flushall()
    user.close()
    admin.close()


def test_acl_without_a_needed_command_gives_a_clear_permission_error(private_server, cluster):
    srv = private_server(password=PASSWORD)
    admin = redis.Redis.from_url(srv.url)
    url = f"redis://{acl_user(admin, cluster, '-xadd')}127.0.0.1:{srv.port}/0"
    with executor(url, cluster=cluster) as ex:
        future = ex.submit(pow, 2, 2)
        with pytest.raises(
            rdispy.BrokerError, match="NOPERM .*no permissions to run the 'xadd' command"
        ):
            future.result(DEADLINE)
    admin.close()


def test_executor_start_refused_by_the_acl_raises_broker_error(private_server, cluster):
    srv = private_server(password=PASSWORD)
    admin = redis.Redis.from_url(srv.url)
    url = f"redis://{acl_user(admin, cluster, '-info')}127.0.0.1:{srv.port}/0"
    try:
        with pytest.raises(rdispy.BrokerError, match="NOPERM .*no permissions to run the 'info'"):
            rdispy.Executor(url, cluster=cluster, connect_timeout=2)
    finally:
        admin.close()


def test_worker_start_refused_by_the_acl_exits_with_a_clear_error(
    private_server, start_worker, cluster
):
    srv = private_server(password=PASSWORD)
    admin = redis.Redis.from_url(srv.url)
    url = f"redis://{acl_user(admin, cluster, '-xgroup|create')}127.0.0.1:{srv.port}/0"
    worker = start_worker(url, 1, "node1", "--connect-timeout", "2", wait_ready=False)
    code = worker.proc.wait(DEADLINE)
    out = worker.output()
    assert code != 0, out
    assert "NOPERM User rdispy has no permissions to run the 'xgroup|create' command" in out
    assert PASSWORD not in out
    assert "Traceback" not in out
    admin.close()
