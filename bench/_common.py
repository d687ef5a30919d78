"""Helpers shared by the bench scripts (run them as `python bench/NAME.py`)."""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
import trio.testing

from trioraft.determinism import seed_scheduler

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_virtual(fn: Callable[..., Any], seed: int, *args: Any) -> Any:
    """One deterministic trio run in virtual time."""
    seed_scheduler(seed)
    return trio.run(fn, *args, clock=trio.testing.MockClock(autojump_threshold=0))


def timed_pytest(paths: list[str], runs: int, *extra: str) -> tuple[float, float]:
    """Median wall and CPU seconds of `pytest -q PATHS` in a subprocess (start-up included)."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", *extra, *paths],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)
