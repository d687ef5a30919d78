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
