"""Figures for Pre-Vote, CheckQuorum and ReadIndex (issue 12): prints them; asserts nothing.

(a) disruptive elections after a partitioned follower rejoins: 5 peers, one
    follower cut off for 10 virtual s, then 3 s more; elections started after
    it rejoins and runs where the leader was deposed, over --seeds seeds,
    without and with Pre-Vote (the same seeds, in this process);
(b) the same when the follower cannot hear the leader but reaches everyone
    else (a one-way cut): vote withholding's case (thesis §4.2.3);
(c) time without a working leader under random one-way partitions, 5 peers,
    60 virtual s each: a fault every 0.5-2.5 s for 0.5-5 s, either a node that
    can send but hears nothing (the leader half the time) or one link cut one
    way.  A client proposes every 0.1 s to whoever claims to lead; the time
    without a working leader is the sum, over the gaps between advances of the
    cluster's commit index, of each gap beyond 0.5 s.  CheckQuorum and
    Pre-Vote off against on, the same seeds and schedules;
(d) ReadIndex on the simulated network: RPCs sent per read, log entries
    appended by reads, and virtual seconds per read on a network with labrpc's
    unreliable delays (no losses would be a zero-latency network).

Usage: python bench/bench_extensions.py [--seeds 1000] [--oneway-seeds 50] [--reads 200]
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import time
from typing import Any

import trio

from _common import percentile, run_virtual
from trioraft import RaftConfig
from trioraft.sim.harness import Cluster, open_cluster
from trioraft.trace import TraceRecorder


def config(on: bool) -> RaftConfig:
    return RaftConfig(pre_vote=on, check_quorum=on, noop_on_election=True)


def counting_tracer(n: int, counts: dict[str, int], since: list[float]) -> TraceRecorder:
    """A recorder that keeps nothing and counts elections started after ``since[0]``."""

    def observe(me: int, name: str, state: Any, fields: dict[str, Any]) -> None:
        if name in ("become_candidate", "become_pre_candidate") and trio.current_time() >= since[0]:
            counts[name] = counts.get(name, 0) + 1

    return TraceRecorder(nodes=n, observer=observe, keep=False)


def rejoin_once(seed: int, on: bool, one_way: bool) -> tuple[int, bool]:
    """(elections started after the follower rejoined, was the leader deposed)."""
    counts: dict[str, int] = {}
    since = [float("inf")]
    out: list[tuple[int, bool]] = []

    async def scenario() -> None:
        tracer = counting_tracer(5, counts, since)
        async with open_cluster(5, seed=seed, raft_config=config(on), tracer=tracer) as cfg:
            leader = await cfg.check_one_leader()
            rf = cfg.rafts[leader]
            assert rf is not None
            term = rf.get_state()[0]
            follower = (leader + 1 + seed % 4) % 5
            if one_way:
                since[0] = trio.current_time()
                cfg.net.enable(cfg.endnames[leader][follower], False)
                await trio.sleep(10)
            else:
                cfg.disconnect(follower)
                await trio.sleep(10)
                since[0] = trio.current_time()
                cfg.connect(follower)
                await trio.sleep(3)
            out.append((counts.get("become_candidate", 0), rf.get_state() != (term, True)))

    run_virtual(scenario, seed)
    return out[0]


def bench_rejoin(seeds: int, one_way: bool) -> None:
    label = "(b) follower that cannot hear the leader" if one_way else "(a) rejoining follower"
    for on in (False, True):
        t0 = time.perf_counter()
        results = [rejoin_once(seed, on, one_way) for seed in range(1, seeds + 1)]
        elections = sum(e for e, _ in results)
        deposed = sum(d for _, d in results)
        print(
            f"{label}, Pre-Vote {'on ' if on else 'off'}: {elections} disruptive elections "
            f"in {seeds} runs; leader deposed in {deposed} runs "
            f"({time.perf_counter() - t0:.0f} s wall)",
            flush=True,
        )


class Stalls:
    """Advances of the cluster's commit index, as they happen."""

    def __init__(self) -> None:
        self.best = 0
        self.times: list[float] = []

    def observe(self, me: int, name: str, state: Any, fields: dict[str, Any]) -> None:
        if name == "commit" and fields["index"] > self.best:
            self.best = fields["index"]
            self.times.append(trio.current_time())

    def stalled(self, start: float, end: float, grace: float = 0.5) -> float:
        marks = [start, *(t for t in self.times if t >= start), end]
        return sum(max(0.0, b - a - grace) for a, b in itertools.pairwise(marks))


async def one_way_faults(cfg: Cluster, rng: random.Random, duration: float) -> None:
    """Random one-way partitions, one at a time, for ``duration`` virtual seconds."""
    end = trio.current_time() + duration
    n = cfg.n
    while trio.current_time() < end:
        await trio.sleep(rng.uniform(0.5, 2.5))
        hold = min(rng.uniform(0.5, 5.0), max(0.0, end - trio.current_time()))
        if rng.random() < 0.5:
            leaders = [i for i, rf in enumerate(cfg.rafts) if rf is not None and rf.get_state()[1]]
            deaf = leaders[0] if leaders and rng.random() < 0.5 else rng.randrange(n)
            cfg.deafen(deaf)
            await trio.sleep(hold)
            cfg.deafen(deaf, False)
        else:
            i, j = rng.sample(range(n), 2)
            cfg.net.enable(cfg.endnames[i][j], False)
            await trio.sleep(hold)
            cfg.net.enable(cfg.endnames[i][j], True)


async def client(cfg: Cluster) -> None:
    k = 0
    while True:
        for rf in cfg.rafts:
            if rf is not None and rf.get_state()[1]:
                rf.start(k)
                k += 1
        await trio.sleep(0.1)


def oneway_once(seed: int, on: bool, duration: float = 60.0) -> float:
    stalls = Stalls()
    out: list[float] = []

    async def scenario() -> None:
        tracer = TraceRecorder(nodes=5, observer=stalls.observe, keep=False)
        async with open_cluster(5, seed=seed, raft_config=config(on), tracer=tracer) as cfg:
            await cfg.check_one_leader()
            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client, cfg)
                await one_way_faults(cfg, random.Random(seed), duration)
                nursery.cancel_scope.cancel()
            out.append(stalls.stalled(start, trio.current_time()))

    run_virtual(scenario, seed)
    return out[0]


def bench_oneway(seeds: int) -> None:
    for on in (False, True):
        t0 = time.perf_counter()
        stalled = [oneway_once(seed, on) for seed in range(1, seeds + 1)]
        print(
            f"(c) random one-way partitions, CheckQuorum+Pre-Vote {'on ' if on else 'off'}: "
            f"time without a working leader per 60 s run: "
            f"median {statistics.median(stalled):.1f} s, "
            f"mean {statistics.mean(stalled):.1f} s, p90 {percentile(stalled, 0.9):.1f} s, "
            f"max {max(stalled):.1f} s over {seeds} runs "
            f"({time.perf_counter() - t0:.0f} s wall)",
            flush=True,
        )


def bench_reads(reads: int) -> None:
    figures: dict[str, list[float]] = {"rpcs": [], "appended": [], "latency": []}

    async def scenario() -> None:
        async with open_cluster(5, seed=1, raft_config=config(True), tracer=None) as cfg:
            leader = await cfg.check_one_leader()
            await cfg.one(1, 5, True)
            cfg.setunreliable(True)  # labrpc's delays (0-27 ms each way) and losses
            rf = cfg.rafts[leader]
            assert rf is not None
            done = 0
            while done < reads:
                before_rpcs, before_last = cfg.rpc_total(), rf.node.log.last_index
                t0 = trio.current_time()
                try:
                    await rf.read_index()
                except Exception:  # deposed under losses: count only served reads
                    leader = await cfg.check_one_leader()
                    rf = cfg.rafts[leader]
                    assert rf is not None
                    continue
                figures["latency"].append(trio.current_time() - t0)
                figures["rpcs"].append(cfg.rpc_total() - before_rpcs)
                figures["appended"].append(rf.node.log.last_index - before_last)
                done += 1

    run_virtual(scenario, 1)
    lat = figures["latency"]
    print(
        f"(d) read_index() on 5 peers, unreliable network: {statistics.median(lat) * 1000:.1f} ms "
        f"median, p99 {percentile(lat, 0.99) * 1000:.1f} ms virtual; RPCs per read median "
        f"{statistics.median(figures['rpcs']):.0f} (4 followers: one round = 4); entries "
        f"appended by reads: {sum(figures['appended']):.0f} over {reads} reads"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1000)
    parser.add_argument("--oneway-seeds", type=int, default=50)
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--only", choices=["rejoin", "deaf", "oneway", "reads"])
    args = parser.parse_args()
    if args.only in (None, "reads"):
        bench_reads(args.reads)
    if args.only in (None, "rejoin"):
        bench_rejoin(args.seeds, one_way=False)
    if args.only in (None, "deaf"):
        bench_rejoin(args.seeds, one_way=True)
    if args.only in (None, "oneway"):
        bench_oneway(args.oneway_seeds)


if __name__ == "__main__":
    main()
