"""Command line: parse options, calibrate, run every session, print the table, write the JSON.

Progress goes to stderr, the table to stdout.  The exit status is 1 when a session failed (an
error, a timeout, a wrong result), 0 otherwise; missed targets show as FAIL in the table only.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from bench import report
from bench.executors import BASELINE, EXECUTORS, PEERS, SUBJECT
from bench.session import run_all
from bench.workloads import ALL, FULL, QUICK, Plan, calibrate


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _selection(text: str, allowed: list[str], what: str) -> list[str]:
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in allowed]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"{what} must be among {','.join(allowed)}")
    return [item for item in allowed if item in chosen]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="rdispy (Executor and JobCluster) against ProcessPoolExecutor on the same "
        "cores, side by side.",
    )
    parser.add_argument("--repeat", type=_positive, help="sessions per executor (3; 1 --quick)")
    parser.add_argument(
        "--workers",
        type=_positive,
        default=os.cpu_count() or 1,
        help="worker processes of every executor (default: the cores)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--only",
        default=",".join(ALL),
        metavar="a,b,...",
        type=lambda text: _selection(text, list(ALL), "workloads"),
        help="workloads: a throughput, b latency, c payload, d CPU, e cold start (default all)",
    )
    parser.add_argument(
        "--executors",
        default=",".join(EXECUTORS),
        metavar="NAME,...",
        type=lambda text: _selection(text, [*EXECUTORS, *PEERS], "executors"),
        help=f"columns, among {','.join([*EXECUTORS, *PEERS])} (default: {','.join(EXECUTORS)})",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the JSON record here")
    modes = parser.add_argument_group("other modes (instead of the table)")
    modes.add_argument(
        "--memory",
        action="store_true",
        help="Redis memory per queued job and client memory per pending future (no workers)",
    )
    modes.add_argument(
        "--memory-jobs",
        type=_positive,
        default=100_000,
        metavar="N",
        help="jobs --memory queues (default 100000; 1000000 for the real figure)",
    )
    modes.add_argument("--memory-secret", action="store_true", help="--memory with signed entries")
    modes.add_argument(
        "--scaling",
        action="store_true",
        help="no-op throughput for 1..workers consumers and 1..N client threads",
    )
    modes.add_argument(
        "--scaling-threads", type=_positive, default=4, metavar="N", help="client threads (4)"
    )
    modes.add_argument(
        "--peers",
        action="store_true",
        help="run again in a separate venv with peers' columns added "
        "(loky, dask, ray, celery, rq, dispy)",
    )
    modes.add_argument(
        "--profile",
        action="store_true",
        help="py-spy profile of the per-job hot path in client and consumers, as a table",
    )
    modes.add_argument(
        "--profile-seconds", type=float, default=6.0, metavar="S", help="length of --profile"
    )
    modes.add_argument(
        "--paired",
        action="store_true",
        help="latency of the --executors open at once, one call each in turn (ratios robust "
        "to other load on the machine)",
    )
    modes.add_argument(
        "--paired-rounds", type=_positive, default=1000, metavar="N", help="calls each (1000)"
    )
    return parser.parse_args(argv)


def _plan(quick: bool, workers: int, selected: set[str]) -> Plan:
    sizes = QUICK if quick else FULL
    if "d" not in selected:
        return Plan(sizes, workers, 0, 0.0)
    loops, seconds = calibrate(sizes.cpu_job_seconds)
    print(f"calibrated: {loops} loops = {seconds:.3f}s per CPU job", file=sys.stderr)
    return Plan(sizes, workers, loops, seconds)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.peers:
        from bench import peers

        return peers.main(list(sys.argv[1:] if argv is None else argv))
    if args.memory:
        from bench import memory

        return memory.main(args.memory_jobs, "bench-secret" if args.memory_secret else None)
    if args.scaling:
        from bench import scaling

        return scaling.main(args.workers, args.scaling_threads, args.repeat or 3)
    if args.profile:
        from bench import profile

        return profile.main(args.profile_seconds, args.workers)
    if args.paired:
        from bench import paired

        return paired.main(args.executors, args.workers, args.paired_rounds)
    selected = set(args.only)
    repeats = args.repeat or (1 if args.quick else 3)
    plan = _plan(args.quick, args.workers, selected)
    started = datetime.now(timezone.utc)
    samples = run_all(args.executors, plan, selected, repeats)
    stats = report.medians(samples)
    rows = report.build_rows(args.executors, selected, stats)
    failures = report.errors(samples)
    print(
        f"\n{args.workers} workers, median of {repeats} run(s), ratio = {SUBJECT} / {BASELINE}"
        " (rows labelled 'X / Y': ratio = X / Y)"
    )
    print(report.table(rows, args.executors))
    for line in failures:
        print(line)
    config = {
        "repeat": repeats,
        "quick": args.quick,
        "workloads": args.only,
        "executors": args.executors,
        "plan": asdict(plan),
    }
    doc = report.document(started, config, samples, stats, rows)
    for path in report.write(doc, started, args.json):
        print(f"wrote {path}", file=sys.stderr)
    return 1 if failures else 0
