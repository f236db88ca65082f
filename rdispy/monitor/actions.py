"""What an operator may do to a cluster from outside its clients: cancel a job, drain a node.

Both go through what nodes and clients already understand, signed with the cluster's secret
when one is set:

- cancel a job still queued: the WITHDRAW script deletes its entry (only while no consumer has
  it) and tells its client with a ``cancelled`` result, so the client's future ends cancelled;
- cancel a running job: a ``cancel`` control message; the node running it stops its process
  group and the client gets JobTerminated (dispy's Terminated);
- drain a node: a ``drain`` control message; the node finishes its running jobs, takes no new
  ones, gives back those it had taken, deregisters and exits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from rdispy import defaults, wire
from rdispy.errors import ActionError
from rdispy.keys import CONSUMER_GROUP, Keys
from rdispy.monitor.jobs import read_job
from rdispy.nodes import live_nodes
from rdispy.scripts import Scripts

log = logging.getLogger(__name__)


@dataclass
class ActionResult:
    ok: bool
    what: str  # "withdrawn", "stop requested", "drain requested", ...

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "result": self.what}


def send_control(
    client: redis.Redis, keys: Keys, signer: wire.Signer, message: dict[str, str]
) -> None:
    fields = signer.sign(keys.control, wire.encode(message))
    client.xadd(keys.control, fields, maxlen=1000, approximate=True)  # type: ignore[arg-type]


def _check_secret(client: redis.Redis, keys: Keys, signer: wire.Signer) -> None:
    """Refuse to act without the secret on a cluster whose nodes sign their records: nodes and
    clients would ignore the unsigned messages."""
    if not signer.enabled and any(rec.get("sig") for rec in live_nodes(client, keys)):
        raise ActionError(
            f"cluster {keys.cluster} uses a shared secret: give the monitor the same one "
            f"(--secret or ${defaults.ENV_SECRET}), or nodes and clients ignore its messages"
        )


def cancel_job(
    client: redis.Redis,
    keys: Keys,
    signer: wire.Signer,
    job_id: str,
    who: str = "the monitor",
    scripts: Scripts | None = None,
) -> ActionResult:
    """Cancel a job: withdraw it if queued, else ask its node to stop it."""
    scripts = scripts or Scripts(client)
    _check_secret(client, keys, signer)
    for _ in range(3):  # an entry may move (fair queue -> shared stream) while we look
        job = read_job(client, keys, job_id, scripts)
        if job.state in ("finished", "failed", "cancelled"):
            raise ActionError(f"job {job_id} has already ended ({job.state})")
        if job.state == "running":
            send_control(client, keys, signer, {wire.N.OP: "cancel", wire.N.ID: job_id})
            log.info("job=%s: asked node %s to stop it (%s)", job_id, job.node, who)
            return ActionResult(True, f"stop requested on node {job.node}")
        if not job.stream:
            break
        results = keys.results(job.client)
        message = signer.sign(
            results,
            wire.encode(
                {wire.N.ID: job_id, wire.N.KIND: "cancelled", wire.N.WHY: f"cancelled by {who}"}
            ),
        )
        done = int(
            scripts.withdraw(
                keys=[job.stream, keys.job(job_id), results, keys.counters],
                args=[
                    CONSUMER_GROUP,
                    job.entry,
                    defaults.RESULT_TTL,
                    *[x for pair in message.items() for x in pair],
                ],
            )
        )
        if done == 1:
            log.info("job=%s: withdrawn from %s (%s)", job_id, job.stream, who)
            return ActionResult(True, "withdrawn from its queue")
        if done == 2:
            raise ActionError(f"job {job_id} has already ended")
        # a consumer took it meanwhile, or it moved: look again
    raise ActionError(
        f"job {job_id} is neither queued nor running (unknown, expired, or between attempts)"
    )


def drain_node(
    client: redis.Redis, keys: Keys, signer: wire.Signer, node: str, who: str = "the monitor"
) -> ActionResult:
    """Ask a live node to drain: finish running jobs, take no more, deregister and exit."""
    _check_secret(client, keys, signer)
    if node not in {rec.get("name") for rec in live_nodes(client, keys, signer)}:
        raise ActionError(f"no live node named {node!r} in cluster {keys.cluster}")
    send_control(client, keys, signer, {wire.N.OP: "drain", wire.N.NODE: node})
    log.info("node %s: drain requested (%s)", node, who)
    return ActionResult(True, "drain requested")
