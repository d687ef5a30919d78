"""Durable-cluster figures (the storage issue): prints them; asserts nothing.

A 3-peer cluster in one process on the real clock, peers on the simulated
network (reliable, no delays), each with a DiskStorage directory on the real
disk (its fsyncs in worker threads), applying into buffered channels that a
service drains.  Each figure is the median of several fresh clusters, beside
the same figure for in-memory Persisters run in the same process (the
baseline: what durability costs).

(a) sequential proposals, each awaited until committed (``wait_committed``)
    [target: 300 or more per second with disk storage];
(b) a burst of 10,000 proposals, timed until the last is committed at the
    leader and applied everywhere (group commit) [target: 20,000 or more
    commits per second with disk storage];
(c) the 28 ported 6.824 tests in virtual time, pytest wall and CPU seconds,
    with ``--storage disk`` and with the default Persisters [target: disk under
    2x memory].

Usage: python bench/bench_durable.py [--runs 5] [--sequential 2000] [--burst 10000]
       [--skip-tests]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable

import trio

import trioraft
from _common import ROOT, timed_pytest
from trioraft.sim.network import open_network

PORTED = [
    "tests/test_raft_2a.py",
    "tests/test_raft_2b.py",
    "tests/test_raft_2c.py",
    "tests/test_raft_2d.py",
]

Workload = Callable[[trioraft.Raft, list[int]], Awaitable[float]]


def on_cluster(disk: bool, workload: Workload) -> float:
    """Run ``workload(leader, applied)`` on a fresh 3-peer cluster (real clock)."""
    directory = tempfile.mkdtemp(prefix=".bench-durable-", dir=ROOT)
    result: list[float] = []

    async def main() -> None:
        n = 3
        async with open_network(seed=1) as net, trio.open_nursery() as nursery:
            rafts = []
            applied = [0] * n
            for i in range(n):
                ends = []
                for j in range(n):
                    name = f"{i}->{j}"
                    ends.append(net.make_end(name))
                    net.connect(name, str(j))
                    net.enable(name, True)
                send, receive = trio.open_memory_channel[trioraft.ApplyMsg](1024)
                storage: trioraft.Persister | trioraft.DiskStorage = (
                    trioraft.DiskStorage(f"{directory}/peer-{i}", create=True)
                    if disk
                    else trioraft.Persister()
                )
                rf = trioraft.make(ends, i, storage, send, nursery=nursery)
                net.add_server(str(i), rf)
                rafts.append(rf)
                nursery.start_soon(drain, receive, applied, i)
            while not any(rf.get_state()[1] for rf in rafts):
                await trio.sleep(0.01)
            leader = next(rf for rf in rafts if rf.get_state()[1])
            result.append(await workload(leader, applied))
            for rf in rafts:
                rf.kill()
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        shutil.rmtree(directory)
    return result[0]


async def drain(
    receive: trio.MemoryReceiveChannel[trioraft.ApplyMsg], applied: list[int], i: int
) -> None:
    while True:
        applied[i] = (await receive.receive()).command_index
        with contextlib.suppress(trio.WouldBlock):
            while True:
                applied[i] = receive.receive_nowait().command_index


def sequential(count: int) -> Workload:
    async def run(leader: trioraft.Raft, applied: list[int]) -> float:
        t0 = time.perf_counter()
        for k in range(count):
            index, term, ok = leader.start(k)
            assert ok, "the leader changed during the bench"
            assert await leader.wait_committed(index, term)
        return count / (time.perf_counter() - t0)

    return run


def burst(count: int) -> Workload:
    async def run(leader: trioraft.Raft, applied: list[int]) -> float:
        t0 = time.perf_counter()
        for k in range(count):
            index, term, ok = leader.start(k)
            assert ok, "the leader changed during the bench"
        assert await leader.wait_committed(index, term)
        while min(applied) < index:
            await trio.sleep(0.001)
        return count / (time.perf_counter() - t0)

    return run


def compare(label: str, runs: int, workload: Workload, unit: str, target: str) -> None:
    disk = [on_cluster(True, workload) for _ in range(runs)]
    memory = [on_cluster(False, workload) for _ in range(runs)]
    print(
        f"{label}: disk median {statistics.median(disk):,.0f} {unit} (min {min(disk):,.0f}, "
        f"max {max(disk):,.0f}); in memory median {statistics.median(memory):,.0f}; "
        f"disk/memory {statistics.median(disk) / statistics.median(memory):.2f}  [{target}]"
    )


def bench_tests(runs: int) -> None:
    disk_wall, disk_cpu = timed_pytest(PORTED, runs, "--storage", "disk")
    mem_wall, mem_cpu = timed_pytest(PORTED, runs)
    print(
        f"(c) the 28 ported tests, virtual time: --storage disk wall {disk_wall:.2f} s "
        f"(CPU {disk_cpu:.2f} s), Persisters wall {mem_wall:.2f} s (CPU {mem_cpu:.2f} s); "
        f"disk/memory {disk_wall / mem_wall:.2f}x wall  [target < 2x]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sequential", type=int, default=2000)
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--skip-tests", action="store_true")
    args = parser.parse_args()
    compare(
        f"(a) {args.sequential} sequential proposals, each awaited until committed",
        args.runs,
        sequential(args.sequential),
        "proposals/s",
        "target >= 300/s on disk",
    )
    compare(
        f"(b) a burst of {args.burst} proposals until committed and applied everywhere",
        args.runs,
        burst(args.burst),
        "commits/s",
        "target >= 20,000/s on disk",
    )
    if not args.skip_tests:
        bench_tests(max(1, args.runs // 2))


if __name__ == "__main__":
    main()
