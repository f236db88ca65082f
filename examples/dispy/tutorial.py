"""dispy's README tutorial, unchanged but for the import.

python examples/dispy/tutorial.py            # embedded default: this machine's cores
RDISPY_REDIS=redis://HOST:6379 python examples/dispy/tutorial.py   # a running cluster
"""

import os


def compute(n):  # executed on nodes
    import socket
    import time

    time.sleep(n)
    host = socket.gethostname()
    return (host, n)


if __name__ == "__main__":
    import random

    import rdispy as dispy

    cluster = dispy.JobCluster(compute, redis_url=os.environ.get("RDISPY_REDIS"))
    jobs = []
    for i in range(10):
        # schedule execution of 'compute' on a node (running 'dispynode')
        # with a parameter (random number in this case)
        job = cluster.submit(random.randint(1, 5) / 10)
        job.id = i  # optionally associate an ID to job (if needed later)
        jobs.append(job)
    # cluster.wait() # waits for all scheduled jobs to finish
    for job in jobs:
        host, n = job()  # waits for job to finish and returns results
        print("%s executed job %s at %s with %s" % (host, job.id, job.start_time, n))
        # other fields of 'job' that may be useful:
        # print(job.stdout, job.stderr, job.exception, job.ip_addr, job.start_time, job.end_time)
    cluster.print_status()
    cluster.close()
