"""`rdispy relay` (dispy's dispynetrelay): bridges nodes on an isolated network into the central
Redis.  It answers discovery broadcasts on its network and proxies the nodes' Redis traffic,
allowing only rdispy's worker commands on the cluster's own keys (see ``policy``)."""
