"""DiskStorage: one peer's durable Raft state in a directory (a write-ahead log).

Layout of the directory
-----------------------
``LOCK``
    Empty; held with ``flock`` while a :class:`DiskStorage` has the directory open.
``hardstate``
    Term, vote and commit index in two fixed 41-byte slots at offsets 0 and 512
    (bbolt-style double buffering).  Each write goes to the slot *not* holding
    the newest state, with a sequence number one higher; recovery takes the
    valid slot with the higher sequence, so a torn write loses only itself.
``snap-<index:020d>.snap``
    A snapshot: header ``>4sBQQQ`` (magic ``TRSN``, version, index, term, data
    length), the data, then the CRC-32 of header and data.  Written as
    ``snap-<index>.tmp``, fsynced, renamed, directory fsynced.
``log-<first index:020d>.seg``
    Log segments, append-only: a 16-byte header ``>4sB3xQ`` (magic ``TRLG``,
    version, first index), then records.  A record is a 28-byte header
    ``>IIQQI`` (CRC-32 of the next 24 header bytes, data length, index, term,
    CRC-32 of the data) and the entry's command bytes.  The header has its
    own CRC so a damaged length is never mistaken for a torn tail.

All integers are big-endian; every CRC is ``zlib.crc32``.

Writing
-------
:meth:`DiskStorage.write` only stages a Ready (no I/O: it runs on the event
loop).  :meth:`DiskStorage.sync` carries out every staged Ready in order and
then makes it all durable with one ``fdatasync`` per file written and at most
one directory fsync (group commit).  Appends cost what they add: a batch's
records are encoded and written with one ``pwrite`` per segment, and the
offsets of records are kept in memory (an ``array('Q')`` per segment) so old
records are never read again.

Crash safety rests on a few orderings, each commented where it is done (the
rare ones cost an extra fsync: a term change, a truncation, a segment roll, a
snapshot):

* a sync writes one hard state, the batch's last: the slot holding the last
  durable one is never overwritten before the new one is durable;
* a hard state that differs from the last written only in its commit index is
  not written until the term or vote changes or the storage is closed (the
  commit index is a lower bound, so it may lag; a busy follower's every sync
  would otherwise cost two fdatasyncs);
* a new term reaches the disk before any entry or snapshot of that term;
* a truncation is durable before new records are written over the old ones;
* a segment (data and name) is durable before the next one is created, so
  only the newest segment can have a torn tail;
* a snapshot is durable before any entry after it is written, and before
  anything it makes obsolete is deleted.

Recovery (when a :class:`DiskStorage` is created) checks every CRC, cuts a
torn tail of the newest segment, and refuses (``StorageError`` naming the file
and byte offset) any other damage: a peer never starts empty over damaged data.
A fresh directory gets a hard-state file (slot 0 valid) by rename, so "both
slots invalid" always means damage.  The hard state and the log are separate
files, so a crash can leave a commit index past the last entry on disk; commit
is only a lower bound, and recovery lowers it to the last entry.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import struct
import threading
import zlib
from array import array
from dataclasses import dataclass, field
from itertools import islice

import msgspec

from ..core.messages import Entry
from ..core.ready import HardState, Ready, Snapshot
from .base import Restored, StorageError

log = logging.getLogger("trioraft.storage")

DEFAULT_SEGMENT_BYTES = 64 * 2**20
MIN_SEGMENT_BYTES = 4096
FORMAT_VERSION = 1

LOCK_NAME = "LOCK"
HARD_STATE_NAME = "hardstate"

_CRC = struct.Struct(">I")

_HARD_STATE = struct.Struct(">4sBQQqQ")  # magic, version, sequence, term, voted_for, commit
_HARD_STATE_MAGIC = b"TRHS"
HARD_STATE_SLOT_SIZE = _HARD_STATE.size + _CRC.size  # 41 bytes
_HARD_STATE_SLOTS = (0, 512)

_SNAP_HEADER = struct.Struct(">4sBQQQ")  # magic, version, index, term, data length
_SNAP_MAGIC = b"TRSN"

_SEG_HEADER = struct.Struct(">4sB3xQ")  # magic, version, 3 zero bytes, first index
_SEG_MAGIC = b"TRLG"

RECORD_HEADER = struct.Struct(">IIQQI")  # header CRC, length, index, term, data CRC
_RECORD_CHECKED = struct.Struct(">IQQI")  # the 24 bytes the header CRC covers

_SEGMENT_NAME = re.compile(r"log-(\d{20})\.seg")
_SNAPSHOT_NAME = re.compile(r"snap-(\d{20})\.snap")


def _segment_name(first_index: int) -> str:
    return f"log-{first_index:020d}.seg"


def _snapshot_name(index: int) -> str:
    return f"snap-{index:020d}.snap"


# ---------------------------------------------------------------- encodings


def _encode_hard_state(sequence: int, hard: HardState) -> bytes:
    voted_for = -1 if hard.voted_for is None else hard.voted_for
    body = _HARD_STATE.pack(
        _HARD_STATE_MAGIC, FORMAT_VERSION, sequence, hard.term, voted_for, hard.commit
    )
    return body + _CRC.pack(zlib.crc32(body))


def _decode_hard_state(data: bytes, offset: int) -> tuple[int, HardState] | None:
    """The (sequence, hard state) in the slot at ``offset``, or None if it does not check."""
    end = offset + _HARD_STATE.size
    if len(data) < end + _CRC.size:
        return None
    (crc,) = _CRC.unpack_from(data, end)
    if zlib.crc32(data[offset:end]) != crc:
        return None
    magic, version, sequence, term, voted_for, commit = _HARD_STATE.unpack_from(data, offset)
    if magic != _HARD_STATE_MAGIC or version != FORMAT_VERSION:
        return None
    return sequence, HardState(term, None if voted_for == -1 else voted_for, commit)


def _encode_record(index: int, entry: Entry) -> tuple[bytes, msgspec.Raw]:
    """A record as (28-byte header, data): written with a join, never concatenated."""
    command = entry.command
    checked = _RECORD_CHECKED.pack(len(command), index, entry.term, zlib.crc32(command))
    return _CRC.pack(zlib.crc32(checked)) + checked, command


# ---------------------------------------------------------------- small I/O helpers


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _write_parts(fd: int, parts: tuple[bytes, ...]) -> None:
    """Write ``parts`` one after the other from the start of the file."""
    offset = 0
    for part in parts:
        _pwrite_all(fd, part, offset)
        offset += len(part)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _is_zero(data: bytes, start: int) -> bool:
    return data.count(0, start) == len(data) - start


class _Damaged(Exception):
    """Damage found while reading a file: where, and what."""

    def __init__(self, offset: int, what: str) -> None:
        super().__init__(f"damaged at byte {offset}: {what}")
        self.offset = offset
        self.what = what


# ---------------------------------------------------------------- in-memory state


@dataclass(eq=False, slots=True)
class _Segment:
    """A segment file as the storage knows it, without re-reading it."""

    first: int
    path: str
    offsets: array[int] = field(default_factory=lambda: array("Q"))  # start of each record
    end: int = _SEG_HEADER.size  # bytes in use: where the next record goes
    fd: int | None = None  # open while it is the segment being written (or truncated)
    dirty: bool = False  # written since its last fdatasync

    @property
    def last(self) -> int:
        """Index of its last record (first - 1 when it holds none)."""
        return self.first + len(self.offsets) - 1

    def open_fd(self) -> int:
        if self.fd is None:
            self.fd = os.open(self.path, os.O_WRONLY)
        return self.fd

    def close_fd(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


@dataclass(slots=True)
class _ScannedSegment:
    """What recovery read from one segment file."""

    segment: _Segment
    torn: str | None = None  # why its tail (from segment.end on) is to be cut


@dataclass(slots=True)
class _SnapshotFile:
    path: str
    index: int
    term: int
    data: bytes


# ---------------------------------------------------------------- recovery: reading files


def _read_snapshot_file(path: str, index: int) -> _SnapshotFile:
    """Read and check a snapshot file; raise :class:`_Damaged` if it does not check."""
    data = _read_file(path)
    size = len(data)
    if size < _SNAP_HEADER.size + _CRC.size:
        raise _Damaged(size, f"the file ends after {size} bytes, inside its header")
    magic, version, stored_index, term, length = _SNAP_HEADER.unpack_from(data)
    if magic != _SNAP_MAGIC:
        raise _Damaged(0, "not a trioraft snapshot file (bad magic)")
    if version != FORMAT_VERSION:
        raise _Damaged(4, f"unsupported format version {version}")
    if stored_index != index:
        raise _Damaged(5, f"its header says index {stored_index}, its name {index}")
    end = _SNAP_HEADER.size + length
    if size != end + _CRC.size:
        where = min(size, end + _CRC.size)
        raise _Damaged(where, f"the file is {size} bytes but its header implies {end + 4}")
    (crc,) = _CRC.unpack_from(data, end)
    if zlib.crc32(memoryview(data)[:end]) != crc:
        raise _Damaged(end, "the checksum does not match the header and data")
    return _SnapshotFile(path, index, term, data[_SNAP_HEADER.size : end])


def _scan_segment(
    path: str, first: int, is_last: bool, live_from: int, entries: list[Entry]
) -> _ScannedSegment:
    """Check every record of a segment; append its entries from ``live_from`` on to ``entries``.

    A torn tail is accepted in the last segment only (only the newest segment
    is ever written without the ones before it being durable); damage
    anywhere else raises StorageError naming the file and byte offset.
    """
    data = _read_file(path)
    size = len(data)
    segment = _Segment(first, path)

    def torn_or_damaged(offset: int, what: str) -> _ScannedSegment:
        if not is_last:
            raise StorageError(f"{path}: damaged record at byte {offset}: {what}")
        segment.end = offset
        return _ScannedSegment(segment, what)

    if size < _SEG_HEADER.size or _is_zero(data, 0):
        # The file was created and its first write did not (fully) reach the disk.
        if is_last:
            segment.end = 0
            return _ScannedSegment(segment, f"a segment header of {size} bytes (never written)")
        raise StorageError(f"{path}: damaged segment header at byte 0: missing or zero-filled")
    magic, version, stored_first = _SEG_HEADER.unpack_from(data)
    if magic != _SEG_MAGIC or version != FORMAT_VERSION or stored_first != first:
        raise StorageError(
            f"{path}: damaged segment header at byte 0: magic {magic!r}, version {version}, "
            f"first index {stored_first} (expected {_SEG_MAGIC!r}, {FORMAT_VERSION}, {first})"
        )

    view = memoryview(data)
    offsets = segment.offsets
    unpack = RECORD_HEADER.unpack_from
    crc32 = zlib.crc32
    header_size = RECORD_HEADER.size
    index = first
    offset = _SEG_HEADER.size
    while offset < size:
        if size - offset < header_size:
            return torn_or_damaged(offset, f"only {size - offset} bytes left for a record header")
        header_crc, length, stored_index, term, data_crc = unpack(data, offset)
        if crc32(view[offset + 4 : offset + header_size]) != header_crc:
            what = "the record header fails its checksum"
            if _is_zero(data, offset):  # the file was extended but the data never written
                return torn_or_damaged(offset, what + " (zero-filled to the end)")
            raise StorageError(f"{path}: damaged record at byte {offset}: {what}")
        if stored_index != index:
            raise StorageError(
                f"{path}: damaged record at byte {offset}: index {stored_index} "
                f"where {index} was expected"
            )
        start = offset + header_size
        stop = start + length
        if stop > size:
            return torn_or_damaged(offset, f"the record's {length} data bytes run past the end")
        if crc32(view[start:stop]) != data_crc:
            what = "the record data fails its checksum"
            if stop == size:  # the last record: its data write was torn
                return torn_or_damaged(offset, what)
            raise StorageError(f"{path}: damaged record at byte {offset}: {what}")
        if index >= live_from:  # its own bytes: an entry never pins the segment buffer
            entries.append(Entry(term, msgspec.Raw(data[start:stop])))
        offsets.append(offset)
        offset = stop
        index += 1
    segment.end = offset
    return _ScannedSegment(segment)


def _log_gap(first: int, previous_last: int | None, snapshot_index: int) -> str | None:
    """Why a segment starting at ``first`` cannot follow the log so far (None if it can).

    A gap is allowed only where the snapshot covers it.
    """
    if previous_last is not None and first <= previous_last:
        return (
            f"it starts at index {first}, inside the previous segment (ending at {previous_last})"
        )
    covered = snapshot_index if previous_last is None else max(previous_last, snapshot_index)
    if first > covered + 1:
        return (
            f"it starts at index {first} but the snapshot (index {snapshot_index}) and the "
            f"segments before it end at {covered}: entries {covered + 1}..{first - 1} are missing"
        )
    return None


# ---------------------------------------------------------------- the storage


class DiskStorage:
    """A :class:`~trioraft.storage.base.Storage` in a directory: see the module docstring.

    Creating it opens the directory, takes its lock and recovers (synchronous
    I/O); :meth:`restore` then gives what was recovered.
    """

    sync_in_thread = True  # sync() waits for fsyncs: the peer runs it in a worker thread

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        create: bool = False,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fsync: bool = True,
    ) -> None:
        self.path = _check_directory(directory, create)
        if (
            not isinstance(segment_bytes, int)
            or isinstance(segment_bytes, bool)
            or segment_bytes < MIN_SEGMENT_BYTES
        ):
            raise ValueError(
                f"segment_bytes must be an int >= {MIN_SEGMENT_BYTES}, not {segment_bytes!r}"
            )
        self._segment_bytes = segment_bytes
        if not isinstance(fsync, bool):
            raise TypeError(f"fsync must be True or False, not {fsync!r}")
        # False: every write still happens in order, but nothing waits for the
        # disk; for benchmarks and tests only (a power failure loses data).
        self._fsync = fsync

        # Staging (event-loop side) and I/O (sync side) have a lock each: write()
        # never waits for a sync's fsyncs, close() waits for a running sync.
        self._stage_lock = threading.Lock()
        self._io_lock = threading.Lock()
        self._staged: list[Ready] = []
        self._closed = False  # write() refuses, sync() does nothing
        self._released = False  # files closed, LOCK released
        self._failure: str | None = None  # an I/O error left the files in an unknown state

        self._segments: list[_Segment] = []  # in index order; the last one is written to
        self._hard_state = HardState(0, None, 0)  # the last one written
        self._lagging: HardState | None = None  # newer, differing only in commit: unwritten
        self._hard_state_sequence = 0
        self._hard_state_fd = -1
        self._hard_state_dirty = False
        self._dir_dirty = False  # names created, renamed or deleted since the last fsync
        self._snapshot_index = 0
        self._snapshot_term = 0
        self._snapshot_path: str | None = None
        self._snapshot_data = b""  # the latest snapshot written (staged or durable)
        self._obsolete: list[str] = []  # files to delete once what replaces them is durable
        self._live_bytes = 0
        self._restored: Restored | None = None

        self._lock_fd = _lock_directory(self.path)
        self._dir_fd = -1
        try:
            self._dir_fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
            self._recover()
        except BaseException:
            self._release()
            raise

    def _flush_fd(self, fd: int) -> None:
        """fdatasync (fsync for a directory, where fdatasync is not enough on every
        system) unless the storage was opened with ``fsync=False``."""
        if self._fsync:
            if fd == self._dir_fd:
                os.fsync(fd)
            else:
                os.fdatasync(fd)

    def __repr__(self) -> str:
        return f"DiskStorage({self.path!r})"

    # ------------------------------------------------------------ public API

    def restore(self) -> Restored:
        """The state recovered when the directory was opened.

        Available until the first :meth:`write` (after that the storage holds
        no copy of the entries, and the recovered state is out of date).
        """
        if self._restored is None:
            raise StorageError(
                f"{self.path}: restore() gives the state read at open, before any write()"
            )
        return self._restored

    def write(self, ready: Ready) -> None:
        """Stage the Ready's writes (no I/O: references are kept until :meth:`sync`)."""
        if ready.entries and ready.entries_from is None:
            raise ValueError("a Ready with entries must say where they start (entries_from)")
        with self._stage_lock:
            self._check_usable()
            self._restored = None  # the peer took it at start-up; drop the entries
            if ready.snapshot is not None:
                self._snapshot_data = ready.snapshot.data
            if not ready.has_writes:
                return
            staged = self._staged
            if (
                not ready.must_sync
                and _hard_state_only(ready)
                and staged
                and _hard_state_only(staged[-1])
            ):
                # A hard state replaces the whole previous one: only the newest is written.
                staged[-1] = ready
            else:
                staged.append(ready)

    def sync(self) -> None:
        """Carry out every staged Ready in order, then make them durable (group commit)."""
        with self._io_lock:
            if self._closed:
                return  # close() carried out what was staged
            self._flush()

    def close(self) -> None:
        """Make what is staged durable, close the files and release the directory.

        Idempotent.  Waits for a :meth:`sync` running in another thread.
        """
        with self._stage_lock:
            self._closed = True
        with self._io_lock:
            if self._released:
                return
            try:
                if self._failure is None:
                    self._flush(final=True)
            finally:
                self._release()

    def read_snapshot(self) -> bytes:
        """The latest snapshot written (``b""`` when there is none)."""
        return self._snapshot_data

    def snapshot_size(self) -> int:
        return len(self._snapshot_data)

    def raft_state_size(self) -> int:
        """Bytes of live log records (after the snapshot) plus the hard-state record.

        Counts what :meth:`sync` has written; records folded into a snapshot
        are not counted even while their segment is still on disk.
        """
        return self._live_bytes + HARD_STATE_SLOT_SIZE

    # ------------------------------------------------------------ staging helpers

    def _check_usable(self) -> None:
        if self._closed:
            raise StorageError(f"{self.path} is closed")
        if self._failure is not None:
            raise StorageError(self._failure)

    # ------------------------------------------------------------ sync

    def _flush(self, *, final: bool = False) -> None:
        """Carry out and make durable what is staged (holding the I/O lock); ``final``
        (at close) writes a lagging commit index too."""
        if self._failure is not None:
            raise StorageError(self._failure)
        with self._stage_lock:
            batch, self._staged = self._staged, []
        if final and self._lagging is not None:
            batch.insert(0, Ready(hard_state=self._lagging))  # superseded by any newer one
        try:
            if batch:
                self._carry_out(batch, final=final)
            self._make_durable()
        except (OSError, StorageError) as error:
            # The files may now be anywhere between the old state and the new: no
            # later write may build on them (retrying a failed fsync is not safe).
            self._failure = f"{self.path}: a write failed, the storage must be reopened: {error}"
            if isinstance(error, StorageError):
                raise
            raise StorageError(f"{self.path}: write failed: {error}") from error

    def _carry_out(self, batch: list[Ready], *, final: bool) -> None:
        hard = next((r.hard_state for r in reversed(batch) if r.hard_state is not None), None)
        if hard is not None:
            written = self._hard_state
            if not final and (hard.term, hard.voted_for) == (written.term, written.voted_for):
                # Only the commit index moved.  It may lag (recovery takes it as a lower
                # bound), so it waits for the next term or vote, or close(), instead of
                # costing a second fdatasync in every sync of a busy follower.
                self._lagging = hard
            else:
                # Only the batch's last hard state is written: writing two would overwrite
                # the slot holding the last durable state before the new one is durable.
                self._lagging = None
                writes_log = any(r.entries or r.snapshot is not None for r in batch)
                self._write_hard_state(hard, barrier=writes_log and hard.term != written.term)
        for ready in batch:
            if ready.entries_from is not None:
                self._truncate(ready.entries_from)
            if ready.snapshot is not None:
                self._install_snapshot(ready.snapshot)
            if ready.entries:
                assert ready.entries_from is not None  # write() checked it
                self._append(ready.entries_from, ready.entries)

    def _make_durable(self) -> None:
        """The group commit: one fdatasync per file written, one directory fsync."""
        if self._hard_state_dirty:
            self._flush_fd(self._hard_state_fd)
            self._hard_state_dirty = False
        for segment in self._segments:
            self._sync_segment(segment)
        self._sync_directory()
        # Only now is the newest snapshot durable: what it replaces can go.
        self._delete_obsolete()
        self._live_bytes = self._count_live_bytes()

    # ------------------------------------------------------------ hard state

    def _write_hard_state(self, hard: HardState, *, barrier: bool) -> None:
        sequence = self._hard_state_sequence + 1
        slot = _HARD_STATE_SLOTS[sequence % 2]  # never the slot of the newest durable state
        _pwrite_all(self._hard_state_fd, _encode_hard_state(sequence, hard), slot)
        self._hard_state_sequence = sequence
        self._hard_state = hard
        if barrier:
            # A new term is durable before any entry or snapshot of that term: after
            # a power failure the log never holds a term the hard state has not seen.
            self._flush_fd(self._hard_state_fd)
        else:
            self._hard_state_dirty = True

    # ------------------------------------------------------------ truncation

    def _truncate(self, first_dropped: int) -> None:
        """Drop every stored entry with index >= ``first_dropped``."""
        if not self._segments or first_dropped > self._segments[-1].last:
            return  # the usual case: an append right after the last entry
        deleted = False
        while self._segments and self._segments[-1].first >= first_dropped:
            # Newest first: a crash in between leaves a prefix of the log.
            self._remove_segment(self._segments.pop())
            deleted = True
        if self._segments and first_dropped <= self._segments[-1].last:
            segment = self._segments[-1]
            keep = first_dropped - segment.first
            cut = segment.offsets[keep]
            fd = segment.open_fd()
            os.ftruncate(fd, cut)
            del segment.offsets[keep:]
            segment.end = cut
            # The cut is durable before new records go where the dropped ones were:
            # otherwise a power failure could leave new records followed by old ones.
            self._flush_fd(fd)
            segment.dirty = False
        if deleted:
            self._flush_fd(self._dir_fd)  # likewise for the deleted segments' names
            self._dir_dirty = False

    def _remove_segment(self, segment: _Segment) -> None:
        segment.close_fd()
        os.unlink(segment.path)

    # ------------------------------------------------------------ snapshots

    def _install_snapshot(self, snapshot: Snapshot) -> None:
        if snapshot.index < self._snapshot_index:
            raise StorageError(
                f"{self.path}: snapshot at index {snapshot.index} is older than the stored "
                f"one at {self._snapshot_index}"
            )
        path = os.path.join(self.path, _snapshot_name(snapshot.index))
        header = _SNAP_HEADER.pack(
            _SNAP_MAGIC, FORMAT_VERSION, snapshot.index, snapshot.term, len(snapshot.data)
        )
        crc = _CRC.pack(zlib.crc32(snapshot.data, zlib.crc32(header)))
        # Written aside, fsynced, renamed, directory fsynced: the snapshot file is
        # whole or absent, and it is durable before any entry after it is written
        # (a segment starting past a gap exists only if the snapshot covering it does).
        temporary = path[: -len(".snap")] + ".tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_parts(fd, (header, snapshot.data, crc))
            self._flush_fd(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
        self._flush_fd(self._dir_fd)
        if self._snapshot_path is not None and self._snapshot_path != path:
            self._obsolete.append(self._snapshot_path)
        self._snapshot_path = path
        self._snapshot_index = snapshot.index
        self._snapshot_term = snapshot.term

    def _delete_obsolete(self) -> None:
        """Delete older snapshots and segments wholly folded into the durable snapshot.

        Called only once the snapshot is durable.  The deletions themselves need
        no fsync: a file that comes back after a crash is deleted by recovery.
        """
        for path in self._obsolete:
            os.unlink(path)
        self._obsolete.clear()
        segments = self._segments
        dead = 0
        while dead < len(segments) and segments[dead].last <= self._snapshot_index:
            self._remove_segment(segments[dead])
            dead += 1
        del segments[:dead]

    # ------------------------------------------------------------ appends

    def _append(self, entries_from: int, entries: list[Entry]) -> None:
        skip = max(0, self._snapshot_index + 1 - entries_from)  # folded into the snapshot
        if skip >= len(entries):
            return
        index = entries_from + skip
        follows = max(self._snapshot_index, self._segments[-1].last if self._segments else 0)
        if index != follows + 1:
            raise StorageError(
                f"{self.path}: entries from index {index} do not follow the log, "
                f"which ends at {follows}"
            )
        segment = self._segments[-1] if self._segments else None
        if segment is None or segment.last + 1 != index:
            segment = self._start_segment(index)  # past a snapshot that jumped ahead
        parts: list[bytes | msgspec.Raw] = []
        end = segment.end
        header_size = RECORD_HEADER.size
        for entry in islice(entries, skip, None):
            if end >= self._segment_bytes:  # full: roll to a new segment
                self._write_records(segment, parts, end)
                segment, parts = self._start_segment(index), []
                end = segment.end
            header, command = _encode_record(index, entry)
            parts += (header, command)
            segment.offsets.append(end)
            end += header_size + len(command)
            index += 1
        self._write_records(segment, parts, end)

    def _write_records(self, segment: _Segment, parts: list[bytes | msgspec.Raw], end: int) -> None:
        if parts:
            _pwrite_all(segment.open_fd(), b"".join(parts), segment.end)
            segment.end = end
            segment.dirty = True

    def _start_segment(self, first: int) -> _Segment:
        if self._segments:
            # The segment left behind (its data and its name) is durable before the
            # next one exists, so a torn tail or a missing header can only ever be in
            # the newest segment: recovery refuses them anywhere else.
            self._seal(self._segments[-1])
        path = os.path.join(self.path, _segment_name(first))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        segment = _Segment(first, path, fd=fd, dirty=True)
        self._segments.append(segment)
        self._dir_dirty = True
        _pwrite_all(fd, _SEG_HEADER.pack(_SEG_MAGIC, FORMAT_VERSION, first), 0)
        return segment

    def _seal(self, segment: _Segment) -> None:
        self._sync_segment(segment)
        self._sync_directory()
        segment.close_fd()

    def _sync_segment(self, segment: _Segment) -> None:
        if segment.dirty:
            self._flush_fd(segment.open_fd())
            segment.dirty = False

    def _sync_directory(self) -> None:
        """Make the names created, renamed or deleted since the last time durable."""
        if self._dir_dirty:
            self._flush_fd(self._dir_fd)
            self._dir_dirty = False

    def _count_live_bytes(self) -> int:
        total = 0
        for segment in self._segments:
            first_live = max(0, self._snapshot_index + 1 - segment.first)
            if first_live < len(segment.offsets):
                total += segment.end - segment.offsets[first_live]
        return total

    # ------------------------------------------------------------ closing

    def _release(self) -> None:
        """Close every file and release the directory lock (no writes)."""
        self._released = True
        fds = [self._hard_state_fd, self._dir_fd, self._lock_fd]
        self._hard_state_fd = self._dir_fd = self._lock_fd = -1
        for segment in self._segments:
            segment.close_fd()
        for fd in fds:
            if fd >= 0:
                os.close(fd)  # closing LOCK's descriptor releases the flock

    # ------------------------------------------------------------ recovery

    def _recover(self) -> None:
        names = os.listdir(self.path)
        snapshots = sorted(
            (int(m.group(1)), name) for name in names if (m := _SNAPSHOT_NAME.fullmatch(name))
        )
        segments = sorted(
            (int(m.group(1)), name) for name in names if (m := _SEGMENT_NAME.fullmatch(name))
        )
        chosen, damaged = self._choose_snapshot(snapshots)
        snapshot_index = chosen.index if chosen is not None else 0

        hard_state_path = os.path.join(self.path, HARD_STATE_NAME)
        recovered = self._read_hard_state(hard_state_path)
        if recovered is None and (snapshots or segments):
            raise StorageError(
                f"{hard_state_path} is missing but the directory holds a log or a snapshot"
            )

        entries: list[Entry] = []
        scanned = self._scan_log(segments, snapshot_index, damaged, entries)

        # Everything checked: only now change files (a refused directory stays as found).
        self._set_aside(names, snapshots, snapshot_index, damaged)
        self._segments = [self._cut_torn_tail(scan) for scan in scanned]
        self._segments = [segment for segment in self._segments if segment.end > 0]
        if chosen is not None:
            self._snapshot_index, self._snapshot_term = chosen.index, chosen.term
            self._snapshot_path, self._snapshot_data = chosen.path, chosen.data
        if recovered is None:
            self._create_hard_state(hard_state_path)
        else:
            self._hard_state_sequence, self._hard_state = recovered
            self._hard_state_fd = os.open(hard_state_path, os.O_RDWR)
        self._delete_obsolete()  # segments wholly inside the snapshot
        self._flush_fd(self._dir_fd)  # the cuts, renames and deletions above are final
        self._dir_dirty = False
        self._live_bytes = self._count_live_bytes()
        self._restored = self._restored_state(entries)
        self._log_summary(self._restored)

    def _set_aside(
        self,
        names: list[str],
        snapshots: list[tuple[int, str]],
        snapshot_index: int,
        damaged: list[tuple[str, _Damaged]],
    ) -> None:
        """Delete interrupted writes and replaced snapshots; move damaged ones aside."""
        for name in names:
            if name.endswith(".tmp"):
                log.info("%s: deleting %s, left by an interrupted write", self.path, name)
                os.unlink(os.path.join(self.path, name))
        for snapshot_file, damage in damaged:
            log.warning(
                "%s %s; the older snapshot and the log cover it (a power failure before "
                "its fsync leaves this): moved to %s.broken",
                snapshot_file,
                damage,
                os.path.basename(snapshot_file),
            )
            os.replace(snapshot_file, snapshot_file + ".broken")
        for index, name in snapshots:
            if index < snapshot_index:
                os.unlink(os.path.join(self.path, name))  # replaced by the chosen one

    def _choose_snapshot(
        self, snapshots: list[tuple[int, str]]
    ) -> tuple[_SnapshotFile | None, list[tuple[str, _Damaged]]]:
        """The newest snapshot that checks, and the damaged ones newer than it."""
        damaged: list[tuple[str, _Damaged]] = []
        for index, name in reversed(snapshots):
            path = os.path.join(self.path, name)
            try:
                return _read_snapshot_file(path, index), damaged
            except _Damaged as damage:
                damaged.append((path, damage))
        return None, damaged

    def _read_hard_state(self, path: str) -> tuple[int, HardState] | None:
        """The newest valid (sequence, hard state), or None if there is no file."""
        try:
            data = _read_file(path)
        except FileNotFoundError:
            return None
        if not data:
            return None
        slots = [(offset, _decode_hard_state(data, offset)) for offset in _HARD_STATE_SLOTS]
        valid = [decoded for _, decoded in slots if decoded is not None]
        if not valid:
            raise StorageError(
                f"{path}: damaged hard state at byte 0: neither slot (bytes 0 and "
                f"{_HARD_STATE_SLOTS[1]}) passes its checksum"
            )
        for offset, decoded in slots:
            if decoded is None and not _is_zero(data[offset : offset + HARD_STATE_SLOT_SIZE], 0):
                log.warning(
                    "%s: the hard-state slot at byte %d does not check (a torn write); "
                    "using the other slot",
                    path,
                    offset,
                )
        return max(valid, key=lambda decoded: decoded[0])

    def _create_hard_state(self, path: str) -> None:
        """A fresh directory gets a hard-state file whose slot 0 is valid.

        Written aside and renamed, so the file exists only once a valid slot is
        durable: "both slots invalid" then always means damage, never a first
        write interrupted by a crash.
        """
        temporary = path + ".tmp"
        self._hard_state_fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        _pwrite_all(self._hard_state_fd, _encode_hard_state(0, self._hard_state), 0)
        self._flush_fd(self._hard_state_fd)
        os.replace(temporary, path)
        self._dir_dirty = True

    def _scan_log(
        self,
        segments: list[tuple[int, str]],
        snapshot_index: int,
        damaged: list[tuple[str, _Damaged]],
        entries: list[Entry],
    ) -> list[_ScannedSegment]:
        """Check every segment in order, collecting the entries after the snapshot."""
        scanned: list[_ScannedSegment] = []
        previous_last: int | None = None
        for position, (first, name) in enumerate(segments):
            path = os.path.join(self.path, name)
            gap = _log_gap(first, previous_last, snapshot_index)
            if gap is not None:
                raise self._gap_error(path, gap, damaged)
            scan = _scan_segment(
                path, first, position == len(segments) - 1, snapshot_index + 1, entries
            )
            scanned.append(scan)
            previous_last = scan.segment.last
        return scanned

    def _gap_error(self, path: str, gap: str, damaged: list[tuple[str, _Damaged]]) -> StorageError:
        if damaged:
            # The older snapshot does not reach the log: the damaged one was needed.
            snapshot_file, damage = damaged[-1]
            return StorageError(
                f"{snapshot_file}: damaged snapshot at byte {damage.offset}: {damage.what}; "
                f"without it the log has a gap ({os.path.basename(path)}: {gap})"
            )
        return StorageError(f"{path}: the log has a gap: {gap}")

    def _cut_torn_tail(self, scan: _ScannedSegment) -> _Segment:
        """Cut the tail of a write a crash interrupted (the newest segment only)."""
        segment = scan.segment
        if scan.torn is None:
            return segment
        log.warning(
            "%s: cutting a torn tail at byte %d (%s): entries from index %d were being "
            "written when the process or machine stopped",
            segment.path,
            segment.end,
            scan.torn,
            segment.last + 1,
        )
        if segment.end == 0:
            os.unlink(segment.path)
            return segment
        fd = segment.open_fd()
        os.ftruncate(fd, segment.end)
        self._flush_fd(fd)
        return segment

    def _restored_state(self, entries: list[Entry]) -> Restored:
        hard = self._hard_state
        last = self._snapshot_index + len(entries)
        if hard.commit > last:
            # The hard state reached the disk, the entries it commits did not (the
            # two are separate files); commit is only a lower bound, so lower it.
            log.warning(
                "%s: commit index %d lowered to %d, the last entry on disk",
                self.path,
                hard.commit,
                last,
            )
            hard = HardState(hard.term, hard.voted_for, last)
        return Restored(
            hard, self._snapshot_index, self._snapshot_term, self._snapshot_data, entries
        )

    def _log_summary(self, restored: Restored) -> None:
        hard = restored.hard_state
        entries = len(restored.entries)
        log.info(
            "opened %s: term %d, voted for %s, commit %d; snapshot at index %d (term %d, "
            "%d bytes); %d entries%s in %d segment files",
            self.path,
            hard.term,
            hard.voted_for,
            hard.commit,
            restored.snapshot_index,
            restored.snapshot_term,
            len(restored.snapshot),
            entries,
            f" ({restored.snapshot_index + 1}..{restored.snapshot_index + entries})"
            if entries
            else "",
            len(self._segments),
        )


def _hard_state_only(ready: Ready) -> bool:
    return ready.hard_state is not None and ready.snapshot is None and ready.entries_from is None


def _check_directory(directory: object, create: bool) -> str:
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a str or os.PathLike, not {type(directory).__name__}")
    path = os.fspath(directory)
    if not isinstance(path, str):
        raise TypeError(f"directory must be a str path, not {type(path).__name__}")
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        if not create:
            raise StorageError(f"{path} does not exist (create=True makes it)") from None
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as error:
            raise StorageError(f"cannot create {path}: {error}") from error
    if not os.path.isdir(path):
        raise StorageError(f"{path} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise StorageError(f"{path} is not writable: {os.strerror(errno.EACCES)}")
    return path


def _lock_directory(path: str) -> int:
    lock_path = os.path.join(path, LOCK_NAME)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise StorageError(f"{path} is not writable: {error}") from error
    try:
        # flock locks an open file description: a second open in this process conflicts too.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StorageError(
            f"{path} is in use by another DiskStorage ({LOCK_NAME} is held)"
        ) from None
    return fd
