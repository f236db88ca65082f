"""A recovered map chunk as one future per call.

``Executor.map`` sends its calls in chunks, one job each, whose result is the chunk's values and
the first error. A client that reattaches (``recover_jobs``, ``rdispy.recover``) gets a future per
call, as if each had been submitted alone: ``per_call`` replaces each chunk job whose call count
is known (the ``n`` field of its entry or result) by that many ``ChunkCall`` futures, resolved
when the chunk's result arrives. A chunk whose count is unknown (its result was written by an
older node) stays one future, whose value is the list of its calls' values.
"""

from __future__ import annotations

import functools
from concurrent.futures import Future
from typing import Any

from rdispy import serialization
from rdispy.client.future import RemoteFuture
from rdispy.errors import JobError


class ChunkCall(RemoteFuture):
    """Call ``index`` of the map chunk job ``chunk``; cancelling it cancels the chunk."""

    def __init__(self, chunk: RemoteFuture, index: int) -> None:
        super().__init__(f"{chunk.job_id}.{index}", chunk._owner)
        self.chunk, self.index = chunk, index
        self.stream, self.entry_id = chunk.stream, chunk.entry_id

    def cancel(self) -> bool:
        if self.done():
            return self.cancelled()
        return self.chunk.cancel()

    def running(self) -> bool:
        return self.chunk.running() and not self.done()


def per_call(futures: list[RemoteFuture]) -> list[RemoteFuture]:
    """``futures`` with every chunk of known size replaced by a future per call."""
    out: list[RemoteFuture] = []
    for future in futures:
        if future.chunk_calls is None:
            out.append(future)
        elif future.chunk_calls < 0:  # a chunk of unknown size: one future, a list of values
            whole = ChunkCall(future, -1)
            future.add_done_callback(functools.partial(_settle_whole, whole=whole))
            out.append(whole)
        else:
            calls = [ChunkCall(future, i) for i in range(future.chunk_calls)]
            if calls:
                future.add_done_callback(functools.partial(_settle, calls=calls))
            out.extend(calls)
    return out


def _settle_whole(chunk: Future[Any], whole: ChunkCall) -> None:
    if chunk.cancelled():
        if Future.cancel(whole):
            whole.set_running_or_notify_cancel()
    elif chunk.exception() is not None:
        Future.set_exception(whole, chunk.exception())
    else:
        values, failure = chunk.result()
        if failure is not None:
            Future.set_exception(whole, serialization.load_exception(failure, whole.job_id))
        else:
            Future.set_result(whole, list(values))


def _settle(chunk: Future[Any], calls: list[ChunkCall]) -> None:
    source = calls[0].chunk
    for call in calls:
        call.node, call.ip_addr, call.pid = source.node, source.ip_addr, source.pid
        call.start_time, call.end_time = source.start_time, source.end_time
    if chunk.cancelled():
        for call in calls:
            if Future.cancel(call):
                call.set_running_or_notify_cancel()
        return
    error = chunk.exception()
    if error is not None:
        for call in calls:
            Future.set_exception(call, error)
        return
    values, failure = chunk.result()
    for call, value in zip(calls, values, strict=False):
        Future.set_result(call, value)
    rest = calls[len(values) :]
    if failure is not None and rest:
        Future.set_exception(rest[0], serialization.load_exception(failure, source.job_id))
        rest = rest[1:]
    for call in rest:
        Future.set_exception(
            call,
            JobError("not run: an earlier call of its map chunk raised", call.job_id),
        )
