"""Old home of ``rdispy.job_context``, kept importable: a job's function that uses
``provisional_result`` or ``send_file`` (or its context) may be pickled by reference to this
path by an older rdispy.  New code imports ``rdispy.job_context``."""

from rdispy.job_context import (
    JobContext,
    current,
    current_or_none,
    provisional_result,
    send_file,
    set_current,
)

__all__ = [
    "JobContext",
    "current",
    "current_or_none",
    "provisional_result",
    "send_file",
    "set_current",
]
