"""Every interval, limit, TTL and environment variable name, each with its reason.

Values here are defaults; callers pass overrides explicitly. Tests shorten the intervals through
the environment variables named below, so that detection deadlines are seconds, not minutes.
"""

from __future__ import annotations

import os


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


#: Environment variable holding the Redis URL for the CLI and Executor().
ENV_REDIS_URL = "RDISPY_REDIS"
#: Environment variable holding the shared secret used to sign envelopes.
ENV_SECRET = "RDISPY_SECRET"

#: Key prefix; every key rdispy writes starts with it.
KEY_PREFIX = "rdispy"
#: Cluster name used when none is given; several clusters can share one Redis.
CLUSTER = "default"

#: Seconds between node heartbeats.
HEARTBEAT_INTERVAL = _env_float("RDISPY_HEARTBEAT", 2.0)
#: A node that missed this many heartbeats is dead (its record expires) and its jobs are retried.
HEARTBEATS_MISSED = 5

#: Largest pickled function+arguments of one job (bytes).  Redis' own limit is 512 MB.
MAX_PAYLOAD = 256 * 1024 * 1024
#: Largest pickled result of one job (bytes).
MAX_RESULT = 256 * 1024 * 1024
#: Captured stdout/stderr kept per job (characters); the rest is cut with a note.
MAX_OUTPUT = 1024 * 1024

#: Seconds a result waits in its client's stream before it expires (unclaimed results).
RESULT_TTL = 24 * 3600
#: Seconds a function blob lives after its last use by a client.
BLOB_TTL = 24 * 3600
#: Seconds a job record (state, attempt token) lives after it was last touched.
JOB_TTL = 24 * 3600

#: Unread entries in a client's result stream past which provisional results are dropped (and
#: counted); final results are always added.
MAX_EVENTS = int(_env_float("RDISPY_MAX_EVENTS", 10_000))

#: Most entries a consumer takes at once when jobs are short (adaptive prefetch).
MAX_PREFETCH = 32
#: Jobs shorter than this (seconds) let a consumer grow its prefetch.
SHORT_JOB = 0.002
#: Seconds a consumer blocks on an empty stream before it checks its state.
READ_BLOCK = 1.0

#: Retries of a job whose consumer or node died (at most MAX_RETRIES + 1 executions).
MAX_RETRIES = 2

#: Seconds a Redis command may wait for its reply (above every BLOCK time we use).
SOCKET_TIMEOUT = 15.0
#: Seconds one TCP (or TLS) connection to Redis may take to open (redis-py's
#: ``socket_connect_timeout``), not how long a client waits for the server: see WAIT_FOR_REDIS.
SOCKET_CONNECT_TIMEOUT = 5.0
#: Seconds ``Executor(url)`` and the dispy clusters wait, retrying, for Redis to answer at start
#: (their ``connect_timeout=``) before they raise BrokerError; workers wait forever.
WAIT_FOR_REDIS = 10.0
#: Seconds between warnings while something waits for Redis (the first retry warns at once).
WAIT_WARNING_EVERY = 30.0

#: Seconds a cancelled or timed-out job gets between SIGTERM and SIGKILL of its process group.
KILL_GRACE = _env_float("RDISPY_KILL_GRACE", 2.0)

#: Seconds before a job that crashed its consumer may run again, doubled per lost attempt.
RETRY_BACKOFF = _env_float("RDISPY_RETRY_BACKOFF", 0.5)
#: Longest such pause.
MAX_RETRY_BACKOFF = 30.0

#: Longest backoff between attempts to reach Redis (seconds).
MAX_BACKOFF = 5.0
#: Seconds a draining consumer gets before it is killed on shutdown of the embedded default.
SHUTDOWN_GRACE = 5.0
#: Seconds a shutdown that drains pending jobs (``shutdown(wait=False)``, interpreter exit)
#: goes on waiting while Redis cannot be reached; then it gives up on them and closes, so that
#: a process whose cluster went away still exits.
DRAIN_UNREACHABLE_GRACE = _env_float("RDISPY_DRAIN_UNREACHABLE_GRACE", 10.0)
#: Seconds a job may wait for a job it submitted that has not started before a warning names
#: both (every core of the cluster may be held by such waiting jobs: a nested deadlock).
NESTED_WAIT_WARNING = _env_float("RDISPY_NESTED_WAIT_WARNING", 10.0)
