"""Run a job set on a cluster and show which node ran what: the `client` service of compose.yaml.

    RDISPY_REDIS=redis://HOST:6379 RDISPY_SECRET=... python examples/cluster_demo.py [NODES] [JOBS]

Waits until NODES nodes (default 3) have registered, runs JOBS (default 60) short jobs and prints
how many each node ran; exits non-zero if a job failed or fewer nodes than NODES took part.
"""

from __future__ import annotations

import collections
import os
import sys
import time

import rdispy
from rdispy.connection import connect
from rdispy.keys import Keys
from rdispy.nodes import live_nodes
from rdispy.wire import Signer


def compute(n: int) -> tuple[int, str]:
    import socket
    import time

    time.sleep(0.05)
    return n * n, socket.gethostname()


def main() -> int:
    want_nodes = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    jobs = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    url = os.environ.get("RDISPY_REDIS", "redis://localhost:6379")
    secret = os.environ.get("RDISPY_SECRET") or None
    client = connect(url)
    with rdispy.Executor(url, secret=secret, connect_timeout=120) as ex:
        deadline = time.monotonic() + 120
        while len(nodes := live_nodes(client, Keys(), Signer(secret))) < want_nodes:
            if time.monotonic() > deadline:
                print(f"only {len(nodes)} of {want_nodes} nodes registered", file=sys.stderr)
                return 1
            time.sleep(0.5)
        futures = [ex.submit(compute, n) for n in range(jobs)]
        per_node = collections.Counter(f.node for f in futures if f.result()[0] >= 0)
    for node, count in sorted(per_node.items()):
        print(f"{node}: {count} jobs")
    return 0 if len(per_node) >= min(want_nodes, jobs) else 1


if __name__ == "__main__":
    sys.exit(main())
