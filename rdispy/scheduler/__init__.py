"""Placement of jobs that need particular nodes: chosen by load and sent to the node's own stream.

Plain jobs need no scheduler: the shared stream's consumer group hands each entry to exactly one
free consumer.  Jobs limited to some nodes (``JobCluster(nodes=[...])``, ``submit_node``) are
placed by ``placement`` (pure: node loads in, a choice out) into the chosen node's stream.
"""
