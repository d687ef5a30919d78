"""Snapshot figures (issue 4): prints them; asserts nothing.

(a) wall and CPU seconds of the 2D tests, and of the whole ported 6.824 suite
    (tests/test_raft_2*.py: 28 tests), pytest in a subprocess, median of runs;
(b) memory over a long loaded run with periodic snapshots: 3 peers, a client
    submitting 200 commands per virtual second for 10 virtual minutes with
    crashes and restarts every 30 s, each service snapshotting every 100
    entries; resident set size sampled every virtual minute, and the peak.

Usage: python bench/bench_snapshots.py [--runs 3] [--minutes 10]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import trio
import trio.testing

import trioraft
from _common import ROOT, timed_pytest
from trioraft import codec
from trioraft.determinism import seed_scheduler
from trioraft.sim.harness import Cluster, open_cluster


def bench_tests(runs: int) -> None:
    wall, cpu = timed_pytest(["tests/test_raft_2d.py"], runs)
    print(f"(a) 2D tests (7): wall median {wall:.2f} s, CPU {cpu:.2f} s  [target < 3 s; Go 293 s]")
    suite = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_raft_2*.py"))
    wall, cpu = timed_pytest(suite, runs)
    print(
        f"(a) whole ported suite ({', '.join(Path(p).stem for p in suite)}): wall median "
        f"{wall:.2f} s, CPU {cpu:.2f} s  [target < 15 s; Go about 470 s]"
    )


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class CounterService:
    """A tiny replicated state machine: the sum of the commands, snapshotted every 100."""

    def __init__(self) -> None:
        self.total = 0
        self.index = 0


async def long_run(minutes: float, samples: list[tuple[float, float, int]]) -> None:
    async with open_cluster(3, seed=1) as cfg:
        services = [CounterService() for _ in range(3)]

        async def applier(i: int, receive: trio.MemoryReceiveChannel[trioraft.ApplyMsg]) -> None:
            service = services[i] = CounterService()
            saved = cfg.saved[i]
            if saved is not None and saved.read_snapshot():  # restart: restore the service
                service.index, service.total = codec.decode(saved.read_snapshot())
            async for m in receive:
                if m.snapshot_valid:
                    service.index, service.total = codec.decode(m.snapshot)
                elif m.command_valid:
                    if m.command_index != service.index + 1:
                        raise AssertionError(f"server {i} applied {m.command_index} out of order")
                    service.index = m.command_index
                    service.total += m.command
                    if service.index % 100 == 0:
                        rf = cfg.rafts[i]
                        if rf is not None:
                            rf.snapshot(service.index, codec.encode([service.index, service.total]))

        for i in range(3):
            cfg.start1(i, applier)
            cfg.connect(i)

        async def client(cluster: Cluster) -> None:
            while True:
                for rf in cluster.rafts:
                    if rf is not None and rf.start(1)[2]:
                        break
                await trio.sleep(0.005)

        async def faults(cluster: Cluster) -> None:
            while True:
                await trio.sleep(30)
                victim = cluster.rng.randrange(3)
                cluster.crash1(victim)
                await trio.sleep(3)
                cluster.start1(victim, applier)
                cluster.connect(victim)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(client, cfg)
            nursery.start_soon(faults, cfg)
            for minute in range(1, int(minutes) + 1):
                await trio.sleep(60)
                samples.append((minute, rss_mib(), max(s.index for s in services)))
            nursery.cancel_scope.cancel()
        samples.append((-1, cfg.log_size(), 0))


def bench_memory(minutes: float) -> None:
    samples: list[tuple[float, float, int]] = []
    seed_scheduler(1)
    t0 = time.perf_counter()
    trio.run(long_run, minutes, samples, clock=trio.testing.MockClock(autojump_threshold=0))
    wall = time.perf_counter() - t0
    log_size = samples.pop()[1]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"(b) {minutes:g} virtual minutes, 3 peers under load with crashes, snapshots every 100: "
        f"{samples[-1][2]} commands applied in {wall:.1f} s wall; RSS by minute (MiB): "
        + ", ".join(f"{rss:.1f}" for _, rss, _ in samples)
        + f"; peak RSS {peak:.1f} MiB; largest raft state at the end {log_size:.0f} bytes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--skip-tests", action="store_true")
    args = parser.parse_args()
    if not args.skip_tests:
        bench_tests(args.runs)
    bench_memory(args.minutes)


if __name__ == "__main__":
    main()
