"""The state reader on a hand-built cluster in fakeredis; the Prometheus text; the latency tally;
the status tables; the monitor's host check."""

from __future__ import annotations

import json
import time

import fakeredis
import pytest

from rdispy import attempts, stats
from rdispy.keys import CONSUMER_GROUP, Keys
from rdispy.monitor import jobs, metrics, state, text
from rdispy.monitor.web import _loopback_host


@pytest.fixture
def fake() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def add_node(client, keys: Keys, name: str, cpus: int, busy: int, relay: str | None = None):
    now = time.time()
    record = {
        "name": name,
        "ip": "10.1.2.3",
        "host": "h",
        "cpus": cpus,
        "busy": busy,
        "done": 7,
        "hb": repr(now - 1.5),
        "rdispy": "0.1.0",
        "python": "3.11.7",
        "incarnation": "abc123",
        "pid": 42,
        "started": repr(now - 60),
        "platform": "linux",
    }
    if relay:
        record["relay"] = relay
    client.hset(keys.node(name), mapping=record)
    client.zadd(keys.nodes, {name: now})


def test_read_state_reads_nodes_queues_clients_and_counters(fake):
    keys = Keys("c1")
    add_node(fake, keys, "n2", 4, 3, relay="relay-a")
    add_node(fake, keys, "n1", 2, 1)
    fake.xgroup_create(keys.jobs, CONSUMER_GROUP, id="0", mkstream=True)
    for i in range(5):
        fake.xadd(keys.jobs, {"id": f"cl-{i}", "c": "cl"})
    fake.xreadgroup(CONSUMER_GROUP, "n1/abc123/0/x", {keys.jobs: ">"}, count=2)
    fake.xgroup_create(keys.node_jobs("n2"), CONSUMER_GROUP, id="0", mkstream=True)
    fake.xadd(keys.node_jobs("n2"), {"id": "cl-9", "c": "cl", "nd": "n2"})
    fake.hset(keys.client("cl"), mapping={"pid": 99, "host": "laptop", "seen": time.time()})
    fake.zadd(keys.clients, {"cl": time.time(), "gone": time.time()})
    fake.xadd(keys.results("cl"), {"k": "ok"})
    long_ago = time.time() - 3600
    for old in ("left", "left-results"):  # went away an hour ago
        fake.hset(keys.client(old), mapping={"pid": 1, "host": "h", "seen": long_ago})
        fake.zadd(keys.clients, {old: long_ago})
    fake.xadd(keys.results("left-results"), {"k": "ok"})
    fake.hset(keys.counters, mapping={"finished": 12, "failed": 2, "deadletters": 1})
    fake.hset(keys.latency, mapping={"0.01": 3, "count": 3, "sum": 0.012})
    fake.xadd(keys.dead_letters, {"reason": "bad signature"})

    current = state.read_state(fake, keys)
    assert [n.name for n in current.nodes] == ["n1", "n2"]
    n1, n2 = current.nodes
    assert (n1.cores, n1.busy, n1.jobs_done, n1.relay) == (2, 1, 7, "direct")
    assert n2.relay == "relay-a" and n2.address == "10.1.2.3"
    assert 1.0 < n1.heartbeat_age < 10
    shared = next(q for q in current.queues if q.kind == "shared")
    assert (shared.length, shared.pending, shared.queued) == (5, 2, 3)
    assert shared.oldest_age is not None and shared.oldest_age >= 0
    placed = next(q for q in current.queues if q.kind == "node")
    assert (placed.owner, placed.queued) == ("n2", 1)
    # "gone" has no record left, "left" went away with nothing to collect
    assert [c.id for c in current.clients] == ["left-results", "cl"]
    assert current.clients[1].results_waiting == 1 and current.clients[0].seen_age > 3000
    assert current.counters["finished"] == 12 and current.counters["submitted"] == 0
    assert current.dead_letters == 1
    assert (current.cores, current.busy, current.queued, current.running) == (6, 4, 4, 2)
    data = current.to_dict()
    assert data["schema"] == state.SCHEMA_VERSION
    assert data["totals"] == {"nodes": 2, "cores": 6, "busy": 4, "queued": 4, "running": 2}
    json.dumps(data)  # plain data all the way down
    rendered = text.render_state(current)
    assert "relay-a" in rendered and "direct" in rendered and "dead letters: 1" in rendered


def test_an_empty_cluster_reads_as_empty(fake):
    current = state.read_state(fake, Keys("nothing"))
    assert current.nodes == [] and current.clients == []
    assert [q.kind for q in current.queues] == ["shared"]
    assert current.queues[0].length == 0 and current.queues[0].oldest_age is None
    assert "no nodes alive" in text.render_state(current)


def test_list_clusters_finds_every_cluster_in_the_redis(fake):
    fake.zadd(Keys("a").nodes, {"n": 1})
    fake.xadd(Keys("b").jobs, {"x": 1})
    fake.set("unrelated", 1)
    assert state.list_clusters(fake) == ["a", "b"]


def test_metrics_text_follows_the_exposition_format():
    current = state.ClusterState(
        cluster='we"ird',
        time=0.0,
        nodes=[],
        queues=[state.QueueState("k", "shared", "", 3, 1, 2, 1.0)],
        clients=[],
        dead_letters=0,
        counters={stats.FINISHED: 5},
        latency={"0.001": 1, "0.5": 2, "+Inf": 1, "count": 4, "sum": 2.5},
    )
    body = metrics.render(current)
    lines = body.splitlines()
    assert 'rdispy_jobs_finished_total{cluster="we\\"ird"} 5' in lines
    assert 'rdispy_jobs_submitted_total{cluster="we\\"ird"} 0' in lines
    assert 'rdispy_queue_length{cluster="we\\"ird",queue="shared",owner=""} 3' in lines
    buckets = [ln for ln in lines if ln.startswith("rdispy_job_latency_seconds_bucket")]
    assert buckets[0].endswith(" 1") and 'le="0.001"' in buckets[0]
    assert buckets[-1] == 'rdispy_job_latency_seconds_bucket{cluster="we\\"ird",le="+Inf"} 4'
    counts = [float(ln.rsplit(" ", 1)[1]) for ln in buckets]
    assert counts == sorted(counts)  # cumulative
    assert 'rdispy_job_latency_seconds_count{cluster="we\\"ird"} 4' in lines
    assert 'rdispy_job_latency_seconds_sum{cluster="we\\"ird"} 2.5' in lines
    declared = {ln.split()[2] for ln in lines if ln.startswith("# TYPE ")}
    for line in lines:  # every sample belongs to a declared family
        if not line.startswith("#"):
            name = line.split("{", 1)[0]
            for suffix in ("_bucket", "_sum", "_count"):
                if name not in declared:
                    name = name.removesuffix(suffix)
            assert name in declared, line
    assert body.endswith("\n")


def test_latency_tally_counts_per_bucket_and_empties_itself(fake):
    tally = stats.LatencyTally()
    for seconds in (0.0004, 0.002, 0.002, 7.0, 99999.0):
        tally.add(seconds)
    commands = tally.commands("lat")
    for command in commands:
        fake.execute_command(*command)
    stored = {k.decode(): float(v) for k, v in fake.hgetall("lat").items()}
    assert stored == {
        "0.001": 1,
        "0.0025": 2,
        "10.0": 1,
        "+Inf": 1,
        "count": 5,
        "sum": pytest.approx(0.0004 + 0.004 + 7.0 + 99999.0),
    }
    assert tally.commands("lat") == []


def test_attempt_records_round_trip_and_survive_garbage():
    raw = attempts.encode({"id": "j-1", "node": "n", "rss_kib": None, "outcome": "ok"})
    assert "rss_kib" not in raw
    assert attempts.decode(raw) == {"id": "j-1", "node": "n", "outcome": "ok"}
    assert attempts.decode(b"\xff not json")["outcome"] == "?"


def test_job_text_labels_node_local_times():
    job = state.JobState(
        id="c-1",
        client="c",
        state="finished",
        attempts=[
            {"node": "n", "pid": 5, "start": 1.0, "end": 2.0, "outcome": "crashed",
             "error": "killed by signal SIGKILL"},
            {"node": "n", "pid": 6, "start": 3.0, "end": 4.0, "outcome": "ok", "rss_kib": 40960},
        ],
    )  # fmt: skip
    rendered = text.render_job(job)
    assert "node-local wall time" in rendered
    assert "killed by signal SIGKILL" in rendered and "40 MiB" in rendered


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1:8181", True),
        ("localhost:8181", True),
        ("[::1]:8181", True),
        ("127.0.0.1", True),
        ("evil.example:8181", False),
        ("10.0.0.1:8181", False),
        ("127.0.0.1.evil.example", False),
    ],
)
def test_loopback_host_check(host, ok):
    assert _loopback_host(host) is ok


def test_attempt_history_is_read_from_the_job_record_in_the_order_attempts_ended():
    record = {
        "st": "done",
        "n": "2",
        "h1": attempts.encode({"outcome": "crashed", "end": 10.0}),
        "h2": attempts.encode({"outcome": "node lost", "end": 20.0}),
        "hd1": attempts.encode({"outcome": "ok", "end": 25.0}),
        "hr": attempts.encode({"outcome": "ok", "end": 30.0}),
        "hx": "not an attempt",
    }
    history = attempts.from_record(record)
    assert [a["outcome"] for a in history] == ["crashed", "node lost", "ok", "ok"]
    assert [a.get("dropped", False) for a in history] == [False, False, True, False]
    assert state._end_state(None, attempts.decode(record["hr"]), history) == "finished"
    assert state._end_state("cancelled", None, []) == "cancelled"
    assert state._end_state("failed", None, [{"outcome": "cancelled"}]) == "cancelled"
    assert state._end_state("failed", None, [{"outcome": "timeout"}]) == "failed"


@pytest.mark.parametrize("job_id", ["c0ffee-17", 'odd"id\\x'])
def test_consumer_attempt_template_renders_valid_json(job_id):
    template = attempts.Template({"node": "n1", "incarnation": "abc", "slot": 1, "pid": 9})
    ok = json.loads(template.render(job_id, 1.5, 2.25, True, "", 2048))
    assert ok == {
        "id": job_id,
        "start": 1.5,
        "end": 2.25,
        "outcome": "ok",
        "rss_kib": 2048,
        "node": "n1",
        "incarnation": "abc",
        "slot": 1,
        "pid": 9,
    }
    failed = json.loads(template.render(job_id, 1.0, 1.0, False, 'ValueError: "bad"\n', None))
    assert failed["outcome"] == "exception" and failed["error"] == 'ValueError: "bad"\n'
    assert "rss_kib" not in failed


def _ended(fake, keys: Keys, job_id: str, fn: str, outcome: str = "ok", **more) -> None:
    """An attempt in the recent stream, as a consumer's publish writes it."""
    attempt = {"id": job_id, "node": more.pop("node", "n1"), "fn": fn, "outcome": outcome}
    attempt.update(more)
    fake.xadd(keys.recent, {"a": attempts.encode(attempt)})


@pytest.fixture
def ended(fake):
    """Ten attempts of two clients' jobs of three functions, one of them failed, one lost."""
    keys = Keys("filters")
    for i in range(1, 6):  # durations 0.1 .. 0.5 s
        _ended(fake, keys, f"ca-{i}", "m.square", start=100.0, end=100.0 + i / 10)
    _ended(fake, keys, "ca-6", "m.greet", start=1.0, end=1.5, node="n2")
    _ended(fake, keys, "cb-1", "m.greet", start=1.0, end=3.0, node="n2")
    _ended(
        fake, keys, "cb-2", "m.explode", "exception", start=5.0, end=5.25,
        error="ValueError: boom", etype="ValueError",
    )  # fmt: skip
    _ended(fake, keys, "cb-3", "m.explode", "crashed", start=6.0, end=7.0, error="exit code 3")
    _ended(fake, keys, "cb-4", "m.square", "cancelled", start=8.0, end=9.0)
    fake.xadd(keys.recent, {"a": attempts.encode({"id": "cb-5", "fn": "m.square",
              "outcome": "ok", "start": 1.0, "end": 99.0}), "d": "1"})  # fmt: skip
    return keys


def _ids(fake, keys: Keys, limit: int = 50, **wanted: str) -> list[str]:
    jobs = state.read_jobs(fake, keys, limit, wanted=state.JobFilter(**wanted))
    return [j.id for j in jobs["running"] + jobs["queued"] + jobs["recent"]]


def test_ended_jobs_carry_their_function_timings_and_exception(fake, ended):
    jobs = state.read_jobs(fake, ended, 50, wanted=state.JobFilter(state="failed"))
    assert jobs["running"] == [] and jobs["queued"] == []
    (failed,) = jobs["recent"]
    assert (failed.id, failed.client, failed.function) == ("cb-2", "cb", "m.explode")
    assert failed.exception == {"type": "ValueError", "message": "boom"}
    assert (failed.started, failed.ended, failed.duration) == (5.0, 5.25, 0.25)
    json.dumps(failed.to_dict())


def test_job_filters_by_state_node_client_function_and_id(fake, ended):
    finished = ["cb-1", "ca-6", "ca-5", "ca-4", "ca-3", "ca-2", "ca-1"]
    assert _ids(fake, ended, state="finished") == finished
    assert _ids(fake, ended, state="lost") == ["cb-3"]
    assert _ids(fake, ended, state="cancelled") == ["cb-4"]
    assert _ids(fake, ended, state="dropped") == ["cb-5"]
    assert _ids(fake, ended, node="n2") == ["cb-1", "ca-6"]
    assert _ids(fake, ended, client="cb", state="finished") == ["cb-1"]
    assert _ids(fake, ended, function="m.greet") == ["cb-1", "ca-6"]
    assert _ids(fake, ended, function="m.greet", node="n1") == []
    assert _ids(fake, ended, search="ca-") == ["ca-6", "ca-5", "ca-4", "ca-3", "ca-2", "ca-1"]
    assert _ids(fake, ended, search="-3", state="finished") == ["ca-3"]
    assert _ids(fake, ended, 2, function="m.square") == ["cb-5", "cb-4"]  # the newest two


def test_filter_looks_past_the_newest_page_of_the_recent_stream(fake, monkeypatch):
    keys = Keys("paged")
    _ended(fake, keys, "old-1", "m.rare")
    for i in range(30):
        _ended(fake, keys, f"new-{i}", "m.common")
    monkeypatch.setattr(jobs, "_RECENT_PAGE", 7)  # where the jobs list reads it
    assert _ids(fake, keys, function="m.rare") == ["old-1"]
    assert len(_ids(fake, keys, 12, function="m.common")) == 12


def test_filter_matches_running_and_queued_jobs_on_their_entry_fields():
    running = state.JobState(id="c1-3", client="c1", state="running", node="n1", function="f")
    queued = state.JobState(id="c2-9", client="c2", state="queued", function="prog.sh")
    assert state.JobFilter(state="running").matches(running)
    assert not state.JobFilter(state="running").matches(queued)
    assert state.JobFilter(function="prog.sh", client="c2").matches(queued)
    assert not state.JobFilter(node="n1").matches(queued)
    assert state.JobFilter(search="c1-").matches(running) and not state.JobFilter()
    assert state.JobFilter(state="lost").matches(state.JobState("x-1", "x", "lost (crashed)"))
    assert state.JobFilter(state="finished").wants("finished", "failed")
    assert not state.JobFilter(state="running").wants("finished")


def test_function_summary_counts_failures_and_run_times(fake, ended):
    summary = state.summarize(fake, ended)
    by_name = {f["function"]: f for f in summary["functions"]}
    assert [f["function"] for f in summary["functions"]] == ["m.square", "m.explode", "m.greet"]
    square = by_name["m.square"]
    assert (square["attempts"], square["finished"], square["failed"], square["cancelled"]) == (
        6, 5, 0, 1
    )  # fmt: skip
    assert square["timed"] == 6  # the dropped attempt (99 s) is left out
    assert square["mean"] == pytest.approx((0.1 + 0.2 + 0.3 + 0.4 + 0.5 + 1.0) / 6)
    assert square["p95"] == pytest.approx(1.0) and square["max"] == pytest.approx(1.0)
    explode = by_name["m.explode"]
    assert (explode["attempts"], explode["finished"], explode["failed"]) == (2, 0, 2)
    greet = by_name["m.greet"]
    assert (greet["mean"], greet["p95"], greet["max"]) == (1.25, 2.0, 2.0)
    assert summary["window"]["attempts"] == 10 and summary["window"]["kept"] == 1000
    assert summary["window"]["since"] is not None
    assert summary["nodes"] == ["n1", "n2"] and summary["clients"] == ["ca", "cb"]
    json.dumps(summary)
    assert state.summarize(fake, Keys("empty"))["functions"] == []


def test_percentile_is_the_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert state._percentile(values, 0.95) == 95.0
    assert state._percentile([3.0], 0.95) == 3.0
    assert state._percentile([1.0, 2.0], 0.95) == 2.0


def test_job_detail_has_the_exception_with_its_traceback(fake):
    keys = Keys("detail")
    tb = 'Traceback (most recent call last):\n  File "m.py", line 2, in explode\nValueError: boom\n'
    hr = {"id": "c-1", "node": "n1", "fn": "m.explode", "outcome": "exception", "start": 1.0,
          "end": 2.0, "error": "ValueError: boom", "etype": "ValueError"}  # fmt: skip
    fake.hset(keys.job("c-1"), mapping={"st": "done", "hr": attempts.encode(hr), "tb": tb})
    job = state.read_job(fake, keys, "c-1")
    assert (job.state, job.function, job.node, job.duration) == ("failed", "m.explode", "n1", 1.0)
    assert job.exception == {"type": "ValueError", "message": "boom", "traceback": tb}
    rendered = text.render_job(job)
    assert "function: m.explode" in rendered and "exception: ValueError: boom" in rendered
    assert rendered.endswith("in explode\nValueError: boom")


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [
        ({"outcome": "ok"}, None),
        ({"outcome": "crashed", "error": "exit code 3"}, None),
        ({"outcome": "exception", "error": "KeyError: 'k'", "etype": "KeyError"},
         {"type": "KeyError", "message": "'k'"}),
        ({"outcome": "exception", "error": "StopIteration", "etype": "StopIteration"},
         {"type": "StopIteration", "message": ""}),
        ({"outcome": "exception", "error": "OSError: gone: really"},  # an older node's record
         {"type": "OSError", "message": "gone: really"}),
    ],
)  # fmt: skip
def test_exception_of_an_attempt(attempt, expected):
    assert state.exception_of(attempt) == expected


def test_consumer_attempt_template_adds_function_type_and_arguments():
    template = attempts.Template({"node": "n1"})
    failed = json.loads(
        template.render("c-2", 1.0, 2.0, False, "ValueError: boom", None, b"m.<lambda>",
                        "ValueError", b"a 'b c'")
    )  # fmt: skip
    assert failed["fn"] == "m.<lambda>" and failed["etype"] == "ValueError"
    assert failed["args"] == "a 'b c'" and failed["error"] == "ValueError: boom"
    ok = json.loads(template.render("c-3", 1.0, 2.0, True, "", None, b"m.<lambda>", "ignored"))
    assert ok["fn"] == "m.<lambda>" and "etype" not in ok and "args" not in ok
    odd = json.loads(template.render("c-4", 1.0, 2.0, True, "", None, b'we"ird\\'))
    assert odd["fn"] == 'we"ird\\'


def _deep(n: int, size: int = 2000) -> None:
    if n:
        _deep(n - 1, size)
    raise KeyError("k" * size)


def test_a_failed_job_outcome_carries_type_message_and_traceback():
    from rdispy.worker import runner

    outcome = runner.run(_deep, (3,), {}, "c-1")
    assert outcome.kind == "exc" and outcome.etype == "KeyError"
    assert outcome.error.startswith("KeyError: 'kkk") and outcome.error.endswith("...")
    assert len(outcome.error) == len("KeyError: ") + runner.MESSAGE_MAX
    assert outcome.traceback.startswith("Traceback (most recent call last):")
    assert "runner.py" not in outcome.traceback and outcome.traceback.count("in _deep") == 4
    long = runner.run(_deep, (2, 20_000), {}, "c-2")
    assert len(long.traceback) <= runner.TRACEBACK_MAX
    assert "characters of the traceback cut" in long.traceback
    assert long.traceback.startswith("Traceback") and long.traceback.endswith("kkk'\n")
    ok = runner.run(abs, (-1,), {}, "c-3")
    assert (ok.kind, ok.etype, ok.traceback, ok.error) == ("ok", "", "", "")
