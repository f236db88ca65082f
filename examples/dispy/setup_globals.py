"""setup() runs once per consumer before its first job of the cluster and defines globals the
computation reads (dispy's way to share large read-only data); cleanup() runs on the same
consumers when the cluster closes, and sees the same globals."""

import os


def setup(n):  # executed on each node before jobs are scheduled
    global data
    data = list(range(n))
    return 0


def cleanup():  # executed on each node when the cluster is closed
    global data
    del data


def compute(i):
    return sum(data[i::4])  # noqa: F821 - 'data' is defined by setup


if __name__ == "__main__":
    import functools

    import rdispy as dispy

    cluster = dispy.JobCluster(
        compute,
        setup=functools.partial(setup, 1000),
        cleanup=cleanup,
        redis_url=os.environ.get("RDISPY_REDIS"),
    )
    jobs = [cluster.submit(i) for i in range(4)]
    print("partial sums:", [job() for job in jobs], "total:", sum(job.result for job in jobs))
    cluster.close()
