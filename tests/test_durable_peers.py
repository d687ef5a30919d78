"""Peers on DiskStorage: restarts from the directory, and a storage that fails.

The ported 6.824 tests run on DiskStorage too with ``pytest --storage disk``
(CI runs the 2C and 2D tests that way); these are the cases they do not cover.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import msgspec
import pytest
import trio

import trioraft
from trioraft.core.messages import AppendEntriesArgs, AppendEntriesReply, Entry, RequestVoteArgs
from trioraft.sim.harness import open_cluster
from trioraft.storage.persister import PersisterStorage


async def test_acknowledged_entries_survive_restarts_from_disk(seed: int, tmp_path: Path) -> None:
    async with open_cluster(3, seed=seed, storage_dir=tmp_path) as cfg:
        for k in range(5):
            await cfg.one(k, 3, True)
        for i in range(3):
            cfg.crash1(i)
        for i in range(3):
            cfg.start1(i)
            cfg.connect(i)
        assert await cfg.one("after", 3, True) == 6
        for i in range(3):
            assert [cfg.logs[i][k + 1] for k in range(5)] == list(range(5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["server-0", "server-1", "server-2"]
    for i in range(3):
        names = os.listdir(tmp_path / f"server-{i}")
        assert "hardstate" in names and any(n.endswith(".seg") for n in names)


async def test_a_failing_disk_stops_only_its_peer_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Each peer in a nursery of its own, as separate processes would be: the one
    whose disk refuses stops and its nursery gets the StorageError; it
    acknowledged nothing it could not save; the other two go on committing."""
    failing: list[Path] = []  # the victim's directory, once chosen
    real_fdatasync = os.fdatasync

    def fdatasync(fd: int) -> None:
        # any file of the victim's, including segments created after the choice
        if failing and Path(os.readlink(f"/proc/self/fd/{fd}")).parent == failing[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    n = 3
    rafts: list[trioraft.Raft] = []
    storages: list[trioraft.DiskStorage] = []
    applied: list[list[object]] = [[] for _ in range(n)]
    errors: dict[int, BaseException] = {}

    async with trioraft.sim.open_network(seed=1) as net, trio.open_nursery() as outer:

        async def run_peer(i: int, task_status: trio.TaskStatus[None]) -> None:
            ends = []
            for j in range(n):
                ends.append(net.make_end(f"{i}->{j}"))
                net.connect(f"{i}->{j}", str(j))
                net.enable(f"{i}->{j}", True)
            send, receive = trio.open_memory_channel[trioraft.ApplyMsg](100)
            storages.append(trioraft.DiskStorage(tmp_path / f"peer-{i}", create=True))
            try:
                async with trio.open_nursery() as own:
                    rafts.append(trioraft.make(ends, i, storages[i], send, nursery=own))
                    net.add_server(str(i), rafts[i])
                    own.start_soon(consume, receive, i)
                    task_status.started()
            except* trioraft.StorageError as group:  # (trio groups a nursery's errors)
                errors[i] = group.exceptions[0]

        async def consume(receive: trio.MemoryReceiveChannel[trioraft.ApplyMsg], i: int) -> None:
            async for m in receive:
                applied[i].append(m.command)
                if rafts[i].killed():
                    return

        for i in range(n):
            await outer.start(run_peer, i)
        with trio.fail_after(10):
            while not any(rf.get_state()[1] for rf in rafts):
                await trio.sleep(0.05)
        leader = next(i for i, rf in enumerate(rafts) if rf.get_state()[1])
        victim = (leader + 1) % n
        failing.append(Path(storages[victim].path).resolve())
        with caplog.at_level("CRITICAL", logger="trioraft"):
            for k in range(3):
                index, term, ok = rafts[leader].start(k)
                assert ok
                with trio.fail_after(5):
                    assert await rafts[leader].wait_committed(index, term)
            with trio.fail_after(5):
                while victim not in errors:
                    await trio.sleep(0.05)
        assert rafts[victim].killed()
        assert "No space left on device" in str(errors[victim])
        assert f"peer {victim}: storage failed, the peer stops" in caplog.text
        assert applied[victim] == [], "it applied nothing it could not save"
        assert set(errors) == {victim}, "the other peers are unharmed"
        with trio.fail_after(5):
            while any(len(applied[i]) < 3 for i in range(n) if i != victim):
                await trio.sleep(0.05)
        for rf in rafts:
            rf.kill()
        outer.cancel_scope.cancel()


async def test_in_virtual_time_the_clock_stands_still_while_the_disk_works(
    seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under MockClock a task waiting on a worker thread looks blocked, and the
    clock would jump past election timeouts while the disk works: in virtual
    time every sync runs inline, on trio's thread, and takes no virtual time."""
    real_sync = trioraft.DiskStorage.sync
    seen: list[tuple[float, float]] = []

    def slow_sync(self: trioraft.DiskStorage) -> None:
        before = trio.current_time()  # raises in a worker thread: no trio run there
        time.sleep(0.002)  # a slow disk, in wall time  # wall-clock ok
        real_sync(self)
        seen.append((before, trio.current_time()))

    monkeypatch.setattr(trioraft.DiskStorage, "sync", slow_sync)
    async with open_cluster(3, seed=seed, storage_dir=tmp_path) as cfg:
        for k in range(20):
            await cfg.one(k, 3, False)
        terms = {rf.get_state()[0] for rf in cfg.rafts if rf is not None}
    assert len(seen) > 20
    assert all(before == after for before, after in seen)
    assert len(terms) == 1, "no election while the disk worked"


async def test_kill_closes_its_disk_storage_completing_what_was_written(tmp_path: Path) -> None:
    storage = trioraft.DiskStorage(tmp_path / "p", create=True)
    send, _ = trio.open_memory_channel[trioraft.ApplyMsg](10)
    async with trio.open_nursery() as nursery:
        rf = trioraft.make([_Nowhere()], 0, storage, send, nursery=nursery)
        await trio.sleep(2)  # a lone peer elects itself
        index, term, ok = rf.start("x")
        assert ok and await rf.wait_committed(index, term)
        rf.kill()
    again = trioraft.DiskStorage(tmp_path / "p")  # the killed peer released the directory
    restored = again.restore()
    assert restored.hard_state.term == term and len(restored.entries) == 1
    assert restored.hard_state.commit == index, "the commit-only write was completed too"
    again.close()


# ------------------------------------------------------------ a sync in a worker thread
#
# On the real clock a DiskStorage syncs in a worker thread; virtual time never
# takes that path.  These tests run on the real clock (their own trio.run) with a
# storage whose thread sync waits until the test opens a gate.


class _GatedStorage(PersisterStorage):
    """A Persister that syncs in a worker thread, when the test lets it."""

    sync_in_thread = True

    def __init__(self) -> None:
        super().__init__(trioraft.Persister())
        self.gate = threading.Event()
        self.syncs = 0

    def sync(self) -> None:
        assert self.gate.wait(10), "the test never opened the gate"
        self.syncs += 1


class _Nowhere:
    async def call(self, method: str, args: object) -> object | None:
        await trio.sleep_forever()


def test_a_reply_waits_for_the_sync_in_the_worker_thread() -> None:
    async def main() -> None:
        storage = _GatedStorage()
        send, _ = trio.open_memory_channel[trioraft.ApplyMsg](10)
        command = msgspec.Raw(msgspec.msgpack.encode("x"))
        args = AppendEntriesArgs(1, 0, 0, 0, (Entry(1, command),), 0)
        replies: list[object] = []
        async with trio.open_nursery() as nursery:
            rf = trioraft.make(
                [_Nowhere(), _Nowhere(), _Nowhere()], 1, storage, send, nursery=nursery
            )
            await trio.sleep(0)

            async def call() -> None:
                replies.append(await rf.rpc_handlers()["Raft.AppendEntries"].invoke(args))

            nursery.start_soon(call)
            await trio.sleep(0.05)
            assert replies == [], "no acknowledgement before the entry is synced"
            storage.gate.set()
            with trio.fail_after(5):
                while not replies:
                    await trio.sleep(0.01)
            assert isinstance(replies[0], AppendEntriesReply) and replies[0].success
            assert storage.syncs >= 1
            rf.kill()

    trio.run(main)  # the real clock, on purpose


def test_a_candidate_that_moved_on_sends_none_of_its_old_vote_requests() -> None:
    async def main() -> None:
        storage = _GatedStorage()
        send, _ = trio.open_memory_channel[trioraft.ApplyMsg](10)
        sent: list[tuple[int, int]] = []  # (request's term, sender's term when sent)
        rafts: list[trioraft.Raft] = []

        class Recording:
            async def call(self, method: str, args: object) -> object | None:
                assert isinstance(args, RequestVoteArgs)
                sent.append((args.term, rafts[0].get_state()[0]))
                await trio.sleep_forever()

        async with trio.open_nursery() as nursery:
            ends = [_Nowhere(), Recording(), Recording()]
            rafts.append(trioraft.make(ends, 0, storage, send, nursery=nursery))
            with trio.fail_after(10):
                while rafts[0].get_state()[0] < 2:  # a second election while the first syncs
                    await trio.sleep(0.01)
            storage.gate.set()
            with trio.fail_after(10):
                while not sent:
                    await trio.sleep(0.01)
            await trio.sleep(0.05)
            assert all(request == now for request, now in sent), sent
            rafts[0].kill()

    trio.run(main)  # the real clock, on purpose
