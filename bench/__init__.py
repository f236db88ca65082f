"""rdispy's benchmark: rdispy.Executor against ProcessPoolExecutor, side by side in one run.

Modules: ``jobs`` (the functions every executor runs), ``executors`` (the columns), ``workloads``
(what is measured), ``metrics`` (rows, units, targets), ``session`` (one timed executor
lifetime), ``report`` (table and JSON), ``cli`` (options), ``run`` (entry point).
"""
