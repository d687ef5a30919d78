"""Figure 2's replication rules on the pure RaftNode, message by message (§5.3, §5.4).

Every node runs under :class:`corekit.Driven`, which checks each Ready's
durability order and that a leader sends only durable entries.
"""

from __future__ import annotations

from corekit import Driven, deliver, elect, make_node, raw
from trioraft.core.messages import AppendEntriesArgs, AppendEntriesReply, Entry
from trioraft.core.node import Role


def entry(term: int, value: object = None) -> Entry:
    return Entry(term, raw(value if value is not None else f"t{term}"))


def node(
    me: int, n: int, term: int = 0, terms: list[int] | None = None, max_bytes: int = 1 << 16
) -> Driven:
    entries = tuple(entry(t) for t in (terms or []))
    return make_node(me, n, term=term, entries=entries, max_bytes=max_bytes)


def replicate(leader: Driven, follower: Driven) -> None:
    """Deliver AppendEntries until the follower's log matches the leader's."""
    for _ in range(5):
        if deliver(leader, follower).success and not leader.has_news_for(follower.me):
            return
    raise AssertionError("replication did not converge")


def test_start_appends_and_a_majority_commits() -> None:
    a, b, c = node(0, 3), node(1, 3), node(2, 3)
    elect(a)
    a.take_signals()
    assert a.propose(raw("x")) == (1, 1, True)
    assert a.has_news_for(1) and a.take_signals()[1], "replicated while the leader writes it"
    a.settle()
    assert a.commit_index == 0
    deliver(a, b)
    assert a.commit_index == 1, "leader + one follower is a majority of 3"
    assert b.commit_index == 0, "the follower learns of the commit from the next message"
    deliver(a, b)
    assert b.commit_index == 1
    assert c.log.last_index == 0


def test_a_leader_counts_itself_only_for_durable_entries() -> None:
    a = node(0, 1)
    elect(a)
    a.propose(raw("x"))
    assert a.commit_index == 0, "a lone leader's entry is not committed before it is durable"
    applied = a.settle().applied
    assert a.commit_index == 1 and applied == [(1, "x")]


def test_a_lone_leaders_noop_commits_only_once_durable() -> None:
    a = make_node(0, 1, noop=True)
    a.node.election_timeout()  # a lone candidate leads at once and appends its no-op
    assert a.is_leader and a.log.last_index == 1
    assert a.commit_index == 0, "the no-op is not durable yet"
    a.settle()
    assert a.commit_index == 1


def test_a_cut_while_a_ready_is_outstanding_is_not_counted_durable() -> None:
    b = node(1, 3, term=1, terms=[1] * 5)
    heartbeat = AppendEntriesArgs(2, 0, 5, 1, (), 0)
    b.node.handle_append_entries(heartbeat, heartbeat)
    ready = b.node.ready()  # being synced
    b.disk.write(ready)
    conflict = AppendEntriesArgs(2, 0, 2, 1, (entry(2, "new"),), 0)
    b.node.handle_append_entries(conflict, conflict)
    assert b.node.stable_last_index == 2, "entries 3-5 left the log; the new 3 is not durable"
    b.node.advance(ready)
    assert b.node.stable_last_index == 2, "the Ready wrote up to 5, but 3-5 were cut since"
    b.settle()
    assert b.node.stable_last_index == 3


def test_a_followers_commit_reaches_storage() -> None:
    b = node(1, 3, term=1, terms=[1] * 3)
    b.answer(AppendEntriesArgs(1, 0, 3, 1, (), 2))
    assert b.commit_index == 2 and b.disk.commit == 2


def test_consistency_check_refuses_a_gap_and_hints_the_log_length() -> None:
    b = node(1, 3, term=2, terms=[1])
    reply = b.answer(AppendEntriesArgs(2, 0, 5, 2, (entry(2),), 0))
    assert reply == AppendEntriesReply(2, False, 2, 0)
    assert b.log.last_index == 1


def test_consistency_check_refuses_a_term_mismatch_and_hints_the_term_start() -> None:
    b = node(1, 3, term=3, terms=[1, 2, 2, 2])
    reply = b.answer(AppendEntriesArgs(3, 0, 4, 3, (), 0))
    assert reply == AppendEntriesReply(3, False, 2, 2), "conflict term 2 starts at index 2"


def test_only_a_conflicting_suffix_is_truncated() -> None:
    b = node(1, 3, term=3, terms=[1, 1, 2, 2])
    # a stale, shorter AppendEntries that matches must not cut entries 3-4 off
    assert b.answer(AppendEntriesArgs(3, 0, 1, 1, (entry(1),), 0)).success
    assert [x.term for x in b.log.entries] == [1, 1, 2, 2]
    # a conflicting entry at 3 removes 3 and everything after it, in storage too
    conflicting = AppendEntriesArgs(3, 0, 2, 1, (entry(3),), 0)
    b.node.handle_append_entries(conflicting, conflicting)
    ready = b.node.ready()
    assert (ready.entries_from, [x.term for x in ready.entries]) == (3, [3])
    b.disk.write(ready)
    b.node.advance(ready)
    assert [x.term for x in b.log.entries] == [1, 1, 3]
    assert [x.term for x in b.disk.log] == [1, 1, 3]


def test_follower_commit_is_capped_at_the_last_new_entry() -> None:
    b = node(1, 3, term=1, terms=[1, 1, 1, 1])
    b.answer(AppendEntriesArgs(1, 0, 1, 1, (entry(1),), 10))
    assert b.commit_index == 2, "min(leaderCommit, index of last new entry)"


def test_fast_backup_skips_a_whole_term_per_round_trip() -> None:
    # the follower holds 50 entries of term 2 the leader never had
    a = node(0, 3, term=3, terms=[1] + [3] * 3)
    b = node(1, 3, term=3, terms=[1] + [2] * 50)
    elect(a)  # term 4
    rounds = 0
    while not deliver(a, b).success:
        rounds += 1
        assert rounds < 5
    assert rounds <= 2
    assert [x.term for x in b.log.entries] == [1, 3, 3, 3]
    assert a.match_index[1] == 4


def test_a_stale_rejection_does_not_move_next_index() -> None:
    a = node(0, 3, term=1, terms=[1, 1, 1])
    elect(a)
    old = a.send(1)
    assert isinstance(old, AppendEntriesArgs)
    a.next_index[1] = 2  # since moved on by a newer reply
    a.handle_append_entries_reply(1, old, AppendEntriesReply(2, False, 1, 0))
    assert a.next_index[1] == 2


def test_figure_8_an_old_terms_entry_is_not_committed_by_counting_replicas() -> None:
    # Figure 8 (c): S1 leads term 4 holding entry 2 from term 2, which it gets
    # onto a majority; it must not count that as committed.
    s1 = node(0, 5, term=3, terms=[1, 2])
    s2 = node(1, 5, term=3, terms=[1])
    elect(s1)  # term 4
    assert s1.current_term == 4
    replicate(s1, s2)
    assert s1.match_index[1] == 2
    s3 = node(2, 5, term=3, terms=[1])
    replicate(s1, s3)
    assert s1.match_index[2] == 2
    assert s1.commit_index == 0, "entry 2 (term 2) is on 3 of 5 but is not from term 4"
    # once an entry of the current term is on a majority, everything before it commits
    s1.propose(raw("term 4"))
    s1.settle()
    deliver(s1, s2)
    deliver(s1, s3)
    assert s1.commit_index == 3


def test_a_noop_commits_an_old_terms_entry_without_a_client() -> None:
    # Raft §8: the same Figure 8 situation, with noop_on_election.
    entries = tuple(entry(t) for t in [1, 2])
    s1 = make_node(0, 3, term=3, entries=entries, noop=True)
    s2 = node(1, 3, term=3, terms=[1])
    elect(s1)
    replicate(s1, s2)
    assert s1.commit_index == 3, "the no-op of term 4 commits entry 2 with it"
    s1.settle()
    assert s1.last_applied == 3


def test_batches_respect_the_byte_bound_but_always_carry_one_entry() -> None:
    a = node(0, 3, max_bytes=100)
    elect(a)
    for _ in range(10):
        a.propose(raw("x" * 40))
    a.settle()
    args = a.send(1)
    assert isinstance(args, AppendEntriesArgs)
    assert len(args.entries) == 2
    a.propose(raw("y" * 1000))
    a.settle()
    a.next_index[1] = 11
    big = a.send(1)
    assert isinstance(big, AppendEntriesArgs) and len(big.entries) == 1


def test_a_leader_sends_entries_it_is_still_writing_but_counts_them_once_durable() -> None:
    # Thesis §10.2.1: the leader's write and the followers' overlap.
    a, b, c = node(0, 3), node(1, 3), node(2, 3)
    elect(a)
    a.take_signals()
    a.propose(raw("x"))
    assert a.has_news_for(1) and a.take_signals()[1], "replicated at once, while being written"
    to_b = a.send(1)
    assert isinstance(to_b, AppendEntriesArgs) and len(to_b.entries) == 1
    a.node.handle_append_entries_reply(1, to_b, b.answer(to_b))
    assert a.commit_index == 0, "b's durable copy and the leader's unwritten one: not two"
    to_c = a.send(2)
    assert isinstance(to_c, AppendEntriesArgs)
    a.node.handle_append_entries_reply(2, to_c, c.answer(to_c))
    assert a.commit_index == 1, "b's and c's durable copies are a majority"
    a.settle()
    assert a.disk.log == [a.log.entry(1)] and a.commit_index == 1


def test_a_leader_steps_down_on_a_reply_with_a_higher_term() -> None:
    a = node(0, 3)
    elect(a)
    args = a.send(1)
    assert isinstance(args, AppendEntriesArgs)
    a.handle_append_entries_reply(1, args, AppendEntriesReply(9, False))
    assert a.role is Role.FOLLOWER and a.current_term == 9


def test_applying_goes_strictly_in_index_order() -> None:
    a = node(0, 1)
    elect(a)
    for k in range(3):
        a.propose(raw(k))
    applied = a.settle().applied
    assert applied == [(1, 0), (2, 1), (3, 2)]
    assert a.settle().applied == []


def test_a_follower_applies_only_what_it_made_durable() -> None:
    b = node(1, 3, term=1)
    append = AppendEntriesArgs(1, 0, 0, 0, (entry(1, "a"),), 1)
    b.node.handle_append_entries(append, append)
    ready = b.node.ready()
    assert ready.entries and ready.apply_entries == ready.entries, (
        "entry 1 is applied by the Ready that writes it, after the write"
    )
    b.disk.write(ready)
    b.node.advance(ready)
    assert b.last_applied == 1


def test_one_ready_at_a_time() -> None:
    a = node(0, 1)
    elect(a)
    a.propose(raw(1))
    ready = a.node.ready()
    a.propose(raw(2))
    assert not a.has_ready(), "the outstanding Ready must be advanced first"
    try:
        a.node.ready()
    except RuntimeError:
        pass
    else:
        raise AssertionError("a second Ready was handed out")
    a.disk.write(ready)
    a.node.advance(ready)
    assert a.has_ready()
    assert [e.command for e in a.node.ready().entries] == [raw(2)]
