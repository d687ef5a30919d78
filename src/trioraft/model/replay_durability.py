"""What a replayed node saved, made durable and may read back (the trace validator's
persistence: Figure 2, "updated on stable storage before responding to RPCs").

Rules of operation
------------------
- A ``persist`` saves the node's term, vote, log and snapshot (:class:`Durable`);
  a crash keeps exactly that.  A persist of a storage that syncs in a worker
  thread ("staged") is durable only at the node's next ``synced``; any other
  persist at once.  What a node sends may depend only on what it made durable.
- After a kill without a ``crash`` event (``kill -9``) what the node reads back
  may be less than its last persist, never less than its last sync:
  :func:`check_kept` says whether a log read back is one it could have.
- :class:`Disk` is one node's record of this; the validator keeps one per node
  and raises the violations (this module only tells what is wrong).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from .incremental import common_prefix
from .replay_chunks import SnapshotId
from .state import NOBODY, Committed, Log, Server, snapshot_term
from .trace_values import show_entry


class Durable(NamedTuple):
    """What a node last saved (its ``persist``): Figure 2's persistent state and its
    snapshot's last included index and term."""

    term: int
    voted_for: int
    log: Log
    snapshot_index: int
    snapshot_term: int


FRESH = Durable(0, NOBODY, (), 0, 0)
"""What a node that never persisted reads back: nothing."""


def durable_of(s: Server) -> Durable:
    """Server ``s``'s persistent state, as a persist saves it."""
    return Durable(s.current_term, s.voted_for, s.log, s.snapshot_index, snapshot_term(s))


def durable_part(s: Server) -> tuple[Any, ...]:
    """What a persist saves of a server: Figure 2's persistent state and the snapshot."""
    return (s.current_term, s.voted_for, s.log, s.snapshot_index)


class Disk:
    """One node's storage as the trace tells it."""

    __slots__ = (
        "changed_at",
        "killed",
        "saved",
        "saved_snapshot",
        "synced",
        "synced_at",
        "unsynced",
    )

    def __init__(self) -> None:
        self.saved = FRESH  # its last persist: what a crash keeps
        self.saved_snapshot: SnapshotId | None = None  # the bytes of the snapshot it saved
        self.synced = FRESH  # what it made durable: what its messages may depend on
        self.synced_at = 0  # the step of its last sync
        self.changed_at = 0  # the last step that changed what it saves
        # What it persisted (staged) since its last sync, oldest first; and once
        # killed without a crash event (kill -9), what its disk may hold when it
        # restarts: its synced state, those persists, its state at the kill.
        self.unsynced: list[Durable] = []
        self.killed: list[Durable] | None = None

    def save(self, saved: Durable, snapshot: SnapshotId | None, *, staged: bool, step: int) -> None:
        """A persist: what a crash keeps (a killed peer completes a staged write);
        durable at once unless staged."""
        self.saved = saved
        self.saved_snapshot = snapshot
        if staged:
            self.unsynced.append(saved)
        else:
            self.sync(step)

    def sync(self, step: int) -> None:
        """What the node saved is durable: messages that depend on it may leave."""
        self.synced = self.saved
        self.synced_at = step
        if self.unsynced:
            self.unsynced.clear()

    def kill(self, last: Durable) -> None:
        """Killed without a crash event: its disk may hold anything from its synced
        state through its later persists to ``last`` (its state at the kill: a
        storage that saves before the persist event is recorded may have written it)."""
        self.killed = [self.synced, *self.unsynced, last]

    def restart_from(self, saved: Durable, snapshot: SnapshotId | None) -> None:
        """It restarts reading back ``saved`` (and the bytes of ``snapshot``)."""
        self.saved = self.synced = saved
        self.saved_snapshot = snapshot
        self.unsynced.clear()


def as_synced(synced: str, later: Iterable[str]) -> str:
    """``X as synced (or as persisted later: Y or Z)``, each option once."""
    others = [option for option in dict.fromkeys(later) if option != synced]
    if not others:
        return f"{synced} as synced"
    return f"{synced} as synced (or as persisted later: {' or '.join(others)})"


def check_kept(
    log: Log, candidates: list[Durable], committed: tuple[Committed, ...]
) -> tuple[str, str] | None:
    """A log read back after a kill -9 against what the node synced
    (``candidates[0]``) and persisted since: (what was expected, what it read) if it
    could not have read it, else None.  ``committed`` is the model's history of
    entries known committed.

    At each index the entry (or no entry) is the synced log's or a later
    persisted log's; a synced entry goes only if a later persist dropped it (a
    truncation), and every synced entry known committed is kept."""
    synced = candidates[0]
    later = candidates[1:]
    if any(log == c.log for c in candidates):
        return None
    known = {record[:3] for record in committed}
    for k, kept in enumerate(synced.log, 1):
        if (k, kept.term, kept.value) in known and (k > len(log) or log[k - 1] != kept):
            return (
                f"committed entry {k} t{kept.term}={kept.value!r} of its synced log kept",
                f"entry {k} {show_entry(log, k)}",
            )
    # Synced entries no later persist dropped are on its disk for good (storage
    # makes a truncation durable before it writes over it: a log may be cut
    # back as far as a later persist cut it, never further).
    floor = min(common_prefix(synced.log, c.log) for c in candidates)
    if len(log) < floor:
        k = len(log) + 1
        return (
            f"entry {k} {show_entry(synced.log, k)} as synced",
            f"entry {k} none (a log of {len(log)})",
        )
    for k in range(common_prefix(synced.log, log) + 1, len(log) + 1):
        mine = log[k - 1]
        if any(k <= len(c.log) and c.log[k - 1] == mine for c in candidates):
            continue
        return (
            f"entry {k} "
            + as_synced(show_entry(synced.log, k), (show_entry(c.log, k) for c in later)),
            f"entry {k} {show_entry(log, k)}",
        )
    return None
