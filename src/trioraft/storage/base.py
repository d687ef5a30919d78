"""What a peer needs from its storage, and the checks every restored state passes.

A storage keeps what Figure 2 says must survive a crash (currentTerm,
votedFor, the log) plus the snapshot of Figure 13, and gives it back at
start-up.  The peer hands it each :class:`~trioraft.core.ready.Ready` with
:meth:`Storage.write`; when the Ready's ``must_sync`` is set it then calls
:meth:`Storage.sync` (in a worker thread when ``sync_in_thread`` is true and
the clock is real) before anything the Ready allows is sent or applied.

Two storages exist: :class:`~trioraft.storage.persister.PersisterStorage`, the
6.824 ``Persister`` with its whole-state semantics, and
:class:`~trioraft.storage.disk.DiskStorage`, a write-ahead log directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..core.messages import Entry
from ..core.ready import HardState, Ready


class StorageError(Exception):
    """Durable state that cannot be trusted or cannot be written.

    The message names the file (and the byte offset, for damaged data) and
    says what is wrong; a peer never starts empty over damaged data.
    """


class CorruptStateError(ValueError):
    """Persisted Raft state that does not make sense (it decodes, but breaks a rule).

    A peer never starts from an empty state over a damaged one: that could
    make it vote twice in a term or forget committed entries.
    """


@dataclass(slots=True)
class Restored:
    """A peer's durable state as read back at start-up."""

    hard_state: HardState = field(default_factory=lambda: HardState(0, None, 0))
    snapshot_index: int = 0
    snapshot_term: int = 0
    snapshot: bytes = b""
    entries: Sequence[Entry] = ()

    @property
    def fresh(self) -> bool:
        """Nothing was ever saved: the peer starts from the beginning."""
        return (
            self.hard_state.term == 0
            and self.hard_state.voted_for is None
            and self.snapshot_index == 0
            and not self.entries
        )


@runtime_checkable
class Storage(Protocol):
    """The durable home of one peer's Raft state."""

    sync_in_thread: bool
    """Whether :meth:`sync` blocks long enough to belong in a worker thread."""

    def restore(self) -> Restored:
        """The state saved so far (read once, when the peer starts)."""
        ...

    def write(self, ready: Ready) -> None:
        """Take the Ready's writes: entries, snapshot, hard state.

        Returns quickly (it may only stage them); they are durable once
        :meth:`sync` has returned, and :meth:`close` completes every write it
        was given, so a peer killed in-process loses none of them.
        """
        ...

    def sync(self) -> None:
        """Make everything written so far durable (one fsync covers it all)."""
        ...

    def read_snapshot(self) -> bytes:
        """The latest snapshot (``b""`` when there is none)."""
        ...

    def close(self) -> None:
        """Complete what was written, then stop: later writes are refused.  Idempotent."""
        ...


def check_restored(state: Restored, n: int, where: str) -> None:
    """Raise :class:`CorruptStateError` if a restored state breaks Raft's rules.

    ``where`` names the storage (a directory, "the persister") in the message.
    """
    problems = []
    hard = state.hard_state
    if hard.term < 0:
        problems.append(f"current_term {hard.term} is negative")
    if hard.voted_for is not None and not 0 <= hard.voted_for < n:
        problems.append(f"voted_for {hard.voted_for} is not one of the {n} peers")
    if state.snapshot_index < 0 or state.snapshot_term < 0:
        problems.append("the snapshot index or term is negative")
    if state.snapshot_term > hard.term:
        problems.append(f"the snapshot's term {state.snapshot_term} is after term {hard.term}")
    previous = state.snapshot_term
    for offset, entry in enumerate(state.entries):
        if entry.term < previous or entry.term > hard.term:
            index = state.snapshot_index + 1 + offset
            problems.append(f"log entry {index} has term {entry.term} out of order")
            break
        previous = entry.term
    if problems:
        raise CorruptStateError(f"{where}: persisted raft state is corrupt: " + "; ".join(problems))
