"""`rdispy status` and the web monitor against real workers: JSON contents, attempt history of a
retried job, the JSON API, cancel and drain through the API, and the API's guards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rdispy.errors import JobTerminated
from rdispy.monitor.web import Monitor
from tests.conftest import ROOT
from tests.helpers import executor, explode, greet, square, wait_until


def status(url: str, cluster: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rdispy", "status", "--redis", url, "--cluster", cluster, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def status_json(url: str, cluster: str, *args: str) -> dict[str, Any]:
    done = status(url, cluster, "--json", *args)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def http(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            body = reply.read().decode()
            status_code = reply.status
    except urllib.error.HTTPError as exc:
        body, status_code = exc.read().decode(), exc.code
    try:
        return status_code, json.loads(body)
    except ValueError:
        return status_code, body


def post(url: str) -> tuple[int, Any]:
    return http(url, "POST", {"X-Rdispy": "1"})


@pytest.fixture
def monitor(redis_url: str, cluster: str) -> Iterator[Monitor]:
    mon = Monitor(redis_url, cluster, port=0, sample_interval=0.2).start()
    yield mon
    mon.stop()


def crash_once(marker: str) -> str:
    """Kills its consumer the first time it runs, returns the second time."""
    if not os.path.exists(marker):
        Path(marker).touch()
        os._exit(3)
    return "second time lucky"


def test_status_json_describes_nodes_queues_clients_and_counters(redis_url, cluster, start_worker):
    start_worker(redis_url, 2, "alpha")
    with executor(redis_url, cluster=cluster) as ex:
        assert [f.result(30) for f in [ex.submit(abs, -i) for i in range(20)]] == list(range(20))
        failing = ex.submit(int, "not a number")
        with pytest.raises(ValueError):
            failing.result(30)
        wait_until(
            lambda: status_json(redis_url, cluster)["counters"]["finished"] == 20,
            "counters to reach 20 finished",
        )
        data = status_json(redis_url, cluster)
        assert data["schema"] == 1
        assert data["cluster"] == cluster
        (node,) = data["nodes"]
        assert node["name"] == "alpha" and node["cores"] == 2 and node["relay"] == "direct"
        assert node["version"] and node["incarnation"] and node["heartbeat_age"] < 5
        assert data["counters"]["submitted"] == 21
        assert data["counters"]["failed"] == 1
        assert data["totals"] == {"nodes": 1, "cores": 2, "busy": 0, "queued": 0, "running": 0}
        shared = [q for q in data["queues"] if q["kind"] == "shared"]
        assert shared and shared[0]["length"] == 0
        assert [c["id"] for c in data["clients"]] == [ex.client_id]
        assert cluster in data["clusters"]
        text = status(redis_url, cluster)
        assert text.returncode == 0 and "alpha" in text.stdout and "direct" in text.stdout
        job = status_json(redis_url, cluster, "--job", failing.job_id)
        assert job["state"] == "failed"
        assert job["attempts"][0]["outcome"] == "exception"
        assert job["attempts"][0]["error"].startswith("ValueError: invalid literal")


def test_status_job_shows_both_attempts_of_a_retried_job(
    redis_url, cluster, start_worker, tmp_path
):
    start_worker(redis_url, 1, "beta")
    with executor(redis_url, cluster=cluster, max_retries=2) as ex:
        future = ex.submit(crash_once, str(tmp_path / "crashed"))
        assert future.result(60) == "second time lucky"
        job = status_json(redis_url, cluster, "--job", future.job_id)
    assert job["schema"] == 1 and job["state"] == "finished" and job["lost_attempts"] == 1
    first, second = job["attempts"]
    assert first["outcome"] == "crashed" and "exit code 3" in first["error"]
    assert second["outcome"] == "ok" and "error" not in second
    for attempt in (first, second):
        assert attempt["node"] == "beta" and attempt["pid"] > 0 and attempt["incarnation"]
        assert attempt["start"] <= attempt["end"]
    assert first["pid"] != second["pid"]  # the crashed consumer was replaced
    assert first["fn"] == second["fn"] == job["function"] == f"{__name__}.crash_once"
    assert second["rss_kib"] > 0
    text = status(redis_url, cluster, "--job", future.job_id).stdout
    assert "node-local wall time" in text and "crashed" in text and "ok" in text
    counters = status_json(redis_url, cluster)["counters"]
    assert counters["retried"] == 1 and counters["finished"] == 1


def test_monitor_api_serves_nodes_jobs_throughput_and_metrics(
    redis_url, cluster, start_worker, monitor
):
    start_worker(redis_url, 2, "gamma")
    base = monitor.url
    with executor(redis_url, cluster=cluster) as ex:
        running = [ex.submit(time.sleep, 30) for _ in range(2)]
        queued = ex.submit(time.sleep, 30)

        def jobs() -> dict[str, Any]:
            return http(base + "api/jobs")[1]

        wait_until(lambda: len(jobs()["running"]) == 2, "two running jobs in /api/jobs")
        listing = jobs()
        assert {j["id"] for j in listing["running"]} == {f.job_id for f in running}
        assert all(j["node"] == "gamma" for j in listing["running"])
        assert [j["id"] for j in listing["queued"]] == [queued.job_id]
        assert {j["function"] for j in listing["running"] + listing["queued"]} == {"time.sleep"}
        code, nodes = http(base + "api/nodes")
        assert code == 200 and nodes["nodes"][0]["name"] == "gamma"
        code, detail = http(base + f"api/jobs/{queued.job_id}")
        assert code == 200 and detail["state"] == "queued" and detail["function"] == "time.sleep"
        code, detail = http(base + f"api/jobs/{running[0].job_id}")
        assert detail["state"] == "running" and detail["function"] == "time.sleep"
        assert detail["started"] <= time.time() and detail["ended"] is None
        assert [j["id"] for j in http(base + "api/jobs?state=queued")[1]["queued"]] == [
            queued.job_id
        ]
        assert http(base + "api/jobs?state=running&function=abs")[1]["running"] == []
        code, page = http(base)
        assert code == 200 and "<title>rdispy monitor</title>" in page
        code, text = http(base + "metrics")
        assert code == 200
        assert f'rdispy_nodes{{cluster="{cluster}"}} 1' in text
        assert f'rdispy_jobs_submitted_total{{cluster="{cluster}"}} 3' in text
        assert f'rdispy_node_cores{{cluster="{cluster}",node="gamma"}} 2' in text

        def last_sample() -> dict[str, Any]:
            samples = http(base + "api/throughput")[1]["samples"]
            return samples[-1] if samples else {}

        # sampled every 0.2 s: a sample taken after the jobs were sent shows them
        wait_until(lambda: last_sample().get("queued") == 1, "a sample with the queued job")
        assert last_sample()["cores"] == 2
        for future in [*running, queued]:  # so that the node need not wait for them
            assert post(base + f"api/jobs/{future.job_id}/cancel")[0] == 200


def test_cancel_through_the_api_withdraws_a_queued_job_and_stops_a_running_one(
    redis_url, cluster, start_worker, monitor
):
    start_worker(redis_url, 1, "delta")
    base = monitor.url
    with executor(redis_url, cluster=cluster) as ex:
        running = ex.submit(time.sleep, 60)
        queued = ex.submit(time.sleep, 60)
        wait_until(
            lambda: http(base + f"api/jobs/{running.job_id}")[1]["state"] == "running",
            "the first job to run",
        )
        code, reply = post(base + f"api/jobs/{queued.job_id}/cancel")
        assert code == 200 and reply == {"ok": True, "result": "withdrawn from its queue"}, reply
        wait_until(queued.cancelled, "the queued job's future to end cancelled")
        code, reply = post(base + f"api/jobs/{running.job_id}/cancel")
        assert code == 200 and reply["result"].startswith("stop requested on node delta")
        assert isinstance(running.exception(30), JobTerminated)
        code, ended = http(base + f"api/jobs/{running.job_id}")
        assert ended["state"] == "cancelled" and ended["attempts"][-1]["outcome"] == "cancelled"
        assert http(base + f"api/jobs/{queued.job_id}")[1]["state"] == "cancelled"
        code, reply = post(base + f"api/jobs/{running.job_id}/cancel")
        assert code == 409 and "already ended" in reply["error"]
        assert ex.submit(abs, -5).result(30) == 5  # the node carries on


def test_drain_through_the_api_lets_running_jobs_finish_and_the_node_leave(
    redis_url, cluster, start_worker, monitor
):
    worker = start_worker(redis_url, 1, "epsilon")
    base = monitor.url
    with executor(redis_url, cluster=cluster) as ex:
        job = ex.submit(time.sleep, 1.5)
        wait_until(
            lambda: http(base + f"api/jobs/{job.job_id}")[1]["state"] == "running",
            "the job to run",
        )
        code, reply = post(base + "api/nodes/epsilon/drain")
        assert code == 200 and reply == {"ok": True, "result": "drain requested"}
        assert job.result(30) is None  # the running job finished
        assert worker.proc.wait(30) == 0  # then the node left
        assert http(base + "api/nodes")[1]["nodes"] == []
        assert "drained and deregistered" in worker.output()
    code, reply = post(base + "api/nodes/epsilon/drain")
    assert code == 409 and "no live node" in reply["error"]


def test_api_refuses_actions_without_the_header_and_foreign_host_names(redis_url, cluster, monitor):
    base = monitor.url
    code, reply = http(base + "api/nodes/x/drain", "POST")
    assert code == 403 and "X-Rdispy" in reply["error"]
    code, reply = http(base + "api/nodes", headers={"Host": "evil.example:8181"})
    assert code == 403 and "loopback" in reply["error"]
    code, reply = post(base + "api/jobs/nope-1/cancel")
    assert code == 409 and "neither queued nor running" in reply["error"]


def test_executor_monitor_option_serves_until_shutdown(redis_url, cluster, start_worker):
    start_worker(redis_url, 1, "zeta")
    with executor(redis_url, cluster=cluster, monitor=0) as ex:
        url = ex.monitor_url
        assert url is not None and url.startswith("http://127.0.0.1:")
        assert ex.submit(abs, -1).result(30) == 1
        assert http(url + "api/nodes")[1]["nodes"][0]["name"] == "zeta"
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "api/nodes", timeout=5)


def test_monitor_and_status_watch_commands_serve_until_interrupted(redis_url, cluster):
    command = [sys.executable, "-m", "rdispy", "--quiet"]
    where = ["--redis", redis_url, "--cluster", cluster]
    monitor_proc = subprocess.Popen(
        [*command, "monitor", *where, "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    watch_proc = subprocess.Popen(
        [*command, "status", *where, "--json", "--watch", "0.2"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert monitor_proc.stderr is not None and watch_proc.stdout is not None
        line = monitor_proc.stderr.readline()
        assert f"rdispy monitor of cluster {cluster}: http://127.0.0.1:" in line
        url = line.rsplit(" ", 1)[1].strip()
        code, clusters = http(url + "api/clusters")
        assert code == 200 and clusters["schema"] == 1
        first, second = (json.loads(watch_proc.stdout.readline()) for _ in range(2))
        assert first["cluster"] == second["cluster"] == cluster and second["time"] > first["time"]
    finally:
        for proc in (monitor_proc, watch_proc):
            proc.send_signal(signal.SIGINT)
    assert monitor_proc.wait(30) == 0 and watch_proc.wait(30) == 0
    for stream in (monitor_proc.stderr, watch_proc.stdout):
        if stream is not None:
            stream.close()


def test_actions_on_a_cluster_with_a_secret_are_signed(redis_url, cluster, start_worker):
    start_worker(redis_url, 1, "signed", "--secret", "s3cret")
    keyless = Monitor(redis_url, cluster, port=0).start()
    signed = Monitor(redis_url, cluster, port=0, secret="s3cret").start()
    try:
        with executor(redis_url, cluster=cluster, secret="s3cret") as ex:
            running = ex.submit(time.sleep, 60)
            queued = ex.submit(time.sleep, 60)
            wait_until(
                lambda: http(signed.url + f"api/jobs/{running.job_id}")[1]["state"] == "running",
                "the first job to run",
            )
            code, reply = post(keyless.url + f"api/jobs/{queued.job_id}/cancel")
            assert code == 409 and "shared secret" in reply["error"]
            assert post(signed.url + f"api/jobs/{queued.job_id}/cancel")[0] == 200
            wait_until(queued.cancelled, "the withdrawn job's future to end cancelled")
            assert post(signed.url + f"api/jobs/{running.job_id}/cancel")[0] == 200
            assert isinstance(running.exception(30), JobTerminated)
    finally:
        keyless.stop()
        signed.stop()


def test_monitor_api_names_functions_shows_the_failure_and_filters(
    redis_url, cluster, start_worker, monitor
):
    start_worker(redis_url, 2, "eta")
    base = monitor.url
    with executor(redis_url, cluster=cluster) as ex:
        assert [f.result(30) for f in [ex.submit(square, i) for i in range(4)]] == [0, 1, 4, 9]
        assert [f.result(30) for f in [ex.submit(greet, n) for n in "ab"]] == ["hello a", "hello b"]
        failing = ex.submit(explode)
        with pytest.raises(ValueError, match="boom"):
            failing.result(30)
        client_id = ex.client_id

    square_name, greet_name = f"{square.__module__}.square", f"{greet.__module__}.greet"
    explode_name = f"{explode.__module__}.explode"
    code, listing = http(base + "api/jobs?limit=100")
    assert code == 200
    recent = {j["id"]: j for j in listing["recent"]}
    assert len(recent) == 7
    names = sorted(j["function"] for j in recent.values())
    assert names == sorted([square_name] * 4 + [greet_name] * 2 + [explode_name])
    failed = recent[failing.job_id]
    assert failed["state"] == "failed" and failed["node"] == "eta"
    assert failed["exception"] == {"type": "ValueError", "message": "boom"}
    assert failed["duration"] is not None and failed["duration"] >= 0
    assert all(j["exception"] is None for j in recent.values() if j["id"] != failing.job_id)

    code, detail = http(base + f"api/jobs/{failing.job_id}")
    assert code == 200 and detail["state"] == "failed" and detail["function"] == explode_name
    assert detail["client"] == client_id and detail["node"] == "eta"
    exc = detail["exception"]
    assert exc["type"] == "ValueError" and exc["message"] == "boom"
    assert exc["traceback"].startswith("Traceback (most recent call last):")
    assert 'raise ValueError("boom")' in exc["traceback"] and "in explode" in exc["traceback"]
    assert exc["traceback"].rstrip().endswith("ValueError: boom")
    assert "runner.py" not in exc["traceback"]  # rdispy's own frame is left out
    assert detail["started"] <= detail["ended"]
    code, ok_detail = http(base + f"api/jobs/{next(i for i in recent if i != failing.job_id)}")
    assert ok_detail["state"] == "finished" and ok_detail["exception"] is None

    def ids(query: str) -> set[str]:
        code, body = http(base + "api/jobs?limit=100&" + query)
        assert code == 200, body
        return {j["id"] for group in ("running", "queued", "recent") for j in body[group]}

    assert ids("state=failed") == {failing.job_id}
    assert ids("state=finished") == set(recent) - {failing.job_id}
    assert ids(f"function={greet_name}") == {
        i for i, j in recent.items() if j["function"] == greet_name
    }
    assert ids("node=eta") == set(recent) and ids("node=elsewhere") == set()
    assert ids(f"client={client_id}") == set(recent) and ids("client=someone-else") == set()
    assert ids(f"q={failing.job_id}") == {failing.job_id}
    assert ids(f"q={client_id[:6]}") == set(recent)  # a prefix of the ids
    assert ids(f"state=failed&function={square_name}") == set()
    code, reply = http(base + "api/jobs?state=bogus")
    assert code == 400 and "unknown state" in reply["error"]

    code, summary = http(base + "api/functions")
    assert code == 200
    by_name = {f["function"]: f for f in summary["functions"]}
    assert set(by_name) == {square_name, greet_name, explode_name}
    assert (by_name[square_name]["attempts"], by_name[square_name]["failed"]) == (4, 0)
    assert (by_name[greet_name]["attempts"], by_name[greet_name]["finished"]) == (2, 2)
    assert (by_name[explode_name]["attempts"], by_name[explode_name]["failed"]) == (1, 1)
    for item in by_name.values():
        assert 0 <= item["mean"] <= item["p95"] <= item["max"] < 30
    assert summary["window"]["attempts"] == 7 and summary["window"]["source"] == "recent"
    assert summary["nodes"] == ["eta"] and summary["clients"] == [client_id]


def fail_on_three(x: int) -> int:
    if x == 3:
        raise KeyError("three")
    return x


def test_a_map_chunk_whose_item_raised_is_a_failed_job_with_its_traceback(
    redis_url, cluster, start_worker, monitor
):
    start_worker(redis_url, 1, "iota")
    with executor(redis_url, cluster=cluster) as ex:
        assert list(ex.map(fail_on_three, range(3), chunksize=3)) == [0, 1, 2]
        with pytest.raises(KeyError, match="three"):
            list(ex.map(fail_on_three, range(5), chunksize=5))
    code, listing = http(monitor.url + "api/jobs?state=failed")
    (failed,) = listing["recent"]
    assert failed["function"] == f"{__name__}.fail_on_three"
    assert failed["exception"] == {"type": "KeyError", "message": "'three'"}
    detail = http(monitor.url + f"api/jobs/{failed['id']}")[1]
    assert detail["state"] == "failed" and "in fail_on_three" in detail["exception"]["traceback"]
    assert "runner.py" not in detail["exception"]["traceback"]
    code, summary = http(monitor.url + "api/functions")
    (item,) = summary["functions"]
    assert (item["attempts"], item["finished"], item["failed"]) == (2, 1, 1)


def test_monitor_names_a_program_job_by_its_program_and_arguments(
    redis_url, cluster, start_worker, monitor, tmp_path
):
    import rdispy as dispy

    start_worker(redis_url, 1, "theta")
    program = tmp_path / "count.py"
    program.write_text("import sys\nsys.exit(len(sys.argv) - 1)\n")
    with dispy.JobCluster(str(program), redis_url=redis_url, cluster=cluster) as c:
        job = c.submit("one", "two words")
        assert job() == 2
    code, listing = http(monitor.url + "api/jobs")
    (ended,) = [j for j in listing["recent"] if j["id"] == job._future.job_id]
    assert ended["function"] == "count.py" and ended["args"] == "one 'two words'"
    assert ended["state"] == "finished"
