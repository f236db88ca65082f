"""The node supervisor behind `rdispy worker`: registers the node, heartbeats, runs one consumer
process per core, replaces consumers that die, and drains on SIGTERM.

The supervisor never runs jobs and keeps no threads, so forking consumers from it is safe and
fast (they start with everything imported).  One loop does all its work::

    reap dead consumers -> settle their entries -> respawn (with backoff)
    -> heartbeat (and notice if we were declared dead) -> settle entries of lost nodes -> sleep

When a consumer dies, the entry it was running counts as an attempt (requeued while retries
remain, else failed with WorkerCrashed); entries it had only taken go back uncharged.  When this
node finds its record gone (a partition outlived its heartbeat TTL, or Redis restarted empty), it
was declared dead and others may have taken its jobs: it kills its consumers and comes back as a
new incarnation, whose consumers have new names, so late results of the old ones are fenced off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
import uuid
from dataclasses import dataclass, field

import redis

from rdispy import connection, defaults, processes, wire
from rdispy.keys import Keys
from rdispy.worker.consumer import ConsumerConfig, consumer_main, ensure_group
from rdispy.worker.node import NodeRecord, address_seen_by, deregister, heartbeat, live_nodes
from rdispy.worker.recovery import ConsumerName, Recoverer
from rdispy.worker.slots import Slots

log = logging.getLogger(__name__)

#: Seconds between passes of the supervisor's loop (reaping, respawning, heartbeat due).
TICK = 0.2


@dataclass
class _Child:
    slot: int
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
        self.recoverer = Recoverer(self.client, self.keys, wire.Signer(config.secret), config.name)
        self.slots = Slots(config.cpus)
        self.children: dict[int, _Child] = {}  # by slot
        self.record = NodeRecord(name=config.name, cpus=config.cpus)
        self.stopping = 0
        self._respawn_at: dict[int, float] = {}
        self._quick_failures: dict[int, int] = {}  # consecutive deaths within 1 s of start
        self._registered = False

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
        self.waker = processes.SignalWaker()
        connection.wait_for(
            self.client, self.config.url, self.config.connect_timeout, lambda: self.stopping > 0
        )
        if self.stopping:
            return 0
        ensure_group(self.client, self.keys)
        connection.eviction_policy(self.client, self.config.url)
        self.record.ip = address_seen_by(self.client)
        self._beat()
        for slot in range(self.config.cpus):
            self._spawn(slot)
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
                self._settle_lost_nodes()
                next_beat = time.monotonic() + self.config.heartbeat
            self.waker.wait(max(0.0, min(TICK, next_beat - time.monotonic())))
        return self._drain()

    def _owner_gone(self) -> bool:
        return self.config.owner_pid is not None and not processes.pid_alive(self.config.owner_pid)

    def _owner_died(self) -> int:
        log.warning("node %s: owner %s is gone; stopping", self.config.name, self.config.owner_pid)
        self._kill_all()
        if self.config.stop_server_with_owner:
            with contextlib.suppress(redis.RedisError):
                self.client.shutdown(nosave=True)
        return 0

    def _kill_all(self) -> None:
        for child in self.children.values():
            processes.kill_group(child.pid)
        for child in self.children.values():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child.pid, 0)

    def _drain(self) -> int:
        for child in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)
        next_beat = time.monotonic()
        while self.children:
            self._reap(respawn=False)
            if self.children and time.monotonic() >= next_beat:
                self._beat()  # long jobs may still be finishing: stay alive meanwhile
                next_beat = time.monotonic() + self.config.heartbeat
            if self.children:
                self.waker.wait(TICK)
        with contextlib.suppress(redis.RedisError):
            deregister(self.client, self.keys, self.record)
        log.info("node %s: drained and deregistered", self.config.name)
        return 0

    # -- consumers -----------------------------------------------------------------------------

    def _spawn(self, slot: int) -> None:
        name = str(
            ConsumerName(self.config.name, self.record.incarnation, slot, uuid.uuid4().hex[:6])
        )
        cfg = ConsumerConfig(
            url=self.config.url, keys=self.keys, node=self.config.name, secret=self.config.secret
        )
        self.slots.clear(slot)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            consumer_main(cfg, slot, name, self.slots)
        self.children[slot] = _Child(slot, name, pid, time.monotonic())

    def _reap(self, respawn: bool = True) -> None:
        for slot, child in list(self.children.items()):
            try:
                pid, status = os.waitpid(child.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = child.pid, 0
            if pid == 0:
                continue
            del self.children[slot]
            how = processes.describe_status(status)
            if not (self.stopping and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
                log.warning(
                    "node %s: consumer %s (pid %d) died: %s",
                    self.config.name,
                    child.name,
                    child.pid,
                    how,
                )
            running = self.slots.running(slot) or b"-"
            self.slots.clear(slot)
            try:
                self.recoverer.settle_consumer(
                    child.name,
                    running,
                    f"consumer pid {child.pid} on node {self.config.name} {how}",
                )
            except redis.RedisError as exc:
                # its entries stay pending under its name; the lost-node scan settles them later
                log.error(
                    "node %s: could not settle jobs of %s: %s", self.config.name, child.name, exc
                )
            if respawn and not self.stopping:
                self._schedule_respawn(slot, quick=time.monotonic() - child.started < 1.0)

    def _schedule_respawn(self, slot: int, quick: bool) -> None:
        failures = self._quick_failures.get(slot, 0) + 1 if quick else 0
        self._quick_failures[slot] = failures
        delay = min(0.1 * 2**failures, defaults.MAX_BACKOFF) if failures else 0.0
        self._respawn_at[slot] = time.monotonic() + delay

    def _respawn_due(self) -> None:
        now = time.monotonic()
        for slot, when in list(self._respawn_at.items()):
            if when <= now:
                del self._respawn_at[slot]
                self._spawn(slot)

    # -- heartbeats ----------------------------------------------------------------------------

    def _beat(self) -> None:
        try:
            known = heartbeat(
                self.client,
                self.keys,
                self.record,
                self.slots.busy(),
                self.slots.done(),
                self.config.heartbeat * defaults.HEARTBEATS_MISSED,
            )
        except redis.RedisError as exc:
            log.warning("node %s: heartbeat failed: %s", self.config.name, exc)
            return
        if self._registered and not known and not self.stopping:
            self._reincarnate()
            return
        self._registered = True

    def _reincarnate(self) -> None:
        old = self.record.incarnation
        self.record.incarnation = uuid.uuid4().hex[:12]
        log.warning(
            "node %s: our record had expired (partition or server restart), so our jobs may have "
            "been taken over; restarting consumers as incarnation %s (was %s)",
            self.config.name,
            self.record.incarnation,
            old,
        )
        self._kill_all()
        for slot in list(self.children):
            self.slots.clear(slot)
            del self.children[slot]
            self._spawn(slot)
        self._registered = False  # the next beat registers the new incarnation
        with contextlib.suppress(redis.RedisError):
            ensure_group(self.client, self.keys)
            self._beat()

    def _settle_lost_nodes(self) -> None:
        try:
            live = {n["name"]: n.get("incarnation", "") for n in live_nodes(self.client, self.keys)}
            self.recoverer.settle_lost_nodes(live)
        except redis.RedisError as exc:
            log.warning("node %s: lost-node scan failed: %s", self.config.name, exc)
