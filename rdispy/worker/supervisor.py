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

import collections
import contextlib
import itertools
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
from rdispy.errors import NodeNameInUse, RdispyError
from rdispy.keys import Keys
from rdispy.nodes import NodeRecord, address_seen_by, deregister, heartbeat, live_nodes
from rdispy.streams import ConsumerName, ensure_group
from rdispy.worker.config import ConsumerConfig
from rdispy.worker.consumer import consumer_main
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
class _Kill:
    cause: str  # "timeout" or "cancel"
    why: str
    sigkill_at: float


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


class Supervisor:
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
        self._registered = False
        self._fenced_seen = 0  # dropped results already accounted for
        # when our heartbeats succeeded (monotonic), to tell a lost node from a Redis outage
        self._beats: collections.deque[float] = collections.deque(
            maxlen=4 * defaults.HEARTBEATS_MISSED
        )
        self._kills: dict[int, _Kill] = {}  # slot -> why its consumer is being stopped
        # dead consumers whose entries wait out a retry pause, or for Redis to be reachable:
        # (due, consumer, running, why, cause, final, attempt record)
        self._deferred: list[tuple[float, str, bytes, str, str, bool, dict[str, Any] | None]] = []
        self._control_last: bytes | None = None  # last control message seen
        self._lease_held = ""  # the value our name lease holds ("" before we took it)
        self._name_taken_by: str | None = None  # another worker holds our name now
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
        self._take_name()
        if self.stopping:
            return 0
        settled = self.recoverer.settle_predecessors(self.config.name, self.record.incarnation)
        if settled:
            log.warning(
                "node %s: settled %d entries left by a previous run", self.config.name, settled
            )
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
            if self._name_taken_by is not None:
                return self._name_lost()
            self._reap()
            self._respawn_due()
            self._enforce_limits()
            self._settle_deferred()
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
        self._release_name()
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
            self._name_taken_by,
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
        self._release_name()
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
            if not (clean and (self.stopping or slot in self._kills)):  # else it was told to
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
            kill = self._kills.pop(slot, None)
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
        now = time.monotonic()
        busy = any(self.slots.running(slot) for slot in self.children)
        rss = processes.group_rss() if self.config.memory_limit is not None and busy else {}
        for slot, child in self.children.items():
            current = self.slots.running(slot)
            if slot in self._kills:
                if now >= self._kills[slot].sigkill_at:
                    processes.kill_group(child.pid, signal.SIGKILL)
            elif current and current.timeout and now - current.started > current.timeout:
                self._stop_job(slot, "timeout", f"ran past its timeout of {current.timeout:g}s")
            elif current and rss.get(child.pid, 0) > (self.config.memory_limit or 0):
                why = (
                    f"used {rss[child.pid]:,} bytes (with the processes it started), over the "
                    f"memory limit of {self.config.memory_limit:,} bytes per consumer"
                )
                self._stop_job(slot, "memory", why, grace=0.0)
        try:
            self._read_control()
        except redis.RedisError as exc:
            log.debug("node %s: control stream unreadable: %s", self.config.name, exc)

    def _read_control(self) -> None:
        if self._control_last is None:  # start after whatever was sent before we came up
            newest: Any = self.client.xrevrange(self.keys.control, count=1)
            self._control_last = newest[0][0] if newest else b"0-0"
        reply: Any = self.client.xread({self.keys.control: self._control_last}, count=100)
        for eid, fields in reply[0][1] if reply else []:
            self._control_last = eid
            try:
                self.signer.verify(self.keys.control, fields)
            except RdispyError as exc:
                self._refuse_control(eid, fields, str(exc))
                continue
            if fields.get(b"op") == b"close":
                session = fields.get(b"session", b"").decode()
                if session.isalnum():
                    self.closed_sessions.add(session, fields.get(b"rm") == b"1")
            elif fields.get(b"op") == b"drain":
                if fields.get(b"node", b"").decode(errors="replace") == self.config.name:
                    self._begin_drain("a drain request")
            elif fields.get(b"op") == b"cancel":
                job_id = fields.get(b"id", b"").decode()
                for slot in list(self.children):
                    current = self.slots.running(slot)
                    if current and current.job_id == job_id and slot not in self._kills:
                        self._stop_job(slot, "cancel", "cancelled while running")

    def _refuse_control(self, eid: bytes, fields: dict[bytes, bytes], reason: str) -> None:
        """Log, count and dead-letter a control message without a valid signature.  It stays in
        the (capped) control stream: every node reads it and refuses it on its own."""
        log.error(
            "node %s: ignoring control message %s: %s", self.config.name, eid.decode(), reason
        )
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(
            self.keys.dead_letters,
            {
                b"entry": eid,
                b"stream": self.keys.control.encode(),
                b"reason": reason.encode(),
                b"node": self.config.name.encode(),
                b"id": fields.get(b"id", b"")[:200],
            },
            maxlen=1000,
            approximate=True,
        )
        pipe.hincrby(self.keys.counters, "control-refused", 1)
        pipe.execute()

    def _stop_job(self, slot: int, cause: str, why: str, grace: float | None = None) -> None:
        child = self.children[slot]
        current = self.slots.running(slot)
        job = current.job_id if current else "?"
        log.warning(
            "node %s: job=%s %s; stopping consumer pid %d", self.config.name, job, why, child.pid
        )
        pause = self.config.kill_grace if grace is None else grace
        if pause:
            self.slots.request_stop(slot)
        self._kills[slot] = _Kill(
            cause, f"{why} on node {self.config.name}", time.monotonic() + pause
        )
        processes.kill_group(child.pid, signal.SIGTERM if pause else signal.SIGKILL)

    # -- heartbeats ----------------------------------------------------------------------------

    def _lease_value(self) -> str:
        return f"{self.record.incarnation} {self.record.host} {os.getpid()}"

    def _lease(self, previous: str = "", ttl: float | None = None) -> tuple[str, int] | None:
        """Take, refresh (``ttl`` None: the heartbeat TTL) or release (0) our name's lease;
        None when we hold it, else who does and for how many more milliseconds."""
        ttl = self.config.heartbeat * defaults.HEARTBEATS_MISSED if ttl is None else ttl
        value = self._lease_value()
        reply: Any = self.recoverer.scripts.lease(
            keys=[self.keys.lease(self.config.name)], args=[value, previous, int(ttl * 1000)]
        )
        if int(reply[0]) == 1:
            self._lease_held = value if ttl else ""
            return None
        holder = reply[1]
        holder = holder.decode(errors="replace") if isinstance(holder, bytes) else str(holder)
        return holder, int(reply[2])

    def _take_name(self) -> None:
        """Take our node name's lease.  If another worker holds it, wait until its lease lapses
        (it crashed: we take over) or is refreshed (it is alive: NodeNameInUse)."""
        held = self._lease()
        if held is None:
            return
        first, last_ttl = held
        log.warning(
            "node %s: name held by %s; waiting up to %.1fs for its lease to lapse",
            self.config.name,
            first,
            last_ttl / 1000,
        )
        # a lease outliving a whole TTL of waiting (or one without a TTL) is held by a live worker
        give_up = time.monotonic() + self.config.heartbeat * (defaults.HEARTBEATS_MISSED + 1)
        while not self.stopping:
            self.waker.wait(self.config.heartbeat / 4)
            held = self._lease()
            if held is None:
                log.info(
                    "node %s: the previous holder's lease lapsed; taking over", self.config.name
                )
                return
            holder, ttl = held
            if holder != first or ttl > last_ttl or time.monotonic() > give_up:  # it lives
                raise NodeNameInUse(
                    f"node name {self.config.name!r} is in use by a live worker ({holder}: "
                    "incarnation, host, pid); stop it or pick another --name"
                )
            last_ttl = ttl

    def _release_name(self) -> None:
        if self._lease_held:
            with contextlib.suppress(redis.RedisError):
                self._lease(ttl=0)

    def _beat(self) -> None:
        with contextlib.suppress(OSError):
            handoff.sweep()  # handoff folders of crashed clients on this host
        try:
            held = self._lease(self._lease_held)
        except redis.RedisError as exc:
            log.warning("node %s: lease refresh failed: %s", self.config.name, exc)
            held = None
        if held is not None:
            self._name_taken_by = held[0]
            return
        try:
            known = heartbeat(
                self.client,
                self.keys,
                self.record,
                self.slots.weight_total(),
                self.slots.done(),
                self.config.heartbeat * defaults.HEARTBEATS_MISSED,
                self.signer,
            )
        except redis.RedisError as exc:
            log.warning("node %s: heartbeat failed: %s", self.config.name, exc)
            return
        self._beats.append(time.monotonic())
        fenced = self.slots.fenced_total()  # results dropped since the last beat: jobs taken
        dropped, self._fenced_seen = fenced > self._fenced_seen, fenced
        # A dropped result means a job of ours was taken over: we were declared dead, even if
        # the beat that found our record gone came before our consumers tried to publish.
        if (
            self._registered
            and not self.stopping
            and (dropped or (not known and self._jobs_taken_over()))
        ):
            self._reincarnate()
            return
        self._registered = True

    def _jobs_taken_over(self) -> bool:
        """Our record had gone (a partition, or a Redis that was frozen, unreachable or
        restarted): were we declared dead, that is, does another consumer now own a job one of
        ours is running?  If not, this beat has re-registered us and nothing needs redoing."""
        streams = (self.keys.jobs, self.keys.node_jobs(self.config.name))
        for slot, child in self.children.items():
            current = self.slots.running(slot)
            if current and not any(
                self.recoverer.still_owns(child.name, s, current.entry_id) for s in streams
            ):
                return True
        return False

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
            ensure_group(self.client, self.keys, self.config.name)
            self._beat()

    def _lost_node_grace(self) -> float:
        """How long a node must stay out of the live records before its jobs are taken.  When
        Redis was frozen or unreachable, every record expires at once as it resumes, so then
        live nodes get a whole TTL to re-register.  When our own heartbeats went through, each
        on time, for longer than a TTL, Redis was there all along and a missing record means a
        lost node: one heartbeat is enough (a frozen node's jobs move about a TTL sooner)."""
        beat = self.config.heartbeat
        ttl = beat * defaults.HEARTBEATS_MISSED
        now = time.monotonic()
        window = [t for t in self._beats if now - t <= ttl + 2 * beat]
        steady = (
            bool(window)
            and now - window[-1] <= 1.5 * beat
            and window[0] <= now - ttl  # the window is covered, from its start
            and all(b - a <= 1.5 * beat for a, b in itertools.pairwise(window))
        )
        return beat if steady else ttl

    def _settle_lost_nodes(self) -> None:
        try:
            live = {
                n["name"]: n.get("incarnation", "")
                for n in live_nodes(self.client, self.keys, self.signer)
            }
            self.recoverer.settle_lost_nodes(live, self._lost_node_grace())
        except redis.RedisError as exc:
            log.warning("node %s: lost-node scan failed: %s", self.config.name, exc)
