"""keys: one prefix, one hash tag per cluster, names that cannot collide."""

from __future__ import annotations

import pytest

from rdispy.keys import Keys


def all_keys(keys: Keys) -> list[str]:
    return [
        keys.jobs,
        keys.results("c1"),
        keys.job("j1"),
        keys.blob("ab"),
        keys.node("n1"),
        keys.nodes,
        keys.dead_letters,
    ]


def test_every_key_has_the_prefix_and_the_cluster_hash_tag():
    keys = Keys("alpha", "pfx")
    for key in all_keys(keys):
        assert key.startswith("pfx:{alpha}:")
    assert len(set(all_keys(keys))) == len(all_keys(keys))


def test_clusters_do_not_share_keys():
    assert not set(all_keys(Keys("a"))) & set(all_keys(Keys("b")))


@pytest.mark.parametrize("bad", ["", "a:b", "{x}", "has space"])
def test_names_that_would_break_the_schema_are_refused(bad):
    with pytest.raises(ValueError):
        Keys(bad)


@pytest.mark.parametrize(
    "name", ["../x", "a/../../x", "/etc/passwd", "..\\x", "x\x00y", "a" * 300, "", ".", ".."]
)
def test_dependency_names_that_could_leave_the_job_folder_are_refused(name):
    from rdispy.errors import JobError
    from rdispy.wire import check_file_name

    with pytest.raises(JobError, match="refused dependency name"):
        check_file_name(name)


def test_plain_dependency_names_are_accepted():
    from rdispy.wire import check_file_name

    assert check_file_name("data.csv") == "data.csv"


def test_a_node_job_stream_reads_back_as_its_node():
    keys = Keys("c")
    assert keys.node_of_jobs(keys.node_jobs("gpu-1.lan")) == "gpu-1.lan"
    for other in (keys.jobs, keys.node("n1"), keys.fair_queue("n1"), "", Keys("d").node_jobs("n")):
        assert keys.node_of_jobs(other) is None


def test_the_key_table_gives_node_records_the_ttl_heartbeats_set() -> None:
    from rdispy import defaults, keys

    table = keys.__doc__ or ""
    node_row = next(line for line in table.splitlines() if line.startswith("``node:<name>``"))
    assert node_row.rstrip().endswith(f"{defaults.HEARTBEATS_MISSED} heartbeats"), node_row
