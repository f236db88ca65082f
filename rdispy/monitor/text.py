"""Plain-text tables of a cluster's state and of one job, for `rdispy status`."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rdispy.monitor.cluster_state import ClusterState
from rdispy.monitor.jobs import JobState


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    cells = [[str(c) for c in headers]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] in ("", "-") for row in rows)
        for i in range(len(headers))
    ]
    lines = []
    for index, row in enumerate(cells):
        parts = [
            c.rjust(w) if numeric[i] and index else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def render_state(state: ClusterState) -> str:
    out = [
        f"cluster {state.cluster}: {len(state.nodes)} nodes, {state.busy}/{state.cores} cores "
        f"busy, {state.queued} queued, {state.running} running  "
        f"({time.strftime('%H:%M:%S', time.localtime(state.time))})",
        "",
    ]
    if state.nodes:
        out.append(
            table(
                [
                    "node",
                    "address",
                    "cores",
                    "busy",
                    "done",
                    "heartbeat",
                    "version",
                    "relay",
                    "incarnation",
                ],
                [
                    [
                        n.name,
                        n.address,
                        n.cores,
                        n.busy,
                        n.jobs_done,
                        age(n.heartbeat_age),
                        n.version,
                        n.relay,
                        n.incarnation,
                    ]
                    for n in state.nodes
                ],
            )  # fmt: skip
        )
    else:
        out.append("no nodes alive")
    out += ["", table(
        ["queue", "owner", "length", "running", "queued", "oldest"],
        [[q.kind, q.owner or "-", q.length, q.pending, q.queued, age(q.oldest_age)]
         for q in state.queues],
    )]  # fmt: skip
    if state.clients:
        out += ["", table(
            ["client", "host", "pid", "seen", "results waiting"],
            [[c.id, c.host, c.pid, age(c.seen_age), c.results_waiting] for c in state.clients],
        )]  # fmt: skip
    counters = ", ".join(f"{k} {v}" for k, v in state.counters.items())
    out += ["", f"counters: {counters}", f"dead letters: {state.dead_letters}"]
    if state.latency.get("count"):
        mean = state.latency.get("sum", 0.0) / state.latency["count"]
        out.append(f"latency: {int(state.latency['count'])} results, mean {mean * 1000:.1f} ms")
    others = [c for c in state.clusters if c != state.cluster]
    if others:
        out.append(f"other clusters here: {', '.join(others)}")
    return "\n".join(out)


def render_job(job: JobState) -> str:
    out = [f"job {job.id}: {job.state}"]
    if job.function:
        out.append(f"function: {job.function}" + (f" {job.args}" if job.args else ""))
    if job.client:
        out.append(f"client: {job.client}")
    if job.node:
        out.append(f"node: {job.node}")
    if job.consumer:
        out.append(f"consumer: {job.consumer} (took it {age(job.taken_age)} ago)")
    if job.stream:
        out.append(f"entry: {job.entry} in {job.stream}")
    out.append(f"attempts lost: {job.lost_attempts}")
    if job.attempts:
        out += ["", "attempts (start/end: node-local wall time):"]
        out.append(
            table(
                ["#", "node", "incarnation", "pid", "start", "end", "outcome", "peak RSS", "error"],
                [
                    [
                        i + 1,
                        a.get("node", "-"),
                        a.get("incarnation", "-"),
                        a.get("pid", "-"),
                        _clock(a.get("start")),
                        _clock(a.get("end")),
                        a.get("outcome", "?") + (" (dropped)" if a.get("dropped") else ""),
                        f"{a['rss_kib'] // 1024} MiB" if a.get("rss_kib") else "-",
                        a.get("error", ""),
                    ]
                    for i, a in enumerate(job.attempts)
                ],
            )  # fmt: skip
        )
    else:
        out.append("no attempt recorded yet")
    if job.exception is not None:
        out += ["", f"exception: {job.exception['type']}: {job.exception['message']}"]
        if job.exception.get("traceback"):
            out.append(job.exception["traceback"].rstrip("\n"))
    return "\n".join(out)


def _clock(value: object) -> str:
    if not isinstance(value, int | float):
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(value)) + f".{int(value * 1000) % 1000:03d}"
