"""Provisional results: a job reports progress before its final result."""

import os


def compute(n):
    import time

    import rdispy as dispy

    best = 0
    for step in range(1, 4):
        time.sleep(0.1)
        best = max(best, n * step)
        dispy.provisional_result(best)  # the client sees job.status == ProvisionalResult
    return best


if __name__ == "__main__":
    import rdispy as dispy

    def status(job):
        if job.status == dispy.DispyJob.ProvisionalResult:
            print("job %s provisional result %s" % (job.id, job.result))
        elif job.status == dispy.DispyJob.Finished:
            print("job %s final result %s" % (job.id, job.result))

    cluster = dispy.JobCluster(compute, callback=status, redis_url=os.environ.get("RDISPY_REDIS"))
    jobs = []
    for i in range(1, 3):
        job = cluster.submit(i)
        job.id = i
        jobs.append(job)
    cluster.wait()
    cluster.close()
