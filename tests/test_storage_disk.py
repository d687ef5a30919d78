"""DiskStorage: what is synced survives reopening; torn tails are cut; damage is refused.

A "crash" here copies the directory as it stands (what a killed process leaves:
everything written, nothing staged) and opens the copy; a power failure's torn
write is simulated by cutting the newest segment inside what the last sync added.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import random
import shutil
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from trioraft.core.messages import Entry
from trioraft.core.ready import HardState, Ready, Snapshot
from trioraft.storage.base import Restored, StorageError
from trioraft.storage.disk import DEFAULT_SEGMENT_BYTES, HARD_STATE_SLOT_SIZE, DiskStorage

RECORD = struct.Struct(">IIQQI")
SEGMENT_HEADER = 16


# ---------------------------------------------------------------- helpers


def command(text: str) -> msgspec.Raw:
    return msgspec.Raw(msgspec.msgpack.encode(text))


def entries(first: int, terms: list[int], size: int = 0) -> list[Entry]:
    """Entries from index ``first``, one per term, each command naming its index."""
    return [Entry(term, command(f"{first + i}:" + "x" * size)) for i, term in enumerate(terms)]


@dataclass
class Model:
    """What the storage should hold: the Ready rules applied to plain lists."""

    hard: HardState = field(default_factory=lambda: HardState(0, None, 0))
    snapshot: Snapshot = field(default_factory=lambda: Snapshot(0, 0, b""))
    log: list[Entry] = field(default_factory=list)  # entries snapshot.index + 1, ...

    @property
    def last(self) -> int:
        return self.snapshot.index + len(self.log)

    @property
    def commit(self) -> int:
        """The commit index restored: recovery lowers one past the log (a lower bound)."""
        return min(self.hard.commit, self.last)

    def term_at(self, index: int) -> int:
        if index == self.snapshot.index:
            return self.snapshot.term
        return self.log[index - self.snapshot.index - 1].term

    def apply(self, ready: Ready) -> None:
        if ready.hard_state is not None:
            self.hard = ready.hard_state
        if ready.entries_from is not None:
            self.cut(ready.entries_from)
        if ready.snapshot is not None:
            del self.log[: max(0, ready.snapshot.index - self.snapshot.index)]
            self.snapshot = ready.snapshot
        if ready.entries:
            assert ready.entries_from is not None
            self.log.extend(ready.entries[max(0, self.snapshot.index + 1 - ready.entries_from) :])

    def cut(self, first_dropped: int) -> None:
        del self.log[max(0, first_dropped - self.snapshot.index - 1) :]

    def copy(self) -> Model:
        return Model(self.hard, self.snapshot, list(self.log))

    def raft_state_size(self) -> int:
        return HARD_STATE_SLOT_SIZE + sum(RECORD.size + len(e.command) for e in self.log)


def assert_restored(storage: DiskStorage, model: Model) -> None:
    restored = storage.restore()
    assert restored.hard_state == HardState(model.hard.term, model.hard.voted_for, model.commit)
    assert (restored.snapshot_index, restored.snapshot_term) == (
        model.snapshot.index,
        model.snapshot.term,
    )
    assert restored.snapshot == model.snapshot.data == storage.read_snapshot()
    assert list(restored.entries) == model.log
    assert storage.raft_state_size() == model.raft_state_size()
    assert storage.snapshot_size() == len(model.snapshot.data)


@contextlib.contextmanager
def opened(directory: Path, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> Iterator[DiskStorage]:
    storage = DiskStorage(directory, segment_bytes=segment_bytes)
    try:
        yield storage
    finally:
        storage.close()


def check(directory: Path, model: Model, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
    """Open the directory, compare it with the model, close it."""
    with opened(directory, segment_bytes) as storage:
        assert_restored(storage, model)


def restored(directory: Path) -> Restored:
    with opened(directory) as storage:
        return storage.restore()


def segments(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("log-*.seg"))


def records(path: Path) -> list[tuple[int, int]]:
    """(offset, data length) of each complete record of a segment file."""
    data = path.read_bytes()
    found, offset = [], SEGMENT_HEADER
    while offset + RECORD.size <= len(data):
        length = RECORD.unpack_from(data, offset)[1]
        if offset + RECORD.size + length > len(data):
            break
        found.append((offset, length))
        offset += RECORD.size + length
    return found


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x55
    path.write_bytes(bytes(data))


def filled(
    directory: Path, count: int, size: int = 0, segment_bytes: int = DEFAULT_SEGMENT_BYTES
) -> Model:
    """A closed directory holding entries 1..count of term 1 (commit 1)."""
    model = Model()
    storage = DiskStorage(directory, create=True, segment_bytes=segment_bytes)
    ready = Ready(HardState(1, 0, 1), None, 1, entries(1, [1] * count, size), must_sync=True)
    storage.write(ready)
    model.apply(ready)
    storage.close()
    return model


# ---------------------------------------------------------------- round trips


def test_a_fresh_directory_restores_as_fresh(tmp_path: Path) -> None:
    storage = DiskStorage(tmp_path)
    assert storage.restore().fresh and storage.restore() == Restored(entries=[])
    assert storage.path == str(tmp_path) and storage.sync_in_thread is True
    assert sorted(os.listdir(tmp_path)) == ["LOCK", "hardstate"]
    assert storage.read_snapshot() == b"" and storage.raft_state_size() == HARD_STATE_SLOT_SIZE
    storage.close()
    assert restored(tmp_path).fresh


def test_appends_truncation_and_snapshots_survive_reopening(tmp_path: Path) -> None:
    storage = DiskStorage(tmp_path, segment_bytes=4096)
    model = Model()

    def write(ready: Ready, sync: bool = True) -> None:
        storage.write(ready)
        model.apply(ready)
        if sync:
            storage.sync()

    write(Ready(HardState(1, 0, 0), None, 1, entries(1, [1] * 20, 100), must_sync=True))
    # A new leader's conflicting suffix replaces 15..20.
    write(Ready(HardState(2, 1, 10), None, 15, entries(15, [2] * 10, 100), must_sync=True))
    # Compaction with rule-6 retention: 13..24 stay.
    write(Ready(snapshot=Snapshot(12, 1, b"state@12"), must_sync=True))
    # An InstallSnapshot conflicting with the stored log: entries_from = index + 1.
    write(
        Ready(
            HardState(3, None, 20),
            Snapshot(20, 3, b"state@20"),
            21,
            entries(21, [3, 3], 100),
            must_sync=True,
        )
    )
    # An InstallSnapshot beyond the log, then appends staged and made durable by close().
    write(Ready(HardState(4, 2, 40), Snapshot(40, 4, b"state@40"), 41, must_sync=True))
    write(Ready(None, None, 41, entries(41, [4] * 30, 100), must_sync=True), sync=False)
    write(Ready(HardState(4, 2, 45)), sync=False)
    storage.close()

    again = DiskStorage(tmp_path, segment_bytes=4096)
    assert_restored(again, model)
    assert sorted(p.name for p in tmp_path.glob("snap-*")) == ["snap-00000000000000000040.snap"]
    assert segments(tmp_path)[0] == "log-00000000000000000041.seg"  # older ones deleted
    # The reopened storage appends where the log ends.
    ready = Ready(None, None, 71, entries(71, [4, 4]), must_sync=True)
    again.write(ready)
    model.apply(ready)
    again.close()
    check(tmp_path, model, segment_bytes=4096)


def test_segments_roll_and_compaction_deletes_only_whole_dead_segments(tmp_path: Path) -> None:
    storage = DiskStorage(tmp_path, segment_bytes=4096)
    model = Model()
    for first in range(1, 101, 10):
        ready = Ready(HardState(1, 0, first), None, first, entries(first, [1] * 10, 200))
        storage.write(ready)
        model.apply(ready)
        storage.sync()
    names = segments(tmp_path)
    firsts = [int(name[4:24]) for name in names]
    assert len(names) >= 5 and firsts[0] == 1
    assert all(p.stat().st_size < 4096 + 300 for p in tmp_path.glob("log-*.seg"))
    # A snapshot inside the third segment: the first two go, the third stays (partly live).
    index = firsts[2] + 1
    ready = Ready(snapshot=Snapshot(index, 1, b"snap"), must_sync=True)
    storage.write(ready)
    model.apply(ready)
    storage.sync()
    assert segments(tmp_path) == names[2:]
    assert storage.raft_state_size() == model.raft_state_size()
    storage.close()
    check(tmp_path, model, segment_bytes=4096)


def test_raft_state_size_counts_only_live_records(tmp_path: Path) -> None:
    storage = DiskStorage(tmp_path)
    model = Model()
    ready = Ready(HardState(1, 0, 10), None, 1, entries(1, [1] * 10, 50), must_sync=True)
    storage.write(ready)
    model.apply(ready)
    storage.sync()
    full = storage.raft_state_size()
    assert full == HARD_STATE_SLOT_SIZE + sum(RECORD.size + len(e.command) for e in ready.entries)
    (segment,) = tmp_path.glob("log-*.seg")
    size_on_disk = segment.stat().st_size
    ready = Ready(snapshot=Snapshot(7, 1, b"s" * 1000), must_sync=True)
    storage.write(ready)
    model.apply(ready)
    assert storage.read_snapshot() == b"s" * 1000  # the latest written, before the sync
    storage.sync()
    assert segment.stat().st_size == size_on_disk  # the dead records are still on disk
    assert storage.raft_state_size() == model.raft_state_size() < full
    assert storage.snapshot_size() == 1000
    storage.close()


def test_commit_only_hard_states_wait_for_a_new_term_or_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit index is a lower bound: a sync does not spend an fdatasync on a
    hard state that only moved it; a term or vote change, or close, writes the
    newest one (once, never over the durable slot)."""
    storage = DiskStorage(tmp_path / "live", create=True)
    storage.write(Ready(HardState(1, 0, 0), None, 1, entries(1, [1] * 5), must_sync=True))
    storage.sync()
    slots_written = []
    real_pwrite = os.pwrite

    def counting_pwrite(fd: int, data: bytes, offset: int) -> int:
        if len(data) == HARD_STATE_SLOT_SIZE:
            slots_written.append(offset)
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", counting_pwrite)
    for commit in range(1, 4):
        storage.write(Ready(HardState(1, 0, commit)))
    storage.write(Ready(None, None, 6, entries(6, [1]), must_sync=True))
    storage.sync()
    assert slots_written == [], "only the commit index moved: nothing written"
    shutil.copytree(tmp_path / "live", tmp_path / "crashed")  # kill -9 now
    assert restored(tmp_path / "crashed").hard_state == HardState(1, 0, 0), "it lags"
    assert len(restored(tmp_path / "crashed").entries) == 6, "the entries did not"

    storage.write(Ready(HardState(1, 0, 5)))
    storage.write(Ready(HardState(2, None, 5), must_sync=True))  # a new term
    storage.sync()
    assert len(slots_written) == 1
    shutil.copytree(tmp_path / "live", tmp_path / "crashed-2")
    assert restored(tmp_path / "crashed-2").hard_state == HardState(2, None, 5)

    storage.write(Ready(HardState(2, None, 6)))
    storage.sync()
    storage.close()
    assert len(slots_written) == 2, "close writes the lagging commit index"
    assert slots_written[0] != slots_written[1], "never over the durable slot"
    assert restored(tmp_path / "live").hard_state == HardState(2, None, 6)


def test_restore_is_the_state_at_open_and_refused_after_a_write(tmp_path: Path) -> None:
    storage = DiskStorage(tmp_path)
    assert storage.restore() is storage.restore()
    storage.write(Ready(HardState(1, None, 0), must_sync=True))
    with pytest.raises(StorageError, match="before any write"):
        storage.restore()
    storage.close()


def test_entries_that_do_not_follow_the_log_are_refused(tmp_path: Path) -> None:
    storage = DiskStorage(tmp_path)
    with pytest.raises(ValueError, match="entries_from"):
        storage.write(Ready(entries=entries(1, [1])))
    storage.write(Ready(HardState(1, 0, 0), None, 3, entries(3, [1]), must_sync=True))
    with pytest.raises(StorageError, match="entries from index 3 do not follow the log"):
        storage.sync()
    with pytest.raises(StorageError, match="must be reopened"):
        storage.write(Ready(HardState(2, 0, 0)))
    storage.close()


# ---------------------------------------------------------------- torn tails and damage


def cut_inside(size_from_start: int) -> Callable[[Path, int, int], None]:
    def damage(path: Path, offset: int, length: int) -> None:
        os.truncate(path, offset + size_from_start)

    return damage


def zero_fill_last_record(path: Path, offset: int, length: int) -> None:
    with open(path, "r+b") as file:
        file.seek(offset)
        file.write(bytes(RECORD.size + length))


def flip_last_data_byte(path: Path, offset: int, length: int) -> None:
    flip(path, offset + RECORD.size + length - 1)


@pytest.mark.parametrize(
    "damage",
    [
        cut_inside(1),
        cut_inside(27),
        cut_inside(28),
        cut_inside(28 + 10),
        zero_fill_last_record,
        flip_last_data_byte,
    ],
    ids=["1-byte", "27-bytes", "header-only", "partial-data", "zero-filled", "data-crc"],
)
def test_a_torn_tail_is_cut_and_the_prefix_recovered(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: Callable[[Path, int, int], None],
) -> None:
    model = filled(tmp_path, 10, size=40)
    (segment,) = tmp_path.glob("log-*.seg")
    offset, length = records(segment)[-1]
    damage(segment, offset, length)
    model.cut(10)
    with caplog.at_level(logging.WARNING, logger="trioraft.storage"):
        storage = DiskStorage(tmp_path)
    assert_restored(storage, model)
    assert f"{segment}: cutting a torn tail at byte {offset}" in caplog.text
    assert segment.stat().st_size == offset
    storage.close()


def test_zeros_after_the_last_record_are_a_torn_tail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = filled(tmp_path, 10)
    (segment,) = tmp_path.glob("log-*.seg")
    size = segment.stat().st_size
    with open(segment, "ab") as file:
        file.write(bytes(100))  # the size reached the disk, the data did not
    with caplog.at_level(logging.WARNING, logger="trioraft.storage"):
        check(tmp_path, model)
    assert f"torn tail at byte {size}" in caplog.text
    assert segment.stat().st_size == size


def test_a_torn_hard_state_past_the_log_lowers_commit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    filled(tmp_path, 1)
    storage = DiskStorage(tmp_path)
    storage.write(Ready(HardState(1, 0, 5), None, 2, entries(2, [1] * 4), must_sync=True))
    storage.close()
    (segment,) = tmp_path.glob("log-*.seg")
    os.truncate(segment, records(segment)[3][0])  # entries 4 and 5 never reached the disk
    with caplog.at_level(logging.WARNING, logger="trioraft.storage"):
        state = restored(tmp_path)
    assert state.hard_state == HardState(1, 0, 3) and len(state.entries) == 3
    assert "commit index 5 lowered to 3" in caplog.text


@pytest.mark.parametrize(
    ("segment_position", "record_position", "field", "what"),
    [
        (0, 3, "header", "record header fails its checksum"),
        (0, 3, "data", "record data fails its checksum"),
        (0, -1, "data", "record data fails its checksum"),  # would be torn if it were newest
        (0, -1, "cut", "run past the end"),
        (-1, 1, "data", "record data fails its checksum"),
        (-1, -1, "header", "record header fails its checksum"),  # non-zero bytes follow it
    ],
)
def test_damage_that_is_not_a_torn_tail_is_refused_naming_file_and_offset(
    tmp_path: Path, segment_position: int, record_position: int, field: str, what: str
) -> None:
    filled(tmp_path, 45, size=300, segment_bytes=4096)  # 4 segments, 6 entries in the last
    segment = tmp_path / segments(tmp_path)[segment_position]
    assert len(segments(tmp_path)) > 2
    offset, length = records(segment)[record_position]
    if field == "header":
        flip(segment, offset + 10)
    elif field == "data":
        flip(segment, offset + RECORD.size + length // 2)
    else:
        os.truncate(segment, offset + RECORD.size + 5)
    with pytest.raises(StorageError) as refused:
        DiskStorage(tmp_path)
    assert str(refused.value).startswith(f"{segment}: damaged record at byte {offset}: ")
    assert what in str(refused.value)
    with pytest.raises(StorageError, match="damaged record"):
        DiskStorage(tmp_path)  # again, not "in use": the refused open released the lock


def test_a_gap_in_the_log_is_refused_naming_the_segment(tmp_path: Path) -> None:
    filled(tmp_path, 40, size=300, segment_bytes=4096)
    middle = tmp_path / segments(tmp_path)[1]
    middle.unlink()
    with pytest.raises(StorageError, match="the log has a gap") as refused:
        DiskStorage(tmp_path)
    assert str(refused.value).startswith(str(tmp_path / segments(tmp_path)[1]))


def test_one_damaged_hard_state_slot_falls_back_to_the_other(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = DiskStorage(tmp_path)
    for hard in (HardState(1, 0, 0), HardState(2, 1, 0)):  # sequence 1 at 512, 2 at 0
        storage.write(Ready(hard, must_sync=True))
        storage.sync()
    storage.close()
    path = tmp_path / "hardstate"
    pristine = path.read_bytes()
    flip(path, 10)  # the newest slot: a torn write
    with caplog.at_level(logging.WARNING, logger="trioraft.storage"):
        storage = DiskStorage(tmp_path)
    assert storage.restore().hard_state == HardState(1, 0, 0)
    assert f"{path}: the hard-state slot at byte 0 does not check" in caplog.text
    # The next write goes to the damaged slot, never over the one in use.
    storage.write(Ready(HardState(3, None, 0), must_sync=True))
    storage.close()
    assert restored(tmp_path).hard_state == HardState(3, None, 0)

    path.write_bytes(pristine)
    flip(path, 512 + 10)  # the older slot
    assert restored(tmp_path).hard_state == HardState(2, 1, 0)


def test_both_hard_state_slots_damaged_is_refused(tmp_path: Path) -> None:
    storage = DiskStorage(tmp_path)
    for hard in (HardState(1, 0, 0), HardState(2, 1, 0)):
        storage.write(Ready(hard, must_sync=True))
        storage.sync()
    storage.close()
    path = tmp_path / "hardstate"
    flip(path, 10)
    flip(path, 512 + 10)
    with pytest.raises(StorageError, match=f"^{path}: damaged hard state at byte 0"):
        DiskStorage(tmp_path)


def test_a_missing_hard_state_beside_a_log_is_refused(tmp_path: Path) -> None:
    filled(tmp_path, 3)
    (tmp_path / "hardstate").unlink()
    with pytest.raises(StorageError, match="hardstate is missing"):
        DiskStorage(tmp_path)


def snapshots_5_and_30(directory: Path, segment_bytes: int) -> tuple[Model, Model, Path, Path]:
    """A directory whose newest snapshot is at 30 and which still has the one at 5.

    Returns the states with each snapshot, and the two snapshot files.
    """
    model = filled(directory, 40, size=300, segment_bytes=segment_bytes)
    storage = DiskStorage(directory, segment_bytes=segment_bytes)
    with_5 = model.copy()
    with_5.apply(Ready(snapshot=Snapshot(5, 1, b"five")))
    storage.write(Ready(snapshot=Snapshot(5, 1, b"five"), must_sync=True))
    storage.sync()
    older = directory / "snap-00000000000000000005.snap"
    kept = older.read_bytes()
    with_30 = with_5.copy()
    with_30.apply(Ready(snapshot=Snapshot(30, 1, b"thirty" * 100)))
    storage.write(Ready(snapshot=Snapshot(30, 1, b"thirty" * 100), must_sync=True))
    storage.close()
    assert not older.exists()
    older.write_bytes(kept)  # as a crash before the end of that sync leaves it
    return with_5, with_30, older, directory / "snap-00000000000000000030.snap"


def test_a_damaged_newest_snapshot_falls_back_to_an_older_one_when_the_log_covers_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, with_30, older, _ = snapshots_5_and_30(tmp_path / "intact", 64 * 2**20)
    check(tmp_path / "intact", with_30)  # the newest wins
    assert not older.exists()  # and the older one is deleted
    with_5, _, _, newest = snapshots_5_and_30(tmp_path / "damaged", 64 * 2**20)
    flip(newest, 100)
    with caplog.at_level(logging.WARNING, logger="trioraft.storage"):
        storage = DiskStorage(tmp_path / "damaged")
    assert_restored(storage, with_5)
    assert not newest.exists() and Path(f"{newest}.broken").exists()
    assert f"{newest} damaged at byte" in caplog.text and "moved to" in caplog.text
    storage.close()


def test_a_damaged_newest_snapshot_is_refused_when_the_log_does_not_cover_it(
    tmp_path: Path,
) -> None:
    _, _, _, newest = snapshots_5_and_30(tmp_path, 4096)  # segments up to 30 were deleted
    os.truncate(newest, 40)
    with pytest.raises(StorageError) as refused:
        DiskStorage(tmp_path)
    assert str(refused.value).startswith(f"{newest}: damaged snapshot at byte 40: ")
    assert "gap" in str(refused.value) and newest.exists()


def test_a_damaged_only_snapshot_with_the_whole_log_is_set_aside(tmp_path: Path) -> None:
    model = filled(tmp_path, 10)
    storage = DiskStorage(tmp_path)
    storage.write(Ready(snapshot=Snapshot(4, 1, b"four"), must_sync=True))
    storage.close()  # one segment holding 1..10: nothing is deleted
    newest = tmp_path / "snap-00000000000000000004.snap"
    flip(newest, 3)
    check(tmp_path, model)
    assert Path(f"{newest}.broken").exists()


def test_temporary_files_are_deleted_at_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = filled(tmp_path, 3)
    (tmp_path / "snap-00000000000000000003.tmp").write_bytes(b"half a snapshot")
    with caplog.at_level(logging.INFO, logger="trioraft.storage"):
        check(tmp_path, model)
    assert not list(tmp_path.glob("*.tmp"))
    assert "deleting snap-00000000000000000003.tmp" in caplog.text
    assert "opened" in caplog.text and "3 entries (1..3) in 1 segment files" in caplog.text


# ---------------------------------------------------------------- the directory


def test_a_missing_directory_is_refused_unless_create(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        DiskStorage(tmp_path / "nope")
    DiskStorage(tmp_path / "made" / "deep", create=True).close()
    assert (tmp_path / "made" / "deep" / "hardstate").exists()


def test_a_file_is_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="is not a directory"):
        DiskStorage(tmp_path / "file")
    with pytest.raises(StorageError, match=r"cannot create .*file/sub"):
        DiskStorage(tmp_path / "file" / "sub", create=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through a read-only mode")
def test_a_read_only_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ro").mkdir(mode=0o500)
    try:
        with pytest.raises(StorageError, match="ro is not writable"):
            DiskStorage(tmp_path / "ro")
    finally:
        (tmp_path / "ro").chmod(0o700)


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs Linux's /sys")
def test_a_directory_even_root_cannot_write_in_is_refused() -> None:
    """Root writes through a read-only mode, but not into sysfs: the same error path."""
    with pytest.raises(StorageError, match="/sys/kernel is not writable"):
        DiskStorage("/sys/kernel")


@pytest.mark.parametrize("directory", [42, b"/tmp", None])
def test_the_directory_must_be_a_str_path(directory: object) -> None:
    with pytest.raises(TypeError, match="directory"):
        DiskStorage(directory)  # type: ignore[arg-type]


@pytest.mark.parametrize("segment_bytes", [0, 4095, -1, 4096.0, "64M", True])
def test_segment_bytes_must_be_an_int_of_at_least_4096(
    tmp_path: Path, segment_bytes: object
) -> None:
    with pytest.raises(ValueError, match="segment_bytes"):
        DiskStorage(tmp_path, segment_bytes=segment_bytes)  # type: ignore[arg-type]


def test_a_second_opener_is_refused_while_the_lock_is_held(tmp_path: Path) -> None:
    first = DiskStorage(tmp_path)
    with pytest.raises(StorageError, match=r"is in use by another DiskStorage \(LOCK is held\)"):
        DiskStorage(tmp_path)
    first.close()
    DiskStorage(tmp_path).close()


def test_use_after_close(tmp_path: Path) -> None:
    storage = DiskStorage(tmp_path)
    storage.close()
    storage.close()  # idempotent
    storage.sync()  # nothing to do
    with pytest.raises(StorageError, match="is closed"):
        storage.write(Ready(HardState(1, 0, 0), must_sync=True))
    assert restored(tmp_path).fresh  # and the lock was released


def test_close_waits_for_a_sync_running_in_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = DiskStorage(tmp_path)
    model = Model()
    first = Ready(HardState(1, 0, 0), None, 1, entries(1, [1] * 3), must_sync=True)
    storage.write(first)
    model.apply(first)
    real_fdatasync = os.fdatasync
    entered, release = threading.Event(), threading.Event()

    def slow_fdatasync(fd: int) -> None:
        entered.set()
        assert release.wait(10)
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)
    syncer = threading.Thread(target=storage.sync)
    syncer.start()
    assert entered.wait(10)
    second = Ready(HardState(1, 0, 2), None, 4, entries(4, [1] * 2), must_sync=True)
    storage.write(second)  # staged while the sync runs
    model.apply(second)
    closer = threading.Thread(target=storage.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive(), "close() waits for the running sync"
    release.set()
    syncer.join(10)
    closer.join(10)
    assert not syncer.is_alive() and not closer.is_alive()
    monkeypatch.undo()
    check(tmp_path, model)


def test_a_failed_write_stops_the_storage_and_close_still_releases_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = filled(tmp_path, 2)
    storage = DiskStorage(tmp_path)

    def full_disk(fd: int, data: bytes, offset: int) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full_disk)
    storage.write(Ready(None, None, 3, entries(3, [1]), must_sync=True))
    with pytest.raises(StorageError, match="No space left on device"):
        storage.sync()
    with pytest.raises(StorageError, match="must be reopened"):
        storage.write(Ready(HardState(1, 0, 2)))
    storage.close()
    monkeypatch.undo()
    check(tmp_path, model)


# ---------------------------------------------------------------- random operations and crashes


class Harness:
    """A storage, the model of what it was given, and the model of what is durable."""

    SEGMENT_BYTES = 4096

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0
        self.directory = root / "0"
        self.storage = DiskStorage(self.directory, create=True, segment_bytes=self.SEGMENT_BYTES)
        self.pending = Model()  # everything written
        self.durable = Model()  # everything synced
        self.sizes_before_sync: dict[str, int] | None = None

    def write(self, ready: Ready) -> None:
        self.storage.write(ready)
        self.pending.apply(ready)

    def sync(self) -> None:
        before = {p.name: p.stat().st_size for p in self.directory.iterdir()}
        self.storage.sync()
        written = self.durable.hard
        self.durable = self.pending.copy()
        hard = self.durable.hard
        if (hard.term, hard.voted_for) == (written.term, written.voted_for):
            self.durable.hard = written  # only the commit index moved: it lags, unwritten
        self.sizes_before_sync = before
        assert self.storage.raft_state_size() == self.durable.raft_state_size()
        assert self.storage.read_snapshot() == self.durable.snapshot.data

    def crash(self, cut: Callable[[int, int], int] | None) -> None:
        """Copy the directory as a crash leaves it, maybe tear the last sync's newest
        segment write, and reopen the copy."""
        self.generation += 1
        copy = self.root / str(self.generation)
        shutil.copytree(self.directory, copy)
        expected = self.durable.copy()
        newest = max(copy.glob("log-*.seg"), default=None)
        if cut is not None and self.sizes_before_sync is not None and newest is not None:
            before = self.sizes_before_sync.get(newest.name, 0)
            after = newest.stat().st_size
            if after > before:
                os.truncate(newest, cut(before, after))
                kept = len(records(newest))
                expected.cut(int(newest.name[4:24]) + kept)
                lost = len(expected.log) < len(self.durable.log)
                event("a torn crash lost entries" if lost else "a torn crash lost none")
        self.storage.close()  # the old directory is left behind
        self.directory = copy
        self.storage = DiskStorage(copy, segment_bytes=self.SEGMENT_BYTES)
        assert_restored(self.storage, expected)
        self.pending, self.durable = expected, expected.copy()
        self.sizes_before_sync = None


def draw_entries(data: st.DataObject, term: int, most: int) -> list[Entry]:
    made = []
    for _ in range(data.draw(st.integers(0, most))):
        term = data.draw(st.integers(term, term + 1))
        made.append(Entry(term, msgspec.Raw(data.draw(st.binary(max_size=300)))))
    return made


def op_append(h: Harness, data: st.DataObject) -> None:
    m = h.pending
    new = draw_entries(data, max(m.term_at(m.last), 1), 8)
    top = max((e.term for e in new), default=0)
    hard = HardState(top, None, m.commit) if top > m.hard.term else None
    h.write(Ready(hard, None, m.last + 1, new, must_sync=True))


def op_append_many(h: Harness, data: st.DataObject) -> None:
    """Enough entries to roll a segment or two (commands from a drawn seed: cheap to draw)."""
    m = h.pending
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    term = max(m.term_at(m.last), m.hard.term, 1)
    new = [Entry(term, msgspec.Raw(rng.randbytes(rng.randrange(301)))) for _ in range(40)]
    h.write(Ready(HardState(term, None, m.commit), None, m.last + 1, new, must_sync=True))


def op_truncate(h: Harness, data: st.DataObject) -> None:
    m = h.pending
    low = max(m.snapshot.index, m.commit) + 1
    if low > m.last:
        return
    first = data.draw(st.integers(low, m.last))
    term = m.hard.term + 1  # a new leader's entries replace the uncommitted suffix
    new = draw_entries(data, term, 4)
    h.write(Ready(HardState(term, None, m.commit), None, first, new, must_sync=True))


def op_compact(h: Harness, data: st.DataObject) -> None:
    m = h.pending
    if m.commit <= m.snapshot.index:
        return
    index = data.draw(st.integers(m.snapshot.index + 1, m.commit))
    snap = Snapshot(index, m.term_at(index), data.draw(st.binary(max_size=200)))
    h.write(Ready(snapshot=snap, must_sync=True))


def op_install(h: Harness, data: st.DataObject) -> None:
    m = h.pending
    index = data.draw(st.integers(max(m.snapshot.index, m.commit) + 1, m.last + 5))
    term = m.hard.term + 1
    snap = Snapshot(index, term, data.draw(st.binary(max_size=200)))
    new = draw_entries(data, term, 3)
    h.write(Ready(HardState(term, 0, index), snap, index + 1, new, must_sync=True))


def op_hard_state(h: Harness, data: st.DataObject) -> None:
    m = h.pending
    commit = data.draw(st.integers(m.commit, m.last))
    if data.draw(st.booleans()):
        hard = HardState(m.hard.term + 1, data.draw(st.sampled_from([None, 0, 1, 2])), commit)
        h.write(Ready(hard, must_sync=True))
    else:
        h.write(Ready(HardState(m.hard.term, m.hard.voted_for, commit)))  # commit only


def op_sync(h: Harness, data: st.DataObject) -> None:
    h.sync()


def op_crash(h: Harness, data: st.DataObject) -> None:
    h.crash(None)


def op_torn_crash(h: Harness, data: st.DataObject) -> None:
    h.crash(lambda before, after: data.draw(st.integers(before, after)))


OPERATIONS = [
    op_append_many,
    op_append,
    op_append,
    op_append,
    op_truncate,
    op_compact,
    op_install,
    op_hard_state,
    op_sync,
    op_sync,
    op_crash,
    op_torn_crash,
    op_torn_crash,
]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_operations_recover_what_was_made_durable(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as root:
        harness = Harness(Path(root))
        try:
            for _ in range(data.draw(st.integers(1, 40), label="operations")):
                operation = data.draw(st.sampled_from(OPERATIONS))
                operation(harness, data)
            harness.crash(None)
            event(f"segments at the end: {min(len(segments(harness.directory)), 3)}")
        finally:
            harness.storage.close()


# ---------------------------------------------------------------- fsync order
#
# A crash of the process keeps every byte written, so the tests above cannot
# see in which order things reached the disk; a power failure keeps only what
# was fsynced.  These record the file operations and check each ordering the
# module docstring promises.

Operations = list[tuple[str, str]]


@pytest.fixture
def operations(monkeypatch: pytest.MonkeyPatch) -> Operations:
    """(operation, file name) for every open-with-create, write, sync, cut and rename."""
    done: Operations = []
    names: dict[int, str] = {}
    real = {name: getattr(os, name) for name in ("open", "pwrite", "fdatasync", "fsync")}
    real_ftruncate, real_replace = os.ftruncate, os.replace

    def open_(path: str, flags: int, *args: int) -> int:
        fd: int = real["open"](path, flags, *args)
        base = os.path.basename(path)
        names[fd] = "DIR" if flags & os.O_DIRECTORY else base.removesuffix(".tmp")
        if flags & os.O_CREAT:
            done.append(("create", base))
        return fd

    def logged(operation: str, function: Callable[..., object]) -> Callable[..., object]:
        def wrapper(fd: int, *args: object) -> object:
            done.append((operation, names.get(fd, "?")))
            return function(fd, *args)

        return wrapper

    def replace(source: str, target: str) -> None:
        done.append(("rename", os.path.basename(target)))
        real_replace(source, target)

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "pwrite", logged("write", real["pwrite"]))
    monkeypatch.setattr(os, "fdatasync", logged("sync", real["fdatasync"]))
    monkeypatch.setattr(os, "fsync", logged("sync", real["fsync"]))
    monkeypatch.setattr(os, "ftruncate", logged("cut", real_ftruncate))
    monkeypatch.setattr(os, "replace", replace)
    return done


def _first(done: Operations, start: int, wanted: Callable[[tuple[str, str]], bool]) -> int:
    return next(k for k in range(start, len(done)) if wanted(done[k]))


def _commands(term: int, count: int, size: int = 10) -> list[Entry]:
    return [Entry(term, msgspec.Raw(msgspec.msgpack.encode(b"x" * size))) for _ in range(count)]


def test_a_new_term_is_durable_before_its_entries(tmp_path: Path, operations: Operations) -> None:
    storage = DiskStorage(tmp_path / "d", create=True)
    storage.write(Ready(HardState(1, 0, 0), None, 1, _commands(1, 3), must_sync=True))
    storage.sync()
    operations.clear()
    storage.write(Ready(HardState(2, 1, 0), None, 4, _commands(2, 2), must_sync=True))
    storage.sync()
    hard = _first(operations, 0, lambda op: op == ("write", "hardstate"))
    log = _first(operations, 0, lambda op: op[0] == "write" and op[1].startswith("log-"))
    assert ("sync", "hardstate") in operations[hard:log], operations
    storage.close()


def test_a_cut_is_durable_before_records_are_written_over_it(
    tmp_path: Path, operations: Operations
) -> None:
    storage = DiskStorage(tmp_path / "d", create=True)
    storage.write(Ready(HardState(1, 0, 0), None, 1, _commands(1, 5), must_sync=True))
    storage.sync()
    operations.clear()
    storage.write(Ready(None, None, 3, _commands(1, 1, 99), must_sync=True))
    storage.sync()
    cut = _first(operations, 0, lambda op: op[0] == "cut")
    segment = operations[cut][1]
    rewrite = _first(operations, cut, lambda op: op == ("write", segment))
    assert ("sync", segment) in operations[cut:rewrite], operations
    storage.close()


def test_a_segment_is_durable_before_the_next_is_created(
    tmp_path: Path, operations: Operations
) -> None:
    storage = DiskStorage(tmp_path / "d", create=True, segment_bytes=4096)
    storage.write(Ready(HardState(1, 0, 0), None, 1, _commands(1, 200, 50), must_sync=True))
    storage.sync()
    created = [k for k, op in enumerate(operations) if op[0] == "create" and "log-" in op[1]]
    assert len(created) >= 2
    for a, b in itertools.pairwise(created):
        old = operations[a][1]
        last_write = max(k for k in range(a, b) if operations[k] == ("write", old))
        assert ("sync", old) in operations[last_write:b], operations[a : b + 1]
        assert ("sync", "DIR") in operations[last_write:b], operations[a : b + 1]
    storage.close()


def test_a_snapshot_is_durable_before_entries_after_its_gap(
    tmp_path: Path, operations: Operations
) -> None:
    storage = DiskStorage(tmp_path / "d", create=True)
    operations.clear()
    snapshot = Snapshot(10, 2, b"snap")
    storage.write(Ready(HardState(2, 0, 10), snapshot, 11, _commands(2, 2), must_sync=True))
    storage.sync()
    renamed = _first(operations, 0, lambda op: op[0] == "rename" and op[1].endswith(".snap"))
    created = _first(operations, renamed, lambda op: op[0] == "create" and "log-" in op[1])
    assert ("sync", "DIR") in operations[renamed:created], operations
    storage.close()
