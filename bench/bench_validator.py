"""Trace validation figures: prints them; asserts nothing.

(a) validator throughput on one core over a large simulated trace
    (``trioraft simulate --nodes 5 --duration 300``, seed 1, written to a
    temporary file), median of runs:
    - replay only: ``trioraft.model.validator.validate`` on events already
      parsed (the model, the state comparisons, the incremental invariants);
    - the whole file: ``trioraft.validate.validate_file`` (read, JSON-decode,
      check each line, replay), what ``trioraft validate`` costs;
    - for comparison, the whole invariant registry after every step
      (``mode="full"``) over the first events of the same trace;
(b) the cost of tracing on the 2A and 2B tests (pytest in a subprocess, wall
    median of runs): ``--no-trace``; recording only (``TRIORAFT_VALIDATE=0``
    keeps recording and skips validation); recording and validation (the
    default).

Usage: python bench/bench_validator.py [--runs 3] [--nodes 5] [--duration 300]
       [--unreliable] [--skip-tests]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from _common import ROOT, timed_pytest
from trioraft.model.validator import validate
from trioraft.sim.simulate import run_simulation
from trioraft.validate import validate_file

TARGET = 100_000  # events per second


def median_rate(events: int, run: Callable[[], None], runs: int) -> tuple[float, float]:
    """Median seconds and events/s of ``run()`` over ``runs`` runs."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    return seconds, events / seconds


def bench_throughput(runs: int, nodes: int, duration: float, unreliable: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.ndjson"
        t0 = time.perf_counter()
        with open(path, "wb") as file:
            result = run_simulation(1, nodes, duration, unreliable=unreliable, trace=file)
        simulated = time.perf_counter() - t0
        assert result.failure is None, result.failure
        lines = path.read_bytes().splitlines()
        header = msgspec.json.decode(lines[0])
        events = [msgspec.json.decode(line) for line in lines[1:]]
        n = len(events)
        size = path.stat().st_size / 2**20
        net = "unreliable" if unreliable else "reliable"
        print(
            f"(a) trace: simulate --nodes {nodes} --duration {duration:g} ({net}): {n} events, "
            f"{size:.1f} MiB, {result.committed} commands, simulated in {simulated:.1f} s"
        )

        def replay() -> None:
            outcome = validate(header, events)
            assert outcome.ok, outcome.violation

        seconds, rate = median_rate(n, replay, runs)
        print(
            f"    replay only (parsed events): median {seconds:.2f} s, {rate:,.0f} events/s "
            f"[target {TARGET:,}]"
        )

        def whole_file() -> None:
            verdict = validate_file(str(path))
            assert verdict.ok, verdict.describe()

        seconds, rate = median_rate(n, whole_file, runs)
        print(f"    whole file (read, decode, check, replay): median {seconds:.2f} s, "
              f"{rate:,.0f} events/s")  # fmt: skip

        first = events[:5_000]

        def full() -> None:
            validate(header, first, mode="full")

        seconds, rate = median_rate(len(first), full, 1)
        print(
            f"    for comparison, the whole registry after every step, first {len(first)} "
            f"events: {seconds:.2f} s, {rate:,.0f} events/s"
        )


def bench_tests(runs: int) -> None:
    tests = ["tests/test_raft_2a.py", "tests/test_raft_2b.py"]
    off, _ = timed_pytest(tests, runs, "--no-trace")
    os.environ["TRIORAFT_VALIDATE"] = "0"
    try:
        recording, _ = timed_pytest(tests, runs)
    finally:
        del os.environ["TRIORAFT_VALIDATE"]
    both, _ = timed_pytest(tests, runs)
    print(f"(b) 2A+2B tests, wall median of {runs} (pytest start-up included):")
    print(f"    no trace                 {off:.2f} s")
    print(f"    recording only           {recording:.2f} s  (+{_pct(recording, off)})")
    print(f"    recording and validation {both:.2f} s  (+{_pct(both, off)})")


def _pct(value: float, base: float) -> str:
    return f"{100 * (value - base) / base:.0f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--unreliable", action="store_true")
    parser.add_argument("--skip-tests", action="store_true", help="skip (b)")
    args = parser.parse_args()
    os.chdir(ROOT)
    bench_throughput(args.runs, args.nodes, args.duration, args.unreliable)
    if not args.skip_tests:
        bench_tests(args.runs)


if __name__ == "__main__":
    main()
