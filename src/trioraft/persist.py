"""Persister: where a peer keeps its Raft state and snapshot (6.824's persister.go).

The in-memory :class:`Persister` has the 6.824 semantics exactly: ``save``
replaces the (raft state, snapshot) pair atomically, readers get what the last
``save`` stored, and ``copy()`` makes an independent persister holding the same
bytes (the tester uses it to cut a crashed peer's old instance off from the
state its successor will read).  Bytes are immutable in Python, so sharing them
between copies is safe, as the Go version's cloning makes it there.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import zlib


class Persister:
    """In-memory stable storage for one peer."""

    __slots__ = ("_raft_state", "_snapshot")

    def __init__(self) -> None:
        self._raft_state = b""
        self._snapshot = b""

    def copy(self) -> Persister:
        other = Persister()
        other._raft_state = self._raft_state
        other._snapshot = self._snapshot
        return other

    def save(self, raftstate: bytes, snapshot: bytes | None) -> None:
        """Store both at once; ``None`` stores no snapshot (6.824's ``Save(state, nil)``)."""
        if not isinstance(raftstate, (bytes, bytearray, memoryview)):
            raise TypeError(f"raftstate must be bytes, not {type(raftstate).__name__}")
        if snapshot is not None and not isinstance(snapshot, (bytes, bytearray, memoryview)):
            raise TypeError(f"snapshot must be bytes or None, not {type(snapshot).__name__}")
        self._raft_state = bytes(raftstate)
        self._snapshot = b"" if snapshot is None else bytes(snapshot)

    def read_raft_state(self) -> bytes:
        return self._raft_state

    def read_snapshot(self) -> bytes:
        return self._snapshot

    def raft_state_size(self) -> int:
        return len(self._raft_state)

    def snapshot_size(self) -> int:
        return len(self._snapshot)


_MAGIC = b"TRFT"
_FORMAT_VERSION = 1
_HEADER = struct.Struct(">4sBQQ")  # magic, version, state length, snapshot length
_CRC = struct.Struct(">I")


class PersisterFileError(ValueError):
    """A persister file that cannot be trusted: names the file and what is wrong."""


class FilePersister(Persister):
    """Durable stable storage in one file: a :class:`Persister` that survives restarts.

    ``save`` writes the (raft state, snapshot) pair to a temporary file in the
    same directory, fsyncs it, renames it over the old file and fsyncs the
    directory, so after a crash the file holds either the old pair or the new
    one, never a mix.  A checksum guards against torn or damaged files; a bad
    file raises :class:`PersisterFileError` when opened, never silently reads
    as empty.

    ``save`` blocks the calling thread for the fsync (milliseconds on a disk).
    The in-memory copy answers every read; ``copy()`` gives an in-memory
    :class:`Persister` holding the same pair.
    """

    __slots__ = ("path",)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = os.fspath(path)
        try:
            with open(self.path, "rb") as file:
                data = file.read()
        except FileNotFoundError:
            return
        self._raft_state, self._snapshot = self._parse(data)

    def _parse(self, data: bytes) -> tuple[bytes, bytes]:
        if len(data) < _HEADER.size + _CRC.size:
            raise PersisterFileError(f"{self.path}: truncated ({len(data)} bytes)")
        magic, version, state_len, snap_len = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise PersisterFileError(f"{self.path}: not a trioraft persister file")
        if version != _FORMAT_VERSION:
            raise PersisterFileError(f"{self.path}: unsupported format version {version}")
        body_end = _HEADER.size + state_len + snap_len
        if len(data) != body_end + _CRC.size:
            raise PersisterFileError(
                f"{self.path}: length {len(data)} does not match its header ({body_end + 4})"
            )
        (crc,) = _CRC.unpack_from(data, body_end)
        if zlib.crc32(data[:body_end]) != crc:
            raise PersisterFileError(f"{self.path}: checksum mismatch (the file is damaged)")
        state = data[_HEADER.size : _HEADER.size + state_len]
        return state, data[_HEADER.size + state_len : body_end]

    def save(self, raftstate: bytes, snapshot: bytes | None) -> None:
        state = bytes(raftstate)
        snap = b"" if snapshot is None else bytes(snapshot)
        body = _HEADER.pack(_MAGIC, _FORMAT_VERSION, len(state), len(snap)) + state + snap
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, temp = tempfile.mkstemp(prefix=".persist-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(body + _CRC.pack(zlib.crc32(body)))
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._raft_state, self._snapshot = state, snap
