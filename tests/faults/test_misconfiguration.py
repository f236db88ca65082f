"""A misconfigured client ends in a clear error, never a wait (issue 14, items 1 and 2): a secret
that is missing, wrong or not expected, a wire version the node does not speak, and the
environment variables every command reads."""

from __future__ import annotations

import logging
import time

import pytest

import rdispy
from rdispy import wire

pytestmark = pytest.mark.integration

#: A refusal must reach the client within a few heartbeats; this bounds the wait, not the speed.
DEADLINE = 20.0


def refused(ex: rdispy.Executor) -> rdispy.JobRefused:
    future = ex.submit(pow, 2, 3)
    started = time.monotonic()
    with pytest.raises(rdispy.JobRefused) as info:
        future.result(DEADLINE)
    assert time.monotonic() - started < DEADLINE
    assert info.value.job_id == future.job_id
    return info.value


@pytest.mark.parametrize(
    ("node_secret", "client_secret", "why"),
    [
        ("s3cret", None, "not signed"),
        ("s3cret", "other", "signature does not match"),
        (None, "s3cret", "this node has no secret"),
    ],
    ids=["client-without-secret", "wrong-secret", "node-without-secret"],
)
def test_a_refused_job_fails_at_its_client_with_the_node_and_the_reason(
    redis_url, cluster, start_worker, node_secret, client_secret, why
):
    extra = ("--secret", node_secret) if node_secret else ()
    start_worker(redis_url, 1, "strict", *extra)
    started = time.monotonic()
    with rdispy.Executor(redis_url, cluster=cluster, secret=client_secret) as ex:
        error = refused(ex)
    assert time.monotonic() - started < DEADLINE  # leaving ``with`` does not hang either
    assert error.node == "strict"
    assert why in error.reason
    assert "strict" in str(error) and "secret" in str(error)


def test_a_wire_version_the_node_does_not_speak_fails_at_once(
    redis_url, cluster, start_worker, monkeypatch
):
    start_worker(redis_url, 1, "old")
    with rdispy.Executor(redis_url, cluster=cluster) as ex:
        assert ex.submit(pow, 2, 2).result(DEADLINE) == 4
        monkeypatch.setattr(wire.fields, "VERSION", b"99")  # this client now writes a newer wire
        error = refused(ex)
        assert "protocol version" in error.reason and "99" in error.reason
        assert "speaks wire version 1; live nodes: old 1" in error.reason
        monkeypatch.setattr(wire.fields, "VERSION", b"1")
        assert ex.submit(pow, 2, 4).result(DEADLINE) == 16  # the executor is unharmed


def test_the_embedded_default_works_with_a_secret_exported(monkeypatch):
    monkeypatch.setenv("RDISPY_SECRET", "exported")
    monkeypatch.delenv("RDISPY_REDIS", raising=False)
    with rdispy.Executor(1) as ex:
        assert ex.submit(pow, 3, 3).result(DEADLINE) == 27


def test_the_executor_reads_the_url_and_the_secret_from_the_environment(
    redis_url, cluster, start_worker, monkeypatch
):
    start_worker(redis_url, 1, "env", "--secret", "from-env")
    monkeypatch.setenv("RDISPY_REDIS", redis_url)
    monkeypatch.setenv("RDISPY_SECRET", "from-env")
    with rdispy.Executor(cluster=cluster) as ex:
        assert ex.url == redis_url
        future = ex.submit(pow, 5, 2)
        assert future.result(DEADLINE) == 25 and future.node == "env"
    with rdispy.Executor(redis_url, cluster=cluster, secret="explicit") as ex:  # arguments win
        assert "signature" in refused(ex).reason


def test_an_unreachable_redis_fails_the_constructor_on_time_with_one_warning(caplog):
    from rdispy.server import free_port

    caplog.set_level(logging.DEBUG, logger="rdispy.connection")
    url = f"redis://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(rdispy.BrokerError, match="cannot reach Redis"):
        rdispy.Executor(url, connect_timeout=2.0)
    took = time.monotonic() - started
    assert 1.9 < took < 3.0, took
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "waiting for Redis" in warnings[0].getMessage()


def test_a_job_of_another_python_goes_to_a_node_that_runs_it_or_fails_at_once(
    redis_url, cluster, start_worker, tmp_path, monkeypatch
):
    """A rolling upgrade: a node whose Python (or cloudpickle) minor version differs from the
    job's client hands the entry to a live node that matches; with none, the job fails at once,
    naming both runtimes (before, it was dead-lettered or failed to unpickle)."""
    import os

    import cloudpickle

    from rdispy import serialization

    start_worker(redis_url, 1, "current")
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import platform\nplatform.python_version = lambda: '3.99.0'\n"
    )
    with monkeypatch.context() as env:  # a node that says it runs Python 3.99
        env.setenv("PYTHONPATH", os.pathsep.join([str(shim), os.environ.get("PYTHONPATH", "")]))
        start_worker(redis_url, 1, "upgraded")
    with rdispy.Executor(redis_url, cluster=cluster) as ex:
        assert ex.submit(pow, 2, 2).result(DEADLINE) == 4
        monkeypatch.setattr(
            serialization, "RUNTIME", serialization.runtime_tag("3.99.1", cloudpickle.__version__)
        )  # this client now pickles as Python 3.99 does
        futures = [ex.submit(pow, 2, i) for i in range(8)]
        assert [f.result(DEADLINE) for f in futures] == [2**i for i in range(8)]
        assert {f.node for f in futures} == {"upgraded"}
        monkeypatch.setattr(
            serialization, "RUNTIME", serialization.runtime_tag("3.98.0", cloudpickle.__version__)
        )
        error = refused(ex)
    assert "py3.98/" in error.reason and "no live node runs that" in error.reason
    assert "current py3.11" in error.reason or "current py3." in error.reason
    assert "upgraded py3.99/" in error.reason
