"""A cluster's state in Prometheus' text exposition format (version 0.0.4), for ``/metrics``."""

from __future__ import annotations

from collections.abc import Iterable

from rdispy import stats
from rdispy.monitor.cluster_state import ClusterState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_COUNTER_HELP = {
    stats.SUBMITTED: "Jobs sent by clients.",
    stats.FINISHED: "Jobs whose result was delivered.",
    stats.FAILED: "Jobs that ended with an exception or were lost for good.",
    stats.RETRIED: "Attempts lost (consumer crash, node lost) after which the job was requeued.",
    stats.CANCELLED: "Queued jobs withdrawn by an operator.",
    stats.DEADLETTERS: "Entries refused by nodes (bad signature or format).",
    stats.LOST: "Entries deleted while a consumer held them (their jobs fail with JobLost).",
}

#: Counters whose name is not ``rdispy_jobs_<counter>_total`` (they count stream entries).
_NAMES = {stats.DEADLETTERS: "rdispy_deadletters_total", stats.LOST: "rdispy_entries_lost_total"}


def counter_name(counter: str) -> str:
    """The metric name of one of ``stats.COUNTERS``."""
    return _NAMES.get(counter, f"rdispy_jobs_{counter}_total")


def escape(value: str) -> str:
    """A label value, escaped as the format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


def _family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]
) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{labels} {_number(value)}" for labels, value in samples]
    return lines


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def render(state: ClusterState) -> str:
    """Counters, gauges and the latency histogram of one cluster."""
    c = _labels(cluster=state.cluster)
    lines: list[str] = []
    for name in stats.COUNTERS:
        lines += _family(
            counter_name(name),
            "counter",
            _COUNTER_HELP[name],
            [(c, state.counters.get(name, 0))],
        )
    lines += _family("rdispy_nodes", "gauge", "Live nodes.", [(c, len(state.nodes))])
    lines += _family("rdispy_cores", "gauge", "Cores of live nodes.", [(c, state.cores)])
    lines += _family("rdispy_cores_busy", "gauge", "Cores running jobs.", [(c, state.busy)])
    lines += _family("rdispy_jobs_queued", "gauge", "Jobs not taken yet.", [(c, state.queued)])
    lines += _family(
        "rdispy_jobs_running", "gauge", "Jobs taken by a consumer.", [(c, state.running)]
    )
    lines += _family("rdispy_clients", "gauge", "Connected clients.", [(c, len(state.clients))])
    lines += _family(
        "rdispy_queue_length",
        "gauge",
        "Entries per job stream (queued and running).",
        [
            (_labels(cluster=state.cluster, queue=q.kind, owner=q.owner), q.length)
            for q in state.queues
        ],
    )
    per_node = [(n, _labels(cluster=state.cluster, node=n.name)) for n in state.nodes]
    lines += _family(
        "rdispy_node_cores", "gauge", "Cores of a node.", [(lb, n.cores) for n, lb in per_node]
    )
    lines += _family(
        "rdispy_node_cores_busy",
        "gauge",
        "Busy cores of a node.",
        [(lb, n.busy) for n, lb in per_node],
    )
    lines += _family(
        "rdispy_node_jobs_done",
        "gauge",
        "Jobs a node's current incarnation has run.",
        [(lb, n.jobs_done) for n, lb in per_node],
    )
    lines += _family(
        "rdispy_node_heartbeat_age_seconds",
        "gauge",
        "Seconds since a node's last heartbeat.",
        [(lb, round(n.heartbeat_age, 3)) for n, lb in per_node],
    )
    lines += _histogram(state)
    return "\n".join(lines) + "\n"


def _histogram(state: ClusterState) -> list[str]:
    name = "rdispy_job_latency_seconds"
    lines = [
        f"# HELP {name} Seconds from submit to the result reaching its client.",
        f"# TYPE {name} histogram",
    ]
    cumulative = 0.0
    for bucket in stats.BUCKET_NAMES:
        cumulative += state.latency.get(bucket, 0.0)
        le = bucket if bucket == "+Inf" else repr(float(bucket))
        lines.append(f"{name}_bucket{_labels(cluster=state.cluster, le=le)} {_number(cumulative)}")
    c = _labels(cluster=state.cluster)
    lines.append(f"{name}_sum{c} {_number(state.latency.get('sum', 0.0))}")
    lines.append(f"{name}_count{c} {_number(state.latency.get('count', 0.0))}")
    return lines
