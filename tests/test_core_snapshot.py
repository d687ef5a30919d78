"""Snapshots on the pure RaftNode: compaction, chunked InstallSnapshot (Figure 13), restart.

Every node runs under :class:`corekit.Driven`, which checks each Ready's
durability order (a snapshot is acknowledged and applied only once durable).
"""

from __future__ import annotations

import random

from corekit import Driven, deliver, elect, make_node, raw
from trioraft.core.messages import (
    AppendEntriesArgs,
    Entry,
    InstallSnapshotArgs,
    InstallSnapshotReply,
)
from trioraft.core.node import RaftNode


def node(
    me: int,
    n: int = 3,
    *,
    term: int = 0,
    terms: tuple[int, ...] = (),
    snapshot: tuple[int, int, bytes] = (0, 0, b""),
    chunk: int = 1 << 16,
) -> Driven:
    entries = tuple(Entry(t, raw(i)) for i, t in enumerate(terms))
    return make_node(me, n, term=term, entries=entries, snapshot=snapshot, chunk=chunk)


def lone_leader_with(entries: int) -> Driven:
    a = node(0, 1)
    elect(a)
    for k in range(entries):
        a.propose(raw(k))
    a.settle()
    return a


def test_the_service_snapshot_compacts_the_log() -> None:
    a = lone_leader_with(10)
    assert a.snapshot(6, b"state-up-to-6") is None
    assert (a.log.snapshot_index, a.log.snapshot_term, a.log.last_index) == (6, 1, 10)
    assert a.snapshot_data == b"state-up-to-6"
    ready = a.node.ready()
    assert ready.snapshot is not None and ready.must_sync
    assert (ready.snapshot.index, ready.snapshot.term, ready.snapshot.data) == (
        6,
        1,
        b"state-up-to-6",
    )
    assert ready.entries_from is None, "entries 7-10 stay where storage has them"
    a.disk.write(ready)
    a.node.advance(ready)
    assert (a.disk.snapshot_index, len(a.disk.log)) == (6, 4)


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
    a.node.commit_index = a.node.last_applied = 12
    elect(a)
    assert a.is_leader
    assert a.snapshot(10, data) is None
    a.settle()
    b = node(1, 3, term=1)
    a.next_index[1] = 1  # b has nothing: its next entry is inside the snapshot
    chunks = []
    lost_once = False
    for _ in range(10):
        message = a.send(1)
        if not isinstance(message, InstallSnapshotArgs):
            break
        chunks.append((message.offset, len(message.data), message.done))
        if message.offset == 300 and not lost_once:
            lost_once = True  # this chunk is lost: the leader will send it again
            continue
        reply = b.answer(message)
        a.handle_install_snapshot_reply(1, message, reply)
    assert chunks == [(0, 300, False), (300, 300, False), (300, 300, False), (600, 300, False),
                      (900, 124, True)]  # fmt: skip
    assert (b.log.snapshot_index, b.log.snapshot_term, b.snapshot_data) == (10, 1, data)
    assert b.commit_index == 10 and a.match_index[1] == 10 and a.next_index[1] == 11
    assert b.disk.snapshot_index == 10
    # the snapshot went to the service with the Ready that saved it
    assert b.last_applied == 10
    # afterwards the leader goes back to AppendEntries from index 11
    follow_up = a.send(1)
    assert isinstance(follow_up, AppendEntriesArgs) and follow_up.prev_log_index == 10


def test_the_installed_snapshot_is_applied_once_durable() -> None:
    b = node(1, 3, term=1)
    install = InstallSnapshotArgs(1, 0, 5, 1, 0, b"five", True)
    b.node.handle_install_snapshot(install, install)
    ready = b.node.ready()
    assert ready.snapshot is not None and ready.apply_snapshot == ready.snapshot
    assert ready.must_sync
    assert [m.message for m in ready.messages] == [InstallSnapshotReply(1, 4)]


def test_a_leader_sends_only_a_durable_snapshot() -> None:
    a = node(0, 3, term=1, terms=(1,) * 6)
    a.node.commit_index = a.node.last_applied = 6
    elect(a)
    a.snapshot(4, b"four")  # not yet durable
    a.next_index[1] = 2
    assert a.send(1) is None, "entries 2-4 are gone from memory and the snapshot is not durable"
    a.settle()
    chunk = a.send(1)
    assert isinstance(chunk, InstallSnapshotArgs) and chunk.last_included_index == 4


def test_a_snapshot_becoming_durable_wakes_replication() -> None:
    a = node(0, 3, term=1, terms=(1,) * 6)
    a.node.commit_index = a.node.last_applied = 6
    elect(a)
    a.take_signals()
    a.snapshot(4, b"four")
    a.next_index[1] = 2
    assert a.send(1) is None
    a.settle()
    assert a.take_signals()[1], "the follower waiting for this snapshot is woken"


def test_a_snapshot_past_what_the_service_was_given_is_refused() -> None:
    """§7: the service snapshots what it applied.  A follower holds an installed
    snapshot (5) not yet handed to the service and a committed entry 6: a service
    snapshot at 6 would swallow both, so it is refused and both are still delivered."""
    b = node(1, 3, term=1)
    install = InstallSnapshotArgs(1, 0, 5, 1, 0, b"leader-state", True)
    b.node.handle_install_snapshot(install, install)
    append = AppendEntriesArgs(1, 0, 5, 1, (Entry(1, raw(6)),), 6)
    b.node.handle_append_entries(append, append)
    assert (b.commit_index, b.last_applied) == (6, 0)
    problem = b.snapshot(6, b"service-state")
    assert problem is not None and "beyond last_applied 0" in problem
    applied = b.settle().applied
    assert [x[0] for x in applied] == ["snapshot", 6]
    assert applied[0][1].data == b"leader-state"


def test_chunks_of_different_leaders_are_never_spliced() -> None:
    """Two leaders' snapshots at the same index and term may differ in their bytes:
    a chunk of the term-2 leader does not continue what the term-1 leader sent."""
    b = node(1, 3, term=1)
    assert b.answer(InstallSnapshotArgs(1, 0, 5, 1, 0, b"abc", False)) == InstallSnapshotReply(1, 3)
    later = InstallSnapshotArgs(2, 2, 5, 1, 3, b"XYZ", True)
    assert b.answer(later) == InstallSnapshotReply(2, 0)
    assert b.log.snapshot_index == 0
    whole = InstallSnapshotArgs(2, 2, 5, 1, 0, b"abcXYZ", True)
    assert b.answer(whole) == InstallSnapshotReply(2, 6)
    assert b.log.snapshot_index == 5 and b.snapshot_data == b"abcXYZ"


def test_an_empty_snapshot_survives_a_restart() -> None:
    """A service whose state is empty bytes: the durable state records the
    snapshot's size, so a restart can tell it from a lost one."""
    a = lone_leader_with(3)
    assert a.snapshot(2, b"") is None
    a.settle()
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
    assert b.answer(first) == InstallSnapshotReply(1, 3)
    skipped = InstallSnapshotArgs(1, 0, 5, 1, 6, b"ghi", True)
    assert b.answer(skipped) == InstallSnapshotReply(1, 3)
    assert b.log.snapshot_index == 0, "nothing is installed from an incomplete snapshot"


def test_install_keeps_the_log_suffix_that_follows_a_matching_entry() -> None:
    b = node(1, 3, term=2, terms=(1, 1, 2, 2, 2))
    b.answer(InstallSnapshotArgs(2, 0, 3, 2, 0, b"snap", True))
    assert (b.log.snapshot_index, b.log.last_index) == (3, 5), "entries 4-5 are kept"
    assert [e.term for e in b.disk.log] == [2, 2], "and storage keeps them too"
    c = node(2, 3, term=2, terms=(1, 1, 1, 1))
    install = InstallSnapshotArgs(2, 0, 3, 2, 0, b"snap", True)
    c.node.handle_install_snapshot(install, install)
    ready = c.node.ready()
    assert ready.entries_from == 4 and not ready.entries, (
        "a conflicting log is discarded: storage drops what follows the snapshot"
    )
    c.disk.write(ready)
    c.node.advance(ready)
    assert (c.log.snapshot_index, c.log.last_index) == (3, 3)
    assert (c.disk.snapshot_index, c.disk.log) == (3, [])


def test_a_snapshot_older_than_the_commit_index_changes_nothing() -> None:
    b = node(1, 3, term=1, terms=(1,) * 8)
    b.answer(AppendEntriesArgs(1, 0, 8, 1, (), 8))
    assert b.commit_index == 8
    b.answer(InstallSnapshotArgs(1, 0, 5, 1, 0, b"old", True))
    assert b.log.snapshot_index == 0 and b.log.last_index == 8 and b.snapshot_data == b""


def test_applying_never_goes_backwards_across_a_snapshot() -> None:
    b = node(1, 3, term=1, terms=(1,) * 3)
    heartbeat = AppendEntriesArgs(1, 0, 3, 1, (), 1)
    b.node.handle_append_entries(heartbeat, heartbeat)
    first = b.settle().applied
    assert first == [(1, 0)]
    b.answer(InstallSnapshotArgs(1, 0, 7, 1, 0, b"s7", True))
    assert b.last_applied == 7, "the snapshot replaced entries 2-3: they are never applied"
    append = AppendEntriesArgs(1, 0, 7, 1, (Entry(1, raw("eight")),), 8)
    b.node.handle_append_entries(append, append)
    assert b.settle().applied == [(8, "eight")]


def test_a_leader_replicates_across_its_own_compaction() -> None:
    a = node(0, 3, term=1, terms=(1,) * 4)
    a.node.commit_index = a.node.last_applied = 4
    elect(a)
    b = node(1, 3, term=1)
    a.snapshot(3, b"three")
    a.settle()
    kinds = []
    for _ in range(5):
        kinds.append(type(a.send(1)).__name__)
        deliver(a, b)
        if b.log.last_index == 4:
            break
    assert kinds == ["AppendEntriesArgs", "InstallSnapshotArgs", "AppendEntriesArgs"]
    assert (b.log.snapshot_index, b.log.last_index, b.snapshot_data) == (3, 4, b"three")


def test_restart_starts_from_the_snapshot() -> None:
    b = node(1, 3, term=3, terms=(3, 3), snapshot=(20, 2, b"snap"))
    assert (b.commit_index, b.last_applied, b.log.last_index) == (20, 20, 22)
    assert b.settle().applied == [], "the service restores the snapshot itself"
