"""The public API of CONTRACT.md: make, start, get_state, kill, Persister, RaftConfig."""

from __future__ import annotations

import pytest
import trio

import trioraft
from trioraft import codec
from trioraft.core.messages import Entry, PersistentState
from trioraft.sim.harness import open_cluster


@pytest.mark.persister_only
async def test_start_refuses_bad_commands_on_every_peer_and_changes_nothing(seed: int) -> None:
    async with open_cluster(3, seed=seed) as cfg:
        leader = await cfg.check_one_leader()
        await cfg.one(1, 3, False)
        for rf in cfg.rafts:
            assert rf is not None
            before = (rf.node.log.last_index, rf.get_state(), cfg.saved[rf.me].read_raft_state())
            for bad in [(1, 2), {1, 2}, object(), 2**64, {"k": (1,)}]:
                with pytest.raises(TypeError):
                    rf.start(bad)
            after = (rf.node.log.last_index, rf.get_state(), cfg.saved[rf.me].read_raft_state())
            assert after == before
        assert await cfg.one(2, 3, False) == 2
        assert cfg.rafts[leader] is not None


async def test_commands_of_every_allowed_type_come_back_equal(seed: int) -> None:
    value = {"n": None, "b": True, 7: [1.5, -(2**63), 2**64 - 1, "s", b"\x00b"], "d": {}}
    async with open_cluster(3, seed=seed) as cfg:
        index = await cfg.one(value, 3, False)
        for log in cfg.logs:
            assert log[index] == value


async def test_kill_stops_the_peer_without_cancelling_the_callers_nursery() -> None:
    send, receive = trio.open_memory_channel[trioraft.ApplyMsg](0)
    async with trio.open_nursery() as nursery:
        rf = trioraft.make([_NoEnd()], 0, trioraft.Persister(), send, nursery=nursery)
        await trio.sleep(1)  # a lone peer elects itself
        assert rf.get_state() == (1, True)
        index, term, ok = rf.start("x")
        assert (index, term, ok) == (1, 1, True)
        assert (await receive.receive()).command == "x"
        rf.kill()
        rf.kill()  # idempotent
        assert rf.killed()
        assert rf.start("y")[2] is False
        with trio.move_on_after(5):
            await receive.receive()
            pytest.fail("a killed peer applied something")
    # the nursery closed by itself: the killed peer's tasks had all finished


async def test_a_killed_peer_answers_no_rpc(seed: int) -> None:
    async with open_cluster(3, seed=seed) as cfg:
        await cfg.check_one_leader()
        rf = cfg.rafts[0]
        assert rf is not None
        rf.kill()
        handler = rf.rpc_handlers()["Raft.RequestVote"]
        from trioraft.core.messages import RequestVoteArgs

        assert await handler.invoke(RequestVoteArgs(99, 1, 0, 0)) is None


def test_make_refuses_a_corrupt_persister() -> None:
    async def main() -> None:
        send, _ = trio.open_memory_channel[trioraft.ApplyMsg](0)
        async with trio.open_nursery() as nursery:
            for state, snapshot, expect in [
                (b"\xc1garbage", None, "does not decode"),
                (codec.encode(PersistentState(3, 7, 0, 0, ())), None, "voted_for 7"),
                (codec.encode(PersistentState(1, None, 5, 1, ())), None, "no snapshot"),
                (
                    codec.encode(PersistentState(1, None, 5, 1, (), 4)),
                    b"abc",
                    "the snapshot stored is 3 bytes but the raft state says 4",
                ),
                (codec.encode(PersistentState(1, None, 5, 1, (), -7)), b"abc", "size -7"),
                (
                    codec.encode(PersistentState(1, None, 0, 0, (Entry(2, _raw(1)),))),
                    None,
                    "term 2 out of order",
                ),
                (b"", b"snap", "snapshot but no raft state"),
            ]:
                persister = trioraft.Persister()
                persister.save(state, snapshot)
                with pytest.raises(trioraft.CorruptStateError, match=expect):
                    trioraft.make([_NoEnd()] * 3, 0, persister, send, nursery=nursery)
                assert persister.read_raft_state() == state, "nothing is overwritten"

    trio.run(main)


def test_make_refuses_a_bad_me() -> None:
    async def main() -> None:
        send, _ = trio.open_memory_channel[trioraft.ApplyMsg](0)
        async with trio.open_nursery() as nursery:
            with pytest.raises(ValueError, match="me=3"):
                trioraft.make([_NoEnd()] * 3, 3, trioraft.Persister(), send, nursery=nursery)

    trio.run(main)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"heartbeat_interval": 0}, "heartbeat_interval"),
        ({"election_timeout_min": -1}, "election_timeout_min"),
        ({"election_timeout_min": 0.9, "election_timeout_max": 0.5}, "election_timeout_min"),
        ({"heartbeat_interval": 0.5}, "heartbeat_interval"),
        ({"max_append_bytes": "big"}, "max_append_bytes"),
    ],
)
def test_raft_config_names_the_bad_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        trioraft.RaftConfig(**kwargs)  # type: ignore[arg-type]


def test_persister_semantics() -> None:
    p = trioraft.Persister()
    assert p.read_raft_state() == b"" and p.read_snapshot() == b""
    p.save(b"state", b"snap")
    q = p.copy()
    p.save(b"state2", None)
    assert (p.read_raft_state(), p.read_snapshot()) == (b"state2", b"")
    assert (q.read_raft_state(), q.read_snapshot()) == (b"state", b"snap")
    assert q.raft_state_size() == 5 and q.snapshot_size() == 4
    with pytest.raises(TypeError):
        p.save("text", None)  # type: ignore[arg-type]


def _raw(value: object) -> object:
    import msgspec

    return msgspec.Raw(codec.encode(value))


class _NoEnd:
    """A ClientEnd that never reaches anyone (peers[me] is never called)."""

    async def call(self, method: str, args: object) -> object | None:
        return None


@pytest.mark.persister_only
async def test_a_peer_with_an_empty_snapshot_restarts(seed: int) -> None:
    """A service state of zero bytes is a snapshot like any other: saved, restored."""
    async with open_cluster(3, seed=seed) as cfg:
        for k in range(4):
            await cfg.one(k, 3, False)
        for i in range(3):
            rf = cfg.rafts[i]
            assert rf is not None
            rf.snapshot(3, b"")
        cfg.crash1(0)
        cfg.start1(0)
        cfg.connect(0)
        assert await cfg.one(4, 3, False) == 5
        rf = cfg.rafts[0]
        assert rf is not None
        assert rf.get_state()[0] >= 1
        assert cfg.saved[0].read_snapshot() == b""
