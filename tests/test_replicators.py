"""The shell's replicators against transports other than the simulated network."""

from __future__ import annotations

import trio

import trioraft


class _Direct:
    """A transport that calls the other peer's handler in place."""

    def __init__(self, rafts: list[trioraft.Raft], j: int) -> None:
        self._rafts = rafts
        self._j = j

    async def call(self, method: str, args: object) -> object | None:
        return await self._rafts[self._j].rpc_handlers()[method].invoke(args)


class _Refused:
    """A transport to a host that refuses connections: every call fails at once."""

    def __init__(self) -> None:
        self.calls = 0

    async def call(self, method: str, args: object) -> object | None:
        self.calls += 1
        assert self.calls < 500, "a tight retry loop against an unreachable peer"
        await trio.lowlevel.checkpoint()
        return None


async def test_a_lost_send_waits_for_the_next_heartbeat() -> None:
    """After a lost AppendEntries the replicator does not resend at once (a transport
    that fails at once would make that a busy loop): about one try per heartbeat."""
    rafts: list[trioraft.Raft] = []
    dead = _Refused()
    config = trioraft.RaftConfig(seed=1)
    async with trio.open_nursery() as nursery:
        for i in range(2):
            ends: list[trioraft.ClientEnd] = [_Direct(rafts, 0), _Direct(rafts, 1), dead]
            send, _ = trio.open_memory_channel[trioraft.ApplyMsg](100)
            rafts.append(
                trioraft.make(ends, i, trioraft.Persister(), send, nursery=nursery, config=config)
            )
        with trio.fail_after(10):
            while not any(rf.get_state()[1] for rf in rafts):
                await trio.sleep(0.05)
        leader = next(rf for rf in rafts if rf.get_state()[1])
        assert leader.start("x")[2]
        before = dead.calls
        await trio.sleep(1.0)
        interval = config.heartbeat_interval
        assert dead.calls - before <= 1.5 / interval, dead.calls - before
        for rf in rafts:
            rf.kill()
