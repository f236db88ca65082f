"""submit_node: run a job on a chosen node (dispy style), and NodeAllocate to limit a cluster to
some nodes.  On the embedded default there is one local node; with RDISPY_REDIS pointing at a
cluster, every registered node gets one job."""

import os


def where(n):
    import socket

    return socket.gethostname(), n


if __name__ == "__main__":
    import rdispy as dispy

    cluster = dispy.JobCluster(
        where, nodes=[dispy.NodeAllocate("*")], redis_url=os.environ.get("RDISPY_REDIS")
    )
    nodes = cluster.nodes()
    jobs = []
    for i, node in enumerate(nodes):
        job = cluster.submit_node(node, i)
        job.id = node.name
        jobs.append(job)
    for job in jobs:
        host, n = job()
        print("node %s ran job %s on host %s" % (job.node, n, host))
    cluster.close()
