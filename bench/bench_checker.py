"""Model-checker figures (issue: the Figure 2 model): prints them; asserts nothing.

For 3 servers, MaxTerm 2, MaxLog 1, MaxMsgs 4 (no restarts unless
--max-restarts), with and without --symmetry: distinct states, transitions,
BFS depth, wall time and distinct states per second, median of --runs runs.
Each run explores the whole space (no violation is expected).

Every run is a fresh Python process, so one run's millions of freed tuples do
not slow the next.

Usage: python bench/bench_checker.py [--runs 3] [--max-msgs 4] [--max-restarts 0]
       [--snapshots] [--only plain|symmetry]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from typing import Any

from trioraft.model.checker import CheckResult, check
from trioraft.model.search import Bounds


def run_once(bounds: Bounds, symmetry: bool) -> CheckResult:
    result = check(bounds, symmetry=symmetry)
    if not result.ok or not result.complete:
        raise SystemExit(f"unexpected: {result.violation or 'incomplete search'}")
    return result


def run_in_child(argv: list[str], symmetry: bool) -> dict[str, Any]:
    """One run in a fresh interpreter; its figures as a dict."""
    command = [sys.executable, __file__, *argv, "--child", "symmetry" if symmetry else "plain"]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return figures


def report(argv: list[str], symmetry: bool, runs: int) -> None:
    results = [run_in_child(argv, symmetry) for _ in range(runs)]
    times = [float(r["seconds"]) for r in results]
    seconds = statistics.median(times)
    first = results[0]
    label = "with --symmetry" if symmetry else "without symmetry"
    print(
        f"{label:>17}: {first['states']:>10,} distinct states, {first['transitions']:>11,} "
        f"transitions, depth {first['depth']}, {seconds:7.1f} s wall, "
        f"{first['states'] / seconds:>7,.0f} distinct states/s "
        f"(median of {runs}; runs {', '.join(f'{t:.1f}' for t in times)} s)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--servers", type=int, default=3)
    parser.add_argument("--max-term", type=int, default=2)
    parser.add_argument("--max-log", type=int, default=1)
    parser.add_argument("--max-msgs", type=int, default=4)
    parser.add_argument("--max-restarts", type=int, default=0)
    parser.add_argument("--snapshots", action="store_true", help="with snapshot actions")
    extensions = ("pre_vote", "check_quorum", "transfer", "read_index")
    for name in extensions:
        parser.add_argument("--" + name.replace("_", "-"), action="store_true")
    parser.add_argument(
        "--extensions", action="store_true", help="all four: Pre-Vote, CheckQuorum, ..."
    )
    parser.add_argument("--only", choices=("plain", "symmetry"))
    parser.add_argument("--child", choices=("plain", "symmetry"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    on = {name: bool(args.extensions or getattr(args, name)) for name in extensions}
    bounds = Bounds(
        **on,
        servers=args.servers,
        max_term=args.max_term,
        max_log=args.max_log,
        max_msgs=args.max_msgs,
        max_restarts=args.max_restarts,
        snapshots=args.snapshots,
    )
    if args.child is not None:
        result = run_once(bounds, args.child == "symmetry")
        figures = {
            "states": result.states,
            "transitions": result.transitions,
            "depth": result.depth,
            "seconds": result.seconds,
        }
        print(json.dumps(figures))
        return 0
    forwarded = [
        f"--servers={args.servers}",
        f"--max-term={args.max_term}",
        f"--max-log={args.max_log}",
        f"--max-msgs={args.max_msgs}",
        f"--max-restarts={args.max_restarts}",
        *(["--snapshots"] if args.snapshots else []),
        *("--" + name.replace("_", "-") for name in extensions if on[name]),
    ]
    print(
        f"model checker, {bounds.servers} servers, MaxTerm {bounds.max_term}, MaxLog "
        f"{bounds.max_log}, MaxMsgs {bounds.max_msgs}, MaxRestarts {bounds.max_restarts}"
        f"{', snapshots' if bounds.snapshots else ''}"
        f"{''.join(', ' + name for name in extensions if on[name])}; "
        f"Python {platform.python_version()} ({platform.python_implementation()})",
        flush=True,
    )
    if args.only != "symmetry":
        report(forwarded, False, args.runs)
    if args.only != "plain":
        report(forwarded, True, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
