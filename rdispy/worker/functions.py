"""The consumer's cache of unpickled job functions, keyed by the digest of their blob.

A client uploads each function once as a blob; every job entry names it by digest.  A consumer
unpickles a function the first time a job needs it and keeps the most recently used ones.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import redis

from rdispy import serialization
from rdispy.errors import JobError
from rdispy.keys import Keys


class FunctionCache:
    """Unpickled functions by blob digest, least recently used dropped first."""

    def __init__(self, client: redis.Redis, keys: Keys, size: int = 256) -> None:
        self._client, self._keys, self._size = client, keys, size
        self._fns: OrderedDict[bytes, Callable[..., Any]] = OrderedDict()

    def get(self, digest: bytes, job_id: str) -> Callable[..., Any]:
        cached = self._fns.get(digest)
        if cached is not None:
            self._fns.move_to_end(digest)
            return cached
        blob: bytes | None = self._client.get(self._keys.blob(digest.decode()))  # type: ignore[assignment]
        if blob is None:
            raise JobError(
                f"function blob {digest.decode()[:12]} is missing (expired?); submit the job again",
                job_id,
            )
        fn: Callable[..., Any] = serialization.loads(blob, "function", job_id)
        self._fns[digest] = fn
        if len(self._fns) > self._size:
            self._fns.popitem(last=False)
        return fn
