"""Shared helpers for the benchmarks: timing with warm-up, and the machine line they print."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch


def timed(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed_together(
    fns: dict[str, Callable[[], object]],
    repeats: int = 5,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median time of each function, run round-robin so drift hits all of them alike.

    ``clock`` is wall time by default; ``time.process_time`` (this process's CPU time) is
    steadier on a machine shared with other jobs, and with one thread equals the work done.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def machine() -> str:
    """One line naming the machine, torch build and thread count."""
    return (
        f"{platform.machine()} {platform.processor() or ''} cores={os.cpu_count()} "
        f"torch={torch.__version__} threads={torch.get_num_threads()}"
    ).replace("  ", " ")


def bench_args(description: str | None, cpu_time: bool = False) -> argparse.Namespace:
    """The options every ratio benchmark takes (``--quick``, ``--repeats``, ``--threads``, and
    ``--cpu-time`` where ``cpu_time``), parsed; torch's thread count set when given."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default torch's); 1 is steadier on a busy machine")
    if cpu_time:
        parser.add_argument("--cpu-time", action="store_true",
                            help="time with this process's CPU time (with --threads 1: the "
                                 "work done, unaffected by other jobs) instead of wall time")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args
