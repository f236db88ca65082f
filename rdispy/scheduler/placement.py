"""Choosing a node for a job that may run only on some nodes (pure: no I/O).

A node's load is (busy cores + jobs waiting in its own stream) / cores, from its heartbeat and
the stream's length; the least loaded eligible node wins, ties broken by name.  Patterns are
node names or IP addresses with shell wildcards (``"10.0.0.*"``, ``"gpu-*"``), or
``NodeAllocate`` objects as in dispy.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NodeLoad:
    name: str
    ip: str
    cpus: int
    busy: int = 0
    queued: int = 0
    platform: str = ""
    avail: Any = None  # the node's DispyNodeAvailInfo, when it sends one

    @property
    def load(self) -> float:
        return (self.busy + self.queued) / max(self.cpus, 1)


class NodeAllocate:
    """dispy's node selector: ``host`` is a name or IP pattern; ``allocate`` returns how many
    cores of a matching node the cluster may use (0 or less excludes it).  Subclass and
    override ``allocate`` to decide by platform or free memory, as in dispy; an ``allocate``
    may also set ``self.depends`` (files) and ``self.setup_args`` (a tuple) for that node: its
    jobs then find those files, and the cluster's ``setup`` is called with those arguments."""

    def __init__(
        self,
        host: str = "*",
        port: int | None = None,
        cpus: int = 0,
        depends: list[Any] | None = None,
        setup_args: tuple[Any, ...] = (),
        *,
        node: str | None = None,
    ) -> None:
        if not isinstance(setup_args, tuple):
            raise TypeError("setup_args must be a tuple")
        self.node = node if node is not None else host
        self.port = port
        self.cpus = cpus
        self.depends = list(depends or [])
        self.setup_args = setup_args

    def allocate(
        self,
        cluster: Any,
        ip_addr: str,
        name: str,
        cpus: int,
        avail_info: Any = None,
        platform: str = "",
    ) -> int:
        """The cores of node ``name`` (which has ``cpus``) the cluster may use: ``self.cpus``
        of them when positive, all but ``-self.cpus`` when negative, else all."""
        if self.cpus > 0:
            return min(self.cpus, cpus)
        return cpus + self.cpus if self.cpus < 0 else cpus


#: How a cluster asks a selector for the cores it may use on a node (by default: ``allocate``).
Allowance = Callable[[Any, NodeLoad], int]


def ask_allocate(selector: Any, node: NodeLoad, cluster: Any = None) -> int:
    if isinstance(selector, NodeAllocate):
        return selector.allocate(cluster, node.ip, node.name, node.cpus, node.avail, node.platform)
    return node.cpus


def _pattern(selector: Any) -> str:
    return selector.node if isinstance(selector, NodeAllocate) else str(selector)


def matches(node: NodeLoad, selector: Any) -> bool:
    pattern = _pattern(selector)
    return fnmatch.fnmatchcase(node.name, pattern) or fnmatch.fnmatchcase(node.ip, pattern)


def eligible(
    nodes: Iterable[NodeLoad],
    selectors: Sequence[Any],
    cluster: Any = None,
    allowance: Allowance | None = None,
) -> list[NodeLoad]:
    """Nodes any selector admits, each with the cores the selector allows it (``allowance``,
    else each NodeAllocate's ``allocate``)."""
    chosen = []
    for node in nodes:
        for selector in selectors:
            if not matches(node, selector):
                continue
            if allowance is not None:
                cpus = allowance(selector, node)
            else:
                cpus = ask_allocate(selector, node, cluster)
            if cpus > 0:
                chosen.append(
                    NodeLoad(
                        node.name, node.ip, cpus, node.busy, node.queued, node.platform, node.avail
                    )
                )
            break
    return chosen


def choose(candidates: Iterable[NodeLoad]) -> NodeLoad | None:
    """The least loaded candidate, or None."""
    return min(candidates, key=lambda n: (n.load, n.name), default=None)


def describe(selectors: Sequence[Any]) -> str:
    return ", ".join(repr(_pattern(s)) for s in selectors)
