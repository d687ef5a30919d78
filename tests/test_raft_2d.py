"""6.824 Lab 2D (2023 test_test.go): log compaction, ported step for step.

Each test keeps the Go test's name, steps, constants and messages.  They run
in virtual time by default and on the real clock with ``--real-clock``.
``open_cluster(..., snapshot=True)`` is ``make_config(..., snapshot=true)``:
every peer runs the tester's ``applier_snap``.
"""

from __future__ import annotations

from trioraft.peer import Raft
from trioraft.sim.harness import SNAPSHOT_INTERVAL, Cluster, TestFailure, open_cluster

MAXLOGSIZE = 2000


def raft(cfg: Cluster, i: int) -> Raft:
    """``cfg.rafts[i]``, which the Go test dereferences directly."""
    rf = cfg.rafts[i]
    if rf is None:
        raise TestFailure(f"server {i} is not running")
    return rf


async def snapcommon(seed: int, name: str, disconnect: bool, reliable: bool, crash: bool) -> None:
    iters = 30
    servers = 3
    async with open_cluster(servers, unreliable=not reliable, snapshot=True, seed=seed) as cfg:
        cfg.begin(name)

        await cfg.one(cfg.rng.getrandbits(63), servers, True)
        leader1 = await cfg.check_one_leader()

        for i in range(iters):
            victim = (leader1 + 1) % servers
            sender = leader1
            if i % 3 == 1:
                sender = (leader1 + 1) % servers
                victim = leader1

            if disconnect:
                cfg.disconnect(victim)
                await cfg.one(cfg.rng.getrandbits(63), servers - 1, True)
            if crash:
                cfg.crash1(victim)
                await cfg.one(cfg.rng.getrandbits(63), servers - 1, True)

            # perhaps send enough to get a snapshot
            nn = (SNAPSHOT_INTERVAL // 2) + cfg.rng.randrange(SNAPSHOT_INTERVAL)
            for _ in range(nn):
                raft(cfg, sender).start(cfg.rng.getrandbits(63))

            # let applier threads catch up with the Start()'s
            if disconnect is False and crash is False:
                # make sure all followers have caught up, so that
                # an InstallSnapshot RPC isn't required for
                # TestSnapshotBasic2D().
                await cfg.one(cfg.rng.getrandbits(63), servers, True)
            else:
                await cfg.one(cfg.rng.getrandbits(63), servers - 1, True)

            if cfg.log_size() >= MAXLOGSIZE:
                raise TestFailure("Log size too large")
            if disconnect:
                # reconnect a follower, who maybe behind and
                # needs to rceive a snapshot to catch up.
                cfg.connect(victim)
                await cfg.one(cfg.rng.getrandbits(63), servers, True)
                leader1 = await cfg.check_one_leader()
            if crash:
                cfg.start1(victim, cfg.applier_snap)
                cfg.connect(victim)
                await cfg.one(cfg.rng.getrandbits(63), servers, True)
                leader1 = await cfg.check_one_leader()
        cfg.end()


async def test_snapshot_basic_2d(seed: int) -> None:
    await snapcommon(seed, "Test (2D): snapshots basic", False, True, False)


async def test_snapshot_install_2d(seed: int) -> None:
    await snapcommon(seed, "Test (2D): install snapshots (disconnect)", True, True, False)


async def test_snapshot_install_unreliable_2d(seed: int) -> None:
    await snapcommon(
        seed, "Test (2D): install snapshots (disconnect+unreliable)", True, False, False
    )


async def test_snapshot_install_crash_2d(seed: int) -> None:
    await snapcommon(seed, "Test (2D): install snapshots (crash)", False, True, True)


async def test_snapshot_install_un_crash_2d(seed: int) -> None:
    await snapcommon(seed, "Test (2D): install snapshots (unreliable+crash)", False, False, True)


async def test_snapshot_all_crash_2d(seed: int) -> None:
    """Do the servers persist the snapshots, and restart using snapshot along
    with the tail of the log?"""
    servers = 3
    iters = 5
    async with open_cluster(servers, snapshot=True, seed=seed) as cfg:
        cfg.begin("Test (2D): crash and restart all servers")

        await cfg.one(cfg.rng.getrandbits(63), servers, True)

        for _ in range(iters):
            # perhaps enough to get a snapshot
            nn = (SNAPSHOT_INTERVAL // 2) + cfg.rng.randrange(SNAPSHOT_INTERVAL)
            for _ in range(nn):
                await cfg.one(cfg.rng.getrandbits(63), servers, True)

            index1 = await cfg.one(cfg.rng.getrandbits(63), servers, True)

            # crash all
            for i in range(servers):
                cfg.crash1(i)

            # revive all
            for i in range(servers):
                cfg.start1(i, cfg.applier_snap)
                cfg.connect(i)

            index2 = await cfg.one(cfg.rng.getrandbits(63), servers, True)
            if index2 < index1 + 1:
                raise TestFailure(f"index decreased from {index1} to {index2}")
        cfg.end()


async def test_snapshot_init_2d(seed: int) -> None:
    """Do servers correctly initialize their in-memory copy of the snapshot,
    making sure that future writes to persistent state don't lose state?"""
    servers = 3
    async with open_cluster(servers, snapshot=True, seed=seed) as cfg:
        cfg.begin("Test (2D): snapshot initialization after crash")
        await cfg.one(cfg.rng.getrandbits(63), servers, True)

        # enough ops to make a snapshot
        nn = SNAPSHOT_INTERVAL + 1
        for _ in range(nn):
            await cfg.one(cfg.rng.getrandbits(63), servers, True)

        # crash all
        for i in range(servers):
            cfg.crash1(i)

        # revive all
        for i in range(servers):
            cfg.start1(i, cfg.applier_snap)
            cfg.connect(i)

        # a single op, to get something to be written back to persistent storage.
        await cfg.one(cfg.rng.getrandbits(63), servers, True)

        # crash all
        for i in range(servers):
            cfg.crash1(i)

        # revive all
        for i in range(servers):
            cfg.start1(i, cfg.applier_snap)
            cfg.connect(i)

        # do another op to trigger potential bug
        await cfg.one(cfg.rng.getrandbits(63), servers, True)
        cfg.end()
