"""The web monitor: one page and a JSON API over a cluster's Redis, served by aiohttp in a
background thread (`rdispy monitor`, or ``Executor(monitor=True)`` / ``JobCluster(monitor=...)``).

aiohttp serves the page, the API and ``/metrics`` from one small event loop; every Redis read
runs in a worker thread (``asyncio.to_thread``) so a slow Redis never stalls the loop.  A sampler
reads the cluster's counters every ``SAMPLE_INTERVAL`` seconds into a ring buffer that the
throughput chart draws.

Writes (cancel a job, drain a node) are POSTs that must carry the header ``X-Rdispy: 1`` (a
page of another site cannot send it without a CORS preflight, which is never granted), and a
monitor bound to loopback answers only requests addressed to a loopback host name (no DNS
rebinding).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import json
import logging
import sys
import threading
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis
from aiohttp import web

from rdispy import connection, defaults, stats, wire
from rdispy.errors import ActionError, ConfigError
from rdispy.keys import Keys
from rdispy.monitor import actions, metrics, state
from rdispy.scripts import Scripts

log = logging.getLogger(__name__)

#: Seconds between samples of the counters (throughput chart).
SAMPLE_INTERVAL = 1.0
#: Samples kept: ten minutes at one per second.
SAMPLES_KEPT = 600
#: Seconds a listing of the clusters in this Redis (a SCAN) is reused.
CLUSTERS_TTL = 15.0
DEFAULT_PORT = 8181


@dataclass
class Sample:
    time: float
    submitted: int
    finished: int
    failed: int
    busy: int
    cores: int
    queued: int


class Monitor:
    """A running web monitor; ``start()`` returns once it listens, ``stop()`` ends it."""

    def __init__(
        self,
        url: str,
        cluster: str = defaults.CLUSTER,
        prefix: str = defaults.KEY_PREFIX,
        *,
        secret: str | None = None,
        port: int = DEFAULT_PORT,
        bind: str = "127.0.0.1",
        sample_interval: float = SAMPLE_INTERVAL,
    ) -> None:
        self.redis_url = url
        self.keys = Keys(cluster, prefix)
        self.signer = wire.Signer(secret)
        self.bind = bind
        self.port = port
        self.sample_interval = sample_interval
        self.client = connection.connect(url)
        self.scripts = Scripts(self.client)
        self.samples: collections.deque[Sample] = collections.deque(maxlen=SAMPLES_KEPT)
        self._clusters: tuple[float, list[str]] = (0.0, [])
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._loopback = _is_loopback(bind)

    @property
    def url(self) -> str:
        host = self.bind if self.bind not in ("0.0.0.0", "::", "") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Monitor:
        """Serve in a background thread; raises ConfigError if the port cannot be bound."""
        self._thread = threading.Thread(target=self._run, name="rdispy-monitor", daemon=True)
        self._thread.start()
        self._started.wait(30)
        if self._error is not None:
            self._thread.join(5)
            self.client.close()
            raise ConfigError(
                f"the monitor cannot listen on {self.bind}:{self.port}: {self._error} "
                "(pass another port, or 0 for any free one)"
            ) from self._error
        log.info("monitor of cluster %s at %s", self.keys.cluster, self.url)
        return self

    def stop(self) -> None:
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopped.set)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)
        self.client.close()

    def wait(self) -> None:
        """Block until the monitor stops (for the CLI)."""
        if self._thread is not None:
            while self._thread.is_alive():
                self._thread.join(0.5)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported by start() when it happens before listening
            self._error = exc
            if self._started.is_set():
                log.exception("monitor stopped")
        finally:
            self._started.set()
            loop.close()

    async def _serve(self) -> None:
        self._stopped = asyncio.Event()
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.bind, self.port)
            await site.start()
            server = getattr(site, "_server", None)
            sockets = getattr(server, "sockets", None) or []
            if sockets:
                self.port = sockets[0].getsockname()[1]
            self._started.set()
            sampler = asyncio.ensure_future(self._sample_loop())
            await self._stopped.wait()
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        finally:
            await runner.cleanup()

    async def _sample_loop(self) -> None:
        assert self._stopped is not None
        while not self._stopped.is_set():
            try:
                self.samples.append(await asyncio.to_thread(self._sample))
            except redis.RedisError as exc:
                log.debug("monitor: cannot sample counters: %s", exc)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), self.sample_interval)

    def _sample(self) -> Sample:
        current = state.read_state(self.client, self.keys, self.signer)
        c = current.counters
        return Sample(
            current.time,
            c.get(stats.SUBMITTED, 0),
            c.get(stats.FINISHED, 0),
            c.get(stats.FAILED, 0),
            current.busy,
            current.cores,
            current.queued,
        )

    def throughput(self) -> list[dict[str, float]]:
        """Rates between consecutive samples: jobs per second submitted, finished, failed."""
        samples = list(self.samples)
        out = []
        for before, after in zip(samples, samples[1:], strict=False):
            dt = after.time - before.time
            if dt <= 0:
                continue
            out.append(
                {
                    "time": round(after.time, 3),
                    "submitted": max(0, after.submitted - before.submitted) / dt,
                    "finished": max(0, after.finished - before.finished) / dt,
                    "failed": max(0, after.failed - before.failed) / dt,
                    "busy": after.busy,
                    "cores": after.cores,
                    "queued": after.queued,
                }
            )
        return out

    def clusters(self) -> list[str]:
        checked, names = self._clusters
        if time.monotonic() - checked > CLUSTERS_TTL:
            names = state.list_clusters(self.client, self.keys.prefix)
            self._clusters = (time.monotonic(), names)
        return names

    # -- the application -----------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._page)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/nodes", self._nodes)
        app.router.add_get("/api/queues", self._queues)
        app.router.add_get("/api/clients", self._clients)
        app.router.add_get("/api/clusters", self._clusters_api)
        app.router.add_get("/api/counters", self._counters)
        app.router.add_get("/api/throughput", self._throughput)
        app.router.add_get("/api/jobs", self._jobs)
        app.router.add_get("/api/jobs/{id}", self._job)
        app.router.add_get("/api/functions", self._functions)
        app.router.add_post("/api/jobs/{id}/cancel", self._cancel)
        app.router.add_post("/api/nodes/{name}/drain", self._drain)
        app.router.add_get("/metrics", self._metrics)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self._loopback and not _loopback_host(request.host):
            return _error(403, f"this monitor answers only on loopback, not {request.host!r}")
        if request.method == "POST" and request.headers.get("X-Rdispy") != "1":
            return _error(403, "actions need the header X-Rdispy: 1")
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except ActionError as exc:
            return _error(409, str(exc))
        except ValueError as exc:  # a malformed cluster name in the query
            return _error(400, str(exc))
        except redis.RedisError as exc:
            return _error(503, f"Redis: {connection.error_text(exc)}")

    def _keys(self, request: web.Request) -> Keys:
        cluster = request.query.get("cluster")
        return self.keys if not cluster else Keys(cluster, self.keys.prefix)

    async def _read_state(self, request: web.Request) -> state.ClusterState:
        keys = self._keys(request)

        def read() -> state.ClusterState:
            current = state.read_state(self.client, keys, self.signer)
            current.clusters = self.clusters()
            return current

        return await asyncio.to_thread(read)

    async def _page(self, request: web.Request) -> web.Response:
        page = resources.files("rdispy.monitor").joinpath("page.html").read_text("utf-8")
        return web.Response(text=page, content_type="text/html")

    async def _state(self, request: web.Request) -> web.Response:
        return _json((await self._read_state(request)).to_dict())

    async def _nodes(self, request: web.Request) -> web.Response:
        current = await self._read_state(request)
        return _json({"schema": state.SCHEMA_VERSION, "nodes": current.to_dict()["nodes"]})

    async def _queues(self, request: web.Request) -> web.Response:
        current = await self._read_state(request)
        return _json({"schema": state.SCHEMA_VERSION, "queues": current.to_dict()["queues"]})

    async def _clients(self, request: web.Request) -> web.Response:
        current = await self._read_state(request)
        return _json({"schema": state.SCHEMA_VERSION, "clients": current.to_dict()["clients"]})

    async def _clusters_api(self, request: web.Request) -> web.Response:
        names = await asyncio.to_thread(self.clusters)
        return _json({"schema": state.SCHEMA_VERSION, "clusters": names})

    async def _counters(self, request: web.Request) -> web.Response:
        current = await self._read_state(request)
        return _json(
            {
                "schema": state.SCHEMA_VERSION,
                "counters": current.counters,
                "latency": current.latency,
                "dead_letters": current.dead_letters,
            }
        )

    async def _throughput(self, request: web.Request) -> web.Response:
        return _json(
            {
                "schema": state.SCHEMA_VERSION,
                "cluster": self.keys.cluster,
                "interval": self.sample_interval,
                "samples": self.throughput(),
            }
        )

    async def _jobs(self, request: web.Request) -> web.Response:
        """Jobs running, queued and ended lately; ``state``, ``node``, ``client``,
        ``function`` (exact) and ``q`` (part of the job id) keep only the jobs that match."""
        keys = self._keys(request)
        limit = min(max(int(request.query.get("limit", "50")), 1), 1000)
        query = request.query
        wanted = state.JobFilter(
            state=query.get("state", ""),
            node=query.get("node", ""),
            client=query.get("client", ""),
            function=query.get("function", ""),
            search=query.get("q", "").strip(),
        )
        if wanted.state and wanted.state not in state.STATES:
            raise ValueError(f"unknown state {wanted.state!r}: one of {', '.join(state.STATES)}")
        jobs = await asyncio.to_thread(
            state.read_jobs, self.client, keys, limit, self.scripts, wanted
        )
        body: dict[str, Any] = {"schema": state.SCHEMA_VERSION}
        for group, items in jobs.items():
            body[group] = [job.to_dict() for job in items]
        return _json(body)

    async def _functions(self, request: web.Request) -> web.Response:
        """Per-function counts and run times over the ``recent`` stream (``state.summarize``)."""
        keys = self._keys(request)
        summary = await asyncio.to_thread(state.summarize, self.client, keys)
        return _json({"schema": state.SCHEMA_VERSION, **summary})

    async def _job(self, request: web.Request) -> web.Response:
        keys = self._keys(request)
        job_id = request.match_info["id"]
        job = await asyncio.to_thread(state.read_job, self.client, keys, job_id, self.scripts)
        return _json({"schema": state.SCHEMA_VERSION, **job.to_dict()})

    async def _cancel(self, request: web.Request) -> web.Response:
        keys = self._keys(request)
        job_id = request.match_info["id"]
        who = f"the monitor ({request.remote})"
        done = await asyncio.to_thread(
            actions.cancel_job, self.client, keys, self.signer, job_id, who, self.scripts
        )
        return _json(done.to_dict())

    async def _drain(self, request: web.Request) -> web.Response:
        keys = self._keys(request)
        node = request.match_info["name"]
        who = f"the monitor ({request.remote})"
        done = await asyncio.to_thread(
            actions.drain_node, self.client, keys, self.signer, node, who
        )
        return _json(done.to_dict())

    async def _metrics(self, request: web.Request) -> web.Response:
        current = await self._read_state(request)
        return web.Response(
            body=metrics.render(current).encode(),
            headers={"Content-Type": metrics.CONTENT_TYPE},
        )


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(body, sort_keys=True), status=status, content_type="application/json"
    )


def _error(status: int, message: str) -> web.Response:
    return _json({"ok": False, "error": message}, status)


def _is_loopback(bind: str) -> bool:
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False


def _loopback_host(host: str) -> bool:
    """Whether a Host header names this machine's loopback (with or without a port)."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    return name == "localhost" or _is_loopback(name)


def start_monitor(
    setting: bool | int | None,
    url: str,
    cluster: str,
    prefix: str = defaults.KEY_PREFIX,
    secret: str | None = None,
) -> Monitor | None:
    """The in-process monitor of an Executor or JobCluster: ``monitor=True`` on port 8181,
    ``monitor=PORT`` on that port (0: any free one), False/None none."""
    if setting is None or setting is False:
        return None
    port = DEFAULT_PORT if setting is True else int(setting)
    monitor = Monitor(url, cluster, prefix, secret=secret, port=port)
    monitor.start()
    print(f"rdispy monitor: {monitor.url}", file=sys.stderr, flush=True)
    return monitor
