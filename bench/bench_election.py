"""Leader-election figures (issue 2): prints them; asserts nothing.

(a) wall and CPU seconds of the three 2A tests (pytest in a subprocess,
    start-up included), median of several runs;
(b) simulated seconds per wall second of an idle 5-peer cluster;
(c) failover: virtual seconds from a leader's crash to a new leader, over
    many seeds (median, p99, max), for 3 and 5 peers;
(d) RPCs to elect the first leader of 3 peers: at the moment it is elected,
    and as TestCount measures it (after check_one_leader).

Usage: python bench/bench_election.py [--seeds 1000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import trio
import trio.testing

from _common import percentile, run_virtual, timed_pytest
from trioraft.sim.harness import open_cluster
from trioraft.trace import TraceRecorder


def bench_2a_tests(runs: int) -> None:
    wall, cpu = timed_pytest(["tests/test_raft_2a.py"], runs)
    print(
        f"(a) 2A tests (3), pytest start-up included: wall median {wall:.2f} s, "
        f"CPU median {cpu:.2f} s  [Go reference: 16 s real]"
    )


def bench_idle_cluster(runs: int, virtual_seconds: float = 60.0) -> None:
    rates = []
    for run in range(runs):

        async def idle(run: int = run) -> None:
            async with open_cluster(5, seed=run) as cfg:
                await cfg.check_one_leader()
                t0 = time.perf_counter()
                await trio.sleep(virtual_seconds)
                rates.append(virtual_seconds / (time.perf_counter() - t0))

        run_virtual(idle, run)
    print(
        f"(b) idle 5-peer cluster: {statistics.median(rates):.0f} simulated s per wall s "
        f"(median of {runs}; min {min(rates):.0f}, max {max(rates):.0f})  [target >= 500]"
    )


def failover_once(n: int, seed: int) -> float:
    result: list[float] = []

    async def scenario() -> None:
        elected = trio.Event()
        old_term = [0]

        def observe(me: int, name: str, state: Any, fields: dict[str, Any]) -> None:
            if name == "become_leader" and state[0] > old_term[0] and old_term[0]:
                elected.set()

        tracer = TraceRecorder(nodes=n, observer=observe, keep=False)
        async with open_cluster(n, seed=seed, tracer=tracer) as cfg:
            leader = await cfg.check_one_leader()
            await trio.sleep(cfg.rng.uniform(0, 0.5))  # crash at a random heartbeat phase
            rf = cfg.rafts[leader]
            assert rf is not None
            old_term[0] = rf.get_state()[0]
            t0 = trio.current_time()
            cfg.crash1(leader)
            with trio.fail_after(30):
                await elected.wait()
            result.append(trio.current_time() - t0)

    run_virtual(scenario, seed)
    return result[0]


def bench_failover(seeds: int) -> None:
    for n in (3, 5):
        t0 = time.perf_counter()
        times = [failover_once(n, seed) for seed in range(seeds)]
        print(
            f"(c) failover, {n} peers, {seeds} seeds: median {statistics.median(times):.3f} s, "
            f"p99 {percentile(times, 0.99):.3f} s, max {max(times):.3f} s virtual "
            f"({time.perf_counter() - t0:.1f} s wall)  [target: median <= 0.6, max < 5]"
        )


def bench_first_election(seeds: int) -> None:
    at_election: list[int] = []
    as_test_count: list[int] = []
    for seed in range(seeds):

        async def scenario(seed: int = seed) -> None:
            cfg_ref: list[Any] = []
            counted: list[int] = []

            def observe(me: int, name: str, state: Any, fields: dict[str, Any]) -> None:
                if name == "become_leader" and not counted:
                    counted.append(cfg_ref[0].rpc_total())

            tracer = TraceRecorder(nodes=3, observer=observe, keep=False)
            async with open_cluster(3, seed=seed, tracer=tracer) as cfg:
                cfg_ref.append(cfg)
                await cfg.check_one_leader()
                at_election.append(counted[0])
                as_test_count.append(sum(cfg.rpc_count(j) for j in range(3)))

        run_virtual(scenario, seed)
    print(
        f"(d) RPCs to elect the first leader of 3 peers over {seeds} seeds: at election "
        f"median {statistics.median(at_election):.0f}, max {max(at_election)}; as TestCount counts "
        f"(after check_one_leader) median {statistics.median(as_test_count):.0f}, "
        f"max {max(as_test_count)}  [target <= 30]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    bench_2a_tests(args.runs)
    bench_idle_cluster(args.runs)
    bench_failover(args.seeds)
    bench_first_election(min(args.seeds, 200))


if __name__ == "__main__":
    main()
