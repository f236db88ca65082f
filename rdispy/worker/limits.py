"""The node's limits on running jobs: a job past its timeout, over its memory limit or
cancelled by its client is stopped by signalling its consumer's process group.

A stop first asks the consumer (through its slot) and sends SIGTERM, which the consumer turns
into a KeyboardInterrupt inside the job; SIGKILL follows when the job outlives the grace.  A
job over its memory limit is killed at once.  Times are this host's monotonic clock, the one
the consumer stamps its job's start with.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from rdispy import processes
from rdispy.worker.slots import Slots

log = logging.getLogger(__name__)


class Process(Protocol):
    """A consumer process, as the supervisor tracks it."""

    pid: int


@dataclass
class Kill:
    cause: str  # "timeout", "cancel" or "memory"
    why: str
    sigkill_at: float


class JobLimits:
    """Stops the jobs of a node's consumers that break a limit, and remembers why."""

    def __init__(
        self,
        slots: Slots,
        children: Mapping[int, Process],
        node: str,
        kill_grace: float,
        memory_limit: int | None,
    ) -> None:
        self.slots = slots
        self.children = children  # the supervisor's consumers, by slot
        self.node = node
        self.kill_grace = kill_grace
        self.memory_limit = memory_limit
        self._kills: dict[int, Kill] = {}  # slot -> why its consumer is being stopped

    def stopping(self, slot: int) -> bool:
        """Whether the consumer of ``slot`` is being stopped."""
        return slot in self._kills

    def ended(self, slot: int) -> Kill | None:
        """Why the consumer of ``slot``, now gone, was stopped (None: it was not)."""
        return self._kills.pop(slot, None)

    def enforce(self) -> None:
        """Stop jobs past their timeout or over their memory limit; escalate to SIGKILL."""
        now = time.monotonic()
        busy = any(self.slots.running(slot) for slot in self.children)
        rss = processes.group_rss() if self.memory_limit is not None and busy else {}
        for slot, child in self.children.items():
            current = self.slots.running(slot)
            if slot in self._kills:
                if now >= self._kills[slot].sigkill_at:
                    processes.kill_group(child.pid, signal.SIGKILL)
            elif current and current.timeout and now - current.started > current.timeout:
                self.stop_job(slot, "timeout", f"ran past its timeout of {current.timeout:g}s")
            elif current and rss.get(child.pid, 0) > (self.memory_limit or 0):
                why = (
                    f"used {rss[child.pid]:,} bytes (with the processes it started), over the "
                    f"memory limit of {self.memory_limit:,} bytes per consumer"
                )
                self.stop_job(slot, "memory", why, grace=0.0)

    def cancel(self, job_id: str) -> None:
        """Stop the job ``job_id`` if one of our consumers runs it (its client cancelled it)."""
        for slot in list(self.children):
            current = self.slots.running(slot)
            if current and current.job_id == job_id and slot not in self._kills:
                self.stop_job(slot, "cancel", "cancelled while running")

    def stop_job(self, slot: int, cause: str, why: str, grace: float | None = None) -> None:
        child = self.children[slot]
        current = self.slots.running(slot)
        job = current.job_id if current else "?"
        log.warning("node %s: job=%s %s; stopping consumer pid %d", self.node, job, why, child.pid)
        pause = self.kill_grace if grace is None else grace
        if pause:
            self.slots.request_stop(slot)
        self._kills[slot] = Kill(cause, f"{why} on node {self.node}", time.monotonic() + pause)
        processes.kill_group(child.pid, signal.SIGTERM if pause else signal.SIGKILL)
