"""Who reads a client's result stream: the thread waiting for a result, or the results thread.

A caller blocked in ``future.result()`` reads the stream itself when no one else is reading: the
reply wakes its own thread, where a results thread would be woken and then have to wake the caller
(a thread hand-off, ~0.06 ms on a 2-core machine: a tenth of a no-op round trip).  The results
thread reads whenever futures are pending and no caller is reading for them: done callbacks,
``wait``/``as_completed``, event listeners, futures nobody waits for yet.

One reader at a time holds the baton, which owns the connection and the stream position; a reader
resolves every result it reads, whoever's future it is.  A caller that finds the baton taken waits
on its future as usual.  After a caller has read and nothing was left pending, the results thread
does not start reading again for GRACE seconds, so that a caller who submits and waits in turn
(the common sequential pattern) finds the baton free each time.  The results thread also runs the
dispatcher's periodic checks (``Upkeep.checks``), holding the baton, so that results and checks
never race on a future.

    RemoteFuture.result --wait_for (the Owner protocol's reader)--> ResultReader
    ResultReader --XREAD (+ XDEL/XTRIM of what it read, the latency tally)--> the result stream
    ResultReader --each entry read--> Results.resolve --> the future
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import redis

from rdispy import defaults, stats, wire
from rdispy.link import Link, stream_entries

log = logging.getLogger(__name__)

Entries = list[tuple[bytes, dict[bytes, bytes]]]
Fields = dict[bytes, bytes]

#: Seconds after a caller read (leaving nothing pending) before the results thread reads again.
GRACE = 0.005
#: Seconds between the results thread's looks while a caller reads (to drop what it read last).
CALLER_POLL = 0.05
#: Seconds between the dispatcher's periodic checks (and the longest a read blocks).
CHECK_INTERVAL = 1.0
#: Results read are dropped from the stream once this many (or bytes of payload) are collected,
#: or when nothing stays pending.
DROP_COUNT = 512
DROP_BYTES = 1 << 20
#: Seconds between flushes of the latency histogram while results keep coming.
TALLY_EVERY = 0.5


class ResultReader:
    """Reads one client's result stream, from the results thread (``run``) or from a waiting
    caller (``wait_for``), and hands each result or event it reads to ``resolve``."""

    def __init__(
        self,
        client: redis.Redis,
        results_key: str,
        latency_key: str,
        keep_results: bool,
        resolve: Callable[[Fields], None],
        pending: Callable[[], int],
        latency: stats.LatencyTally,
        closed: threading.Event,
        check_owner: Callable[[], None] = lambda: None,
    ) -> None:
        self.results_key = results_key
        self._latency_key = latency_key
        self._keep_results = keep_results
        self._resolve = resolve
        self._pending = pending  # how many futures are unresolved
        self._latency = latency
        self._closed = closed
        self._check_owner = check_owner  # raises in a process forked from the client's
        self._link = Link(client)
        self._baton = threading.Lock()
        # held with the baton: where reading goes on, results read and not yet resolved or
        # dropped from the stream, and when the latency histogram was last flushed
        self._cursor = b"0"
        self._unresolved: Entries = []
        self._collected: list[bytes] = []
        self._collected_bytes = 0
        self._tally_sent = time.monotonic()
        self._restart = False
        # how the results thread knows whether to read (see ``_await_work``)
        self._wakeup = threading.Condition()
        self._idle = False  # the results thread waits for something to read
        self._caller_reading = False
        self._quiet_from = 0.0  # the last read that left nothing pending ended
        self._wanted_at = 0.0  # a waiter needs the results thread to read, even within GRACE

    # -- reading (baton held) ------------------------------------------------------------------

    def _read(self, block: float, drop: bool = False) -> None:
        """One XREAD, blocking up to ``block`` seconds; results read in the previous call are
        resolved once this one is sent.  Results collected are dropped in the same write when
        ``drop``, when nothing stays pending, or once there are many."""
        if self._restart:
            self._restart = False
            self._cursor, self._collected, self._collected_bytes = b"0", [], 0
        remaining = self._pending() - len(self._unresolved)  # pending once those are resolved
        upkeep = self._upkeep(everything=remaining <= 0, drop=drop)
        reply = self._link.pipeline(
            [*upkeep, self._read_command(block)],
            timeout=block + defaults.SOCKET_TIMEOUT,
            settled=self.resolve_read,
            large=False,
        )[-1]
        entries = stream_entries(reply)
        if entries:
            self._unresolved = entries
            self._cursor = entries[-1][0]
            self._collected.extend(eid for eid, _ in entries)
            self._collected_bytes += sum(
                len(fields.get(wire.F.PAYLOAD, b"")) for _, fields in entries
            )

    def _upkeep(self, everything: bool, drop: bool = False) -> list[tuple[Any, ...]]:
        """Commands that drop the results collected (when ``drop``, or once there are many) and
        flush the latency histogram (every TALLY_EVERY); both now with ``everything``."""
        commands = []
        if self._collected and (
            everything
            or drop
            or len(self._collected) >= DROP_COUNT
            or self._collected_bytes >= DROP_BYTES
        ):
            commands.append(self._drop_command())
        now = time.monotonic()
        if everything or now - self._tally_sent >= TALLY_EVERY:
            commands += self._latency.commands(self._latency_key)
            self._tally_sent = now
        return commands

    def _read_command(self, block: float) -> tuple[Any, ...]:
        block_ms = max(int(block * 1000), 1)  # BLOCK 0 would wait forever
        key, cursor = self.results_key, self._cursor
        return ("XREAD", "COUNT", 1000, "BLOCK", block_ms, "STREAMS", key, cursor)

    def _drop_command(self) -> tuple[Any, ...]:
        """The command that drops the results collected: deleted at once, or with
        ``keep_results`` trimmed once they are a result TTL old (entry ids carry the server's
        milliseconds, so no client clock is involved)."""
        read, self._collected, self._collected_bytes = self._collected, [], 0
        if not self._keep_results:
            return ("XDEL", self.results_key, *read)
        newest_ms = int(read[-1].split(b"-")[0])
        oldest_kept = max(newest_ms - defaults.RESULT_TTL * 1000, 0)
        return ("XTRIM", self.results_key, "MINID", "~", oldest_kept)

    def resolve_read(self) -> None:
        """Resolve the futures of the results the last read returned (baton held).  A caller
        interrupted here (KeyboardInterrupt) leaves the rest for the next reader."""
        entries, self._unresolved = self._unresolved, []
        for index, (_, fields) in enumerate(entries):
            if fields.get(wire.F.KIND) == b"wake":  # written to end a blocking read
                continue
            try:
                self._resolve(fields)
            except Exception:
                log.exception("result entry of job %r not applied", fields.get(wire.F.ID))
            except BaseException:
                self._unresolved = entries[index + 1 :] + self._unresolved
                raise

    def _tidy(self) -> None:
        """Drop the results collected and flush the latency histogram, without reading."""
        commands = self._upkeep(everything=True)
        if commands:
            self._link.pipeline(commands, timeout=defaults.SOCKET_TIMEOUT, large=False)

    def restart(self) -> None:
        """Read the stream from its start again (the server restarted); baton held."""
        self._restart = True

    # -- a waiting caller ----------------------------------------------------------------------

    def wait_for(self, future: Future[Any], timeout: float | None) -> None:
        """Read in this thread until ``future`` is done or ``timeout`` passes, if no one else is
        reading; else return at once (the caller waits on the future, resolved by the reader).
        Raises ExecutorBroken (``check_owner``) in a child forked from the client's process."""
        self._check_owner()
        if timeout is not None and timeout <= 0:
            return
        if not self._baton.acquire(blocking=False):
            self._wanted_at = time.monotonic()  # the results thread must read for us
            return
        end = None if timeout is None else time.monotonic() + timeout
        self._caller_reading = True
        try:
            while not future.done() and not self._closed.is_set():
                block = CHECK_INTERVAL
                if end is not None:
                    block = min(end - time.monotonic(), block)
                if block <= 0:
                    break
                self._read(block, drop=True)
                self.resolve_read()
        except redis.RedisError as exc:  # the results thread reconnects, with backoff
            log.debug("reading results for a waiting caller failed: %s", exc)
            self.resolve_read()
        finally:
            self._caller_reading = False
            others = self._pending() > 0
            self._quiet_from = 0.0 if others else time.monotonic()
            self._baton.release()
            if others or self._closed.is_set():
                self.wake()

    def wake(self) -> None:
        """Have the results thread read now (a waiter, callback or listener needs it)."""
        self._wanted_at = time.monotonic()
        with self._wakeup:
            self._wakeup.notify()

    def submitted(self) -> None:
        """A job was sent: wake an idle results thread, unless a caller read a moment ago (it
        will likely wait for this job too, and reads it faster itself)."""
        if self._idle and time.monotonic() - self._quiet_from >= GRACE:
            with self._wakeup:
                self._wakeup.notify()

    # -- the results thread --------------------------------------------------------------------

    def run(self, checks: Callable[[], bool]) -> None:
        """The results thread: read while futures are pending and no caller reads for them, run
        ``checks`` every CHECK_INTERVAL (True from it: the server restarted, read the stream
        from its start again)."""
        next_check = time.monotonic() + CHECK_INTERVAL
        backoff = 0.05
        while not self._closed.is_set():
            if time.monotonic() >= next_check:
                with self._baton:
                    self.resolve_read()
                    try:
                        if checks():
                            self.restart()
                    except (redis.ConnectionError, redis.TimeoutError) as exc:
                        log.warning("cluster checks failed (%s); trying again later", exc)
                next_check = time.monotonic() + CHECK_INTERVAL
            if not self._await_work(next_check):
                continue
            if not self._baton.acquire(blocking=False):
                continue  # a caller took it; it reads, and wakes us when it stops
            try:
                if self._pending() <= 0:
                    self._tidy()
                while not self._closed.is_set():
                    left = next_check - time.monotonic()
                    if left <= 0 or self._pending() - len(self._unresolved) <= 0:
                        break
                    self._read(min(left, CHECK_INTERVAL))
                backoff = 0.05
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("result stream unreachable (%s); retrying in %.2fs", exc, backoff)
                self._closed.wait(backoff)
                backoff = min(backoff * 2, defaults.MAX_BACKOFF)
            finally:
                self.resolve_read()
                if self._pending() <= 0:
                    self._quiet_from = time.monotonic()  # as after a caller's read
                self._baton.release()
        with self._baton:
            self.resolve_read()
            try:  # the last results' latencies (and their deletion) must not stay behind
                self._tidy()
            except redis.RedisError as exc:
                log.debug("results and latencies not flushed at close: %s", exc)
            self._link.close()

    def _await_work(self, next_check: float) -> bool:
        """Wait until the results thread should read or tidy (True), or checks are due."""
        with self._wakeup:
            self._idle = True
            try:
                while not self._closed.is_set():
                    now = time.monotonic()
                    if now >= next_check:
                        return False
                    wait = next_check - now
                    if self._caller_reading:
                        # look again soon: what the caller reads last is ours to drop, within
                        # CALLER_POLL + GRACE of its read (no wake-up per result on the hot path)
                        wait = min(wait, CALLER_POLL)
                    else:
                        pending = self._pending() > 0
                        quiet = now - self._quiet_from
                        if pending and (self._wanted_at > self._quiet_from or quiet >= GRACE):
                            return True  # read
                        unflushed = self._collected or self._latency.counts
                        if unflushed and quiet >= GRACE:
                            return True  # tidy: nobody has read for a while
                        if (pending or unflushed) and quiet < GRACE:
                            wait = GRACE - quiet
                    self._wakeup.wait(wait)
                return False
            finally:
                self._idle = False
