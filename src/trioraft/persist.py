"""Persister: where a peer keeps its Raft state and snapshot (6.824's persister.go).

The in-memory :class:`Persister` has the 6.824 semantics exactly: ``save``
replaces the (raft state, snapshot) pair atomically, readers get what the last
``save`` stored, and ``copy()`` makes an independent persister holding the same
bytes (the tester uses it to cut a crashed peer's old instance off from the
state its successor will read).  Bytes are immutable in Python, so sharing them
between copies is safe, as the Go version's cloning makes it there.
"""

from __future__ import annotations


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
