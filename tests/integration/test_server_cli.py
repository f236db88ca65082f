"""`rdispy server`: the bundled server for several machines, with a password."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

import rdispy
from rdispy.server import free_port

pytestmark = pytest.mark.integration


def test_server_prints_urls_and_serves_a_password_protected_cluster(cluster, start_worker):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rdispy", "server", "--port", str(port), "--password", "s3cret"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        assert f"listening on 127.0.0.1:{port}" in lines[0]
        assert f"rdispy worker --redis redis://:<password>@127.0.0.1:{port}" in lines[1]
        url = f"redis://:s3cret@127.0.0.1:{port}/0"
        start_worker(url, 1)
        with rdispy.Executor(url, cluster=cluster) as ex:
            assert ex.submit(divmod, 7, 2).result(30) == (3, 1)
        with pytest.raises(rdispy.BrokerError, match="password|credentials"):
            rdispy.Executor(f"redis://127.0.0.1:{port}/0", cluster=cluster)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
