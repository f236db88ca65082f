"""A job's payloads on the node: its arguments coming in, its result going out.

Arguments come inline in the job entry, or (when large) in a handoff file: read from the
client's folder when the client shares this host, else asked for (a "need" event) and read from
the blob the client then uploads.  A large result goes back through a handoff file when the
client shares this host, otherwise inline in the result entry.
"""

from __future__ import annotations

import logging
import time

import redis

from rdispy import handoff, wire
from rdispy.errors import DeserializationError, JobError
from rdispy.keys import Keys
from rdispy.worker import runner
from rdispy.worker.publishing import Events

log = logging.getLogger(__name__)

#: Seconds a consumer that cannot read a job's argument file waits for its client to upload it.
HANDOFF_WAIT = 30.0


class Payloads:
    """Where one consumer's jobs find their arguments and leave their results."""

    def __init__(self, client: redis.Redis, keys: Keys, events: Events) -> None:
        self.client, self.keys, self.events = client, keys, events

    def arguments(self, fields: dict[bytes, bytes], job_id: str) -> bytes:
        """The pickled arguments: inline, in the client's handoff file on this host, or (from
        another host) uploaded by the client as a blob on request."""
        inline = fields.get(wire.F.PAYLOAD)
        if inline:
            return inline
        name, expected = fields[wire.F.PAYLOAD_FILE].decode(), fields[wire.F.PAYLOAD_HASH].decode()
        folder = handoff.local_folder(fields[wire.F.HANDOFF])
        if folder is not None:
            try:
                return handoff.read(folder, name, expected, job_id)
            except OSError as exc:
                log.warning("job %s: argument file unreadable (%s); asking for it", job_id, exc)
        key = self.keys.blob(expected)
        deadline = time.monotonic() + HANDOFF_WAIT
        pause, asked = 0.002, False
        while True:
            data: bytes | None = self.client.get(key)  # type: ignore[assignment]
            if data is not None:
                if handoff.digest(data) != expected:
                    raise DeserializationError("uploaded arguments do not match their hash", job_id)
                return data
            if not asked:
                self.events.emit(
                    self.keys.results(fields[wire.F.CLIENT].decode()), job_id, {wire.N.KIND: "need"}
                )
                asked = True
            if time.monotonic() > deadline:
                raise JobError(
                    f"the job's arguments are in a file on its client's host and the client did "
                    f"not upload them within {HANDOFF_WAIT:g}s (client gone?)",
                    job_id,
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def hand_back(self, fields: dict[bytes, bytes], outcome: runner.Outcome) -> wire.Fields:
        """Result payload fields: a large result goes through a file when the client shares
        this host; otherwise (or if the file cannot be written) inline."""
        sm = fields.get(wire.F.HANDOFF)
        if outcome.kind == "ok" and sm and len(outcome.payload) >= handoff.MIN_BYTES:
            folder = handoff.local_folder(sm)
            if folder is not None:
                name = handoff.result_name()
                try:
                    digest = handoff.write(folder, name, outcome.payload)
                    return {
                        wire.F.PAYLOAD_FILE: name.encode(),
                        wire.F.PAYLOAD_HASH: digest.encode(),
                    }
                except OSError as exc:
                    handoff.remove(folder, name)
                    log.debug("result file not written (%s); sending it inline", exc)
        return {wire.F.PAYLOAD: outcome.payload}
