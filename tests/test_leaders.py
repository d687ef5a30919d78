"""Leaders and state machines: the no-op on election, leader(), wait_committed().

Every cluster here is recorded and its trace validated at teardown (the
no-op included: the validator replays it as the model's ClientRequest of a
leader just elected).
"""

from __future__ import annotations

import pytest
import trio

import trioraft
from trioraft.core.ready import NOOP
from trioraft.sim.harness import RAFT_ELECTION_TIMEOUT, open_cluster

WITH_NOOP = trioraft.RaftConfig(noop_on_election=True)


async def test_a_new_leader_commits_a_noop_of_its_term_at_once(seed: int) -> None:
    async with open_cluster(3, seed=seed, raft_config=WITH_NOOP) as cfg:
        leader = await cfg.check_one_leader()
        rf = cfg.rafts[leader]
        assert rf is not None
        term = rf.get_state()[0]
        entry = rf.node.log.entry(1)
        assert (entry.term, entry.command) == (term, NOOP), "index 1 is the no-op"
        await trio.sleep(0.5)  # followers learn of the commit with the next heartbeat
        assert all(r is not None and r.node.commit_index == 1 for r in cfg.rafts), (
            "the no-op commits everywhere without a client command"
        )
        assert all(not log for log in cfg.logs), "no-ops are not delivered on apply_ch"
        assert await cfg.one("first", 3, False) == 2, "the service sees a gap at the no-op"


async def test_a_new_leaders_noop_settles_every_log_without_a_client(seed: int) -> None:
    """An old leader comes back holding an entry nobody else has: the new leader's
    no-op overwrites it and commits everywhere, with no client command (without
    the no-op, the stale entry would sit in the old leader's log until one came)."""
    async with open_cluster(3, seed=seed, raft_config=WITH_NOOP) as cfg:
        leader = await cfg.check_one_leader()
        rf = cfg.rafts[leader]
        assert rf is not None
        # A command the old leader gets onto its own log only.
        cfg.disconnect((leader + 1) % 3)
        cfg.disconnect((leader + 2) % 3)
        _, _, ok = rf.start("old term")
        assert ok
        cfg.crash1(leader)
        cfg.connect((leader + 1) % 3)
        cfg.connect((leader + 2) % 3)
        await cfg.check_one_leader()
        cfg.start1(leader)
        cfg.connect(leader)
        # Whoever leads now (its no-op is in), everything settles without a client.
        await trio.sleep(2 * RAFT_ELECTION_TIMEOUT)
        commits = {r.node.commit_index for r in cfg.rafts if r is not None}
        lasts = {r.node.log.last_index for r in cfg.rafts if r is not None}
        assert commits == lasts and len(commits) == 1, (commits, lasts)


async def test_leader_names_the_leader_a_peer_believes_in(seed: int) -> None:
    async with open_cluster(5, seed=seed) as cfg:
        leader = await cfg.check_one_leader()
        await cfg.one(1, 5, False)  # every follower has heard from the leader
        term = cfg.check_terms()
        for rf in cfg.rafts:
            assert rf is not None
            assert rf.leader() == (leader, term)
        cfg.disconnect(leader)
        new = await cfg.check_one_leader()
        new_term = cfg.rafts[new].get_state()[0]  # type: ignore[union-attr]
        await cfg.one(2, 4, False)
        old = cfg.rafts[leader]
        assert old is not None
        assert old.leader() == (leader, term), "a partitioned leader still believes in itself"
        for i, rf in enumerate(cfg.rafts):
            if i != leader:
                assert rf is not None and rf.leader() == (new, new_term)
        cfg.connect(leader)
        await cfg.one(3, 5, False)
        assert old.leader() == (new, new_term)


async def test_a_fresh_peer_knows_no_leader() -> None:
    send, _ = trio.open_memory_channel[trioraft.ApplyMsg](0)
    async with trio.open_nursery() as nursery:
        rf = trioraft.make([_NoEnd()] * 3, 0, trioraft.Persister(), send, nursery=nursery)
        assert rf.leader() == (None, 0)
        rf.kill()


async def test_wait_committed_reports_commit(seed: int) -> None:
    async with open_cluster(3, seed=seed) as cfg:
        leader = await cfg.check_one_leader()
        rf = cfg.rafts[leader]
        assert rf is not None
        index, term, ok = rf.start("x")
        assert ok
        with trio.fail_after(5):
            assert await rf.wait_committed(index, term) is True
        assert rf.node.commit_index >= index
        # asked after the fact, it answers at once
        assert await rf.wait_committed(index, term) is True


async def test_wait_committed_reports_an_entry_lost_to_another_leader(seed: int) -> None:
    async with open_cluster(3, seed=seed) as cfg:
        leader = await cfg.check_one_leader()
        old = cfg.rafts[leader]
        assert old is not None
        cfg.disconnect(leader)
        index, term, ok = old.start("lost")  # on the partitioned leader only
        assert ok
        outcome: list[bool] = []

        async def wait() -> None:
            outcome.append(await old.wait_committed(index, term))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.sleep(0)
            await cfg.check_one_leader()
            assert await cfg.one("won", 2, False) == index, "the new leader takes the index"
            assert outcome == [], "the old leader cannot know yet"
            cfg.connect(leader)
            with trio.fail_after(5):
                while not outcome:
                    await trio.sleep(0.05)
        assert outcome == [False]


async def test_wait_committed_raises_when_the_peer_is_killed(seed: int) -> None:
    async with open_cluster(3, seed=seed) as cfg:
        leader = await cfg.check_one_leader()
        rf = cfg.rafts[leader]
        assert rf is not None
        cfg.disconnect((leader + 1) % 3)
        cfg.disconnect((leader + 2) % 3)
        index, term, _ = rf.start("never")

        async def kill_soon() -> None:
            await trio.sleep(0.5)
            rf.kill()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(kill_soon)
            with pytest.raises(trio.ClosedResourceError), trio.fail_after(5):
                await rf.wait_committed(index, term)
        with pytest.raises(trio.ClosedResourceError):
            await rf.wait_committed(index, term)


async def test_wait_committed_checks_its_arguments(seed: int) -> None:
    async with open_cluster(3, seed=seed) as cfg:
        rf = cfg.rafts[0]
        assert rf is not None
        for bad, error in [
            ((0, 1), ValueError),
            ((1, 0), ValueError),
            (("1", 1), TypeError),
            ((1, True), TypeError),
            ((1.0, 1), TypeError),
        ]:
            with pytest.raises(error, match="wait_committed"):
                await rf.wait_committed(*bad)  # type: ignore[arg-type]


async def test_wait_committed_on_an_entry_in_the_snapshot_cannot_tell(seed: int) -> None:
    """Asked after the entry went into this peer's snapshot, it cannot compare terms:
    it says so (LookupError) rather than guess (a False would invite a retry of a
    command that did commit)."""
    async with open_cluster(3, seed=seed) as cfg:
        leader = await cfg.check_one_leader()
        rf = cfg.rafts[leader]
        assert rf is not None
        index, term, ok = rf.start("x")
        assert ok
        assert await cfg.one("y", 3, False) == index + 1
        rf.snapshot(index + 1, b"state")
        with pytest.raises(LookupError, match=f"entry {index} went into a snapshot"):
            await rf.wait_committed(index, term)


async def test_a_snapshot_may_fold_in_a_noop_the_service_never_saw(seed: int) -> None:
    async with open_cluster(3, seed=seed, raft_config=WITH_NOOP) as cfg:
        leader = await cfg.check_one_leader()
        await trio.sleep(0.5)  # the no-op (index 1) is committed and applied everywhere
        rf = cfg.rafts[leader]
        assert rf is not None and rf.node.last_applied == 1
        rf.snapshot(1, b"empty")  # delivered as far as the service is concerned
        assert rf.node.log.snapshot_index == 1


class _NoEnd:
    async def call(self, method: str, args: object) -> object | None:
        return None
