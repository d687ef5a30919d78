"""Randomized simulation figures (the simulation issue): prints them; asserts nothing.

(a) sweep throughput: ``--sweep-seeds`` seeds of the default schedule (5 peers,
    60 virtual s of faults, snapshots every 10 entries, live validation on) on
    ``--jobs`` worker processes, in runs per wall minute, median of ``--runs``
    sweeps [target: 200 or more on 2 cores]; and the same seeds on one job in
    this process, for the ratio;
(b) heal-phase time to a leader over ``--heal-seeds`` seeds: median and max;
(c) violations over ``--many`` seeds of the default schedule, reliable and
    ``--unreliable`` [target: 0]: the count run and the count failed, with the
    first failure's seed.

Usage: python bench/bench_simulate.py [--jobs 2] [--runs 3] [--sweep-seeds 40]
       [--heal-seeds 1000] [--many 1000] [--skip-many]
"""

from __future__ import annotations

import argparse
import statistics

from trioraft.sim.sweep import SweepOptions, sweep


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sweep-seeds", type=int, default=40)
    parser.add_argument("--heal-seeds", type=int, default=1000)
    parser.add_argument("--many", type=int, default=1000)
    parser.add_argument("--skip-many", action="store_true")
    args = parser.parse_args()
    options = SweepOptions()

    rates = []
    for k in range(args.runs):
        seeds = range(1 + k * args.sweep_seeds, 1 + (k + 1) * args.sweep_seeds)
        r = sweep(seeds, options, jobs=args.jobs, stop_at_failure=False)
        rates.append(60 * len(r.runs) / r.wall_seconds)
    one = sweep(range(1, 1 + args.sweep_seeds // 2), options, jobs=1, stop_at_failure=False)
    one_rate = 60 * len(one.runs) / one.wall_seconds
    cpu = statistics.median(s.cpu_seconds for s in one.runs)
    print(
        f"(a) sweep, 5 peers, 60 s of faults, snapshots, validation on, {args.jobs} jobs: "
        f"median {statistics.median(rates):.0f} runs per wall minute "
        f"(runs: {', '.join(f'{x:.0f}' for x in rates)})  [target >= 200 on 2 cores]"
    )
    print(
        f"    one job in this process: {one_rate:.0f} runs per wall minute, "
        f"median {cpu:.2f} CPU s per run; {args.jobs} jobs / 1 job = "
        f"{statistics.median(rates) / one_rate:.2f}x"
    )

    heal = sweep(range(1, 1 + args.heal_seeds), options, jobs=args.jobs, stop_at_failure=False)
    times = sorted(r.heal_time for r in heal.runs if r.heal_time is not None)
    print(
        f"(b) heal phase, time to a leader over {len(times)} seeds: "
        f"median {statistics.median(times):.3f} s, "
        f"p99 {times[int(0.99 * (len(times) - 1))]:.3f} s, max {times[-1]:.3f} s; "
        f"{sum(1 for t in times if t == 0)} runs had a leader when the faults ended; "
        f"{len(heal.failures)} violation(s)"
    )
    if args.skip_many:
        return
    for unreliable in (False, True):
        o = SweepOptions(unreliable=unreliable)
        seeds = range(1, 1 + args.many)
        r = heal if not unreliable and args.many <= args.heal_seeds else None
        if r is None:
            r = sweep(seeds, o, jobs=args.jobs, stop_at_failure=False)
        failed = [s for s in r.runs if s.failure is not None and s.seed in seeds]
        ran = sum(1 for s in r.runs if s.seed in seeds)
        first = f"; first: seed {failed[0].seed}: {failed[0].failure}" if failed else ""
        print(
            f"(c) {'unreliable' if unreliable else 'reliable'} network: {ran} seeds run, "
            f"{len(failed)} violation(s){first}  [target 0]"
        )


if __name__ == "__main__":
    main()
