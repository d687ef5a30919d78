"""Calls check before they change: every misuse raises at the call and changes nothing.

Refused (raises): a wrong type or a missing value anywhere in make(), start(),
snapshot(), RaftConfig or the storage constructors; snapshot() past what
apply_ch delivered.  Ignored with a logged reason (6.824's way): a snapshot
that is not past the current one (a race with an installed snapshot is normal).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

import trioraft
from trioraft.sim.harness import open_cluster


class _NoEnd:
    async def call(self, method: str, args: object) -> object | None:
        return None


def _state(rf: trioraft.Raft) -> tuple[Any, ...]:
    node = rf.node
    log = node.log
    return (
        node.current_term,
        node.voted_for,
        log.snapshot_index,
        log.snapshot_term,
        list(log.entries),
        node.snapshot_data,
        node.commit_index,
        node.last_applied,
    )


def _saved(persister: object) -> tuple[bytes, bytes]:
    assert isinstance(persister, trioraft.Persister)
    return persister.read_raft_state(), persister.read_snapshot()


@pytest.mark.persister_only
@pytest.mark.parametrize(
    ("index", "data", "error", "message"),
    [
        (3, "text", TypeError, "snapshot must be bytes, not str"),
        (3, 5, TypeError, "snapshot must be bytes, not int"),
        (3, bytearray(b"x"), TypeError, "snapshot must be bytes, not bytearray"),
        (3, None, TypeError, "snapshot must be bytes, not NoneType"),
        ("3", b"x", TypeError, "snapshot index must be an int, not str"),
        (True, b"x", TypeError, "snapshot index must be an int, not bool"),
        (-1, b"x", ValueError, "snapshot index must be at least 0"),
        (99, b"x", ValueError, "past the last entry delivered on apply_ch"),
    ],
)
async def test_a_refused_snapshot_raises_at_the_call_and_changes_nothing(
    seed: int, index: object, data: object, error: type[Exception], message: str
) -> None:
    async with open_cluster(3, seed=seed) as cfg:
        leader = await cfg.check_one_leader()
        # a follower that lags: it will need entries 1-3 from the leader
        lagging = (leader + 1) % 3
        cfg.disconnect(lagging)
        for k in range(5):
            await cfg.one(k, 2, False)
        rf = cfg.rafts[leader]
        assert rf is not None
        before = (_state(rf), _saved(cfg.saved[leader]))
        with pytest.raises(error, match=message):
            rf.snapshot(index, data)  # type: ignore[arg-type]
        await trio.sleep(0.5)  # nothing was left to happen later either
        assert (_state(rf), _saved(cfg.saved[leader])) == before
        # The lagging follower gets the real entries, not an empty snapshot.
        cfg.connect(lagging)
        await cfg.one("after", 3, True)  # (its term may have grown: an election)
        for k in range(5):
            assert cfg.logs[lagging][k + 1] == k


@pytest.mark.persister_only
async def test_a_stale_snapshot_is_ignored_with_a_logged_reason(
    seed: int, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_cluster(3, seed=seed) as cfg:
        for k in range(5):
            await cfg.one(k, 3, False)
        leader = await cfg.check_one_leader()
        rf = cfg.rafts[leader]
        assert rf is not None
        rf.snapshot(4, b"up-to-4")
        before = (_state(rf), _saved(cfg.saved[leader]))
        with caplog.at_level("WARNING", logger="trioraft"):
            rf.snapshot(2, b"older")
        assert "snapshot index 2 is not past the current snapshot (4); ignored" in caplog.text
        assert (_state(rf), _saved(cfg.saved[leader])) == before


def _make_args(nursery: trio.Nursery) -> dict[str, Any]:
    send, _ = trio.open_memory_channel[trioraft.ApplyMsg](0)
    return {
        "peers": [_NoEnd(), _NoEnd(), _NoEnd()],
        "me": 0,
        "persister": trioraft.Persister(),
        "apply_ch": send,
        "nursery": nursery,
        "config": None,
    }


@pytest.mark.parametrize(
    ("field", "value", "error", "message"),
    [
        ("peers", "abc", TypeError, "peers must be a list of ClientEnd"),
        ("peers", {0: _NoEnd()}, TypeError, "peers must be a list of ClientEnd"),
        ("peers", [], ValueError, "one ClientEnd per peer"),
        ("peers", [_NoEnd(), 7, _NoEnd()], TypeError, r"peers\[1\] must be a ClientEnd"),
        ("me", 3, ValueError, "me=3 is not an index into the 3 peers"),
        ("me", -1, ValueError, "me=-1 is not an index"),
        ("me", "0", TypeError, "me must be an int"),
        ("me", True, TypeError, "me must be an int"),
        ("persister", "/var/lib/raft", TypeError, "persister must be a trioraft.Persister"),
        ("persister", None, TypeError, "persister must be a trioraft.Persister"),
        ("apply_ch", "receive", TypeError, "apply_ch is the receive end"),
        ("apply_ch", [], TypeError, "apply_ch must be a trio.MemorySendChannel"),
        ("nursery", None, TypeError, "nursery must be a trio.Nursery"),
        ("config", {"seed": 1}, TypeError, "config must be a trioraft.RaftConfig"),
    ],
)
async def test_make_checks_every_argument_before_anything_starts(
    field: str, value: object, error: type[Exception], message: str
) -> None:
    async with trio.open_nursery() as nursery:
        args = _make_args(nursery)
        if value == "receive":
            _, value = trio.open_memory_channel[trioraft.ApplyMsg](0)
        args[field] = value
        persister = args["persister"]
        tasks = len(nursery.child_tasks)
        with pytest.raises(error, match=message):
            trioraft.make(**args)
        assert len(nursery.child_tasks) == tasks, "nothing was started"
        if isinstance(persister, trioraft.Persister):
            assert _saved(persister) == (b"", b""), "nothing was saved"


async def test_a_good_make_still_works_after_a_refused_one() -> None:
    async with trio.open_nursery() as nursery:
        args = _make_args(nursery)
        with pytest.raises(ValueError):
            trioraft.make(**{**args, "me": 5})
        rf = trioraft.make(**args)
        assert rf.get_state() == (0, False)
        rf.kill()


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"seed": "x"}, TypeError, "seed"),
        ({"seed": True}, TypeError, "seed"),
        ({"tracer": object()}, TypeError, "tracer"),
        ({"noop_on_election": "yes"}, TypeError, "noop_on_election"),
        ({"max_append_bytes": 1.5}, ValueError, "max_append_bytes"),
        ({"snapshot_chunk_bytes": 0}, ValueError, "snapshot_chunk_bytes"),
        ({"election_timeout_max": None}, ValueError, "election_timeout_max"),
    ],
)
def test_raft_config_refuses_wrong_types_naming_the_field(
    kwargs: dict[str, object], error: type[Exception], field: str
) -> None:
    with pytest.raises(error, match=f"RaftConfig.{field}"):
        trioraft.RaftConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((42,), {}, TypeError, "directory must be a str or os.PathLike"),
        (("missing",), {}, trioraft.StorageError, "does not exist"),
        (("dir",), {"segment_bytes": 100}, ValueError, "segment_bytes"),
    ],
)
def test_disk_storage_checks_its_arguments(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[object, ...],
    kwargs: dict[str, object],
    error: type[Exception],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dir").mkdir()
    with pytest.raises(error, match=message):
        trioraft.DiskStorage(*args, **kwargs)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir"], "nothing was created"
    assert list((tmp_path / "dir").iterdir()) == []


async def test_a_corrupt_disk_directory_is_refused_by_make(tmp_path: Path) -> None:
    storage = trioraft.DiskStorage(tmp_path, create=True)
    storage.close()
    (tmp_path / "hardstate").write_bytes(b"\xff" * 600)  # both slots damaged
    with pytest.raises(trioraft.StorageError, match="hardstate: damaged hard state"):
        trioraft.DiskStorage(tmp_path)
