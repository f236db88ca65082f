"""The wire format: what goes into a stream entry, signed and size-checked.

A job entry and a result entry are flat Redis stream fields (bytes -> bytes).  Small readable
header fields sit beside one opaque pickled payload field, so that nodes and tools can route and
inspect entries without unpickling anything.  ``F`` names every field (bytes), ``N`` the same
names as text (the keys of a mapping given to ``encode``); ``JobHeader`` and ``ResultHeader``
decode them.  The tables below list every field, one a line (a test checks them against ``F``).

Job entry fields (a client's ``<cluster>:jobs`` or ``<cluster>:node:<name>:jobs`` stream)::

    v        protocol version (``VERSION``), in every entry this module makes
    id       job id
    c        client id: the job's result stream is that client's
    fn       function blob digest
    k        kind: "call" | "chunk"
    p        pickled payload (arguments; a map chunk's calls)
    n        calls in a map chunk (kind "chunk")
    r        max retries
    t        submit time (the client's clock)
    x        expiry (signed entries)
    sm       the client's same-host handoff folder ("<host id>:<name>", see ``handoff``)
    pf       a payload handed over in a file of the ``sm`` folder instead of ``p``: its name
    pz       that file's sha256
    fq       what the job runs, for people (the monitor; nothing runs by it): a function's
             ``module.qualname`` (``function_label``), or a program's file name; at most 200 bytes
    fa       a program job's arguments as one line (``program_arguments``), at most 200 bytes
    rt       the client's runtime tag (``serialization.runtime_tag``: Python and cloudpickle minor
             versions); a node of another runtime hands the entry to a live node of that runtime,
             or refuses it naming both when there is none
    cl       JobCluster session id (the node's session folder, setup and cleanup)
    to       timeout in seconds (empty or 0: none)
    cp       cores the job needs (1 when absent)
    nd       the node it is placed on (its own stream); also set when a node hands it on
    ev       "1": report the job's start ("run" result event) - someone listens
    dp       digest of the session's dependency manifest (files in the session folder)
    su       digest of the session's setup function blob
    sa       digest of the pickled setup arguments (per node)
    cu       digest of the session's cleanup function blob
    sig      HMAC-SHA256 over all other fields (only with a secret)

Result entry fields (a client's ``<cluster>:results:<client>`` stream); ``v``, ``id``, ``x``,
``sig``, ``p``, ``pf``/``pz`` (a result handed over in a file of the job's ``sm`` folder) as in
a job entry, and::

    k        "ok" | "exc" | "lost" | "cancelled" | "refused"; events (the job goes on): "run",
             "prov", "file", "excl", "need", "moved"; "wake" (no id: ends the client's read)
    node     the node that ran it (or refused, lost, moved it)
    ip       that node's address
    pid      the consumer process that ran it
    ck       a map chunk's call count
    t0       start time (``repr`` of a float, the node's clock)
    t1       end time
    out      captured standard output
    err      captured standard error
    why      text reason for "lost", "cancelled", "refused" and "excl"
    cause    why a job was lost: "timeout" | "cancel" | "memory" | "node" | a crash
    stream   "moved": the stream the entry now waits in (that node's)
    eid      "moved": its entry id there
    name     "file": the file's name (relative, under the client's dest_path)
    mode     "file": its permission bits (decimal)

Control entry fields (``<cluster>:control``, read by every node; ``v``, ``x``, ``sig``, and
``id`` of the job to cancel, ``node`` to drain)::

    op       "close" | "drain" | "cancel"
    session  "close": the session that is over
    rm       "close": "1" to remove the session's folder too

Dead-letter fields (``<cluster>:dead``: entries refused; also ``id``, ``node``)::

    entry    the refused entry's id
    reason   why it was refused

Attempt record fields (``<cluster>:recent``, written by the scripts)::

    a        the attempt as JSON (``attempts``)
    d        "1": a dropped attempt (a duplicate run whose result was not delivered)

With a secret every entry is signed over its fields and the stream it is written to, and
``verify`` runs before anything is unpickled.  Entries without a valid signature are refused.
"""

from __future__ import annotations

from rdispy.wire import checks, fields, headers, signing
from rdispy.wire.checks import (
    JOB_FIELDS,
    JOB_KINDS,
    LABEL_MAX,
    check_file_name,
    client_of,
    function_label,
    is_file_name,
    program_arguments,
    program_label,
    validate_job,
)
from rdispy.wire.fields import (
    VERSION,
    F,
    Fields,
    N,
    encode,
    field_names,
    refusal_fields,
    result_fields,
)
from rdispy.wire.headers import JobHeader, ResultHeader
from rdispy.wire.signing import Signer, blob_digest, check_size

__all__ = [
    "F",
    "JOB_FIELDS",
    "JOB_KINDS",
    "LABEL_MAX",
    "VERSION",
    "Fields",
    "JobHeader",
    "N",
    "ResultHeader",
    "Signer",
    "blob_digest",
    "check_file_name",
    "check_size",
    "checks",
    "client_of",
    "encode",
    "field_names",
    "fields",
    "function_label",
    "headers",
    "is_file_name",
    "program_arguments",
    "program_label",
    "refusal_fields",
    "result_fields",
    "signing",
    "validate_job",
]
