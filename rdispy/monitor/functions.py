"""Per-function summary of the attempts that ended lately (``summarize``, over the ``recent``
stream): counts by outcome and run-time percentiles, and the nodes, clients and functions seen
there, for the monitor's functions table and filters."""

from __future__ import annotations

import math
from typing import Any

import redis

from rdispy import attempts, wire
from rdispy.keys import Keys
from rdispy.monitor.replies import client_of, entry_time


def _percentile(ordered: list[float], share: float) -> float:
    """The nearest-rank percentile of sorted values."""
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def summarize(client: redis.Redis, keys: Keys) -> dict[str, Any]:
    """Per function, over the attempts in the ``recent`` stream (the last ~RECENT_KEPT that
    ended, cluster-wide): attempts, finished, failed (an exception, or lost: crashed, timed
    out, node lost, out of memory), cancelled, and the mean, 95th percentile and longest run
    time of its attempts (end - start, seconds; attempts lost without a start have none).
    Dropped attempts (a duplicate run whose result was not delivered) are left out.  Also the
    nodes, clients and functions seen there, for the monitor's filters."""
    raw: Any = client.xrevrange(keys.recent, "+", "-", count=attempts.RECENT_KEPT * 2)
    groups: dict[str, dict[str, Any]] = {}
    nodes: set[str] = set()
    clients: set[str] = set()
    oldest: float | None = None
    for eid, fields in raw:
        if fields.get(wire.F.DROPPED):
            continue
        attempt = attempts.decode(fields.get(wire.F.ATTEMPT, b"{}"))
        oldest = entry_time(eid)
        name = str(attempt.get("fn", ""))
        group = groups.setdefault(
            name, {"attempts": 0, "finished": 0, "failed": 0, "cancelled": 0, "durations": []}
        )
        group["attempts"] += 1
        outcome = attempt.get("outcome")
        if outcome == "ok":
            group["finished"] += 1
        elif outcome == "cancelled":
            group["cancelled"] += 1
        else:
            group["failed"] += 1
        start, end = attempt.get("start"), attempt.get("end")
        if isinstance(start, int | float) and isinstance(end, int | float):
            group["durations"].append(max(0.0, end - start))
        if attempt.get("node"):
            nodes.add(str(attempt["node"]))
        if attempt.get("id"):
            clients.add(client_of(str(attempt["id"])))
    functions = []
    for name, group in groups.items():
        durations = sorted(group.pop("durations"))
        functions.append(
            {
                "function": name,
                **group,
                "timed": len(durations),
                "mean": sum(durations) / len(durations) if durations else None,
                "p95": _percentile(durations, 0.95) if durations else None,
                "max": durations[-1] if durations else None,
            }
        )
    functions.sort(key=lambda f: (-f["attempts"], f["function"]))
    window = {
        "source": "recent",
        "attempts": sum(f["attempts"] for f in functions),
        "kept": attempts.RECENT_KEPT,
        "since": oldest,
    }
    return {
        "window": window,
        "functions": functions,
        "nodes": sorted(nodes),
        "clients": sorted(clients),
    }
