"""The embedded default: a private server and one local node, owned by the client process.

``Executor()`` with no URL starts valkey-server on a unix socket in a private folder and one
`rdispy worker` supervisor with ``max_workers`` consumers, and ends both on shutdown, at
interpreter exit, and when the client dies (the supervisor watches the client's pid and then
shuts the server down; on Linux the kernel also kills both with the client's main thread).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import weakref
from typing import Any

import redis

from rdispy import defaults, processes
from rdispy.errors import BrokerError
from rdispy.keys import CONSUMER_GROUP, Keys
from rdispy.server import EmbeddedServer

log = logging.getLogger(__name__)


class LocalCluster:
    """A private server plus one local node; ``close()`` ends both and leaves nothing behind."""

    def __init__(self, cpus: int, keys: Keys, secret: str | None = None) -> None:
        self.cpus = cpus
        self.keys, self.name = keys, f"local-{os.getpid()}"
        self.owner_pid = os.getpid()
        # the node's interpreter starts while the server does (the node waits for it)
        self.server = EmbeddedServer().launch()
        env = dict(os.environ)
        env.pop(defaults.ENV_SECRET, None)  # the node has the client's secret, no other
        if secret:
            env[defaults.ENV_SECRET] = secret
        command = [
            sys.executable,
            "-m",
            "rdispy",
            "--quiet",
            "worker",
            "--redis",
            self.server.url,
            "--cpus",
            str(cpus),
            "--name",
            self.name,
            "--cluster",
            keys.cluster,
            "--prefix",
            keys.prefix,
            "--owner-pid",
            str(os.getpid()),
            "--stop-server-with-owner",
        ]
        try:
            self.supervisor = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, env=env, preexec_fn=processes.child_preexec(True)
            )
        except BaseException:
            self.server.kill()
            self.server.stop()
            raise
        # runs on close(), on garbage collection, and at interpreter exit
        self._finalizer = weakref.finalize(
            self, LocalCluster._teardown, self.supervisor, self.server, self.owner_pid
        )
        try:
            self.server.wait_ready()
        except BaseException:
            self._finalizer()
            raise

    def wait_serving(self, client: Any, timeout: float) -> None:
        """Return once the node has registered and one of its consumers reads, so that the
        executor starts with its cores ready; raise BrokerError when it died or is late."""
        deadline = time.monotonic() + timeout
        key = self.keys.node(self.name)
        while not (client.exists(key) and self._reading(client)):
            code = self.supervisor.poll()
            if code is not None:
                self.close(drain=False)
                raise BrokerError(
                    f"the embedded default's node exited at start (code {code}); its log is "
                    "above (run `rdispy worker` by hand to see why)"
                )
            if time.monotonic() > deadline:
                self.close(drain=False)
                raise BrokerError(
                    f"the embedded default's node did not start within {timeout:.0f}s "
                    "(a slow or overloaded machine: pass a larger connect_timeout)"
                )
            time.sleep(0.01)

    def _reading(self, client: Any) -> bool:
        """Whether a consumer of the node has read the shared stream (it then takes a job the
        moment one is sent, as a process pool's workers do)."""
        try:
            return bool(client.xinfo_consumers(self.keys.jobs, CONSUMER_GROUP))
        except redis.ResponseError:  # no group yet
            return False

    @property
    def url(self) -> str:
        return self.server.url

    def alive(self) -> bool:
        return (
            self.supervisor.poll() is None
            and self.server.process is not None
            and (self.server.process.poll() is None)
        )

    def close(self, drain: bool = True) -> None:
        """Stop the node (draining running jobs when ``drain``) and the server."""
        if os.getpid() != self.owner_pid:
            return  # a forked child's copy: the server and node are the parent's
        if drain and self.supervisor.poll() is None:
            self.supervisor.send_signal(signal.SIGTERM)
            try:
                self.supervisor.wait(defaults.SHUTDOWN_GRACE)
            except subprocess.TimeoutExpired:
                log.warning(
                    "local node did not drain in %.0fs; killing it", defaults.SHUTDOWN_GRACE
                )
        self._finalizer()

    @staticmethod
    def _teardown(supervisor: subprocess.Popen[bytes], server: EmbeddedServer, owner: int) -> None:
        if os.getpid() != owner:  # a forked child's copy: the server and node are the parent's
            return
        if supervisor.poll() is None:
            # two signals: the supervisor drains on the first and kills its consumers on the second
            for _ in range(2):
                with contextlib.suppress(ProcessLookupError):
                    supervisor.send_signal(signal.SIGTERM)
            try:
                supervisor.wait(2.0)
            except subprocess.TimeoutExpired:
                processes.kill_group(supervisor.pid)
                supervisor.wait()
        server.kill()  # private and unpersisted: nothing to save, no reason to wait
        server.stop()
