"""The node supervisor behind `rdispy worker`: registers the node, heartbeats, runs one consumer
process per core, replaces consumers that die, and drains on SIGTERM.

The supervisor never runs jobs and keeps no threads, so forking consumers from it is safe and
fast (they start with everything imported).  One loop does all its work::

    reap dead consumers -> recover their entries -> respawn (with backoff) -> heartbeat -> sleep

When a consumer dies, its pending entries are settled at once: the one it was running counts as an
attempt (requeued while retries remain, else failed with WorkerCrashed); entries it had only taken
go back to the queue uncharged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis

from rdispy import connection, defaults, processes, wire
from rdispy.keys import CONSUMER_GROUP, Keys
from rdispy.scripts import Scripts
from rdispy.worker.consumer import ConsumerConfig, consumer_main, ensure_group
from rdispy.worker.node import NodeRecord, address_seen_by, deregister, heartbeat
from rdispy.worker.slots import Slots

log = logging.getLogger(__name__)


@dataclass
class _Child:
    index: int
    name: str
    pid: int
    started: float


@dataclass
class SupervisorConfig:
    url: str
    cpus: int
    name: str
    keys: Keys = field(default_factory=Keys)
    secret: str | None = None
    heartbeat: float = defaults.HEARTBEAT_INTERVAL
    owner_pid: int | None = None
    stop_server_with_owner: bool = False
    connect_timeout: float | None = None


class Supervisor:
    def __init__(self, config: SupervisorConfig) -> None:
        self.config = config
        self.keys = config.keys
        self.client = connection.connect(config.url)
        self.scripts = Scripts(self.client)
        self.signer = wire.Signer(config.secret)
        self.slots = Slots(config.cpus)
        self.children: dict[int, _Child] = {}  # by slot index
        self.record = NodeRecord(name=config.name, cpus=config.cpus)
        self.stopping = 0
        self._respawn_at: dict[int, float] = {}
        self._quick_failures: dict[int, int] = {}  # consecutive deaths within 1 s of start

    # -- lifecycle -----------------------------------------------------------------------------

    def on_signal(self, signum: int) -> None:
        self.stopping += 1
        if self.stopping == 1:
            log.info("node %s: draining on %s", self.config.name, signal.Signals(signum).name)
        else:
            log.warning("node %s: second signal, killing consumers", self.config.name)
            for child in self.children.values():
                processes.kill_group(child.pid)

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (drain) or until the owner process dies."""
        processes.install_stop_handlers(self.on_signal)
        connection.wait_for(
            self.client, self.config.url, self.config.connect_timeout, lambda: self.stopping > 0
        )
        ensure_group(self.client, self.keys)
        self.record.ip = address_seen_by(self.client)
        self._beat()
        for index in range(self.config.cpus):
            self._spawn(index)
        log.info(
            "node %s (%s) serving with %d consumers, cluster %s at %s",
            self.config.name,
            self.record.ip,
            self.config.cpus,
            self.keys.cluster,
            connection.redact(self.config.url),
        )
        next_beat = time.monotonic() + self.config.heartbeat
        while not self.stopping:
            if self._owner_gone():
                return self._owner_died()
            self._reap()
            self._respawn_due()
            if time.monotonic() >= next_beat:
                self._beat()
                next_beat = time.monotonic() + self.config.heartbeat
            time.sleep(0.05)
        return self._drain()

    def _owner_gone(self) -> bool:
        return self.config.owner_pid is not None and not processes.pid_alive(self.config.owner_pid)

    def _owner_died(self) -> int:
        log.warning(
            "node %s: owner process %s is gone; stopping", self.config.name, self.config.owner_pid
        )
        for child in self.children.values():
            processes.kill_group(child.pid)
        for child in list(self.children.values()):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child.pid, 0)
        if self.config.stop_server_with_owner:
            with contextlib.suppress(redis.RedisError):
                self.client.shutdown(nosave=True)
        return 0

    def _drain(self) -> int:
        for child in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)
        while self.children:
            self._reap(respawn=False)
            if self.children:
                with contextlib.suppress(redis.RedisError):
                    self._beat()
                time.sleep(0.05)
        with contextlib.suppress(redis.RedisError):
            deregister(self.client, self.keys, self.record)
        log.info("node %s: drained and deregistered", self.config.name)
        return 0

    # -- consumers -----------------------------------------------------------------------------

    def _spawn(self, index: int) -> None:
        name = f"{self.config.name}.{self.record.incarnation}.{index}.{uuid.uuid4().hex[:6]}"
        cfg = ConsumerConfig(
            url=self.config.url, keys=self.keys, node=self.config.name, secret=self.config.secret
        )
        self.slots.clear(index)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            consumer_main(cfg, index, name, self.slots)
        self.children[index] = _Child(index, name, pid, time.monotonic())

    def _reap(self, respawn: bool = True) -> None:
        for index, child in list(self.children.items()):
            try:
                pid, status = os.waitpid(child.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = child.pid, 0
            if pid == 0:
                continue
            del self.children[index]
            how = processes.describe_status(status)
            clean = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and self.stopping
            if not clean:
                log.warning(
                    "node %s: consumer %s (pid %d) died: %s",
                    self.config.name,
                    child.name,
                    child.pid,
                    how,
                )
            try:
                self._recover(child, how)
            except redis.RedisError as exc:
                log.error(
                    "node %s: could not settle jobs of %s: %s", self.config.name, child.name, exc
                )
            if respawn and not self.stopping:
                quick = time.monotonic() - child.started < 1.0
                failures = self._quick_failures.get(index, 0) + 1 if quick else 0
                self._quick_failures[index] = failures
                delay = min(0.1 * 2**failures, defaults.MAX_BACKOFF) if failures else 0.0
                self._respawn_at[index] = time.monotonic() + delay

    def _respawn_due(self) -> None:
        now = time.monotonic()
        for index, when in list(self._respawn_at.items()):
            if when <= now:
                del self._respawn_at[index]
                self._spawn(index)

    def _recover(self, child: _Child, how: str) -> None:
        """Settle the pending entries of a consumer that exited."""
        running = self.slots.running(child.index)
        self.slots.clear(child.index)
        pending: Any = self.client.xpending_range(
            self.keys.jobs, CONSUMER_GROUP, min="-", max="+", count=10_000, consumername=child.name
        )
        for item in pending:
            eid = item["message_id"]
            self._settle(
                eid, charge=eid == running, why=f"consumer {child.name} (pid {child.pid}) {how}"
            )
        self.client.xgroup_delconsumer(self.keys.jobs, CONSUMER_GROUP, child.name)

    def _settle(self, eid: bytes, charge: bool, why: str) -> None:
        entries: Any = self.client.xrange(self.keys.jobs, eid, eid)
        if not entries:
            self.client.xack(self.keys.jobs, CONSUMER_GROUP, eid)
            return
        fields = entries[0][1]
        job_id = fields.get(b"id", b"?").decode()
        client_id = fields.get(b"c", b"?").decode()
        results = self.keys.results(client_id)
        lost = self.signer.sign(
            results,
            wire.encode(
                {
                    "id": job_id,
                    "k": "lost",
                    "node": self.config.name,
                    "why": why,
                    "t1": repr(time.time()),
                }
            ),
        )
        flat = [x for pair in lost.items() for x in pair]
        outcome = self.scripts.recover(
            keys=[self.keys.jobs, self.keys.job(job_id), results],
            args=[
                CONSUMER_GROUP,
                eid,
                "1" if charge else "0",
                fields.get(b"r", b"0"),
                defaults.RESULT_TTL,
                *flat,
            ],
        )
        verdict = {0: "already settled", 1: "requeued", 2: "failed"}.get(int(outcome), "?")
        log.info("node %s: job %s %s (%s)", self.config.name, job_id, verdict, why)

    def _beat(self) -> None:
        try:
            heartbeat(
                self.client,
                self.keys,
                self.record,
                self.slots.busy(),
                self.slots.done(),
                self.config.heartbeat * defaults.HEARTBEATS_MISSED,
            )
        except redis.RedisError as exc:
            log.warning("node %s: heartbeat failed: %s", self.config.name, exc)
