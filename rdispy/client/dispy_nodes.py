"""How a JobCluster knows and uses nodes, as dispy's does: which live nodes it may use (its
``nodes`` selectors and their NodeAllocate's ``allocate``, asked once per node), nodes joining
and leaving told to ``cluster_status``, jobs queued on a node that left moved to another,
and dispy's node calls (``allocate_node``, ``deallocate_node``, ``resetup_node``,
``close_node``, ``discover_nodes``, ``nodes``, ``node_jobs``).

``NodeManagement`` is a part of ``JobCluster`` (a base class of it) and works on the cluster's
own state, declared here.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from rdispy import avail, serialization, wire
from rdispy.client.dispatcher import Dispatcher
from rdispy.client.dispy_job import DispyJob, DispyNode
from rdispy.client.dispy_reports import JobReports
from rdispy.client.future import RemoteFuture
from rdispy.client.placing import NodeCaps, NodeLoads
from rdispy.errors import NodeLost, NoNodesError
from rdispy.nodes import live_nodes
from rdispy.scheduler import placement
from rdispy.scheduler.placement import NodeLoad

log = logging.getLogger(__name__)


class NodeManagement:
    """JobCluster's nodes: selection, allocation, node events and dispy's node calls."""

    cluster_status: Any
    _dispatcher: Dispatcher
    _loads: NodeLoads
    _reports: JobReports
    _selectors: list[Any] | None
    _excluded: list[Any]
    _known_nodes: dict[str, DispyNode]
    _watch_lock: threading.Lock
    _allocations: dict[tuple[int, str], int]
    _node_fields: dict[str, dict[str, object]]
    _node_depends: dict[str, list[Any]]
    _pending: set[DispyJob]
    _caps: NodeCaps[DispyJob]
    _header: dict[str, object]
    node_wait: float

    if TYPE_CHECKING:  # JobCluster's own, used here

        def cancel(self, job: DispyJob) -> int: ...

        def _manifest(self, extra: Any) -> str: ...

    def _node_loads(self) -> list[NodeLoad]:
        """Live nodes and their load, refreshed at most every 0.25 s."""
        return self._loads.current()

    def _allowance(self, selector: Any, node: NodeLoad) -> int:
        """The cores ``selector`` lets this cluster use on ``node``.  A NodeAllocate's
        ``allocate`` runs once per node (again after ``resetup_node``); the ``depends`` and
        ``setup_args`` it leaves on itself then go with every job placed on that node."""
        if not isinstance(selector, placement.NodeAllocate):
            return node.cpus
        key = (id(selector), node.name)
        cpus = self._allocations.get(key)
        if cpus is None:
            cpus = self._allocations[key] = placement.ask_allocate(selector, node, self)
            fields: dict[str, object] = {}
            depends = getattr(selector, "depends", None) or []
            if depends:
                fields[wire.N.DEPENDS] = self._manifest(depends)
                self._node_depends[node.name] = list(depends)
            setup_args = getattr(selector, "setup_args", None)
            if setup_args:
                blob = serialization.dumps(tuple(setup_args), "setup_args")
                fields[wire.N.SETUP_ARGS] = self._dispatcher.upload_blob(blob)
            self._node_fields[node.name] = fields
        return cpus

    def _rescue_stranded(self) -> None:
        """Jobs waiting in the stream of a node that has gone: move them to another eligible
        node, or fail them with NodeLost when they were pinned there (a periodic check, run by
        the results thread)."""
        placed = [j for j in list(self._pending) if j._selectors is not None]
        if not placed:
            return
        live = {n.name for n in self._node_loads()}
        for job in placed:
            future: RemoteFuture | None = job._future
            if future is None or future.done() or job.start_time is not None:
                continue
            node = self._dispatcher.keys.node_of_jobs(future.stream)
            if node is None or node in live:
                continue
            if job._pinned:
                if self._dispatcher.cancel_remote(future):
                    lost = NodeLost(f"node {node} left before the job started", future.job_id)
                    Future.set_exception(future, lost)
                continue
            try:
                other = self._place(job._selectors or [], node, wait=False, need=job._cpus)
            except NoNodesError:
                continue
            if self._dispatcher.move(future, other, self._placed_fields(job, other)):
                log.info("job %s moved from lost node %s to %s", job.id, node, other)

    def _watch_nodes(self) -> None:
        """Report nodes joining (Initialized) and leaving or lost (Closed) to cluster_status."""
        with self._watch_lock:
            self._watch_nodes_locked()

    def _watch_nodes_locked(self) -> None:
        current = {n.name: n for n in self.nodes()}
        if self._selectors is not None:  # a node is this cluster's once its selector allows it
            allowed = {
                n.name: n.cpus
                for n in placement.eligible(
                    self._node_loads(), self._selectors, self, self._allowance
                )
            }
            current = {name: n for name, n in current.items() if allowed.get(name, 0) > 0}
            for name, node in current.items():
                node.cpus = min(node.cpus, allowed[name])
                node.avail_cpus = min(node.avail_cpus, node.cpus)
        for name in current.keys() - self._known_nodes.keys():
            self._reports.node(DispyNode.Initialized, current[name])
        for name in self._known_nodes.keys() - current.keys():
            self._reports.node(DispyNode.Closed, self._known_nodes[name])
        self._known_nodes = current

    def _exclude_node(self, node: str, ip: str, why: str) -> None:
        """A node whose setup failed: no more jobs are placed there (its consumers hand back
        those that reach them), and cluster_status hears it closed, as in dispy."""
        if node in self._excluded:
            return
        log.warning("%s; excluding it from this cluster", why)
        self._excluded.append(node)
        if self.cluster_status:
            closed = DispyNode(name=node, ip_addr=ip, cpus=0, avail_cpus=0)
            self._reports.node(DispyNode.Closed, closed)

    def node_jobs(self, node: DispyNode | str) -> list[DispyJob]:
        """This cluster's jobs running on ``node`` now."""
        name = node.name if isinstance(node, DispyNode) else str(node)
        return [
            j
            for j in list(self._pending)
            if j.status == DispyJob.Running and name in (j.node, j.ip_addr)
        ]

    def allocate_node(self, node: Any) -> int:
        """Let the cluster use ``node`` (a name, IP, pattern or NodeAllocate), or nodes."""
        selectors = node if isinstance(node, list) else [node]
        self._excluded = [x for x in self._excluded if x not in selectors]
        if self._selectors is not None:
            self._selectors.extend(selectors)
        return 0

    def resetup_node(self, node: DispyNode | str, terminate_pending: bool = False) -> int:
        """Set ``node`` up again: its NodeAllocate's ``allocate`` runs again, and jobs placed
        there from now on run ``cleanup`` then ``setup`` with the new ``setup_args`` and
        ``depends`` first.  With ``terminate_pending`` this cluster's jobs running there are
        cancelled.  Returns 0, as dispy does."""
        name = self._node_name(node)
        if terminate_pending:
            for job in self.node_jobs(name):
                self.cancel(job)
        for key in [k for k in self._allocations if k[1] == name]:
            del self._allocations[key]
        self._node_fields.pop(name, None)
        self._node_depends.pop(name, None)
        return 0

    def close_node(self, node: DispyNode | str, terminate_pending: bool = False) -> int:
        """Stop using ``node`` for this cluster (jobs running there finish, or are cancelled
        with ``terminate_pending``).  Returns 0, as dispy does."""
        name = self._node_name(node)
        if terminate_pending:
            for job in self.node_jobs(name):
                self.cancel(job)
        self.deallocate_node(name)
        return 0

    def discover_nodes(self, nodes: Any) -> int:
        """dispy looks for these nodes on the network; rdispy's nodes register in Redis, so this
        lets the cluster use them (as ``allocate_node``) and reports new ones to
        ``cluster_status`` at once.  Returns 0."""
        selectors = nodes if isinstance(nodes, list) else [nodes]
        if self._selectors is not None:
            self.allocate_node([s for s in selectors if s not in self._selectors])
        self._excluded = [x for x in self._excluded if x not in selectors]
        if self.cluster_status:
            self._watch_nodes()
        return 0

    def _node_name(self, node: DispyNode | str) -> str:
        """A node's name from a DispyNode, a name or an IP address."""
        if isinstance(node, DispyNode):
            return node.name
        for load in self._node_loads():
            if str(node) in (load.name, load.ip):
                return load.name
        return str(node)

    def deallocate_node(self, node: Any) -> int:
        """Stop sending new jobs to ``node`` (a name, IP or pattern); running ones finish."""
        self._excluded.append(node.name if isinstance(node, DispyNode) else node)
        return 0

    def nodes(self) -> list[DispyNode]:
        """The cluster's live nodes."""
        return [
            DispyNode(
                name=rec["name"],
                ip_addr=rec.get("ip", ""),
                cpus=int(rec.get("cpus", 0)),
                avail_cpus=int(rec.get("cpus", 0)) - int(rec.get("busy", 0)),
                busy=int(rec.get("busy", 0)),
                jobs_done=int(rec.get("done", 0)),
                platform=rec.get("platform", ""),
                avail_info=avail.from_record(rec),
            )
            for rec in live_nodes(
                self._dispatcher.client, self._dispatcher.keys, self._dispatcher.signer
            )
        ]

    def _await_local_node(self, timeout: float = 10.0) -> None:
        """The embedded default's node registers within a moment; wait for it, so that
        ``nodes()`` and ``submit_node`` see it as a dispy program expects."""
        deadline = time.monotonic() + timeout
        while not live_nodes(
            self._dispatcher.client, self._dispatcher.keys, self._dispatcher.signer
        ):
            if time.monotonic() > deadline:
                raise NoNodesError(f"the local node did not register within {timeout:g}s")
            time.sleep(0.01)

    def _placed_fields(self, job: DispyJob, node: str) -> dict[str, object | None]:
        """The entry fields that follow the node a job is placed on (None: not sent): its
        NodeAllocate's ``setup_args`` and ``depends`` (with the job's own), else the cluster's."""
        fields: dict[str, object | None] = {
            wire.N.DEPENDS: self._header.get(wire.N.DEPENDS),
            wire.N.SETUP_ARGS: None,
        }
        fields.update(self._node_fields.get(node, {}))
        if job._depends:
            fields[wire.N.DEPENDS] = self._manifest(
                [*self._node_depends.get(node, []), *job._depends]
            )
        return fields

    def _place(
        self, selectors: list[Any], exclude: str | None = None, wait: bool = True, need: int = 1
    ) -> str:
        """The least loaded live node the selectors admit; waits up to ``node_wait`` for one,
        then raises NoNodesError naming the constraint (dispy would hang here)."""
        deadline = time.monotonic() + (self.node_wait if wait else 0.0)
        while True:
            loads = [
                self._loads.with_placed(n)
                for n in self._node_loads()
                if n.name != exclude
                and n.cpus >= need
                and not any(placement.matches(n, x) for x in self._excluded)
                and self._caps.under(n.name)
            ]
            best = placement.choose(placement.eligible(loads, selectors, self, self._allowance))
            if best is not None:
                self._loads.note_placed(best.name)
                return best.name
            if time.monotonic() >= deadline:
                cores = f" with {need} cores" if need > 1 else ""
                raise NoNodesError(
                    f"no live node{cores} matches {placement.describe(selectors)} after waiting "
                    f"{self.node_wait:g}s; start `rdispy worker --name ...` on one, or widen nodes="
                )
            time.sleep(0.2)
