"""The 6.824 ``Persister`` behind the storage boundary: whole-state semantics kept.

6.824's persister stores two blobs, the Raft state and the snapshot, and every
save replaces both.  :class:`PersisterStorage` keeps a mirror of the durable
state (the log as a list of the very ``Entry`` objects the node holds, so the
mirror costs a pointer per entry), applies each Ready's changes to it, and
saves the whole state again whenever Figure 2's persistent state (term, vote,
log) or the snapshot changed.  A commit-only change saves nothing: the commit
index is not part of 6.824's state.  Saving re-encodes the whole log, as the
lab's ``persist()`` does; :class:`~trioraft.storage.disk.DiskStorage` is the
storage whose appends cost what they add.
"""

from __future__ import annotations

from .. import codec
from ..core.messages import Entry, PersistentState
from ..core.ready import HardState, Ready
from ..persist import Persister
from .base import CorruptStateError, Restored, StorageError


class PersisterStorage:
    """A :class:`~trioraft.storage.base.Storage` over a 6.824 :class:`Persister`."""

    sync_in_thread = False  # a Persister's save is complete when it returns

    def __init__(self, persister: Persister) -> None:
        self.persister = persister
        self._closed = False
        self._hard = HardState(0, None, 0)
        self._snapshot_index = 0
        self._snapshot_term = 0
        self._snapshot = b""
        self._entries: list[Entry] = []

    def restore(self) -> Restored:
        """Decode and check the persister's state; raise :class:`CorruptStateError`."""
        raw = self.persister.read_raft_state()
        snapshot = self.persister.read_snapshot()
        if not raw:
            if snapshot:
                raise CorruptStateError("the persister holds a snapshot but no raft state")
            return Restored()
        try:
            state = codec.decode(raw, PersistentState, what="persisted raft state")
        except codec.CodecError as exc:
            raise CorruptStateError(str(exc)) from None
        if state.snapshot_size < -1:
            raise CorruptStateError(
                f"persisted raft state is corrupt: the snapshot size {state.snapshot_size} "
                "is negative"
            )
        if state.snapshot_size >= 0 and len(snapshot) != state.snapshot_size:
            raise CorruptStateError(
                f"persisted raft state is corrupt: the snapshot stored is {len(snapshot)} bytes "
                f"but the raft state says {state.snapshot_size}"
            )
        if state.snapshot_size < 0 and state.snapshot_index > 0 and not snapshot:
            raise CorruptStateError(
                f"persisted raft state is corrupt: the log starts after index "
                f"{state.snapshot_index} but no snapshot is stored"
            )
        self._hard = HardState(state.current_term, state.voted_for, state.snapshot_index)
        self._snapshot_index = state.snapshot_index
        self._snapshot_term = state.snapshot_term
        self._snapshot = snapshot
        self._entries = list(state.entries)
        return Restored(
            self._hard, state.snapshot_index, state.snapshot_term, snapshot, state.entries
        )

    def write(self, ready: Ready) -> None:
        if self._closed:
            raise StorageError("the persister's storage is closed (the peer was killed)")
        changed = False
        if ready.hard_state is not None:
            old, self._hard = self._hard, ready.hard_state
            changed = (old.term, old.voted_for) != (self._hard.term, self._hard.voted_for)
        if ready.entries_from is not None:
            keep = ready.entries_from - self._snapshot_index - 1
            del self._entries[max(keep, 0) :]
            changed = True
        if ready.snapshot is not None:
            snap = ready.snapshot
            del self._entries[: max(snap.index - self._snapshot_index, 0)]
            self._snapshot_index, self._snapshot_term = snap.index, snap.term
            self._snapshot = snap.data
            changed = True
        if ready.entries:
            first = (ready.entries_from or 0) - self._snapshot_index - 1
            skip = max(-first, 0)  # entries the snapshot already covers
            self._entries.extend(ready.entries[skip:])
        if changed:
            self.persister.save(codec.encode(self._state()), self._snapshot)

    def _state(self) -> PersistentState:
        return PersistentState(
            self._hard.term,
            self._hard.voted_for,
            self._snapshot_index,
            self._snapshot_term,
            tuple(self._entries),
            len(self._snapshot),
        )

    def sync(self) -> None:
        """Nothing to do: ``write`` saved already (a FilePersister fsyncs in its save)."""

    def read_snapshot(self) -> bytes:
        return self.persister.read_snapshot()

    def close(self) -> None:
        self._closed = True
