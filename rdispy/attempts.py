"""One attempt of a job, as recorded in the job's record ``job:<job id>`` and in the ``recent``
stream: a small JSON object written by whoever saw the attempt end, in the same Lua step that
publishes its result or settles its entry (no extra round trip).

Fields of the job record that hold attempts: ``hr`` the attempt whose result was published,
``h<i>`` the i-th lost attempt (crash, timeout, cancel, node lost), ``hd<i>`` attempts whose
result was dropped; ``i`` runs in a ring of ATTEMPTS_KEPT, so at most that many of each are kept.
``tb`` holds the traceback (text, at most 8 KiB) of the published attempt when its job raised:
only in the job record (whose TTL is RESULT_TTL), never in the ``recent`` stream.

Fields (absent when unknown)::

    id          job id
    node        node name                  incarnation  the node's incarnation
    pid         consumer process id        slot         consumer slot on the node
    start, end  node-local wall time (seconds since the epoch, that node's clock)
    outcome     "ok" | "exception" | "crashed" | "timeout" | "cancelled" | "node lost"
                | "out of memory"
    error       "ValueError: bad input", "killed by signal SIGKILL", ... (not for "ok"); an
                exception's message is cut to 500 characters
    etype       the exception's type name ("ValueError"), for outcome "exception"
    fn          what the job ran: its entry's ``fq`` (``module.qualname``, or a program's name)
    args        a program job's arguments (its entry's ``fa``)
    rss_kib     peak resident memory of the consumer process so far (ru_maxrss), KiB
    reporter    node that recorded a lost node's attempt
    dropped     true (added when read) when the attempt ended after another attempt had taken
                over its job (its result was not delivered)
"""

from __future__ import annotations

import json
from typing import Any

#: Attempts kept per job (older ones are trimmed).
ATTEMPTS_KEPT = 10
#: Entries kept (approximately) in the ``recent`` stream.
RECENT_KEPT = 1000
#: Function labels whose JSON a consumer keeps ready (forgotten all at once past this).
FNS_KEPT = 1024

OUTCOMES = ("ok", "exception", "crashed", "timeout", "cancelled", "node lost", "out of memory")


def encode(attempt: dict[str, Any]) -> str:
    """The attempt as compact JSON (None values left out)."""
    return json.dumps({k: v for k, v in attempt.items() if v is not None}, separators=(",", ":"))


class Template:
    """Fast JSON of a consumer's attempts: the fields that never change for a consumer are
    encoded once; a job adds its id, times, outcome and memory (``encode`` costs ~10 us a job,
    too much on the hot path of a no-op)."""

    def __init__(self, constant: dict[str, Any]) -> None:
        self._tail = encode(constant)[1:]  # '"node":...}' without the opening brace
        self._fns: dict[bytes, str] = {}  # an entry's fq -> its '"fn":...,' (one dict lookup)

    def render(
        self,
        job_id: str,
        start: float,
        end: float,
        ok: bool,
        error: str,
        rss_kib: int | None,
        fn: bytes = b"",
        etype: str = "",
        args: bytes = b"",
    ) -> str:
        quoted = f'"{job_id}"' if _PLAIN.issuperset(job_id) else json.dumps(job_id)
        head = f'{{"id":{quoted},"start":{start:.6f},"end":{end:.6f},'
        if ok:
            head += '"outcome":"ok",'
        else:
            head += f'"outcome":"exception","error":{json.dumps(error)},'
            if etype:
                head += f'"etype":{json.dumps(etype)},'
        if rss_kib is not None:
            head += f'"rss_kib":{rss_kib},'
        if fn:
            field = self._fns.get(fn)
            if field is None:
                if len(self._fns) >= FNS_KEPT:
                    self._fns.clear()
                field = self._fns[fn] = f'"fn":{json.dumps(fn.decode(errors="replace"))},'
            head += field
        if args:  # a program job's arguments (its entry's ``fa``)
            head += f'"args":{json.dumps(args.decode(errors="replace"))},'
        return head + self._tail


#: Characters a job id may hold that need no escaping in JSON.
_PLAIN = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "\\"}


def decode(raw: bytes | str) -> dict[str, Any]:
    """An attempt read back; a malformed one becomes ``{"error": "unreadable attempt"}``."""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {"outcome": "?", "error": "unreadable attempt record"}
    return value if isinstance(value, dict) else {"outcome": "?", "error": "unreadable"}


def from_record(record: dict[str, str]) -> list[dict[str, Any]]:
    """A job's attempts from its record's fields, in the order they ended (by each attempt's
    end time, which is its node's clock; the published attempt last among equals)."""
    found: list[tuple[float, int, dict[str, Any]]] = []
    for name, raw in record.items():
        if not name.startswith("h") or not (name == "hr" or name[1:].lstrip("d").isdigit()):
            continue
        attempt = decode(raw)
        if name.startswith("hd"):
            attempt["dropped"] = True
        when = attempt.get("end") or attempt.get("start") or 0.0
        order = 2 if name == "hr" else 1
        found.append((float(when) if isinstance(when, int | float) else 0.0, order, attempt))
    found.sort(key=lambda item: (item[0], item[1]))
    return [attempt for _, _, attempt in found]
