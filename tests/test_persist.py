"""The durable FilePersister: same interface as Persister, survives reopening, refuses damage."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trioraft.persist import FilePersister, PersisterFileError


def test_a_new_file_persister_is_empty(tmp_path: Path) -> None:
    p = FilePersister(tmp_path / "raft.state")
    assert p.read_raft_state() == b"" and p.read_snapshot() == b""
    assert not (tmp_path / "raft.state").exists()


def test_save_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "raft.state"
    p = FilePersister(path)
    p.save(b"state-1", b"snap-1")
    p.save(b"state-2", None)
    again = FilePersister(path)
    assert (again.read_raft_state(), again.read_snapshot()) == (b"state-2", b"")
    p.save(b"s3", b"x" * 100_000)
    again = FilePersister(path)
    assert again.raft_state_size() == 2 and again.snapshot_size() == 100_000
    assert [name for name in os.listdir(tmp_path)] == ["raft.state"], "no temporary file is left"


def test_copy_is_independent(tmp_path: Path) -> None:
    p = FilePersister(tmp_path / "raft.state")
    p.save(b"a", b"b")
    q = p.copy()
    p.save(b"c", None)
    assert (q.read_raft_state(), q.read_snapshot()) == (b"a", b"b")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[:-1] + bytes([data[-1] ^ 1]), "checksum"),
        (lambda data: data[:10], "truncated|length"),
        (lambda data: b"XXXX" + data[4:], "not a trioraft persister file"),
        (lambda data: data[:25] + bytes([data[25] ^ 0x40]) + data[26:], "checksum"),
        (lambda data: data + b"junk", "length"),
    ],
)
def test_a_damaged_file_is_refused_naming_the_file(
    tmp_path: Path, damage: object, message: str
) -> None:
    path = tmp_path / "raft.state"
    FilePersister(path).save(b"state-bytes", b"snapshot-bytes")
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(PersisterFileError, match=message) as info:
        FilePersister(path)
    assert str(path) in str(info.value)


async def test_a_cluster_on_file_persisters_survives_a_full_restart(tmp_path: Path) -> None:
    import trio

    import trioraft

    async def run_cluster(commands: list[int]) -> list[list[object]]:
        applied: list[list[object]] = [[] for _ in range(3)]
        async with trioraft.sim.open_network(seed=3) as net, trio.open_nursery() as nursery:
            rafts = []
            for i in range(3):
                ends = []
                for j in range(3):
                    ends.append(net.make_end(f"{i}->{j}"))
                    net.connect(f"{i}->{j}", str(j))
                    net.enable(f"{i}->{j}", True)
                send, receive = trio.open_memory_channel[trioraft.ApplyMsg](0)
                persister = trioraft.FilePersister(tmp_path / f"peer-{i}.state")
                rf = trioraft.make(ends, i, persister, send, nursery=nursery)
                net.add_server(str(i), rf)
                rafts.append(rf)

                async def consume(i: int = i, receive: object = receive) -> None:
                    async for m in receive:  # type: ignore[attr-defined]
                        applied[i].append(m.command)

                nursery.start_soon(consume)
            while not any(rf.get_state()[1] for rf in rafts):
                await trio.sleep(0.05)
            leader = next(rf for rf in rafts if rf.get_state()[1])
            for c in commands:
                leader.start(c)
            with trio.fail_after(30):
                while not all(a and a[-1] == commands[-1] for a in applied):
                    await trio.sleep(0.05)
            for rf in rafts:
                rf.kill()
            nursery.cancel_scope.cancel()  # the consumers
        return applied

    first = await run_cluster([1, 2, 3])
    assert all(a == [1, 2, 3] for a in first)
    # every peer restarts from its file alone: the log (and votes) came back
    for i in range(3):
        restored = trioraft.FilePersister(tmp_path / f"peer-{i}.state")
        assert restored.raft_state_size() > 0
    again = await run_cluster([4])
    assert all(a == [1, 2, 3, 4] for a in again), again
