"""6.824 Lab 2A (2023 test_test.go): leader election, ported step for step.

Each test keeps the Go test's name, steps, constants and messages.  They run
in virtual time by default and on the real clock with ``--real-clock``.
"""

from __future__ import annotations

import trio

from trioraft.sim.harness import RAFT_ELECTION_TIMEOUT, TestFailure, open_cluster


async def test_initial_election_2a(seed: int) -> None:
    servers = 3
    async with open_cluster(servers, seed=seed) as cfg:
        cfg.begin("Test (2A): initial election")

        # is a leader elected?
        await cfg.check_one_leader()

        # sleep a bit to avoid racing with followers learning of the
        # election, then check that all peers agree on the term.
        await trio.sleep(0.050)
        term1 = cfg.check_terms()
        if term1 < 1:
            raise TestFailure(f"term is {term1}, but should be at least 1")

        # does the leader+term stay the same if there is no network failure?
        await trio.sleep(2 * RAFT_ELECTION_TIMEOUT)
        term2 = cfg.check_terms()
        if term1 != term2:
            print("warning: term changed even though there were no failures")

        # there should still be a leader.
        await cfg.check_one_leader()
        cfg.end()


async def test_re_election_2a(seed: int) -> None:
    servers = 3
    async with open_cluster(servers, seed=seed) as cfg:
        cfg.begin("Test (2A): election after network failure")

        leader1 = await cfg.check_one_leader()

        # if the leader disconnects, a new one should be elected.
        cfg.disconnect(leader1)
        await cfg.check_one_leader()

        # if the old leader rejoins, that shouldn't disturb the new leader.
        # and the old leader should switch to follower.
        cfg.connect(leader1)
        leader2 = await cfg.check_one_leader()

        # if there's no quorum, no new leader should be elected.
        cfg.disconnect(leader2)
        cfg.disconnect((leader2 + 1) % servers)
        await trio.sleep(2 * RAFT_ELECTION_TIMEOUT)

        # check that the one connected server does not think it is the leader.
        cfg.check_no_leader()

        # if a quorum arises, it should elect a leader.
        cfg.connect((leader2 + 1) % servers)
        await cfg.check_one_leader()

        # re-join of last node shouldn't prevent leader from existing.
        cfg.connect(leader2)
        await cfg.check_one_leader()
        cfg.end()


async def test_many_elections_2a(seed: int) -> None:
    servers = 7
    async with open_cluster(servers, seed=seed) as cfg:
        cfg.begin("Test (2A): multiple elections")

        await cfg.check_one_leader()

        iters = 10
        for _ in range(1, iters):
            # disconnect three nodes
            i1 = cfg.rng.randrange(servers)
            i2 = cfg.rng.randrange(servers)
            i3 = cfg.rng.randrange(servers)
            cfg.disconnect(i1)
            cfg.disconnect(i2)
            cfg.disconnect(i3)

            # either the current leader should still be alive,
            # or the remaining four should elect a new one.
            await cfg.check_one_leader()

            cfg.connect(i1)
            cfg.connect(i2)
            cfg.connect(i3)

        await cfg.check_one_leader()
        cfg.end()
