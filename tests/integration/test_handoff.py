"""Large arguments and results between a client and consumers on one host go through files, and
through Redis when the consumer cannot read the client's files (another host); nothing is left."""

from __future__ import annotations

import os

import pytest

from rdispy import handoff
from rdispy.keys import Keys
from tests.helpers import executor, wait_until

pytestmark = pytest.mark.integration

SIZE = 2 * handoff.MIN_BYTES


def describe(data: bytes, folder: str) -> tuple[int, list[str]]:
    """The argument's length, and the handoff files the job saw while it ran."""
    return len(data), sorted(os.listdir(folder))


def echo(data: bytes) -> bytes:
    return data


def test_same_host_handoff_through_files(redis_url: str, start_worker, cluster: str) -> None:
    start_worker(redis_url, 1)
    data = os.urandom(SIZE)
    with executor(redis_url, cluster=cluster) as ex:
        folder = ex._dispatcher.handoff
        assert folder is not None
        length, seen = ex.submit(describe, data, str(folder.path)).result(timeout=30)
        assert length == SIZE and seen == ["a-1"]  # the argument went through its file
        assert ex.submit(echo, data).result(timeout=30) == data  # and the result back
        wait_until(lambda: not os.listdir(folder.path), "handoff files removed")
        path = folder.path
    assert not path.exists()


def test_consumer_without_access_gets_the_payload_through_redis(
    redis_url: str, start_worker, cluster: str, rclient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(handoff.ENV_HANDOFF, "0")  # the worker acts as if on another host
    start_worker(redis_url, 1)
    monkeypatch.delenv(handoff.ENV_HANDOFF)
    data = os.urandom(SIZE)
    with executor(redis_url, cluster=cluster) as ex:
        folder = ex._dispatcher.handoff
        assert folder is not None
        assert ex.submit(echo, data).result(timeout=30) == data
        wait_until(lambda: not os.listdir(folder.path), "argument file removed")
        blob = Keys(cluster).blob(handoff.digest(b"x"))
        leftovers = rclient.keys(blob.rsplit(":", 1)[0] + ":*")
        # the uploaded argument blob went with the result; only the function's blob remains
        assert len(leftovers) == 1


def test_redis_only_when_handoff_is_off(
    redis_url: str, start_worker, cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(handoff.ENV_HANDOFF, "0")
    start_worker(redis_url, 1)
    data = os.urandom(SIZE)
    with executor(redis_url, cluster=cluster) as ex:
        assert ex._dispatcher.handoff is None
        assert ex.submit(echo, data).result(timeout=30) == data
