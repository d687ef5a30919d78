"""Snapshots on the pure RaftNode: compaction, chunked InstallSnapshot (Figure 13), restart."""

from __future__ import annotations

import random

import msgspec

from trioraft.core.messages import (
    AppendEntriesArgs,
    Entry,
    InstallSnapshotArgs,
    InstallSnapshotReply,
    PersistentState,
    RequestVoteReply,
)
from trioraft.core.node import RaftNode


def raw(value: object) -> msgspec.Raw:
    return msgspec.Raw(msgspec.msgpack.encode(value))


def node(
    me: int,
    n: int = 3,
    *,
    term: int = 0,
    terms: tuple[int, ...] = (),
    snapshot: tuple[int, int, bytes] = (0, 0, b""),
    chunk: int = 1 << 16,
) -> RaftNode:
    index, snap_term, data = snapshot
    entries = tuple(Entry(t, raw(i)) for i, t in enumerate(terms))
    return RaftNode(
        me,
        n,
        rng=random.Random(me),
        election_timeout_min=0.3,
        election_timeout_max=0.6,
        max_append_bytes=1 << 16,
        snapshot_chunk_bytes=chunk,
        restored=PersistentState(term, None, index, snap_term, entries),
        snapshot_data=data,
    )


def lone_leader_with(entries: int) -> RaftNode:
    a = node(0, 1)
    a.election_timeout()
    for k in range(entries):
        a.propose(raw(k))
    while a.next_apply() is not None:
        pass
    return a


def test_the_service_snapshot_compacts_the_log() -> None:
    a = lone_leader_with(10)
    a.dirty = False
    assert a.snapshot(6, b"state-up-to-6") is None
    assert (a.log.snapshot_index, a.log.snapshot_term, a.log.last_index) == (6, 1, 10)
    assert a.snapshot_data == b"state-up-to-6" and a.dirty
    assert a.persistent_state().snapshot_index == 6
    assert len(a.persistent_state().entries) == 4


def test_bad_snapshot_indexes_are_ignored_with_a_reason() -> None:
    a = lone_leader_with(5)
    assert a.snapshot(4, b"s") is None
    before = (a.log.snapshot_index, list(a.log.entries), a.snapshot_data)
    problem = a.snapshot(9, b"x")
    assert problem is not None and "beyond last_applied" in problem
    problem = a.snapshot(3, b"x")
    assert problem is not None and "not past the current snapshot" in problem
    assert (a.log.snapshot_index, list(a.log.entries), a.snapshot_data) == before


def test_a_follower_behind_the_snapshot_gets_it_in_chunks_and_resumes_after_a_loss() -> None:
    data = bytes(range(256)) * 4  # 1024 bytes, 4 chunks of 300 (the last one short)
    a = node(0, 3, term=1, terms=(1,) * 12, chunk=300)
    a.commit_index = a.last_applied = 12
    a.election_timeout()
    args = a.take_ready().votes_to_request[0][1]
    a.handle_request_vote_reply(1, args, RequestVoteReply(2, True))
    assert a.is_leader
    assert a.snapshot(10, data) is None
    b = node(1, 3, term=1)
    a.next_index[1] = 1  # b has nothing: its next entry is inside the snapshot
    chunks = []
    lost_once = False
    for _ in range(10):
        message = a.message_for(1)
        if not isinstance(message, InstallSnapshotArgs):
            break
        chunks.append((message.offset, len(message.data), message.done))
        if message.offset == 300 and not lost_once:
            lost_once = True  # this chunk is lost: the leader will send it again
            continue
        reply = b.handle_install_snapshot(message)
        a.handle_install_snapshot_reply(1, message, reply)
    assert chunks == [(0, 300, False), (300, 300, False), (300, 300, False), (600, 300, False),
                      (900, 124, True)]  # fmt: skip
    assert (b.log.snapshot_index, b.log.snapshot_term, b.snapshot_data) == (10, 1, data)
    assert b.commit_index == 10 and a.match_index[1] == 10 and a.next_index[1] == 11
    applied = b.next_apply()
    assert applied is not None and applied.snapshot_valid
    assert (applied.snapshot_index, applied.snapshot_term, applied.snapshot) == (10, 1, data)
    # afterwards the leader goes back to AppendEntries from index 11
    follow_up = a.message_for(1)
    assert isinstance(follow_up, AppendEntriesArgs) and follow_up.prev_log_index == 10


def test_a_snapshot_past_what_the_service_was_given_is_refused() -> None:
    """§7: the service snapshots what it applied.  A follower holds an installed
    snapshot (5) not yet delivered and a committed entry 6: a service snapshot at 6
    would swallow both, so it is refused and both are still delivered."""
    b = node(1, 3, term=1)
    b.handle_install_snapshot(InstallSnapshotArgs(1, 0, 5, 1, 0, b"leader-state", True))
    b.handle_append_entries(AppendEntriesArgs(1, 0, 5, 1, (Entry(1, raw(6)),), 6))
    assert (b.commit_index, b.last_applied) == (6, 0)
    problem = b.snapshot(6, b"service-state")
    assert problem is not None and "beyond last_applied 0" in problem
    snap = b.next_apply()
    assert snap is not None and snap.snapshot_valid and snap.snapshot == b"leader-state"
    entry = b.next_apply()
    assert entry is not None and entry.command_index == 6


def test_chunks_of_different_leaders_are_never_spliced() -> None:
    """Two leaders' snapshots at the same index and term may differ in their bytes:
    a chunk of the term-2 leader does not continue what the term-1 leader sent."""
    b = node(1, 3, term=1)
    assert b.handle_install_snapshot(InstallSnapshotArgs(1, 0, 5, 1, 0, b"abc", False)) == (
        InstallSnapshotReply(1, 3)
    )
    later = InstallSnapshotArgs(2, 2, 5, 1, 3, b"XYZ", True)
    assert b.handle_install_snapshot(later) == InstallSnapshotReply(2, 0)
    assert b.log.snapshot_index == 0
    whole = InstallSnapshotArgs(2, 2, 5, 1, 0, b"abcXYZ", True)
    assert b.handle_install_snapshot(whole) == InstallSnapshotReply(2, 6)
    assert b.log.snapshot_index == 5 and b.snapshot_data == b"abcXYZ"


def test_an_empty_snapshot_survives_a_restart() -> None:
    """A service whose state is empty bytes: the durable state records the
    snapshot's size, so a restart can tell it from a lost one."""
    a = lone_leader_with(3)
    assert a.snapshot(2, b"") is None
    saved = a.persistent_state()
    assert saved.snapshot_size == 0
    again = RaftNode(
        0,
        1,
        rng=random.Random(0),
        election_timeout_min=0.3,
        election_timeout_max=0.6,
        max_append_bytes=1 << 16,
        snapshot_chunk_bytes=1 << 16,
        restored=saved,
        snapshot_data=b"",
    )
    assert (again.log.snapshot_index, again.commit_index) == (2, 2)


def test_an_out_of_order_chunk_is_answered_with_what_the_follower_holds() -> None:
    b = node(1, 3, term=1)
    first = InstallSnapshotArgs(1, 0, 5, 1, 0, b"abc", False)
    assert b.handle_install_snapshot(first) == InstallSnapshotReply(1, 3)
    skipped = InstallSnapshotArgs(1, 0, 5, 1, 6, b"ghi", True)
    assert b.handle_install_snapshot(skipped) == InstallSnapshotReply(1, 3)
    assert b.log.snapshot_index == 0, "nothing is installed from an incomplete snapshot"


def test_install_keeps_the_log_suffix_that_follows_a_matching_entry() -> None:
    b = node(1, 3, term=2, terms=(1, 1, 2, 2, 2))
    b.handle_install_snapshot(InstallSnapshotArgs(2, 0, 3, 2, 0, b"snap", True))
    assert (b.log.snapshot_index, b.log.last_index) == (3, 5), "entries 4-5 are kept"
    c = node(2, 3, term=2, terms=(1, 1, 1, 1))
    c.handle_install_snapshot(InstallSnapshotArgs(2, 0, 3, 2, 0, b"snap", True))
    assert (c.log.snapshot_index, c.log.last_index) == (3, 3), "a conflicting log is discarded"


def test_a_snapshot_older_than_the_commit_index_changes_nothing() -> None:
    b = node(1, 3, term=1, terms=(1,) * 8)
    b.handle_append_entries(AppendEntriesArgs(1, 0, 8, 1, (), 8))
    assert b.commit_index == 8
    b.handle_install_snapshot(InstallSnapshotArgs(1, 0, 5, 1, 0, b"old", True))
    assert b.log.snapshot_index == 0 and b.log.last_index == 8 and b.snapshot_data == b""


def test_applying_never_goes_backwards_across_a_snapshot() -> None:
    b = node(1, 3, term=1, terms=(1,) * 3)
    b.handle_append_entries(AppendEntriesArgs(1, 0, 3, 1, (), 3))
    first = b.next_apply()
    assert first is not None and first.command_index == 1
    b.handle_install_snapshot(InstallSnapshotArgs(1, 0, 7, 1, 0, b"s7", True))
    snap = b.next_apply()
    assert snap is not None and snap.snapshot_valid and snap.snapshot_index == 7
    assert b.next_apply() is None, "entries 2-3 are inside the snapshot: never applied"
    b.handle_append_entries(AppendEntriesArgs(1, 0, 7, 1, (Entry(1, raw("eight")),), 8))
    nxt = b.next_apply()
    assert nxt is not None and (nxt.command_index, nxt.command) == (8, "eight")


def test_restart_starts_from_the_snapshot() -> None:
    b = node(1, 3, term=3, terms=(3, 3), snapshot=(20, 2, b"snap"))
    assert (b.commit_index, b.last_applied, b.log.last_index) == (20, 20, 22)
    assert b.next_apply() is None, "the service restores the snapshot itself"
