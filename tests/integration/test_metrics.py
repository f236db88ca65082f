"""`/metrics` as Prometheus reads it: exactly the metrics README lists, with their labels, and a
latency histogram that counts every finished job (clients that close at once included)."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

import rdispy
from rdispy import defaults
from rdispy.monitor.web import Monitor
from tests.conftest import ROOT
from tests.helpers import executor, wait_until

pytestmark = pytest.mark.integration


def readme_metrics() -> dict[str, set[str]]:
    """Metric name -> label names (besides ``cluster``), from README's **Metrics** paragraph."""
    text = (ROOT / "README.md").read_text()
    start = text.index("**Metrics** (`/metrics`")
    paragraph = text[start : text.index("\n\n", start)]
    found: dict[str, set[str]] = {}
    for name, labels in re.findall(r"`(rdispy_[a-z_]+)(?:\{([a-z_,]+)\})?`", paragraph):
        found[name] = set(labels.split(",")) if labels else set()
    return found


def scrape(url: str) -> dict[str, tuple[str, list[tuple[str, dict[str, str], float]]]]:
    """Metric name (counters with their ``_total``) -> (type, samples)."""
    with urllib.request.urlopen(url + "metrics", timeout=30) as reply:
        text = reply.read().decode()
    served = {}
    for family in text_string_to_metric_families(text):
        name = family.name + "_total" if family.type == "counter" else family.name
        served[name] = (
            family.type,
            [(s.name, dict(s.labels), s.value) for s in family.samples],
        )
    return served


def sample(served: dict, name: str, suffix: str = "") -> float:
    (value,) = [v for n, _, v in served[name][1] if n == name + suffix]
    return value


@pytest.fixture
def monitor_of() -> Iterator:
    started: list[Monitor] = []

    def start(url: str, cluster: str) -> Monitor:
        mon = Monitor(url, cluster, port=0, sample_interval=0.2).start()
        started.append(mon)
        return mon

    yield start
    for mon in started:
        mon.stop()


def test_metrics_served_are_exactly_those_readme_lists(
    redis_url, cluster, start_worker, monitor_of
):
    documented = readme_metrics()
    assert "rdispy_entries_lost_total" in documented and len(documented) >= 19
    start_worker(redis_url, 2, "alpha")
    mon = monitor_of(redis_url, cluster)
    with executor(redis_url, cluster=cluster) as ex:
        assert [f.result(30) for f in [ex.submit(abs, -i) for i in range(5)]] == list(range(5))
        wait_until(lambda: scrape(mon.url)["rdispy_jobs_finished_total"][1][0][2] == 5, "5 done")
        served = scrape(mon.url)
    assert set(served) == set(documented), (
        f"served, not in README: {sorted(set(served) - set(documented))}; "
        f"in README, not served: {sorted(set(documented) - set(served))}"
    )
    for name, (_, samples) in served.items():
        assert samples, f"{name} has no sample"
        for _, labels, _ in samples:
            assert labels.pop("cluster") == cluster
            labels.pop("le", None)  # a histogram's buckets
            assert set(labels) == documented[name], (name, labels)
    assert served["rdispy_job_latency_seconds"][0] == "histogram"
    assert all(served[n][0] == "counter" for n in documented if n.endswith("_total"))


def test_latency_histogram_counts_every_finished_job_on_the_embedded_cluster(monitor_of):
    with rdispy.Executor(2) as embedded:
        mon = monitor_of(embedded.url, defaults.CLUSTER)
        # clients that close right after their last result, as scripts do
        for _ in range(3):
            with rdispy.Executor(embedded.url) as ex:
                assert sum(f.result() for f in [ex.submit(abs, -i) for i in range(300)]) == 44850
            with rdispy.Executor(embedded.url) as ex:
                for i in range(50):
                    assert ex.submit(pow, i, 2).result() == i * i
            with rdispy.Executor(embedded.url) as ex:
                assert list(ex.map(abs, range(-200, 0), chunksize=3)) == list(range(200, 0, -1))
        # and a client that stays
        assert list(embedded.map(abs, range(100), chunksize=1)) == list(range(100))
        jobs = 3 * (300 + 50 + 67) + 100  # a map chunk is one job

        def counted() -> tuple[float, float]:
            served = scrape(mon.url)
            return (
                sample(served, "rdispy_jobs_finished_total"),
                sample(served, "rdispy_job_latency_seconds", "_count"),
            )

        wait_until(lambda: counted()[0] == jobs, f"{jobs} jobs finished")
        wait_until(lambda: counted()[1] == jobs, f"latency to count {jobs}: {counted()}", 5)
        served = scrape(mon.url)
        buckets = [
            v for n, labels, v in served["rdispy_job_latency_seconds"][1] if n.endswith("_bucket")
        ]
        assert buckets[-1] == jobs and buckets == sorted(buckets)
        assert sample(served, "rdispy_job_latency_seconds", "_sum") > 0
