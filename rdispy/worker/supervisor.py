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

A node name is held by one live worker at a time: a lease (SET NX with the heartbeat TTL, holding
the incarnation) that each beat refreshes.  A second worker started under a live name refuses to
start; a worker restarted under the name of one that crashed takes the lease once it lapses and
first settles what its predecessor left pending.  Liveness never compares clocks across hosts:
it rests on Redis TTLs and, within a host, on the monotonic clock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from rdispy import connection, defaults, handoff, processes, wire
from rdispy.keys import Keys
from rdispy.nodes import NodeRecord, address_seen_by, deregister
from rdispy.streams import ConsumerName, ensure_group
from rdispy.worker.config import ConsumerConfig
from rdispy.worker.consumer import consumer_main
from rdispy.worker.control import ControlReader
from rdispy.worker.heartbeat import Heartbeat
from rdispy.worker.lease import NameLease
from rdispy.worker.limits import JobLimits
from rdispy.worker.recovery import Recoverer
from rdispy.worker.slots import ClosedSessions, Slots

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
    max_result: int = defaults.MAX_RESULT
    max_output: int = defaults.MAX_OUTPUT  # characters kept of a job's stdout, and of its stderr
    workdir: Path | None = None  # default: a folder per node name in the temp folder
    kill_grace: float = defaults.KILL_GRACE
    memory_limit: int | None = None  # bytes per consumer (rlimit and process-group RSS)
    allow_eviction: bool = False  # serve a Redis whose maxmemory-policy may evict keys


class Supervisor:
    """The node: its consumers' lifecycle, with the limits, control stream, name lease and
    heartbeat each in a part of its own."""

    def __init__(self, config: SupervisorConfig) -> None:
        self.config = config
        self.keys = config.keys
        self.client = connection.connect(config.url)
        self.signer = wire.Signer(config.secret)
        self.recoverer = Recoverer(self.client, self.keys, self.signer, config.name)
        self.slots = Slots(config.cpus)
        self.closed_sessions = ClosedSessions()
        self.children: dict[int, _Child] = {}  # by slot
        self.record = NodeRecord(name=config.name, cpus=config.cpus)
        self.stopping = 0
        self._respawn_at: dict[int, float] = {}
        self._quick_failures: dict[int, int] = {}  # consecutive deaths within 1 s of start
        self.limits = JobLimits(
            self.slots, self.children, config.name, config.kill_grace, config.memory_limit
        )
        self.control = ControlReader(
            self.client,
            self.keys,
            self.signer,
            config.name,
            on_close=self.closed_sessions.add,
            on_drain=lambda: self._begin_drain("a drain request"),
            on_cancel=self.limits.cancel,
        )
        self.lease = NameLease(self.recoverer.scripts, self.keys, self.record, config.heartbeat)
        self.heartbeats = Heartbeat(
            self.client,
            self.keys,
            self.signer,
            self.record,
            self.slots,
            self.children,
            self.recoverer,
            self.lease,
            config.heartbeat,
        )
        # dead consumers whose entries wait out a retry pause, or for Redis to be reachable:
        # (due, consumer, running, why, cause, final, attempt record)
        self._deferred: list[tuple[float, str, bytes, str, str, bool, dict[str, Any] | None]] = []
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in config.name)
        self.workdir = config.workdir or Path(tempfile.gettempdir()) / f"rdispy-node-{safe}"

    # -- lifecycle -----------------------------------------------------------------------------

    def _begin_drain(self, why: str) -> None:
        """Finish running jobs, take no new ones, hand taken ones back, deregister, exit."""
        if not self.stopping:
            self.stopping = 1
            log.info("node %s: draining on %s", self.config.name, why)

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
        ensure_group(self.client, self.keys, self.config.name)
        self.lease.take(lambda: self.stopping > 0, self.waker.wait)
        if self.stopping:
            return 0
        settled = self.recoverer.settle_predecessors(self.config.name, self.record.incarnation)
        if settled:
            log.warning(
                "node %s: settled %d entries left by a previous run", self.config.name, settled
            )
        connection.eviction_policy(self.client, self.config.url, self.config.allow_eviction)
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
            if self.lease.taken_by is not None:
                return self._name_lost()
            self._reap()
            self._respawn_due()
            self._enforce_limits()
            self._settle_deferred()
            if time.monotonic() >= next_beat:
                self._beat()
                self.heartbeats.settle_lost_nodes()
                next_beat = time.monotonic() + self.config.heartbeat
            self.waker.wait(max(0.0, min(TICK, next_beat - time.monotonic())))
        return self._drain()

    def _owner_gone(self) -> bool:
        return self.config.owner_pid is not None and not processes.pid_alive(self.config.owner_pid)

    def _owner_died(self) -> int:
        log.warning("node %s: owner %s is gone; stopping", self.config.name, self.config.owner_pid)
        self._kill_all()
        self.lease.release()
        with contextlib.suppress(OSError):
            handoff.sweep()
        if self.config.stop_server_with_owner:
            with contextlib.suppress(redis.RedisError):
                self.client.shutdown(nosave=True)
        return 0

    def _name_lost(self) -> int:
        log.error(
            "node %s: another worker (%s) took over this node name while we were cut off from "
            "Redis; stopping our consumers and exiting (their late results are dropped)",
            self.config.name,
            self.lease.taken_by,
        )
        self._kill_all()
        return 1

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
        self._settle_deferred(everything=True)
        with contextlib.suppress(redis.RedisError):
            deregister(self.client, self.keys, self.record)
        self.lease.release()
        log.info("node %s: drained and deregistered", self.config.name)
        return 0

    # -- consumers -----------------------------------------------------------------------------

    def _spawn(self, slot: int) -> None:
        name = str(
            ConsumerName(self.config.name, self.record.incarnation, slot, uuid.uuid4().hex[:6])
        )
        cfg = ConsumerConfig(
            url=self.config.url,
            keys=self.keys,
            node=self.config.name,
            secret=self.config.secret,
            ip=self.record.ip,
            cpus=self.config.cpus,
            workdir=self.workdir,
            max_result=self.config.max_result,
            max_output=self.config.max_output,
            memory_limit=self.config.memory_limit,
        )
        self.slots.clear(slot)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            consumer_main(cfg, slot, name, self.slots, self.closed_sessions)
        self.children[slot] = _Child(slot, name, pid, time.monotonic())

    def _reap(self, respawn: bool = True) -> None:
        for slot, child in list(self.children.items()):
            usage = None
            try:
                pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = child.pid, 0
            if pid == 0:
                continue
            del self.children[slot]
            how = processes.describe_status(status)
            clean = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
            if not (clean and (self.stopping or self.limits.stopping(slot))):  # else it was told to
                log.warning(
                    "node %s: consumer %s (pid %d) died: %s",
                    self.config.name,
                    child.name,
                    child.pid,
                    how,
                )
            current = self.slots.running(slot)
            running = current.entry_id if current else b"-"
            self.slots.clear(slot)
            kill = self.limits.ended(slot)
            why = f"consumer pid {child.pid} on node {self.config.name} {how}"
            attempt = {
                "node": self.config.name,
                "incarnation": self.record.incarnation,
                "slot": slot,
                "pid": child.pid,
                "start": round(current.started, 6) if current else None,
                "end": round(time.time(), 6),
                "outcome": "crashed",
                "error": how,
                "rss_kib": processes.peak_rss_kib(usage) if usage is not None else None,
            }
            if kill is not None:
                attempt["outcome"] = "timeout" if kill.cause == "timeout" else "cancelled"
                attempt["error"] = kill.why
                self._settle(child.name, running, kill.why, kill.cause, True, attempt)
            elif current is not None and self._out_of_memory(status):
                why = (
                    f"ran out of the memory limit of {self.config.memory_limit:,} bytes per "
                    f"consumer on node {self.config.name} (consumer pid {child.pid} replaced)"
                )
                attempt["outcome"], attempt["error"] = "out of memory", why
                self._settle(child.name, running, why, "memory", True, attempt)
            elif current is not None and not self.stopping:
                # a job that killed its consumer is retried after a growing pause, not at once
                when = time.monotonic() + self._retry_delay(current.job_id)
                self._deferred.append((when, child.name, running, why, "crash", False, attempt))
            else:
                self._settle(child.name, running, why, attempt=attempt)
            if respawn and not self.stopping:
                self._schedule_respawn(slot, quick=time.monotonic() - child.started < 1.0)

    def _out_of_memory(self, status: int) -> bool:
        """Whether a consumer exited because its job hit the memory rlimit."""
        return (
            self.config.memory_limit is not None
            and os.WIFEXITED(status)
            and os.WEXITSTATUS(status) == processes.EXIT_MEMORY
        )

    def _settle(
        self,
        consumer: str,
        running: bytes,
        why: str,
        cause: str = "crash",
        final: bool = False,
        attempt: dict[str, Any] | None = None,
    ) -> None:
        try:
            self.recoverer.settle_consumer(consumer, running, why, cause, final, attempt=attempt)
        except redis.RedisError as exc:
            # its entries stay pending under its name: try again a heartbeat later
            log.error("node %s: could not settle jobs of %s: %s", self.config.name, consumer, exc)
            self._deferred.append(
                (
                    time.monotonic() + self.config.heartbeat,
                    consumer,
                    running,
                    why,
                    cause,
                    final,
                    attempt,
                )
            )

    def _retry_delay(self, job_id: str) -> float:
        """Pause before a crashed job may run again: RETRY_BACKOFF doubled per lost attempt."""
        try:
            lost = int(self.client.hget(self.keys.job(job_id), "n") or 0)  # type: ignore[arg-type]
        except (redis.RedisError, ValueError):
            lost = 0
        return float(min(defaults.RETRY_BACKOFF * 2**lost, defaults.MAX_RETRY_BACKOFF))

    def _settle_deferred(self, everything: bool = False) -> None:
        now = time.monotonic()
        due = [d for d in self._deferred if everything or d[0] <= now]
        self._deferred = [d for d in self._deferred if d not in due]
        for _, consumer, running, why, cause, final, attempt in due:
            self._settle(consumer, running, why, cause, final, attempt)

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

    # -- limits and control ----------------------------------------------------------------

    def _enforce_limits(self) -> None:
        """Stop jobs past their timeout, over their memory limit or cancelled by their client;
        escalate to SIGKILL.  Times are this host's monotonic clock (the consumer's too)."""
        self.limits.enforce()
        try:
            self.control.read()
        except redis.RedisError as exc:
            log.debug("node %s: control stream unreadable: %s", self.config.name, exc)

    # -- heartbeats ----------------------------------------------------------------------------

    def _beat(self) -> None:
        if self.heartbeats.beat(stopping=bool(self.stopping)):
            self._reincarnate()

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
        self.heartbeats.registered = False  # the next beat registers the new incarnation
        with contextlib.suppress(redis.RedisError):
            ensure_group(self.client, self.keys, self.config.name)
            self._beat()
