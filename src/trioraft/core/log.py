"""The Raft log with an offset, so a prefix can be folded into a snapshot.

Indexes are the paper's: the first entry is index 1, and index 0 (term 0) is
the empty log's sentinel.  After compaction, ``snapshot_index`` and
``snapshot_term`` stand in for the discarded prefix: they are the last entry
the snapshot covers, and ``entries[0]`` is index ``snapshot_index + 1``.

Rules of operation:

- ``term_at(i)`` is defined for ``snapshot_index <= i <= last_index``; below
  that the entry is gone (the snapshot holds it) and ``None`` is returned.
- ``truncate_after(i)`` removes conflicting suffixes only (Figure 2,
  AppendEntries receiver rule 3); it never reaches into the snapshot.
- ``compact(i)`` drops everything up to and including ``i`` and remembers its
  term; ``reset(i, t)`` discards the whole log for an installed snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .messages import Entry


class LogCompactedError(LookupError):
    """An entry below the snapshot was asked for; it only exists in the snapshot."""


class RaftLog:
    __slots__ = ("entries", "snapshot_index", "snapshot_term")

    def __init__(
        self, snapshot_index: int = 0, snapshot_term: int = 0, entries: Iterable[Entry] = ()
    ) -> None:
        if snapshot_index < 0 or snapshot_term < 0:
            raise ValueError("snapshot index and term must be >= 0")
        self.snapshot_index = snapshot_index
        self.snapshot_term = snapshot_term
        self.entries: list[Entry] = list(entries)

    def __len__(self) -> int:
        """The number of entries still held (not folded into the snapshot)."""
        return len(self.entries)

    @property
    def first_index(self) -> int:
        """Index of the first entry held (``last_index + 1`` when none is)."""
        return self.snapshot_index + 1

    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snapshot_term

    def term_at(self, index: int) -> int | None:
        """Term of the entry at ``index``; None when compacted away or beyond the end."""
        if index == self.snapshot_index:
            return self.snapshot_term
        offset = index - self.snapshot_index - 1
        if offset < 0 or offset >= len(self.entries):
            return None
        return self.entries[offset].term

    def entry(self, index: int) -> Entry:
        offset = index - self.snapshot_index - 1
        if offset < 0:
            raise LogCompactedError(
                f"entry {index} is in the snapshot (up to {self.snapshot_index})"
            )
        if offset >= len(self.entries):
            raise IndexError(f"entry {index} is beyond the last index {self.last_index}")
        return self.entries[offset]

    def slice(self, start: int, stop: int) -> list[Entry]:
        """Entries with ``start <= index < stop`` (clipped at the end)."""
        if start <= self.snapshot_index:
            raise LogCompactedError(
                f"entry {start} is in the snapshot (up to {self.snapshot_index})"
            )
        base = self.snapshot_index + 1
        return self.entries[start - base : stop - base]

    def append(self, entry: Entry) -> int:
        self.entries.append(entry)
        return self.last_index

    def extend(self, entries: Sequence[Entry]) -> None:
        self.entries.extend(entries)

    def truncate_after(self, index: int) -> None:
        """Keep entries up to ``index``; drop the rest (a conflicting suffix)."""
        if index < self.snapshot_index:
            raise LogCompactedError(
                f"cannot truncate to {index}: entries up to {self.snapshot_index} are committed "
                "and in the snapshot"
            )
        del self.entries[index - self.snapshot_index :]

    def first_index_of_term(self, index: int) -> int:
        """The first index held whose term equals the term at ``index`` (fast backup)."""
        term = self.term_at(index)
        if term is None:
            raise LookupError(f"no entry at {index}")
        first = index
        while first - 1 > self.snapshot_index and self.term_at(first - 1) == term:
            first -= 1
        return first

    def last_index_of_term(self, term: int) -> int | None:
        """The last index held with this term, searching back from the end (fast backup)."""
        for offset in range(len(self.entries) - 1, -1, -1):
            t = self.entries[offset].term
            if t == term:
                return self.snapshot_index + 1 + offset
            if t < term:
                break
        if self.snapshot_term == term:
            return self.snapshot_index
        return None

    def compact(self, index: int) -> None:
        """Fold entries up to ``index`` into the snapshot (the service took one)."""
        term = self.term_at(index)
        if term is None:
            raise LogCompactedError(f"cannot compact to {index}: not in the log")
        del self.entries[: index - self.snapshot_index]
        self.snapshot_index = index
        self.snapshot_term = term

    def reset(self, snapshot_index: int, snapshot_term: int) -> None:
        """Discard the whole log in favour of an installed snapshot."""
        self.entries.clear()
        self.snapshot_index = snapshot_index
        self.snapshot_term = snapshot_term
