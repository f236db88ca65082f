"""Names of the cluster-wide counters and the latency histogram's buckets.

Counters live in the ``counters`` hash and go up inside commands already being sent: ``submitted``
in the client's send pipeline, ``finished``/``failed``/``retried`` in the publish and recover
Lua scripts, ``cancelled`` when a queued job is withdrawn from the monitor, ``deadletters`` when
a node refuses an entry, ``lost`` when a node finds an entry it held deleted.  Latency (seconds
from submit to the result reaching its client, both on the client's clock) is counted per bucket
in the ``latency`` hash by the client's listener, in the pipeline that deletes the results it
read.
"""

from __future__ import annotations

import bisect
from collections import Counter

SUBMITTED = "submitted"
FINISHED = "finished"  # a result was delivered
FAILED = "failed"  # an exception, or lost for good (crash, node lost, timeout, cancelled running)
RETRIED = "retried"  # an attempt was lost and the job requeued
CANCELLED = "cancelled"  # withdrawn from its queue before it ran (monitor)
DEADLETTERS = "deadletters"
LOST = "lost"  # entries deleted while a consumer held them (their jobs fail with JobLost)

COUNTERS = (SUBMITTED, FINISHED, FAILED, RETRIED, CANCELLED, DEADLETTERS, LOST)

#: Upper bounds (seconds) of the latency buckets; one more bucket, "+Inf", holds the rest.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 1800.0,
)  # fmt: skip


def bucket_name(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


BUCKET_NAMES = tuple(bucket_name(b) for b in LATENCY_BUCKETS) + ("+Inf",)


class LatencyTally:
    """Latencies seen since the last flush, counted per bucket (not thread-safe)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.total = 0.0

    def add(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        index = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        self.counts[BUCKET_NAMES[index]] += 1
        self.total += seconds

    def commands(self, key: str) -> list[tuple[object, ...]]:
        """The HINCRBY commands that add these latencies to ``key``; empties the tally."""
        if not self.counts:
            return []
        count = sum(self.counts.values())
        out: list[tuple[object, ...]] = [
            ("HINCRBY", key, name, n) for name, n in sorted(self.counts.items())
        ]
        out.append(("HINCRBY", key, "count", count))
        out.append(("HINCRBYFLOAT", key, "sum", repr(self.total)))
        self.counts.clear()
        self.total = 0.0
        return out
