"""``python -m bench --profile``: where the microseconds of one no-op job go, client and consumers.

Runs the embedded default with no-op jobs (first one ``submit(noop).result()`` after another,
then batches of ``submit`` calls) while py-spy samples the client process and the local node
(supervisor and consumers, ``--subprocesses``) without stopping them (``--nonblocking``).
Each process group's own CPU time (psutil) gives its microseconds per job; py-spy's samples,
less those whose leaf is a wait (a blocking socket read, a condition, a sleep), show where they
go: leaf functions (self time) and the functions of the hot-path modules (inclusive time).
py-spy must be on PATH (``pip install py-spy``); the raw stacks are kept for flame graphs.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench import jobs
from rdispy.client.executor import Executor

HOT_PATH = (
    "rdispy/client/dispatcher.py",
    "rdispy/client/sender.py",
    "rdispy/client/reader.py",
    "rdispy/client/results.py",
    "rdispy/client/ledger.py",
    "rdispy/client/future.py",
    "rdispy/client/executor.py",
    "rdispy/worker/consumer.py",
    "rdispy/worker/admission.py",
    "rdispy/worker/functions.py",
    "rdispy/worker/payloads.py",
    "rdispy/worker/publishing.py",
    "rdispy/worker/runner.py",
    "rdispy/link.py",
    "rdispy/wire.py",
    "rdispy/scripts.py",
    "rdispy/serialization.py",
    "rdispy/handoff.py",
)
#: Leaf functions where a thread waits (a blocking read, a condition, a sleep): py-spy cannot
#: always tell such a thread is idle, so their samples are counted apart, as waiting.
WAITS = frozenset(
    ("read_from_socket", "wait", "sleep", "select", "poll", "recv", "_wait_for_tstate_lock")
)
FRAME = re.compile(r"^(?P<fn>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
RATE = 1000


def _frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for part in stack.split(";"):
        match = FRAME.match(part.strip())
        if match:
            out.append((match["fn"], match["file"]))
        else:
            out.append((part.strip(), ""))
    return out


def _short(path: str) -> str:
    marker = path.rfind("rdispy/")
    if marker >= 0 and "site-packages" not in path[:marker]:
        return path[marker:]
    return path.rsplit("site-packages/", 1)[-1].rsplit("/lib/", 1)[-1]


def _group(frames: list[tuple[str, str]], client: bool) -> str:
    if client:
        return "client"
    names = {fn for fn, _ in frames}
    return "consumers" if "consumer_main" in names else "supervisor"


def summarise(raw: dict[str, Path], jobs_done: int, cpu: dict[str, float]) -> str:
    """The tables: per process group, self time of leaf functions, inclusive hot-path time."""
    per_group: collections.Counter[str] = collections.Counter()
    waiting: collections.Counter[str] = collections.Counter()
    leaf: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    hot: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for who, path in raw.items():
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not count_text.isdigit():
                continue
            count = int(count_text)
            frames = _frames(stack)
            group = _group(frames, who == "client")
            fn, file = frames[-1]
            if fn.rsplit(".", 1)[-1] in WAITS:
                waiting[group] += count
                continue
            per_group[group] += count
            leaf[group][f"{fn} ({_short(file)})"] += count
            seen = set()
            for fn, file in frames:
                short = _short(file)
                if short in HOT_PATH and (fn, short) not in seen:
                    seen.add((fn, short))
                    hot[group][f"{short.removeprefix('rdispy/')}:{fn}"] += count

    def us(count: int) -> str:
        return f"{count / RATE / jobs_done * 1e6:8.1f}"

    lines = [f"{jobs_done:,} no-op jobs; CPU microseconds per job (py-spy, {RATE} Hz)", ""]
    lines.append(f"{'process':<12} {'CPU us/job':>10} {'sampled':>8} {'waiting':>8}")
    for group in cpu:
        measured = cpu[group] / jobs_done * 1e6
        count = per_group.get(group, 0)
        lines.append(f"{group:<12} {measured:10.1f} {us(count)} {us(waiting[group])}")
    lines.append("(CPU: the processes' own CPU time; sampled: py-spy samples not in a wait)")
    for group in ("client", "consumers"):
        lines += ["", f"{group}: hot-path functions, inclusive", f"{'us/job':>8}  function"]
        lines += [f"{us(c)}  {name}" for name, c in hot[group].most_common(18)]
        lines += ["", f"{group}: leaf functions (self time)", f"{'us/job':>8}  function"]
        lines += [f"{us(c)}  {name}" for name, c in leaf[group].most_common(12)]
    return "\n".join(lines)


def _cpu(processes: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in processes)


def _spy(pid: int, out: Path, seconds: float, children: bool) -> subprocess.Popen[bytes]:
    command = ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--output", str(out)]
    command += ["--rate", str(RATE), "--duration", str(int(seconds) + 1), "--nonblocking"]
    if children:
        command.append("--subprocesses")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def main(seconds: float, workers: int) -> int:
    if shutil.which("py-spy") is None:
        print("py-spy is not on PATH: pip install py-spy", file=sys.stderr)
        return 1
    folder = Path(tempfile.mkdtemp(prefix="rdispy-profile-"))
    raw = {"client": folder / "client.txt", "node": folder / "node.txt"}
    done = 0
    cpu: dict[str, float] = {}
    with Executor(max_workers=workers) as executor:
        for _ in range(200):
            executor.submit(jobs.noop).result()
        assert executor._local is not None
        spies = [
            _spy(os.getpid(), raw["client"], seconds, False),
            _spy(executor._local.supervisor.pid, raw["node"], seconds, True),
        ]
        time.sleep(0.5)  # py-spy attaches
        node = psutil.Process(executor._local.supervisor.pid)
        server = psutil.Process(executor._local.server.pid)
        procs = {
            "client": [psutil.Process()],
            "supervisor": [node],
            "consumers": node.children(),
            "valkey": [server],
        }
        before = {group: _cpu(ps) for group, ps in procs.items()}
        end = time.monotonic() + seconds / 2
        while time.monotonic() < end:  # latency: one job at a time
            executor.submit(jobs.noop).result()
            done += 1
        end = time.monotonic() + seconds / 2
        while time.monotonic() < end:  # throughput: batches
            for future in [executor.submit(jobs.noop) for _ in range(500)]:
                future.result()
            done += 500
        cpu = {group: _cpu(ps) - before[group] for group, ps in procs.items()}
        for spy in spies:
            _, err = spy.communicate(timeout=seconds + 30)
            if spy.returncode != 0:
                print(f"py-spy failed: {err.decode(errors='replace')[-500:]}", file=sys.stderr)
                return 1
    print(summarise(raw, done, cpu))
    print(f"\nraw stacks (flamegraph.pl / speedscope input): {folder}", file=sys.stderr)
    return 0
