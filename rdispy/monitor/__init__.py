"""Seeing a cluster: the state reader (``state``) behind `rdispy status` and the web monitor
(``web``, aiohttp), its Prometheus text (``metrics``) and its actions (``actions``: cancel a job,
drain a node)."""
