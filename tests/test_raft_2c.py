"""6.824 Lab 2C (2023 test_test.go): persistence, ported step for step.

Each test keeps the Go test's name, steps, constants and messages.  They run
in virtual time by default and on the real clock with ``--real-clock``.
"""

from __future__ import annotations

import trio

from trioraft.peer import Raft
from trioraft.sim.harness import RAFT_ELECTION_TIMEOUT, Cluster, TestFailure, open_cluster


def raft(cfg: Cluster, i: int) -> Raft:
    """``cfg.rafts[i]``, which the Go test dereferences directly."""
    rf = cfg.rafts[i]
    if rf is None:
        raise TestFailure(f"server {i} is not running")
    return rf


async def test_persist1_2c(seed: int) -> None:
    servers = 3
    async with open_cluster(servers, seed=seed) as cfg:
        cfg.begin("Test (2C): basic persistence")

        await cfg.one(11, servers, True)

        # crash and re-start all
        for i in range(servers):
            cfg.start1(i, cfg.applier)
        for i in range(servers):
            cfg.disconnect(i)
            cfg.connect(i)

        await cfg.one(12, servers, True)

        leader1 = await cfg.check_one_leader()
        cfg.disconnect(leader1)
        cfg.start1(leader1, cfg.applier)
        cfg.connect(leader1)

        await cfg.one(13, servers, True)

        leader2 = await cfg.check_one_leader()
        cfg.disconnect(leader2)
        await cfg.one(14, servers - 1, True)
        cfg.start1(leader2, cfg.applier)
        cfg.connect(leader2)

        await cfg.wait(4, servers, -1)  # wait for leader2 to join before killing i3

        i3 = (await cfg.check_one_leader() + 1) % servers
        cfg.disconnect(i3)
        await cfg.one(15, servers - 1, True)
        cfg.start1(i3, cfg.applier)
        cfg.connect(i3)

        await cfg.one(16, servers, True)

        cfg.end()


async def test_persist2_2c(seed: int) -> None:
    servers = 5
    async with open_cluster(servers, seed=seed) as cfg:
        cfg.begin("Test (2C): more persistence")

        index = 1
        for _ in range(5):
            await cfg.one(10 + index, servers, True)
            index += 1

            leader1 = await cfg.check_one_leader()

            cfg.disconnect((leader1 + 1) % servers)
            cfg.disconnect((leader1 + 2) % servers)

            await cfg.one(10 + index, servers - 2, True)
            index += 1

            cfg.disconnect((leader1 + 0) % servers)
            cfg.disconnect((leader1 + 3) % servers)
            cfg.disconnect((leader1 + 4) % servers)

            cfg.start1((leader1 + 1) % servers, cfg.applier)
            cfg.start1((leader1 + 2) % servers, cfg.applier)
            cfg.connect((leader1 + 1) % servers)
            cfg.connect((leader1 + 2) % servers)

            await trio.sleep(RAFT_ELECTION_TIMEOUT)

            cfg.start1((leader1 + 3) % servers, cfg.applier)
            cfg.connect((leader1 + 3) % servers)

            await cfg.one(10 + index, servers - 2, True)
            index += 1

            cfg.connect((leader1 + 4) % servers)
            cfg.connect((leader1 + 0) % servers)

        await cfg.one(1000, servers, True)

        cfg.end()


async def test_persist3_2c(seed: int) -> None:
    servers = 3
    async with open_cluster(servers, seed=seed) as cfg:
        cfg.begin("Test (2C): partitioned leader and one follower crash, leader restarts")

        await cfg.one(101, 3, True)

        leader = await cfg.check_one_leader()
        cfg.disconnect((leader + 2) % servers)

        await cfg.one(102, 2, True)

        cfg.crash1((leader + 0) % servers)
        cfg.crash1((leader + 1) % servers)
        cfg.connect((leader + 2) % servers)
        cfg.start1((leader + 0) % servers, cfg.applier)
        cfg.connect((leader + 0) % servers)

        await cfg.one(103, 2, True)

        cfg.start1((leader + 1) % servers, cfg.applier)
        cfg.connect((leader + 1) % servers)

        await cfg.one(104, servers, True)

        cfg.end()


async def test_figure8_2c(seed: int) -> None:
    """Test the scenarios described in Figure 8 of the extended Raft paper.

    Each iteration asks a leader, if there is one, to insert a command in the
    Raft log.  If there is a leader, that leader will fail quickly with a high
    probability (perhaps without committing the command), or crash after a
    while with low probability (most likey committing the command).  If the
    number of alive servers isn't enough to form a majority, perhaps start a
    new server.  The leader in a new term may try to finish replicating log
    entries that haven't been committed yet.
    """
    servers = 5
    async with open_cluster(servers, seed=seed) as cfg:
        cfg.begin("Test (2C): Figure 8")

        await cfg.one(cfg.rng.getrandbits(63), 1, True)

        nup = servers
        for _ in range(1000):
            leader = -1
            for i in range(servers):
                rf = cfg.rafts[i]
                if rf is not None:
                    _, _, ok = rf.start(cfg.rng.getrandbits(63))
                    if ok:
                        leader = i

            if cfg.rng.randrange(1000) < 100:
                ms = cfg.rng.randrange(int(RAFT_ELECTION_TIMEOUT * 1000) // 2)
                await trio.sleep(ms / 1000)
            else:
                ms = cfg.rng.randrange(13)
                await trio.sleep(ms / 1000)

            if leader != -1:
                cfg.crash1(leader)
                nup -= 1

            if nup < 3:
                s = cfg.rng.randrange(servers)
                if cfg.rafts[s] is None:
                    cfg.start1(s, cfg.applier)
                    cfg.connect(s)
                    nup += 1

        for i in range(servers):
            if cfg.rafts[i] is None:
                cfg.start1(i, cfg.applier)
                cfg.connect(i)

        await cfg.one(cfg.rng.getrandbits(63), servers, True)

        cfg.end()


async def test_unreliable_agree_2c(seed: int) -> None:
    servers = 5
    async with open_cluster(servers, unreliable=True, seed=seed) as cfg:
        cfg.begin("Test (2C): unreliable agreement")

        async with trio.open_nursery() as wg:
            for iters in range(1, 50):
                for j in range(4):
                    wg.start_soon(cfg.one, (100 * iters) + j, 1, True)
                await cfg.one(iters, 1, True)

            cfg.setunreliable(False)

            # leaving the nursery is wg.Wait()

        await cfg.one(100, servers, True)

        cfg.end()


async def test_figure8_unreliable_2c(seed: int) -> None:
    servers = 5
    async with open_cluster(servers, unreliable=True, seed=seed) as cfg:
        cfg.begin("Test (2C): Figure 8 (unreliable)")

        await cfg.one(cfg.rng.randrange(10000), 1, True)

        nup = servers
        for iters in range(1000):
            if iters == 200:
                cfg.setlongreordering(True)
            leader = -1
            for i in range(servers):
                _, _, ok = raft(cfg, i).start(cfg.rng.randrange(10000))
                if ok and cfg.connected[i]:
                    leader = i

            if cfg.rng.randrange(1000) < 100:
                ms = cfg.rng.randrange(int(RAFT_ELECTION_TIMEOUT * 1000) // 2)
                await trio.sleep(ms / 1000)
            else:
                ms = cfg.rng.randrange(13)
                await trio.sleep(ms / 1000)

            if leader != -1 and cfg.rng.randrange(1000) < int(RAFT_ELECTION_TIMEOUT * 1000) // 2:
                cfg.disconnect(leader)
                nup -= 1

            if nup < 3:
                s = cfg.rng.randrange(servers)
                if cfg.connected[s] is False:
                    cfg.connect(s)
                    nup += 1

        for i in range(servers):
            if cfg.connected[i] is False:
                cfg.connect(i)

        await cfg.one(cfg.rng.randrange(10000), servers, True)

        cfg.end()


async def internal_churn(seed: int, unreliable: bool) -> None:
    servers = 5
    async with open_cluster(servers, unreliable=unreliable, seed=seed) as cfg:
        if unreliable:
            cfg.begin("Test (2C): unreliable churn")
        else:
            cfg.begin("Test (2C): churn")

        stop = trio.Event()

        # create concurrent clients
        ncli = 3
        cha: list[list[int] | None] = [None] * ncli

        async def cfn(me: int) -> None:
            values: list[int] = []
            while not stop.is_set():
                x = cfg.rng.getrandbits(63)
                index = -1
                ok = False
                for i in range(servers):
                    # try them all, maybe one of them is a leader
                    rf = cfg.rafts[i]
                    if rf is not None:
                        index1, _, ok1 = rf.start(x)
                        if ok1:
                            ok = ok1
                            index = index1
                if ok:
                    # maybe leader will commit our value, maybe not.
                    # but don't wait forever.
                    for to in [10, 20, 50, 100, 200]:
                        nd, cmd = cfg.n_committed(index)
                        if nd > 0:
                            if isinstance(cmd, int):
                                if cmd == x:
                                    values.append(x)
                            else:
                                raise TestFailure("wrong command type")
                            break
                        await trio.sleep(to / 1000)
                else:
                    await trio.sleep((79 + me * 17) / 1000)
            cha[me] = values

        async with trio.open_nursery() as nursery:
            for i in range(ncli):
                nursery.start_soon(cfn, i)

            for _ in range(20):
                if cfg.rng.randrange(1000) < 200:
                    i = cfg.rng.randrange(servers)
                    cfg.disconnect(i)

                if cfg.rng.randrange(1000) < 500:
                    i = cfg.rng.randrange(servers)
                    if cfg.rafts[i] is None:
                        cfg.start1(i, cfg.applier)
                    cfg.connect(i)

                if cfg.rng.randrange(1000) < 200:
                    i = cfg.rng.randrange(servers)
                    if cfg.rafts[i] is not None:
                        cfg.crash1(i)

                # Make crash/restart infrequent enough that the peers can often
                # keep up, but not so infrequent that everything has settled
                # down from one change to the next. Pick a value smaller than
                # the election timeout, but not hugely smaller.
                await trio.sleep((RAFT_ELECTION_TIMEOUT * 7) / 10)

            await trio.sleep(RAFT_ELECTION_TIMEOUT)
            cfg.setunreliable(False)
            for i in range(servers):
                if cfg.rafts[i] is None:
                    cfg.start1(i, cfg.applier)
                cfg.connect(i)

            stop.set()

            # leaving the nursery waits for every client (<-cha[i])

        values: list[int] = []
        for i in range(ncli):
            vv = cha[i]
            if vv is None:
                raise TestFailure("client failed")
            values.extend(vv)

        await trio.sleep(RAFT_ELECTION_TIMEOUT)

        last_index = await cfg.one(cfg.rng.getrandbits(63), servers, True)

        really = [0] * (last_index + 1)
        for index in range(1, last_index + 1):
            v = await cfg.wait(index, servers, -1)
            if isinstance(v, int):
                really.append(v)
            else:
                raise TestFailure("not an int")

        for v1 in values:
            ok = False
            for v2 in really:
                if v1 == v2:
                    ok = True
            if ok is False:
                raise TestFailure("didn't find a value")

        cfg.end()


async def test_reliable_churn_2c(seed: int) -> None:
    await internal_churn(seed, False)


async def test_unreliable_churn_2c(seed: int) -> None:
    await internal_churn(seed, True)
