"""rdispy's benchmark: rdispy.Executor and JobCluster against ProcessPoolExecutor, in one run.

Modules: ``jobs`` (the functions every executor runs), ``executors`` (the columns), ``workloads``
(what is measured), ``metrics`` (rows, units, targets), ``session`` (one timed executor
lifetime), ``report`` (table and JSON), ``cli`` (options), ``run`` (entry point).
"""
