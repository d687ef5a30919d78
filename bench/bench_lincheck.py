"""Linearizability checker figures (trioraft.lincheck): prints them; asserts nothing.

A linearizable history: --ops operations from --clients clients, simulated on
a linearizable store (each client's operations back to back with think times,
each taking effect at a random point of its interval; about 1 in 100 gets no
response, and took effect or not).  For it: ``check`` wall time, median of
--runs runs, operations per second, verdict; then the same history with one
stale read (a get late in the run returns the first value a put wrote to its
key, long overwritten): ``check`` including the shrinking to a minimal failing
part.  Twice: (a) over --keys keys; (b) the same run with every operation on
one key (no help from partitioning: the hard case).  Last, the failing part of (a), explained.

Usage: python bench/bench_lincheck.py [--runs 5] [--ops 1000] [--clients 5] [--keys 4]
       [--seed 1]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable

from trioraft.lincheck import Operation, Result, check

TARGET = 1.0  # seconds for 1,000 operations from 5 clients


def simulate(n: int, clients: int, keys: int, seed: int) -> list[Operation]:
    """A linearizable history of about ``n`` operations (the store is one dict)."""
    rng = random.Random(seed)
    planned: list[tuple[float, int, float, float | None]] = []
    per_client = n // clients
    for client in range(clients):
        t = rng.uniform(0, 0.005)
        for _ in range(per_client):
            call = t
            latency = rng.lognormvariate(-6, 0.8)  # a few ms, a long tail
            point = call + rng.uniform(0.1, 0.9) * latency
            if rng.random() < 0.01:  # no response: the client gives up after 50 ms
                happened = rng.random() < 0.5
                planned.append((point if happened else -1.0, client, call, None))
                t = call + 0.05
            else:
                planned.append((point, client, call, call + latency))
                t = call + latency
            t += rng.expovariate(1000)  # think time, about 1 ms
    store: dict[str, str] = {}
    history = []
    # Operations take effect in the order of their points; one that never did
    # (point -1) is recorded with no effect.
    for number, (point, client, call, ret) in enumerate(sorted(planned)):
        key = f"k{rng.randrange(keys)}"
        roll = rng.random()
        if roll < 0.45:
            value = f"{client}.{number}"
            if point >= 0:
                store[key] = value
            history.append(Operation(client, "put", key, value, None, call, ret))
        elif roll < 0.95:
            output = store.get(key) if ret is not None else None
            history.append(Operation(client, "get", key, None, output, call, ret))
        else:
            if point >= 0:
                store.pop(key, None)
            history.append(Operation(client, "delete", key, None, None, call, ret))
    history.sort(key=lambda op: op.call)
    return history


def make_stale(history: list[Operation]) -> list[Operation]:
    """``history`` with one late get returning a value a completed put overwrote."""
    for i in range(len(history) - 1, -1, -1):
        read = history[i]
        if read.op != "get" or read.ret is None:
            continue
        done = [
            op
            for op in history[:i]
            if op.key == read.key and op.op == "put" and op.ret is not None and op.ret < read.call
        ]
        done.sort(key=lambda op: op.call)
        if len(done) >= 2 and done[-1].value != done[0].value:
            # done[0] returned long before the last put overwrote it
            bad = list(history)
            bad[i] = read._replace(output=done[0].value)
            return bad
    raise SystemExit("no get to make stale")


def timed(run: Callable[[], Result], runs: int) -> tuple[float, list[float], Result]:
    times = []
    result = run()
    for _ in range(runs):
        t0 = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, result


def overlap(history: list[Operation]) -> tuple[float, int]:
    """Mean and most operations with a response that each one with a response
    overlaps in time (a sweep over the call and return times)."""
    done = sorted((op.call, op.ret) for op in history if op.ret is not None)
    counts = []
    for i, (call, ret) in enumerate(done):
        n = 0
        for j in range(i - 1, -1, -1):  # earlier calls still running at this call
            n += done[j][1] >= call
        for j in range(i + 1, len(done)):  # later calls before this return
            if done[j][0] > ret:
                break
            n += 1
        counts.append(n)
    return statistics.mean(counts), max(counts)


def report(label: str, history: list[Operation], runs: int) -> None:
    seconds, times, result = timed(lambda: check(history), runs)
    print(
        f"{label}: check median {seconds * 1000:7.1f} ms, {len(history) / seconds:>9,.0f} "
        f"ops/s, verdict {'linearizable' if result.ok else 'not linearizable'} "
        f"(median of {runs}; runs {', '.join(f'{t * 1000:.1f}' for t in times)} ms) "
        f"[target < {TARGET:g} s for 1,000 operations, 5 clients]",
        flush=True,
    )
    stale = make_stale(history)
    seconds, times, result = timed(lambda: check(stale), runs)
    print(
        f"{' ' * len(label)}  with one stale read: check and shrink median {seconds * 1000:7.1f} "
        f"ms, verdict {'linearizable' if result.ok else 'not linearizable'}, a failing part "
        f"of {len(result.failing)} operations (median of {runs}; runs "
        f"{', '.join(f'{t * 1000:.1f}' for t in times)} ms)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ops", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--keys", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    history = simulate(args.ops, args.clients, args.keys, args.seed)
    pending = sum(op.ret is None for op in history)
    mean, most = overlap(history)
    print(
        f"lincheck: {len(history)} operations from {args.clients} clients, {pending} with no "
        f"response; each one with a response overlaps {mean:.1f} others on average (at most "
        f"{most}); Python {platform.python_version()} ({platform.python_implementation()})",
        flush=True,
    )
    report(f"(a) {args.keys} keys", history, args.runs)
    report("(b) 1 key ", simulate(args.ops, args.clients, 1, args.seed), args.runs)
    print("the failing part found in (a), explained:")
    print("    " + check(make_stale(history)).explain().replace("\n", "\n    "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
