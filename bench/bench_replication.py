"""Log-replication figures (issue 3): prints them; asserts nothing.

(a) wall and CPU seconds of the 2B and 2C tests (pytest in a subprocess,
    start-up included), median of several runs;
(b) commit throughput on the reliable simulated network with a leader under
    continuous load, 3 and 5 peers in one process, with the AppendEntries
    batch sizes seen (the service snapshots every 1000 entries, as a real one
    would, so the log stays bounded).  Two services: the 6.824 tester's shape
    (an unbuffered apply channel read with ``async for``), and a
    throughput-minded one (a buffered apply channel drained in batches).  The
    first is bounded by trio itself: the bare channel's rate, measured in the
    same process and printed beside it, divided by the number of peers;
(c) commit latency of one command on an idle 3-peer cluster: from start() to
    the leader applying it, and to all peers applying it, in virtual and in
    wall time;
(d) TestCount's RPC counts (bounds: 42 for 12 agreements, 60 per idle second).

Usage: python bench/bench_replication.py [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import trio
import trio.testing

import trioraft
from _common import run_virtual, timed_pytest
from trioraft.core.messages import AppendEntriesArgs
from trioraft.sim.harness import open_cluster
from trioraft.sim.network import open_network

SNAPSHOT_EVERY = 1000
WINDOW = 5000  # commands the client keeps outstanding


def bench_tests(runs: int) -> None:
    for name in ("test_raft_2b.py", "test_raft_2c.py"):
        wall, cpu = timed_pytest([f"tests/{name}"], runs)
        print(f"(a) {name}: wall median {wall:.2f} s, CPU median {cpu:.2f} s")


class _CountingEnd:
    """Wraps a ClientEnd to record the size of every AppendEntries batch."""

    def __init__(self, end: trioraft.ClientEnd, batches: list[int]) -> None:
        self._end = end
        self._batches = batches

    async def call(self, method: str, args: object) -> object | None:
        if isinstance(args, AppendEntriesArgs) and args.entries:
            self._batches.append(len(args.entries))
        return await self._end.call(method, args)


def throughput(n: int, commands: int, seed: int, buffer: int) -> tuple[float, list[int]]:
    """Commits per wall second with an apply channel of ``buffer`` slots (0: 6.824's
    unbuffered one, read message by message; else drained in batches)."""
    batches: list[int] = []
    rate: list[float] = []

    async def main() -> None:
        async with open_network(seed=seed) as net, trio.open_nursery() as nursery:
            rafts = []
            receivers = []
            for i in range(n):
                ends = []
                for j in range(n):
                    name = f"{i}->{j}"
                    end = net.make_end(name)
                    net.connect(name, str(j))
                    net.enable(name, True)
                    ends.append(_CountingEnd(end, batches))
                send, receive = trio.open_memory_channel[trioraft.ApplyMsg](buffer)
                config = trioraft.RaftConfig(seed=seed * 100 + i)
                rf = trioraft.make(
                    ends, i, trioraft.Persister(), send, nursery=nursery, config=config
                )
                net.add_server(str(i), rf)
                rafts.append(rf)
                receivers.append(receive)
            applied = [0] * n

            def handle(i: int, m: trioraft.ApplyMsg) -> None:
                if m.command_valid:
                    applied[i] = m.command_index
                    if m.command_index % SNAPSHOT_EVERY == 0:
                        rafts[i].snapshot(m.command_index, b"s" * 64)

            async def consume(i: int) -> None:
                async for m in receivers[i]:
                    handle(i, m)

            async def drain(i: int) -> None:
                receive = receivers[i]
                while True:
                    handle(i, await receive.receive())
                    with contextlib.suppress(trio.WouldBlock):
                        while True:
                            handle(i, receive.receive_nowait())

            for i in range(n):
                nursery.start_soon(drain if buffer else consume, i)
            while not any(rf.get_state()[1] for rf in rafts):
                await trio.sleep(0.05)
            leader = next(rf for rf in rafts if rf.get_state()[1])
            batches.clear()
            t0 = time.perf_counter()
            sent = 0
            while min(applied) < commands:
                while sent < commands and sent - min(applied) < WINDOW:
                    leader.start(sent)
                    sent += 1
                await trio.sleep(0.001)
            rate.append(commands / (time.perf_counter() - t0))
            nursery.cancel_scope.cancel()

    run_virtual(main, seed)
    return rate[0], batches


def channel_rate(messages: int = 100_000) -> float:
    """Messages per wall second through a bare unbuffered trio channel read with
    ``async for``: the ceiling of the 6.824-shaped service (one message per peer
    per command)."""

    async def main() -> float:
        send, receive = trio.open_memory_channel[int](0)

        async def produce() -> None:
            async with send:
                for k in range(messages):
                    await send.send(k)

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            async for _ in receive:
                pass
        return messages / (time.perf_counter() - t0)

    result: float = run_virtual(main, 0)
    return result


def bench_throughput(runs: int) -> None:
    ceiling = statistics.median(channel_rate() for _ in range(3))
    print(
        f"(b) a bare unbuffered trio channel read with async for: {ceiling:,.0f} messages/s "
        f"(so at most {ceiling / 3:,.0f} commits/s for 3 peers, {ceiling / 5:,.0f} for 5, "
        "with the 6.824-shaped service)"
    )
    for buffer, shape in (
        (0, "6.824 unbuffered apply channel"),
        (1024, "apply channel of 1024, drained"),
    ):
        for n in (3, 5):
            results = [throughput(n, 60_000, seed, buffer) for seed in range(1, runs + 1)]
            rates = [r for r, _ in results]
            batches = [b for _, bs in results for b in bs]
            ratio = statistics.median(rates) * n / ceiling
            print(
                f"(b) throughput, {n} peers, {shape}, 60000 commands, window {WINDOW}: median "
                f"{statistics.median(rates):,.0f} commits/s wall (min {min(rates):,.0f}, "
                f"max {max(rates):,.0f}; {ratio:.2f}x the bare channel's ceiling); "
                f"AppendEntries batch sizes: median {statistics.median(batches):.0f}, "
                f"max {max(batches)}, {len(batches)} batches"
                + ("  [target >= 30,000 for 3 peers]" if n == 3 and buffer else "")
            )


def bench_latency(samples: int) -> None:
    leader_virtual: list[float] = []
    all_virtual: list[float] = []
    leader_wall: list[float] = []

    async def main() -> None:
        async with open_cluster(3, seed=1) as cfg:
            leader = await cfg.check_one_leader()
            for k in range(samples):
                await trio.sleep(cfg.rng.uniform(0, 0.1))  # a random heartbeat phase
                rf = cfg.rafts[leader]
                assert rf is not None
                v0, w0 = trio.current_time(), time.perf_counter()
                index, _, ok = rf.start(k)
                assert ok
                while index not in cfg.logs[leader]:
                    await trio.sleep(0)
                leader_virtual.append(trio.current_time() - v0)
                leader_wall.append(time.perf_counter() - w0)
                while cfg.n_committed(index)[0] < 3:
                    await trio.sleep(0.001)
                all_virtual.append(trio.current_time() - v0)

    run_virtual(main, 1)
    print(
        f"(c) commit latency of one command, idle 3 peers, {samples} samples: leader applies "
        f"after median {statistics.median(leader_virtual) * 1000:.1f} ms virtual, "
        f"{statistics.median(leader_wall) * 1e6:.0f} us wall; all three after median "
        f"{statistics.median(all_virtual) * 1000:.1f} ms virtual (followers learn the commit "
        f"from the next heartbeat)"
    )


def bench_count(seeds: int) -> None:
    agreements: list[int] = []
    idle: list[int] = []
    for seed in range(seeds):

        async def main(seed: int = seed) -> None:
            async with open_cluster(3, seed=seed) as cfg:

                def rpcs() -> int:
                    return sum(cfg.rpc_count(j) for j in range(3))

                leader = await cfg.check_one_leader()
                total1 = rpcs()
                rf = cfg.rafts[leader]
                assert rf is not None
                starti, term, _ = rf.start(1)
                for i in range(1, 12):
                    rf.start(100 + i)
                for i in range(1, 12):
                    await cfg.wait(starti + i, 3, term)
                total2 = rpcs()
                await trio.sleep(1.0)
                agreements.append(total2 - total1)
                idle.append(rpcs() - total2)

        run_virtual(main, seed)
    print(
        f"(d) TestCount over {seeds} seeds: RPCs for 12 agreements median "
        f"{statistics.median(agreements):.0f}, max {max(agreements)} [bound 42]; "
        f"RPCs per idle second median {statistics.median(idle):.0f}, max {max(idle)} [bound 60]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-tests", action="store_true")
    args = parser.parse_args()
    if not args.skip_tests:
        bench_tests(args.runs)
    bench_throughput(args.runs)
    bench_latency(200)
    bench_count(50)


if __name__ == "__main__":
    main()
