"""Every interval, limit, TTL and environment variable name, each with its reason.

Values here are defaults; callers pass overrides explicitly. Tests shorten the intervals through
the environment variables named below, so that detection deadlines are seconds, not minutes.
Every ``RDISPY_*`` variable is named here (an ``ENV_*`` constant) and nowhere else in the code:
the intervals are read here at import, the others where they apply (``handoff.enabled``, the
command line's options, ``Executor()``), through these names.  tests/unit/test_defaults.py
checks that no other module spells one out.
"""

from __future__ import annotations

import os


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


# -- environment variables ---------------------------------------------------------------------

#: The Redis URL for the CLI and Executor().
ENV_REDIS_URL = "RDISPY_REDIS"
#: The shared secret used to sign envelopes (CLI and Executor()).
ENV_SECRET = "RDISPY_SECRET"
#: "0" (or false/no/off) turns the same-host handoff off: everything goes through Redis
#: (read by ``handoff.enabled``, at each use).
ENV_HANDOFF = "RDISPY_HANDOFF"
#: `rdispy server --password`.
ENV_SERVER_PASSWORD = "RDISPY_SERVER_PASSWORD"
#: "1" (or true/yes/on) lets clients use a Redis whose maxmemory-policy may evict keys (read by
#: ``connection.eviction_policy`` at each use; nodes: `rdispy worker --allow-eviction`).
ENV_ALLOW_EVICTION = "RDISPY_ALLOW_EVICTION"
#: `rdispy worker --max-output`.
ENV_MAX_OUTPUT = "RDISPY_MAX_OUTPUT"
#: `rdispy worker --discover-interface`.
ENV_DISCOVER_INTERFACE = "RDISPY_DISCOVER_INTERFACE"
#: The intervals below that tests shorten, read here at import: HEARTBEAT_INTERVAL,
#: MAX_EVENTS, KILL_GRACE, RETRY_BACKOFF, DRAIN_UNREACHABLE_GRACE, NESTED_WAIT_WARNING.
ENV_HEARTBEAT = "RDISPY_HEARTBEAT"
ENV_MAX_EVENTS = "RDISPY_MAX_EVENTS"
ENV_KILL_GRACE = "RDISPY_KILL_GRACE"
ENV_RETRY_BACKOFF = "RDISPY_RETRY_BACKOFF"
ENV_DRAIN_UNREACHABLE_GRACE = "RDISPY_DRAIN_UNREACHABLE_GRACE"
ENV_NESTED_WAIT_WARNING = "RDISPY_NESTED_WAIT_WARNING"

# -- keys, intervals, limits ---------------------------------------------------------------------

#: Key prefix; every key rdispy writes starts with it.
KEY_PREFIX = "rdispy"
#: Cluster name used when none is given; several clusters can share one Redis.
CLUSTER = "default"

#: Seconds between node heartbeats.
HEARTBEAT_INTERVAL = _env_float(ENV_HEARTBEAT, 2.0)
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
MAX_EVENTS = int(_env_float(ENV_MAX_EVENTS, 10_000))

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
KILL_GRACE = _env_float(ENV_KILL_GRACE, 2.0)

#: Seconds before a job that crashed its consumer may run again, doubled per lost attempt.
RETRY_BACKOFF = _env_float(ENV_RETRY_BACKOFF, 0.5)
#: Longest such pause.
MAX_RETRY_BACKOFF = 30.0

#: Longest backoff between attempts to reach Redis (seconds).
MAX_BACKOFF = 5.0
#: Seconds a draining consumer gets before it is killed on shutdown of the embedded default.
SHUTDOWN_GRACE = 5.0
#: Seconds a shutdown that drains pending jobs (``shutdown(wait=False)``, interpreter exit)
#: goes on waiting while Redis cannot be reached; then it gives up on them and closes, so that
#: a process whose cluster went away still exits.
DRAIN_UNREACHABLE_GRACE = _env_float(ENV_DRAIN_UNREACHABLE_GRACE, 10.0)
#: Seconds a job may wait for a job it submitted that has not started before a warning names
#: both (every core of the cluster may be held by such waiting jobs: a nested deadlock).
NESTED_WAIT_WARNING = _env_float(ENV_NESTED_WAIT_WARNING, 10.0)
