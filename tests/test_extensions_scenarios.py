"""Pre-Vote, CheckQuorum, leadership transfer and ReadIndex on the simulated network.

Each scenario runs with its extension off, to show the trouble it answers,
and on, to show the answer (issue 12, "Tests").  Virtual time; every run's
trace is validated at teardown like every other test's.
"""

from __future__ import annotations

import pytest
import trio

from trioraft import NotLeader, RaftConfig
from trioraft.sim.harness import Cluster, open_cluster

TIMEOUT_MAX = RaftConfig().election_timeout_max


def config(*, pre_vote: bool = False, check_quorum: bool = False) -> RaftConfig:
    return RaftConfig(pre_vote=pre_vote, check_quorum=check_quorum, noop_on_election=True)


def terms(cfg: Cluster) -> list[int]:
    return [raft.get_state()[0] for raft in cfg.rafts if raft is not None]


# --------------------------------------------------------------------- Pre-Vote


@pytest.mark.parametrize("pre_vote", [False, True], ids=["without", "with"])
async def test_rejoining_follower_deposes_the_leader_only_without_pre_vote(
    seed: int, pre_vote: bool
) -> None:
    """A follower cut off for 10 s times out again and again.  Without Pre-Vote
    each timeout raises its term, and on rejoining that term deposes a healthy
    leader; with it the follower never wins a pre-vote, so its term stays and
    the leader leads on (thesis §9.6)."""
    async with open_cluster(3, seed=seed, raft_config=config(pre_vote=pre_vote)) as cfg:
        leader = await cfg.check_one_leader()
        term = cfg.rafts[leader].get_state()[0]  # type: ignore[union-attr]
        follower = (leader + 1) % 3
        cfg.disconnect(follower)
        await trio.sleep(10)
        rejoining_term = cfg.rafts[follower].get_state()[0]  # type: ignore[union-attr]
        cfg.connect(follower)
        await trio.sleep(2)
        await cfg.one(101, 3, True)
        after = await cfg.check_one_leader()
        if pre_vote:
            assert rejoining_term == term, "a pre-candidate never raises its term"
            assert after == leader and terms(cfg) == [term] * 3, "the leader was not disturbed"
        else:
            assert rejoining_term > term + 5, "each timeout raised the cut-off follower's term"
            assert min(terms(cfg)) >= rejoining_term, "its term spread to everyone"


@pytest.mark.parametrize("pre_vote", [False, True], ids=["without", "with"])
async def test_follower_that_cannot_hear_the_leader_deposes_it_only_without_withholding(
    seed: int, pre_vote: bool
) -> None:
    """The leader's messages to one follower are lost, but that follower reaches
    everyone else.  Its timer fires; without Pre-Vote its RequestVote at a higher
    term deposes the leader, again and again.  With Pre-Vote the others heard
    from the leader within the minimum election timeout and refuse (thesis
    §4.2.3), so its term never rises and the leader leads on."""
    async with open_cluster(3, seed=seed, raft_config=config(pre_vote=pre_vote)) as cfg:
        leader = await cfg.check_one_leader()
        term = cfg.rafts[leader].get_state()[0]  # type: ignore[union-attr]
        follower = (leader + 1) % 3
        cfg.net.enable(cfg.endnames[leader][follower], False)
        await trio.sleep(5)
        if pre_vote:
            assert terms(cfg) == [term] * 3, "no pre-vote was granted: nobody's term rose"
            assert cfg.rafts[leader].get_state() == (term, True)  # type: ignore[union-attr]
        else:
            assert min(terms(cfg)) > term, "the follower's elections raised everyone's term"
            assert cfg.rafts[leader].get_state()[0] > term  # type: ignore[union-attr]


# --------------------------------------------------------------------- CheckQuorum


@pytest.mark.parametrize("extensions", [False, True], ids=["off", "on"])
async def test_leader_that_cannot_hear_steps_down_with_check_quorum(
    seed: int, extensions: bool
) -> None:
    """A one-way partition: the leader's messages arrive but nothing reaches it.
    Without CheckQuorum it believes it leads forever, and its heartbeats keep
    everyone else from an election: nothing commits.  With CheckQuorum it steps
    down within two election timeouts (§6.2), and with Pre-Vote it cannot
    disturb the others while it cannot hear them, so a new leader commits."""
    raft_config = config(pre_vote=extensions, check_quorum=extensions)
    async with open_cluster(5, seed=seed, raft_config=raft_config) as cfg:
        leader = await cfg.check_one_leader()
        await cfg.one(101, 5, True)
        old = cfg.rafts[leader]
        assert old is not None
        cfg.deafen(leader)
        deafened = trio.current_time()
        if not extensions:
            index, _, ok = old.start(102)
            await trio.sleep(5)
            assert ok and old.get_state()[1], "it still believes it leads"
            assert cfg.n_committed(index)[0] == 0, "and nothing it proposed commits"
            assert not any(
                raft is not None and raft is not old and raft.get_state()[1] for raft in cfg.rafts
            ), "its heartbeats keep the others from electing anyone"
            return
        with trio.move_on_after(10):
            while old.get_state()[1]:
                await trio.sleep(0.01)
        assert trio.current_time() - deafened <= 2 * TIMEOUT_MAX + 0.01, "it stepped down in time"
        cfg.connected[leader] = False  # the harness's agreement counts the others
        await cfg.one(102, 4, True)
        new = await cfg.check_one_leader()
        assert new != leader


# --------------------------------------------------------------------- transfer


@pytest.mark.parametrize("pre_vote", [False, True], ids=["plain", "pre-vote"])
async def test_transfer_to_an_up_to_date_follower_within_one_election_timeout(
    seed: int, pre_vote: bool
) -> None:
    """§3.10: the target is up to date, so TimeoutNow goes at once and the
    target wins its election (voters that just heard from the leader still vote:
    the request says it is a transfer)."""
    async with open_cluster(3, seed=seed, raft_config=config(pre_vote=pre_vote)) as cfg:
        leader = await cfg.check_one_leader()
        await cfg.one(101, 3, True)
        target = (leader + 1) % 3
        started = trio.current_time()
        assert cfg.rafts[leader].transfer_leadership(target)  # type: ignore[union-attr]
        with trio.move_on_after(10):
            while not cfg.rafts[target].get_state()[1]:  # type: ignore[union-attr]
                await trio.sleep(0.005)
        assert trio.current_time() - started <= TIMEOUT_MAX, "the target leads in time"
        await cfg.one(102, 3, True)
        assert await cfg.check_one_leader() == target


async def test_transfer_to_a_lagging_follower_first_catches_it_up(seed: int) -> None:
    async with open_cluster(3, seed=seed, raft_config=config(pre_vote=True)) as cfg:
        leader = await cfg.check_one_leader()
        target = (leader + 1) % 3
        cfg.disconnect(target)
        indexes = [await cfg.one(100 + k, 2, True) for k in range(20)]
        cfg.connect(target)
        raft = cfg.rafts[leader]
        assert raft is not None
        assert raft.transfer_leadership(target)
        assert raft.start(999)[2] is False, "start() is refused while a transfer is under way"
        new = cfg.rafts[target]
        assert new is not None
        with trio.fail_after(10):
            while not new.get_state()[1]:
                await trio.sleep(0.005)
        # It won because it had caught up: everything committed before is in its log.
        assert new.node.log.last_index >= indexes[-1]
        assert new.node.log.term_at(indexes[-1]) == raft.node.log.term_at(indexes[-1])
        await cfg.one(200, 3, True)


async def test_transfer_to_a_dead_peer_is_abandoned_and_the_leader_serves_again(
    seed: int,
) -> None:
    async with open_cluster(3, seed=seed, raft_config=config(pre_vote=True)) as cfg:
        leader = await cfg.check_one_leader()
        term = cfg.rafts[leader].get_state()[0]  # type: ignore[union-attr]
        target = (leader + 1) % 3
        cfg.crash1(target)
        raft = cfg.rafts[leader]
        assert raft is not None
        assert raft.transfer_leadership(target)
        assert raft.start(1)[2] is False
        await trio.sleep(TIMEOUT_MAX + 0.01)
        assert raft.get_state() == (term, True), "the old leader leads on, in its term"
        index, _, ok = raft.start(102)
        assert ok, "start() is accepted again once the transfer is abandoned"
        cfg.connected[target] = False
        with trio.fail_after(10):
            while cfg.n_committed(index)[0] < 2:
                await trio.sleep(0.01)


# --------------------------------------------------------------------- ReadIndex


@pytest.mark.parametrize("check_quorum", [False, True], ids=["plain", "check-quorum"])
async def test_partitioned_leader_never_serves_a_read(seed: int, check_quorum: bool) -> None:
    """§6.4: a leader cut off from the rest cannot confirm it still leads, so its
    read_index() never returns an index: it raises NotLeader once the leader
    learns it was deposed (CheckQuorum: within two election timeouts; without:
    when it hears the new leader), and meanwhile waits."""
    raft_config = config(check_quorum=check_quorum)
    async with open_cluster(3, seed=seed, raft_config=raft_config) as cfg:
        leader = await cfg.check_one_leader()
        await cfg.one(101, 3, True)
        old = cfg.rafts[leader]
        assert old is not None
        assert await old.read_index() >= 1, "connected, it serves reads"
        cfg.disconnect(leader)
        outcome: list[object] = []

        async def read() -> None:
            try:
                outcome.append(await old.read_index())
            except NotLeader as error:
                outcome.append(error)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await trio.sleep(5)
            if check_quorum:
                assert len(outcome) == 1 and isinstance(outcome[0], NotLeader)
            else:
                assert outcome == [], "still waiting: it cannot tell it was deposed"
                cfg.connect(leader)
            with trio.fail_after(5):
                while not outcome:
                    await trio.sleep(0.01)
        assert isinstance(outcome[0], NotLeader), f"a read was served: {outcome[0]!r}"


async def test_a_transfer_retargeted_to_a_live_peer_completes(seed: int) -> None:
    """A transfer to a dead peer is replaced by one to a live peer (the second call
    re-targets it): the live peer takes over, and the trace validates (the model
    re-targets too)."""
    async with open_cluster(3, seed=seed, raft_config=config(pre_vote=True)) as cfg:
        leader = await cfg.check_one_leader()
        dead, live = (leader + 1) % 3, (leader + 2) % 3
        cfg.crash1(dead)
        raft = cfg.rafts[leader]
        assert raft is not None
        assert raft.transfer_leadership(dead)
        await trio.sleep(0.05)
        assert raft.transfer_leadership(live)
        new = cfg.rafts[live]
        assert new is not None
        with trio.fail_after(TIMEOUT_MAX):
            while not new.get_state()[1]:
                await trio.sleep(0.005)
        assert not raft.get_state()[1]
