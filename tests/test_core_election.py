"""The election rules of Figure 2, driven step by step on the pure RaftNode (§5.2, §5.4.1).

Every node runs under :class:`corekit.Driven`, which checks each Ready's
durability order (nothing leaves before what it depends on is durable).
"""

from __future__ import annotations

import pytest

from corekit import Driven, elect, make_node, raw
from trioraft.core.messages import AppendEntriesArgs, Entry, RequestVoteArgs, RequestVoteReply
from trioraft.core.node import DISARMED, Role
from trioraft.core.ready import NOOP


def with_log(me: int, n: int, term: int, terms: list[int]) -> Driven:
    entries = tuple(Entry(t, raw(i)) for i, t in enumerate(terms))
    return make_node(me, n, term=term, entries=entries)


def test_a_new_server_is_a_follower_with_an_armed_timer() -> None:
    a = make_node(0)
    timer, _, _ = a.take_signals()
    assert a.role is Role.FOLLOWER and a.current_term == 0 and a.voted_for is None
    assert timer is not None and 0.3 <= timer <= 0.6


def test_timeout_starts_an_election() -> None:
    # Candidates (§5.2): increment currentTerm, vote for self, reset the
    # election timer, send RequestVote RPCs to all other servers.
    a = with_log(0, 3, 2, [1, 2])
    a.take_signals()
    a.election_timeout()
    timer, _, _ = a.take_signals()
    assert a.role is Role.CANDIDATE and a.current_term == 3 and a.voted_for == 0
    assert timer is not None and timer != DISARMED
    ready = a.node.ready()
    assert ready.hard_state is not None and ready.must_sync, (
        "the new term and vote are written, and synced, before the requests go out"
    )
    assert (ready.hard_state.term, ready.hard_state.voted_for) == (3, 0)
    assert [(m.to, m.message) for m in ready.messages] == [
        (1, RequestVoteArgs(3, 0, 2, 2)),
        (2, RequestVoteArgs(3, 0, 2, 2)),
    ]


def test_a_majority_of_votes_makes_a_leader_and_a_minority_does_not() -> None:
    a = make_node(0, 5)
    a.election_timeout()
    args = a.settle().requests[0][1]
    a.take_signals()
    a.handle_request_vote_reply(1, args, RequestVoteReply(1, False))
    a.handle_request_vote_reply(2, args, RequestVoteReply(1, True))
    assert a.role is Role.CANDIDATE, "2 of 5 is not a majority"
    a.handle_request_vote_reply(2, args, RequestVoteReply(1, True))
    assert a.role is Role.CANDIDATE, "a duplicated vote counts once"
    a.handle_request_vote_reply(3, args, RequestVoteReply(1, True))
    timer, replicate, _ = a.take_signals()
    assert a.role is Role.LEADER and a.leader_id == 0
    assert timer == DISARMED and replicate
    assert a.next_index == [1] * 5 and a.match_index == [0] * 5


def test_a_lone_server_elects_itself() -> None:
    a = make_node(0, 1)
    a.election_timeout()
    assert a.role is Role.LEADER and a.current_term == 1


def test_one_vote_per_term_first_come_first_served() -> None:
    b = make_node(1)
    assert b.answer(RequestVoteArgs(1, 0, 0, 0)) == RequestVoteReply(1, True)
    assert b.voted_for == 0 and b.disk.voted_for == 0
    assert b.answer(RequestVoteArgs(1, 2, 0, 0)) == RequestVoteReply(1, False)
    # a retransmitted request from the same candidate is granted again
    assert b.answer(RequestVoteArgs(1, 0, 0, 0)) == RequestVoteReply(1, True)
    # a new term frees the vote
    assert b.answer(RequestVoteArgs(2, 2, 0, 0)) == RequestVoteReply(2, True)
    assert b.voted_for == 2


@pytest.mark.parametrize(
    ("last_log_term", "last_log_index", "granted"),
    [
        (3, 1, True),  # a later last term wins, however short the log
        (2, 3, True),  # same last term, longer log
        (2, 2, True),  # same last term, same length
        (2, 1, False),  # same last term, shorter log
        (1, 9, False),  # an earlier last term loses, however long the log
    ],
)
def test_votes_only_for_an_up_to_date_log(
    last_log_term: int, last_log_index: int, granted: bool
) -> None:
    # §5.4.1: the voter denies its vote if its own log is more up-to-date.
    b = with_log(1, 3, 3, [1, 2])
    reply = b.answer(RequestVoteArgs(4, 0, last_log_index, last_log_term))
    assert reply.vote_granted is granted
    assert b.current_term == 4, "the higher term is adopted either way"
    assert b.voted_for == (0 if granted else None)


def test_a_refused_vote_does_not_reset_the_timer_but_a_granted_one_does() -> None:
    b = with_log(1, 3, 1, [1])
    b.take_signals()
    b.answer(RequestVoteArgs(1, 0, 0, 0))
    assert b.take_signals()[0] is None
    b.answer(RequestVoteArgs(1, 0, 1, 1))
    assert b.take_signals()[0] is not None


def test_every_heartbeat_of_the_current_leader_resets_the_timer() -> None:
    # Followers: "If election timeout elapses without receiving AppendEntries RPC
    # from current leader ... convert to candidate": each one counts, not just the first.
    b = with_log(1, 3, 1, [])
    b.take_signals()
    for _ in range(3):
        assert b.answer(AppendEntriesArgs(1, 0, 0, 0, (), 0)).success
        timer, _, _ = b.take_signals()
        assert timer is not None and timer != DISARMED


def test_a_stale_term_is_refused() -> None:
    b = with_log(1, 3, 5, [])
    assert b.answer(RequestVoteArgs(4, 0, 9, 4)) == RequestVoteReply(5, False)
    b.take_signals()
    reply = b.answer(AppendEntriesArgs(4, 0, 0, 0, (), 0))
    assert not reply.success and reply.term == 5
    assert b.take_signals()[0] is None, "a deposed leader does not reset the timer"


def test_a_higher_term_deposes_a_leader() -> None:
    a = make_node(0, 3)
    elect(a)
    assert a.is_leader
    a.take_signals()
    a.answer(AppendEntriesArgs(7, 2, 0, 0, (), 0))
    timer, _, _ = a.take_signals()
    assert a.role is Role.FOLLOWER and a.current_term == 7 and a.voted_for is None
    assert a.leader_id == 2
    assert timer is not None and timer != DISARMED


def test_a_candidate_yields_to_a_leader_of_its_own_term() -> None:
    a = make_node(0, 3)
    a.election_timeout()
    reply = a.answer(AppendEntriesArgs(1, 1, 0, 0, (), 0))
    assert reply.success and a.role is Role.FOLLOWER and a.current_term == 1
    assert a.voted_for == 0, "the vote cast in this term stays cast"


def test_late_vote_replies_from_an_old_election_are_ignored() -> None:
    a = make_node(0, 3)
    a.election_timeout()
    old = a.settle().requests[0][1]
    a.election_timeout()  # split vote: a second election, term 2
    a.handle_request_vote_reply(1, old, RequestVoteReply(1, True))
    assert a.role is Role.CANDIDATE, "a vote for term 1 does not count in term 2"


def test_a_second_election_replaces_requests_not_yet_sent() -> None:
    a = make_node(0, 3)
    a.election_timeout()
    a.election_timeout()  # before the first Ready was taken
    requests = a.settle().requests
    assert [args.term for _, args in requests] == [2, 2], "term 1's requests never leave"


def test_a_leader_ignores_its_election_timer() -> None:
    a = make_node(0, 1)
    a.election_timeout()
    term = a.current_term
    a.election_timeout()
    assert a.is_leader and a.current_term == term


def test_non_leaders_refuse_commands() -> None:
    b = make_node(1)
    assert b.propose(raw(1)) == (-1, 0, False)
    assert b.log.last_index == 0


def test_a_new_leader_can_append_a_noop_of_its_term() -> None:
    # Raft §8: with noop_on_election, a leader's first entry is a no-op of its term.
    a = with_log(0, 3, 1, [1, 1])
    b = make_node(0, 3, noop=True, term=1, entries=tuple(Entry(1, raw(i)) for i in range(2)))
    elect(a)
    elect(b)
    assert a.log.last_index == 2, "off by default"
    assert b.log.last_index == 3 and b.log.entry(3).term == 2 and b.log.entry(3).command == NOOP
