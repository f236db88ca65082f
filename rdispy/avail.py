"""What a node has free, as dispy reports it (``DispyNodeAvailInfo``), sent with each heartbeat.

``cpu`` is the idle share of the node's cores in percent, ``memory`` and ``swap`` the bytes free,
``disk`` the bytes free where the node keeps its files.  psutil gives all four when installed
(dispynode needs it for the same); without it the load average, ``sysconf`` and
``shutil.disk_usage`` give what they can (swap 0 where unknown).

Shared by both sides: a node measures and writes the figures into its record (``rdispy.nodes``),
a client reads them back into ``DispyNode.avail_info`` and ``NodeAllocate`` placement.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Any

#: Node record fields carrying the figures.
FIELDS = ("avcpu", "avmem", "avdisk", "avswap")


class DispyNodeAvailInfo:
    """A node's free CPU (percent), memory, disk and swap (bytes), as in dispy."""

    def __init__(self, cpu: float, memory: int, disk: int, swap: int) -> None:
        self.cpu = cpu
        self.memory = memory
        self.disk = disk
        self.swap = swap

    def __repr__(self) -> str:
        return (
            f"DispyNodeAvailInfo(cpu={self.cpu:.1f}, memory={self.memory}, disk={self.disk}, "
            f"swap={self.swap})"
        )


def measure(path: str | None = None) -> DispyNodeAvailInfo:
    """This host's free resources now (``path``: where the disk is measured)."""
    path = path or tempfile.gettempdir()
    try:
        import psutil  # type: ignore[import-untyped]
    except ImportError:
        psutil = None
    disk = 0
    with contextlib.suppress(OSError):
        disk = shutil.disk_usage(path).free
    if psutil is not None:
        return DispyNodeAvailInfo(
            100.0 - psutil.cpu_percent(),
            psutil.virtual_memory().available,
            disk,
            psutil.swap_memory().free,
        )
    cpus = os.cpu_count() or 1
    cpu = 100.0
    with contextlib.suppress(OSError, AttributeError):
        cpu = max(0.0, 100.0 * (1.0 - os.getloadavg()[0] / cpus))
    memory = 0
    with contextlib.suppress(ValueError, OSError, AttributeError):
        memory = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return DispyNodeAvailInfo(cpu, memory, disk, _swap_free())


def _swap_free() -> int:
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("SwapFree:"):
                    return int(line.split()[1]) * 1024
    return 0


def to_fields(info: DispyNodeAvailInfo) -> dict[str, str]:
    return {
        "avcpu": f"{info.cpu:.1f}",
        "avmem": str(info.memory),
        "avdisk": str(info.disk),
        "avswap": str(info.swap),
    }


def from_record(record: dict[str, Any]) -> DispyNodeAvailInfo | None:
    """The figures in a node record, or None from a node that sends none."""
    try:
        return DispyNodeAvailInfo(
            float(record["avcpu"]),
            int(record["avmem"]),
            int(record["avdisk"]),
            int(record["avswap"]),
        )
    except (KeyError, ValueError):
        return None
