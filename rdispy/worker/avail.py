"""Old home of ``rdispy.avail``, kept importable: a ``DispyNodeAvailInfo`` pickled by an older
rdispy names this path.  New code imports ``rdispy.avail``."""

from rdispy.avail import DispyNodeAvailInfo

__all__ = ["DispyNodeAvailInfo"]
