"""The dispy sessions (a JobCluster's computation) one consumer takes part in.

A job of a session runs in the session's folder, with its dependencies and dispynode's globals
(``dispy_session``).  The first job of a session on this consumer runs the session's setup, with
the node's setup arguments; a client that sets the node up again gets the old setup undone
first.  A setup that fails excludes this node from the session (its client is told), and its
jobs go to other nodes.  When a client closes its session, the consumer runs its cleanup and
forgets it, removing its files if the client asked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from rdispy import serialization, wire
from rdispy.errors import JobError
from rdispy.keys import Keys
from rdispy.worker import dispy_session
from rdispy.worker.config import ConsumerConfig
from rdispy.worker.functions import FunctionCache
from rdispy.worker.publishing import Events
from rdispy.worker.slots import ClosedSessions
from rdispy.worker.workspace import Workspace

log = logging.getLogger(__name__)


class SetupFailed(Exception):
    """The session's setup failed on this consumer; the job goes to another node."""


class Sessions:
    """One consumer's sessions: their folders, setups and cleanups."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        config: ConsumerConfig,
        name: str,
        functions: FunctionCache,
        events: Events,
        closed: ClosedSessions | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.node = config.node
        self.ip = config.ip
        self.name = name  # the consumer's
        self.functions = functions
        self.workspace = Workspace(client, keys, config.workdir)
        self.events = events
        self._setups: dict[str, tuple[bytes, bytes]] = {}  # session -> (setup, its arguments)
        # session -> (cleanup digest, setup arguments, computation)
        self._cleanups: dict[str, tuple[bytes, bytes, Callable[..., Any]]] = {}
        self._failed_setups: dict[str, str] = {}  # session -> why its setup failed here
        self._closed = closed
        self._closed_seen = closed.written() if closed else 0
        self._cwd: Path | None = None

    def failed_here(self, session: str) -> bool:
        """Whether the session's setup failed on this consumer."""
        return session in self._failed_setups

    def enter(
        self, session: str, fields: dict[bytes, bytes], fn: Callable[..., Any], job_id: str
    ) -> None:
        """Run in the cluster session's folder with its dependencies; run its setup once."""
        header = wire.JobHeader(fields)
        folder, names = self.workspace.prepare(session, header.depends, job_id)
        if self._cwd is not folder:  # the same object for every job of a session
            os.chdir(folder)
            self._cwd = folder
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
        namespace = getattr(fn, "__globals__", None)
        if namespace is not None:
            dispy_session.share_namespace(namespace, names)
            dispy_session.add_job_globals(
                namespace, dispy_session.job_globals(self.node, self.ip, folder)
            )
        if session in self._failed_setups:  # handed on enough times: no other node took it
            raise JobError(self._failed_setups[session], job_id)
        setup = header.setup
        setup_args = header.setup_args
        done = self._setups.get(session)
        if setup and done != (setup, setup_args):
            if done is not None:  # the client set this node up again: undo the old setup
                self._run_cleanup(session)
            self._run_setup(session, fields, setup, setup_args, namespace, folder, job_id)
        cleanup = header.cleanup
        if cleanup and session not in self._cleanups:
            self._cleanups[session] = (cleanup, setup_args, fn)

    def _run_setup(
        self,
        session: str,
        fields: dict[bytes, bytes],
        setup: bytes,
        setup_args: bytes,
        namespace: dict[str, Any] | None,
        folder: Path,
        job_id: str,
    ) -> None:
        """Run the session's setup in this consumer, one consumer of the node at a time."""
        setup_fn = self.functions.get(setup, job_id)
        if namespace is not None:
            setup_fn = dispy_session.in_namespace(setup_fn, namespace)
        try:
            args = self._setup_arguments(setup_args, job_id)
            with dispy_session.setup_lock(folder):
                # each consumer runs the setup: each finds the files, even if one removed them
                depends = wire.JobHeader(fields).depends
                self.workspace.prepare(session, depends, job_id, again=True)
                status = setup_fn(*args)
            if not dispy_session.setup_ok(status):
                raise JobError(f"setup returned {status!r} on node {self.node}", job_id)
        except Exception as exc:
            self._setup_failed(session, fields, job_id, exc)
            raise SetupFailed from exc
        self._setups[session] = (setup, setup_args)

    def _setup_arguments(self, digest: bytes, job_id: str) -> tuple[Any, ...]:
        """The arguments of this node's setup (dispy's ``NodeAllocate.setup_args``)."""
        if not digest:
            return ()
        data: bytes | None = self.client.get(self.keys.blob(digest.decode()))  # type: ignore[assignment]
        if data is None:
            raise JobError("the setup arguments of this node are gone from the server", job_id)
        args = serialization.loads(data, "setup arguments", job_id)
        return tuple(args)

    def _run_cleanup(self, session: str) -> None:
        """Run the session's cleanup here (with the arguments its setup had), if it has one."""
        entry = self._cleanups.pop(session, None)
        if entry is None:
            return
        digest, setup_args, compute = entry
        try:
            cleanup = self.functions.get(digest, session)
            args = self._setup_arguments(setup_args, session)
            dispy_session.in_namespace(cleanup, getattr(compute, "__globals__", {}))(*args)
        except Exception:
            log.exception("consumer %s: cleanup of session %s failed", self.name, session)

    def _setup_failed(
        self, session: str, fields: dict[bytes, bytes], job_id: str, exc: Exception
    ) -> None:
        """Exclude this node from the session and tell its client (dispy closes such a node)."""
        if session in self._failed_setups:
            return
        text = f"setup failed on node {self.node}: {type(exc).__name__}: {exc}"
        self._failed_setups[session] = text
        log.warning("consumer %s: %s", self.name, text)
        results_key = self.keys.results(wire.JobHeader(fields).client)
        event = {wire.N.KIND: "excl", wire.N.NODE: self.node, wire.N.IP: self.ip, wire.N.WHY: text}
        with contextlib.suppress(redis.RedisError):
            self.events.emit(results_key, job_id, event)

    def end_closed(self) -> None:
        """Run the cleanup of sessions their clients closed, and forget them."""
        if self._closed is None or self._closed.written() == self._closed_seen:
            return
        self._closed_seen, closed = self._closed.since(self._closed_seen)
        for session, remove_files in closed:
            self._run_cleanup(session)
            self._setups.pop(session, None)
            self._failed_setups.pop(session, None)
            folder = self.workspace.forget(session)
            if remove_files and folder is not None:
                if self._cwd == folder:
                    os.chdir(self.workspace.root)
                    self._cwd = None
                shutil.rmtree(folder, ignore_errors=True)
