"""A large command is saved and replicated without stopping heartbeats.

This is about wall-clock time (how long the event loop is held while 20 MB
are encoded, checksummed, written and fsynced), so it runs on trio's real
clock whatever ``--real-clock`` says: three peers on the simulated network,
each with a DiskStorage whose fsyncs run in worker threads.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import trio

import trioraft
from trioraft.core.messages import AppendEntriesArgs
from trioraft.sim.network import open_network

SIZE = 20 * 2**20
CONFIG = trioraft.RaftConfig()


class _Recording:
    """A ClientEnd that notes when each AppendEntries leaves for its peer."""

    def __init__(self, end: trioraft.ClientEnd, sent: list[float]) -> None:
        self._end = end
        self._sent = sent

    async def call(self, method: str, args: object) -> object | None:
        if isinstance(args, AppendEntriesArgs):
            self._sent.append(trio.current_time())
        return await self._end.call(method, args)


def test_a_20_mb_command_does_not_stop_heartbeats(tmp_path: Path) -> None:
    gaps: dict[int, float] = {}
    outcome: dict[str, object] = {}

    async def main() -> None:
        n = 3
        async with open_network(seed=1) as net, trio.open_nursery() as nursery:
            sent: list[list[list[float]]] = [[[] for _ in range(n)] for _ in range(n)]
            rafts: list[trioraft.Raft] = []
            applied = [0] * n
            receivers = []
            for i in range(n):
                ends: list[trioraft.ClientEnd] = []
                for j in range(n):
                    name = f"{i}->{j}"
                    end = net.make_end(name)
                    net.connect(name, str(j))
                    net.enable(name, True)
                    ends.append(_Recording(end, sent[i][j]))
                send, receive = trio.open_memory_channel[trioraft.ApplyMsg](0)
                storage = trioraft.DiskStorage(tmp_path / f"peer-{i}", create=True)
                rafts.append(trioraft.make(ends, i, storage, send, nursery=nursery, config=CONFIG))
                net.add_server(str(i), rafts[i])
                receivers.append(receive)

            async def consume(i: int) -> None:
                async for m in receivers[i]:
                    applied[i] = m.command_index

            for i in range(n):
                nursery.start_soon(consume, i)
            with trio.fail_after(10):
                while not any(rf.get_state()[1] for rf in rafts):
                    await trio.sleep(0.05)
            leader = next(i for i, rf in enumerate(rafts) if rf.get_state()[1])
            index, term, ok = rafts[leader].start(b"x" * SIZE)
            assert ok
            t0 = trio.current_time()
            with trio.fail_after(60):
                while min(applied) < index:
                    await trio.sleep(0.01)
            outcome["seconds"] = trio.current_time() - t0
            await trio.sleep(0.5)  # heartbeats after it, too
            outcome["terms"] = {rf.get_state()[0] for rf in rafts}
            outcome["term"] = term
            for j in range(n):
                if j != leader:
                    times = [t for t in sent[leader][j] if t >= t0 - 0.2]
                    gaps[j] = max((b - a for a, b in itertools.pairwise(times)), default=math.inf)
            for rf in rafts:
                rf.kill()
            nursery.cancel_scope.cancel()

    trio.run(main)  # the real clock, on purpose
    assert outcome["terms"] == {outcome["term"]}, "no election happened"
    for j, gap in gaps.items():
        assert gap < CONFIG.election_timeout_min, (
            f"peer {j} went {gap:.3f} s without an AppendEntries while 20 MB were "
            f"saved and replicated (in {outcome['seconds']:.2f} s)"
        )
