"""A Redis that restarts on its AOF (fault test 12): groups and pending entries come back, a
consumer that died while Redis was away has its job settled once Redis is back, and nothing is
sent twice; with ``appendfsync everysec`` the writes of the last second may be lost, and clients
send again the jobs the server no longer holds, so every job still resolves exactly once."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import as_completed
from pathlib import Path

import pytest

from rdispy.server import EmbeddedServer, free_port
from tests.faults.figures import duplicate_results, execution_spread, report, watch_duplicates
from tests.faults.ledger import executions, record, rows, wait_rows
from tests.helpers import DEADLINE, executor, wait_until

pytestmark = pytest.mark.integration

Restart = Callable[[float, int | None], EmbeddedServer]


@pytest.fixture
def aof_server(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[EmbeddedServer, Restart, Path]]:
    """A server with an AOF in ``tmp_path/data``; ``restart(down_for, keep_bytes)`` SIGKILLs it
    and starts it again on the same port and folder, first cutting the AOF's newest part to
    ``keep_bytes`` when given (what a power loss does to writes not yet fsynced)."""
    fsync = request.param
    port, data = free_port(), tmp_path / "data"
    data.mkdir()

    def make() -> EmbeddedServer:
        return EmbeddedServer(
            port=port,
            appendonly=True,
            directory=str(data),
            extra_args=("--appendfsync", fsync, "--aof-load-truncated", "yes"),
        )

    servers = [make().start()]

    def restart(down_for: float, keep_bytes: int | None = None) -> EmbeddedServer:
        servers[-1].kill()
        if keep_bytes is not None:
            os.truncate(newest_aof(data), keep_bytes)
        time.sleep(down_for)
        servers.append(make().start())
        return servers[-1]

    yield servers[0], restart, data
    for server in servers:
        server.stop()


def newest_aof(data: Path) -> Path:
    return max(data.glob("**/*.incr.aof"), key=lambda p: p.stat().st_mtime)


@pytest.mark.parametrize("aof_server", ["always"], indirect=True)
def test_aof_always_restart_keeps_every_job_and_settles_a_consumer_that_died_meanwhile(
    aof_server, cluster, start_worker, tmp_path, caplog
):
    server, restart, _ = aof_server
    watch_duplicates(caplog)
    ledger = tmp_path / "ledger"
    nodes = [start_worker(server.url, 2, "n1"), start_worker(server.url, 2, "n2")]
    with executor(server.url, cluster=cluster) as ex:
        futures = [ex.submit(record, str(ledger), f"j{i}", 2.0) for i in range(16)]
        wait_rows(ledger, 4)
        victim_tag, victim_pid = rows(ledger)[0]  # in its job right now
        t_fault = time.monotonic()
        server.kill()
        os.kill(victim_pid, signal.SIGKILL)  # dies while Redis is away: settled when it is back
        time.sleep(2.0)
        restart(0.0, None)
        t_back = time.monotonic()
        first = next(as_completed(futures, DEADLINE)) and time.monotonic()
        results = [future.result(DEADLINE) for future in futures]
        t_done = time.monotonic()
        assert results == [f"j{i}" for i in range(16)]
        assert ex.submit(pow, 2, 3).result(DEADLINE) == 8
    counts = executions(ledger)
    assert set(counts) == {f"j{i}" for i in range(16)}
    assert counts[victim_tag] == 2  # its attempt was lost with its consumer, then it ran again
    assert {t: n for t, n in counts.items() if t != victim_tag} == {
        t: 1 for t in counts if t != victim_tag
    }  # nothing else ran twice: nothing was sent again
    resent = [r.getMessage() for r in caplog.records if "jobs it lost again" in r.getMessage()]
    assert resent and all("sending 0 jobs" in text for text in resent)
    assert duplicate_results(caplog) == 0
    for node in nodes:
        assert node.proc.poll() is None
    report(
        "12 AOF always: SIGKILL Redis + a consumer while away",
        outage_s=t_back - t_fault,
        first_result_after_restart_s=first - t_back,
        recovery_s=t_done - t_back,
        executions=execution_spread(counts),
        jobs_lost=0,
        duplicate_results=duplicate_results(caplog),
    )


@pytest.mark.parametrize("aof_server", ["everysec"], indirect=True)
def test_aof_everysec_losing_the_last_writes_costs_no_job(
    aof_server, cluster, keys, start_worker, tmp_path, caplog
):
    """SIGKILL alone loses nothing under everysec (the AOF was written, only not fsynced), so the
    test also cuts the AOF back to where it was before the last burst of writes, as a power
    loss would: jobs the client had sent and seen acknowledged are gone from the server."""
    server, restart, data = aof_server
    watch_duplicates(caplog)
    ledger = tmp_path / "ledger"
    node = start_worker(server.url, 2, "n1")
    with executor(server.url, cluster=cluster) as ex:
        early = [ex.submit(record, str(ledger), f"a{i}", 0.3) for i in range(10)]
        assert [f.result(DEADLINE) for f in early[:4]] == ["a0", "a1", "a2", "a3"]
        wait_until(lambda: newest_aof(data).stat().st_size > 0, "the AOF")
        time.sleep(1.2)  # one fsync at least
        keep = newest_aof(data).stat().st_size
        late = [ex.submit(record, str(ledger), f"b{i}", 0.3) for i in range(10)]
        wait_until(lambda: all(f.entry_id for f in late), "the late jobs acknowledged")
        t_fault = time.monotonic()
        restart(0.5, keep)
        t_back = time.monotonic()
        results = [f.result(DEADLINE) for f in early + late]
        t_done = time.monotonic()
        assert results == [f"a{i}" for i in range(10)] + [f"b{i}" for i in range(10)]
        resent = [r.getMessage() for r in caplog.records if "jobs it lost again" in r.getMessage()]
        assert resent, "the client never noticed the restart"
        assert ex.submit(pow, 3, 2).result(DEADLINE) == 9
    counts = executions(ledger)
    assert set(counts) == {f"a{i}" for i in range(10)} | {f"b{i}" for i in range(10)}
    assert max(counts.values()) <= 2  # a job the server forgot it had finished runs again
    assert node.proc.poll() is None
    report(
        "12 AOF everysec: SIGKILL + lost AOF tail",
        outage_s=t_back - t_fault,
        recovery_s=t_done - t_back,
        client_resent=resent[-1],
        executions=execution_spread(counts),
        jobs_lost=0,
        duplicate_results_ignored_by_client=duplicate_results(caplog),
    )
