"""Planted bugs against the randomized simulator: prints figures; asserts nothing.

For every bug in tests/planted.py (test-only patches of the core):
(a) how many seeds of the default schedule (5 peers, ``--duration`` s of faults,
    snapshots every 10 entries) a sweep runs until one fails, and how [target:
    within 200];
(b) the schedule hypothesis shrinks a failing one to (5 peers, 10 s of
    faults): its fault count and the runs it took [target: 5 faults or fewer].

Usage: python bench/bench_planted.py [--duration 60] [--seeds 200] [--skip-shrink]
"""

from __future__ import annotations

import argparse
import sys
import time

from _common import ROOT

sys.path.insert(0, str(ROOT / "tests"))

from hypothesis import HealthCheck, find, settings
from hypothesis import strategies as st

from planted import PLANTED
from schedules import run, schedules
from trioraft.sim.sweep import SweepOptions, sweep


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--skip-shrink", action="store_true")
    args = parser.parse_args()
    for name, plant in PLANTED.items():
        t0 = time.perf_counter()
        with plant():
            r = sweep(range(1, 1 + args.seeds), SweepOptions(duration=args.duration), jobs=1)
        took = time.perf_counter() - t0
        if r.failures:
            first = r.failures[0]
            print(
                f"(a) {name}: found by seed {first.seed} ({len(r.runs)} runs, {took:.0f} s): "
                f"{(first.failure or '')[:110]}"
            )
        else:
            print(f"(a) {name}: not found in {len(r.runs)} seeds ({took:.0f} s)")
        if args.skip_shrink:
            continue
        runs = [0]

        def fails(schedule: object, runs: list[int] = runs) -> bool:
            runs[0] += 1
            return not run(schedule).ok  # type: ignore[arg-type]

        t0 = time.perf_counter()
        with plant():
            try:
                smallest = find(
                    schedules(nodes=st.just(5), duration=10.0),
                    fails,
                    settings=settings(
                        max_examples=300,
                        deadline=None,
                        database=None,
                        suppress_health_check=list(HealthCheck),
                    ),
                )
            except Exception as exc:  # hypothesis.errors.NoSuchExample
                print(f"(b) {name}: no failing schedule in {runs[0]} examples ({exc})")
                continue
        faults = ", ".join(f.describe() for f in smallest.faults) or "no fault"
        print(
            f"(b) {name}: shrunk to {len(smallest.faults)} fault(s) [{faults}] "
            f"({'unreliable, ' if smallest.unreliable else ''}snapshots every "
            f"{smallest.snapshot_every or 'never'}) after {runs[0]} runs, "
            f"{time.perf_counter() - t0:.0f} s"
        )


if __name__ == "__main__":
    main()
