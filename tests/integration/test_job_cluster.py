"""dispy's JobCluster API on rdispy, against two `rdispy worker` nodes and the embedded default."""

from __future__ import annotations

import gc
import os
import sys
import textwrap
import threading
import time
import weakref
from pathlib import Path

import pytest

import rdispy as dispy
from tests.faults.ledger import record, tags, wait_rows
from tests.helpers import wait_until

pytestmark = pytest.mark.integration


def compute(n):
    import socket

    time.sleep(n)
    return socket.gethostname(), n


@pytest.fixture
def cluster_args(redis_url, cluster, start_worker):
    start_worker(redis_url, 1, "node-a")
    start_worker(redis_url, 1, "node-b")
    return {"redis_url": redis_url, "cluster": cluster}


def test_dispy_tutorial_runs_unchanged_but_for_the_import(cluster_args):
    cluster = dispy.JobCluster(compute, **cluster_args)
    jobs = []
    for i in range(8):
        job = cluster.submit(i % 3 * 0.05)
        job.id = i
        jobs.append(job)
    for job in jobs:
        host, n = job()
        assert n == job.id % 3 * 0.05
        assert job.status == dispy.DispyJob.Finished
        assert job.ip_addr == "127.0.0.1" and job.node in ("node-a", "node-b")
        assert job.submit_time <= job.start_time <= job.end_time
    assert {job.node for job in jobs} == {"node-a", "node-b"}
    stats = cluster.stats()
    assert sum(n["jobs"] for n in stats["nodes"].values()) == 8
    cluster.close()


def test_status_constants_have_dispys_values():
    job = dispy.DispyJob
    assert (
        job.Created,
        job.Running,
        job.ProvisionalResult,
        job.Cancelled,
        job.Terminated,
        job.Abandoned,
        job.Finished,
    ) == (5, 6, 7, 8, 9, 10, 11)


def test_job_timeout_on_call_and_exception_text(cluster_args):
    def fails(x):
        print("about to fail")
        raise ValueError(f"bad {x}")

    with dispy.JobCluster(fails, **cluster_args) as cluster:
        job = cluster.submit(3)
        with pytest.raises(TimeoutError):
            dispy.JobCluster.__init__  # noqa: B018 - the cluster stays usable
            cluster.submit_timeout(5, 0)(timeout=0.0001)
        assert job() is None
        assert job.status == dispy.DispyJob.Terminated
        assert "ValueError: bad 3" in job.exception and "fails" in job.exception
        assert job.stdout == "about to fail\n"


def test_callbacks_run_in_one_thread_in_status_order(cluster_args):
    seen: dict[object, list[int]] = {}
    threads = set()

    def provisional(n):
        for i in range(3):
            dispy.provisional_result(i)
        return n * 10

    def callback(job):
        threads.add(threading.current_thread().name)
        seen.setdefault(job.id, []).append(job.status)

    with dispy.JobCluster(provisional, callback=callback, job_status=callback, **cluster_args) as c:
        jobs = [c.submit(i) for i in range(4)]
        assert [job() for job in jobs] == [0, 10, 20, 30]
        c.wait()
    time.sleep(0.2)
    assert len(threads) == 1
    for job in jobs:
        statuses = seen[job.id]
        assert statuses[-1] == dispy.DispyJob.Finished
        assert statuses.count(dispy.DispyJob.ProvisionalResult) == 3
        if dispy.DispyJob.Running in statuses:
            assert statuses.index(dispy.DispyJob.Running) < statuses.index(
                dispy.DispyJob.ProvisionalResult
            )


@pytest.mark.parametrize("callbacks", [False, True], ids=["plain", "callbacks"])
def test_ended_jobs_are_freed_without_the_cycle_collector(cluster_args, callbacks):
    """A job and its future do not hold each other once it has ended: a program submitting
    many jobs leaves no cyclic garbage per job (the collector's passes cost latency)."""

    def double(n):
        return 2 * n

    hooks = {"callback": lambda job: None, "job_status": lambda job: None} if callbacks else {}
    gc.collect()
    gc.disable()  # only reference counting frees objects now
    try:
        with dispy.JobCluster(double, **hooks, **cluster_args) as cluster:
            jobs = [cluster.submit(n) for n in range(3)]
            assert [job() for job in jobs] == [0, 2, 4]
            refs = [weakref.ref(obj) for job in jobs for obj in (job, job.future)]
            del jobs
        wait_until(lambda: all(ref() is None for ref in refs), "ended jobs to be freed")
    finally:
        gc.enable()


def test_provisional_results_reach_executor_futures_in_order(redis_url, cluster, start_worker):
    start_worker(redis_url, 1)

    def stages():
        for i in range(5):
            dispy.provisional_result(i)
            time.sleep(0.05)
        return "end"

    with dispy.Executor(redis_url, cluster=cluster) as ex:
        future = ex.submit(stages)
        assert list(dispy.updates(future, timeout=30)) == [0, 1, 2, 3, 4]
        assert future.result() == "end"


def test_cancel_queued_job_never_runs_and_running_job_is_terminated(cluster_args, tmp_path):
    ledger = tmp_path / "ledger"

    with dispy.JobCluster(record, **cluster_args) as c:
        running = [c.submit(str(ledger), f"r{i}", 60) for i in range(2)]
        wait_rows(ledger, 2)  # both run
        queued = c.submit(str(ledger), "q", 0)
        assert c.cancel(queued) == 0
        started = time.monotonic()
        for job in running:
            assert c.cancel(job) == 0
        for job in running:
            assert job(timeout=20) is None
            assert job.status == dispy.DispyJob.Terminated
        assert time.monotonic() - started < 15
        assert queued(timeout=10) is None and queued.status == dispy.DispyJob.Cancelled
        after = c.submit(str(ledger), "after", 0)
        assert after(timeout=30) == "after"  # replacement consumers serve
    ran = tags(ledger)
    assert "q" not in ran and ran.count("r0") == 1


def test_a_stopped_job_gets_a_keyboard_interrupt_and_its_late_return_is_dropped(
    cluster_args, tmp_path
):
    """As dispynode does: cancel (or a timeout) raises KeyboardInterrupt in the running job,
    whose handler runs within the grace; what it returns then is not its result."""
    marks = tmp_path / "marks"
    marks.mkdir()

    def patient(tag):
        (marks / f"started-{tag}").touch()
        try:
            while True:
                time.sleep(0.02)
        except KeyboardInterrupt:
            time.sleep(0.2)  # cleaning up
            (marks / tag).write_text(str(os.getpid()))
            return "late " + tag

    with dispy.JobCluster(patient, **cluster_args) as c:
        cancelled = c.submit("cancelled")
        wait_until((marks / "started-cancelled").exists, "the job to start", 20)
        assert c.cancel(cancelled) == 0
        assert cancelled(timeout=20) is None
        assert cancelled.status == dispy.DispyJob.Terminated
        wait_until((marks / "cancelled").exists, "the job's KeyboardInterrupt handler", 10)
    with dispy.JobCluster(patient, timeout=0.5, **cluster_args) as c:
        timed = c.submit("timed")
        assert timed(timeout=20) is None
        assert timed.status == dispy.DispyJob.Terminated and "timeout" in timed.exception
        wait_until((marks / "timed").exists, "the job's KeyboardInterrupt handler", 10)


def test_per_job_timeout_kills_the_job_and_its_grandchildren(cluster_args, tmp_path):
    pidfile = tmp_path / "grandchild"

    def hang(path):
        import signal
        import subprocess

        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # it will take SIGKILL
        child = subprocess.Popen(["sleep", "600"])
        Path(path).write_text(str(child.pid))
        while True:
            pass

    with dispy.JobCluster(hang, timeout=1.0, **cluster_args) as c:
        job = c.submit(str(pidfile))
        assert job(timeout=30) is None
        assert job.status == dispy.DispyJob.Terminated
        assert "timeout" in job.exception
        grandchild = int(pidfile.read_text())
        import psutil

        deadline = time.monotonic() + 10
        while psutil.pid_exists(grandchild) and time.monotonic() < deadline:
            if psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE:
                break
            time.sleep(0.05)
        assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == "zombie"


def test_executor_job_timeout_is_a_timeout_error(redis_url, cluster, start_worker):
    start_worker(redis_url, 1)
    with dispy.Executor(redis_url, cluster=cluster) as ex:
        future = ex._dispatcher.submit(time.sleep, [((30,), {})], header={"to": 0.5})[0]
        with pytest.raises(TimeoutError, match="timeout"):
            future.result(30)


def test_depends_files_modules_functions_and_setup_globals(cluster_args, tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("1,2,3\n")
    helper = tmp_path / "helpermod_rdispy_test.py"
    helper.write_text("def triple(x):\n    return 3 * x\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import helpermod_rdispy_test
    finally:
        sys.path.remove(str(tmp_path))

    def double(x):
        return 2 * x

    def setup():
        global shared
        shared = 100
        return 0

    def compute_with_deps(n):
        import helpermod_rdispy_test as h

        with open("data.csv") as f:
            total = sum(int(v) for v in f.read().split(","))
        return total + double(n) + h.triple(n) + shared  # noqa: F821 - defined by setup

    with dispy.JobCluster(
        compute_with_deps,
        depends=[str(data), helpermod_rdispy_test, double],
        setup=setup,
        **cluster_args,
    ) as c:
        jobs = [c.submit(i) for i in range(4)]
        assert [job() for job in jobs] == [6 + 5 * i + 100 for i in range(4)]
        # a changed file is a new blob: a new cluster sees the new content, never a stale copy
    data.write_text("10,20\n")
    with dispy.JobCluster(
        compute_with_deps,
        depends=[str(data), helpermod_rdispy_test, double],
        setup=setup,
        **cluster_args,
    ) as c:
        assert c.submit(0)() == 30 + 100


def test_program_computation_runs_with_arguments(cluster_args, tmp_path):
    program = tmp_path / "prog.py"
    program.write_text(
        textwrap.dedent("""
        import sys
        print("args", " ".join(sys.argv[1:]))
        print("warn", file=sys.stderr)
        sys.exit(int(sys.argv[1]))
    """)
    )
    with dispy.JobCluster(str(program), **cluster_args) as c:
        ok, bad = c.submit(0, "x"), c.submit(3, "y")
        assert ok() == 0 and ok.stdout == b"args 0 x\n" and ok.stderr == b"warn\n"
        assert bad() == 3 and bad.stdout == b"args 3 y\n"


def test_send_file_lands_in_dest_path(cluster_args, tmp_path):
    dest = tmp_path / "dest"

    def produce(n):
        with open(f"out-{n}.txt", "w") as f:
            f.write(f"result {n}")
        dispy.send_file(f"out-{n}.txt")
        return n

    with dispy.JobCluster(produce, dest_path=str(dest), **cluster_args) as c:
        jobs = [c.submit(i) for i in range(3)]
        assert [job() for job in jobs] == [0, 1, 2]
    assert sorted(p.name for p in dest.iterdir()) == ["out-0.txt", "out-1.txt", "out-2.txt"]
    assert (dest / "out-2.txt").read_text() == "result 2"


def test_embedded_default_job_cluster():
    with dispy.JobCluster(compute, cpus=2) as c:
        assert c.submit(0)()[1] == 0


def where(n):
    return n


def test_nodes_limit_placement_and_submit_node_pins(cluster_args):
    with dispy.JobCluster(where, nodes=["node-b"], **cluster_args) as c:
        jobs = [c.submit(i) for i in range(6)]
        assert [job() for job in jobs] == list(range(6))
        assert {job.node for job in jobs} == {"node-b"}
    with dispy.JobCluster(where, nodes=["node-*"], **cluster_args) as c:
        jobs = [c.submit(i) for i in range(8)]
        c.wait()
        assert {job.node for job in jobs} == {"node-a", "node-b"}  # spread by load
        pinned = [c.submit_node("node-a", i) for i in range(3)]
        assert [job() for job in pinned] == [0, 1, 2]
        assert {job.node for job in pinned} == {"node-a"}
    selector = dispy.NodeAllocate("127.0.0.*")
    with dispy.JobCluster(where, nodes=[selector], **cluster_args) as c:
        assert c.submit(7)() == 7


def test_no_eligible_node_is_a_clear_error_not_a_hang(cluster_args):
    with dispy.JobCluster(where, nodes=["gpu-*"], node_wait=0.5, **cluster_args) as c:
        started = time.monotonic()
        with pytest.raises(dispy.NoNodesError, match="gpu-"):
            c.submit(1)
        assert time.monotonic() - started < 5


def test_job_pinned_to_a_node_that_dies_before_it_starts_fails_with_node_lost(
    redis_url, cluster, start_worker, tmp_path
):
    import psutil

    doomed = start_worker(redis_url, 1, "doomed")
    start_worker(redis_url, 1, "other")

    def nap(seconds):
        time.sleep(seconds)
        return seconds

    with dispy.JobCluster(nap, redis_url=redis_url, cluster=cluster) as c:
        busy = c.submit_node("doomed", 30)  # occupies doomed's only core
        deadline = time.monotonic() + 20
        while busy.status != dispy.DispyJob.Running and time.monotonic() < deadline:
            time.sleep(0.02)
        waiting = c.submit_node("doomed", 0)
        for proc in [*doomed.consumers(), psutil.Process(doomed.pid)]:
            proc.kill()
        assert waiting(timeout=30) is None
        assert waiting.status == dispy.DispyJob.Abandoned
        assert "doomed" in waiting.exception
        assert busy(timeout=30) is None and busy.status == dispy.DispyJob.Abandoned
        assert c.submit(0.01)() == 0.01  # the other node serves


def test_node_events_status_deallocate_and_send_file(redis_url, cluster, start_worker, tmp_path):
    start_worker(redis_url, 1, "node-a")
    events: list[tuple[int, str]] = []

    def cluster_status(status, node, job):
        if job is None:
            events.append((status, node.name))

    extra = tmp_path / "extra.txt"
    extra.write_text("late file")

    def read_extra(_):
        import os

        return open("extra.txt").read() if os.path.exists("extra.txt") else None

    with dispy.JobCluster(
        read_extra, cluster_status=cluster_status, redis_url=redis_url, cluster=cluster
    ) as c:
        assert c.submit(0)() is None
        c.send_file(str(extra))
        assert c.submit(0)() == "late file"
        later = start_worker(redis_url, 1, "node-b")
        deadline = time.monotonic() + 10
        while (dispy.DispyNode.Initialized, "node-b") not in events and time.monotonic() < deadline:
            time.sleep(0.05)
        status = c.status()
        assert {n.name for n in status.nodes} == {"node-a", "node-b"} and status.jobs_pending == 0
        c.deallocate_node("node-a")
        jobs = [c.submit(i) for i in range(4)]
        c.wait()
        assert {job.node for job in jobs} == {"node-b"}
        later.stop()
        deadline = time.monotonic() + 10
        while (dispy.DispyNode.Closed, "node-b") not in events and time.monotonic() < deadline:
            time.sleep(0.05)
    assert (dispy.DispyNode.Initialized, "node-a") in events
    assert (dispy.DispyNode.Closed, "node-b") in events


def test_cleanup_function_runs_at_close_and_session_files_go(redis_url, cluster, tmp_path):
    import glob
    import subprocess

    marker = tmp_path / "cleaned"
    workdir = tmp_path / "node"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rdispy",
            "worker",
            "--redis",
            redis_url,
            "--cpus",
            "1",
            "--name",
            "solo",
            "--cluster",
            cluster,
            "--workdir",
            str(workdir),
        ],
        env=dict(os.environ, RDISPY_HEARTBEAT="0.25"),
    )
    data = tmp_path / "data.txt"
    data.write_text("x")

    def setup():
        global resource
        resource = "open"
        return 0

    def cleanup():
        with open(str(marker), "w") as f:
            f.write(resource)  # noqa: F821 - the global setup made

    def use(_):
        return resource  # noqa: F821

    try:
        c = dispy.JobCluster(
            use,
            depends=[str(data)],
            setup=setup,
            cleanup=cleanup,
            redis_url=redis_url,
            cluster=cluster,
        )
        assert c.submit(0)(timeout=30) == "open"
        assert glob.glob(str(workdir / "sessions" / "*" / "data.txt"))
        c.close()
        deadline = time.monotonic() + 10
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.read_text() == "open"
        while glob.glob(str(workdir / "sessions" / "*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not glob.glob(str(workdir / "sessions" / "*"))
    finally:
        proc.terminate()
        proc.wait(10)


def setup_fails_on_bad_node():
    import os

    if "rdispy-node-bad" in os.getcwd():
        raise RuntimeError("no licence on this node")
    return 0


def test_a_failing_setup_excludes_that_node_and_its_jobs_run_elsewhere(
    redis_url, cluster, start_worker
):
    start_worker(redis_url, 1, "bad")
    start_worker(redis_url, 1, "good")
    events = []

    def cluster_status(status, node, job):
        if job is None:
            events.append((status, node.name))

    with dispy.JobCluster(
        where,
        setup=setup_fails_on_bad_node,
        cluster_status=cluster_status,
        redis_url=redis_url,
        cluster=cluster,
    ) as c:
        jobs = [c.submit(i) for i in range(12)]
        assert [job(timeout=60) for job in jobs] == list(range(12))
        assert {job.node for job in jobs} == {"good"}
        time.sleep(0.3)
    assert (dispy.DispyNode.Closed, "bad") in events


def test_setup_failing_everywhere_fails_the_jobs_clearly(redis_url, cluster, start_worker):
    start_worker(redis_url, 1, "bad")
    with dispy.JobCluster(
        where, setup=setup_fails_on_bad_node, redis_url=redis_url, cluster=cluster
    ) as c:
        job = c.submit(1)
        assert job(timeout=60) is None
        assert job.status == dispy.DispyJob.Terminated
        assert "setup failed on node bad" in job.exception and "no licence" in job.exception


def test_set_node_cpus_caps_this_clusters_jobs_on_a_node(
    redis_url, cluster, start_worker, tmp_path
):
    start_worker(redis_url, 2, "wide")
    ledger = tmp_path / "ledger"

    def overlap(i):
        import fcntl

        with open(ledger, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.write(f"start {time.time()}\n")
        time.sleep(0.3)
        with open(ledger, "a") as f:
            f.write(f"end {time.time()}\n")
        return i

    with dispy.JobCluster(overlap, redis_url=redis_url, cluster=cluster) as c:
        assert c.set_node_cpus("wide", 1) == 1
        jobs = [c.submit(i) for i in range(4)]
        assert [job(timeout=30) for job in jobs] == [0, 1, 2, 3]
        later = [c.submit(i) for i in range(3)]  # one sent, two held in the client
        assert c.cancel(later[-1]) == 0
        assert later[-1](timeout=5) is None and later[-1].status == dispy.DispyJob.Cancelled
        assert [job(timeout=30) for job in later[:2]] == [0, 1]
    events = sorted(
        (float(t), kind) for kind, t in (line.split() for line in ledger.read_text().splitlines())
    )
    running = peak = 0
    for _, kind in events:
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert peak == 1  # never two of this cluster's jobs at once on a node capped to one


def test_a_job_needing_several_cores_holds_them_alone(redis_url, cluster, start_worker, tmp_path):
    start_worker(redis_url, 2, "wide")
    ledger = tmp_path / "ledger"

    def timed(tag):
        start = time.time()
        time.sleep(0.3)
        with open(ledger, "a") as f:
            f.write(f"{tag} {start} {time.time()}\n")
        return tag

    with dispy.JobCluster(timed, node_wait=0.5, redis_url=redis_url, cluster=cluster) as c:
        jobs = [c.submit("a1"), c.submit("a2"), c.submit_cpus(2, "big"), c.submit("a3")]
        jobs.append(c.submit("a4"))
        assert [job(timeout=30) for job in jobs] == ["a1", "a2", "big", "a3", "a4"]
        with pytest.raises(dispy.NoNodesError, match="3 cores"):
            c.submit_cpus(3, "too big")
    spans = {
        tag: (float(s), float(e))
        for tag, s, e in (r.split() for r in ledger.read_text().splitlines())
    }
    big_start, big_end = spans.pop("big")
    for start, end in spans.values():
        assert end <= big_start + 0.01 or start >= big_end - 0.01  # nothing overlapped it


def test_a_job_moved_from_a_lost_node_takes_the_setup_args_of_the_node_it_moves_to(
    redis_url, cluster, start_worker, tmp_path
):
    """A NodeAllocate's setup_args go with the jobs placed on its node; a queued job moved off a
    node that left gets the new node's, never the old one's."""
    import psutil

    doomed = start_worker(redis_url, 1, "doomed")
    started = tmp_path / "started"

    class PerNode(dispy.NodeAllocate):
        def allocate(self, cluster, ip_addr, name, cpus, avail_info=None, platform=""):
            self.setup_args = (name,)
            return cpus

    def setup(name):
        global node_given
        node_given = name
        return 0

    def whose(seconds, mark=None):
        if mark:
            open(mark, "w").close()
        time.sleep(seconds)
        return node_given  # noqa: F821 - set by setup

    with dispy.JobCluster(
        whose,
        nodes=[PerNode("doomed"), PerNode("rescuer")],
        setup=setup,
        redis_url=redis_url,
        cluster=cluster,
    ) as c:
        c.submit(30, str(started))  # occupies doomed's only core
        wait_until(started.exists, "the first job to start on doomed", 20)
        waiting = c.submit(0)  # queued on doomed: the only node there is
        start_worker(redis_url, 1, "rescuer")
        for proc in [*doomed.consumers(), psutil.Process(doomed.pid)]:
            proc.kill()
        assert waiting(timeout=40) == "rescuer", waiting.exception


def test_node_events_reach_cluster_status_only_once_the_constructor_returned(
    redis_url, cluster, start_worker, monkeypatch
):
    """dispy programs submit from cluster_status through the name they assigned the cluster to
    (``cluster = JobCluster(...)``, job_scheduler.py, longrun.py): the first node event must
    not run while the constructor is still at work."""
    from rdispy.client.cluster import JobCluster

    start_worker(redis_url, 1, "n1")
    opened = JobCluster._open

    def slow_open(self, *args, **kwargs):
        opened(self, *args, **kwargs)
        time.sleep(0.5)  # the rest of a constructor on a loaded machine

    monkeypatch.setattr(JobCluster, "_open", slow_open)
    holder: dict[str, object] = {}
    seen: list[bool] = []

    def cluster_status(status, node, job):
        if job is None and status == dispy.DispyNode.Initialized:
            seen.append("cluster" in holder)

    holder["cluster"] = c = dispy.JobCluster(
        abs, cluster_status=cluster_status, redis_url=redis_url, cluster=cluster
    )
    try:
        wait_until(lambda: seen, "the node's Initialized event", 10)
        assert seen == [True]
    finally:
        c.close()
