"""A callback-driven pipeline (dispy style): results are handled as they arrive, and new jobs
are submitted from the callback's thread while the cluster is busy."""

import os
import threading


def compute(n):
    return n * n


if __name__ == "__main__":
    import rdispy as dispy

    done = threading.Event()
    pending = {"count": 20}
    total = {"sum": 0}
    lock = threading.Lock()

    def job_callback(job):  # runs in one thread of the client, per job in status order
        if job.status == dispy.DispyJob.Finished:
            with lock:
                total["sum"] += job.result
                pending["count"] -= 1
                if pending["count"] == 0:
                    done.set()
        elif job.status in (dispy.DispyJob.Terminated, dispy.DispyJob.Abandoned):
            print("job %s failed: %s" % (job.id, job.exception))

    cluster = dispy.JobCluster(
        compute, callback=job_callback, redis_url=os.environ.get("RDISPY_REDIS")
    )
    for i in range(20):
        job = cluster.submit(i)
        job.id = i
    done.wait()
    print("sum of squares below 20:", total["sum"])
    cluster.close()
