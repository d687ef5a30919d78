"""The log's offset arithmetic at its edges (a snapshot's last included entry, empty suffixes)."""

from __future__ import annotations

import msgspec
import pytest

from trioraft.core.log import LogCompactedError, RaftLog
from trioraft.core.messages import Entry


def e(term: int) -> Entry:
    return Entry(term, msgspec.Raw(msgspec.msgpack.encode(term)))


def log_of(terms: list[int], snapshot_index: int = 0, snapshot_term: int = 0) -> RaftLog:
    return RaftLog(snapshot_index, snapshot_term, [e(t) for t in terms])


def test_the_empty_log_has_the_index_0_sentinel() -> None:
    log = RaftLog()
    assert (log.first_index, log.last_index, log.last_term) == (1, 0, 0)
    assert log.term_at(0) == 0 and log.term_at(1) is None


def test_after_compaction_the_snapshot_stands_in_for_the_prefix() -> None:
    log = log_of([1, 1, 2, 3, 3])
    log.compact(3)
    assert (log.snapshot_index, log.snapshot_term) == (3, 2)
    assert (log.first_index, log.last_index, log.last_term) == (4, 5, 3)
    assert log.term_at(3) == 2, "the snapshot's last included entry keeps its term"
    assert log.term_at(2) is None, "entries inside the snapshot are gone"
    assert log.entry(4).term == 3
    with pytest.raises(LogCompactedError):
        log.entry(3)
    with pytest.raises(LogCompactedError):
        log.slice(3, 5)
    assert [x.term for x in log.slice(4, 99)] == [3, 3]


def test_compacting_everything_leaves_an_empty_suffix() -> None:
    log = log_of([1, 2])
    log.compact(2)
    assert len(log) == 0 and log.last_index == 2 and log.last_term == 2
    assert log.slice(3, 10) == []
    log.append(e(4))
    assert log.last_index == 3 and log.term_at(3) == 4


def test_compaction_below_the_snapshot_or_beyond_the_end_is_refused() -> None:
    log = log_of([1, 1, 1], snapshot_index=5, snapshot_term=1)
    with pytest.raises(LogCompactedError):
        log.compact(4)
    with pytest.raises(LogCompactedError):
        log.compact(9)
    log.compact(5)  # compacting exactly to the snapshot index is a no-op
    assert (log.snapshot_index, len(log)) == (5, 3)


def test_truncation_stops_at_the_snapshot() -> None:
    log = log_of([2, 2, 3], snapshot_index=4, snapshot_term=1)
    log.truncate_after(5)
    assert log.last_index == 5 and log.last_term == 2
    log.truncate_after(4)
    assert log.last_index == 4 and len(log) == 0 and log.last_term == 1
    with pytest.raises(LogCompactedError):
        log.truncate_after(3)


def test_reset_discards_the_whole_log_for_an_installed_snapshot() -> None:
    log = log_of([1, 2, 3])
    log.reset(10, 4)
    assert (log.first_index, log.last_index, log.last_term, len(log)) == (11, 10, 4, 0)


def test_term_boundaries_for_fast_backup() -> None:
    log = log_of([1, 1, 4, 4, 4, 6], snapshot_index=2, snapshot_term=1)
    # indexes 3..8 hold terms 1,1,4,4,4,6
    assert log.first_index_of_term(7) == 5
    assert log.first_index_of_term(4) == 3, "the search stops at the snapshot"
    assert log.last_index_of_term(4) == 7
    assert log.last_index_of_term(5) is None
    assert log.last_index_of_term(1) == 4
    log.compact(7)
    assert log.last_index_of_term(4) == 7, "the snapshot's own term counts"
