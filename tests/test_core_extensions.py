"""Raft's extensions on the pure RaftNode, message by message.

- Pre-Vote (thesis §9.6): a server whose timer fires first asks whether the
  others would vote for it at term + 1, changing neither its term nor its
  vote, and starts a real election only with a majority's yes.
- Vote withholding (§4.2.3, with Pre-Vote): a leader, or a server that heard
  from one within the minimum election timeout, neither updates its term nor
  grants its vote (or pre-vote), unless a leadership transfer asks.
- CheckQuorum (§6.2): a leader that heard from no majority within an election
  timeout steps down.
- Leadership transfer (§3.10): the leader stops taking commands, brings the
  target up to date, sends it TimeoutNow; the target starts an election at
  once; the transfer is abandoned after an election timeout.
- ReadIndex (§6.4) is traced: ``read_index``, ``read_served``, ``read_failed``.

Every node runs under :class:`corekit.Driven`, which checks each Ready's
durability order, now for PreVote and TimeoutNow messages too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from corekit import Driven, Settled, deliver, elect, make_node, raw
from trioraft.core.messages import (
    AppendEntriesArgs,
    AppendEntriesReply,
    Entry,
    InstallSnapshotArgs,
    PreVoteArgs,
    PreVoteReply,
    RequestVoteArgs,
    RequestVoteReply,
    TimeoutNowArgs,
    TimeoutNowReply,
)
from trioraft.core.node import DISARMED, Role

MIN, MAX = 0.3, 0.6  # corekit's election timeouts

# ---------------------------------------------------------------- helpers


def with_log(me: int, n: int, term: int, terms: list[int], **flags: Any) -> Driven:
    entries = tuple(Entry(t, raw(i)) for i, t in enumerate(terms))
    return make_node(me, n, term=term, entries=entries, **flags)


def ask(node: Driven, args: Any) -> tuple[Any, Settled]:
    """Hand ``node`` a request; its reply and everything the settle released."""
    handlers: dict[type, Callable[[Any, Any], None]] = {
        PreVoteArgs: node.node.handle_pre_vote,
        RequestVoteArgs: node.node.handle_request_vote,
        TimeoutNowArgs: node.node.handle_timeout_now,
    }
    handlers[type(args)](args, args)
    settled = node.settle()
    return settled.replies[id(args)], settled


def pre_elect(a: Driven) -> list[tuple[int, PreVoteArgs]]:
    """Time ``a`` out; the PreVotes it sends (asserted to be all it sends)."""
    a.node.election_timeout()
    requests = a.settle().requests
    assert all(isinstance(args, PreVoteArgs) for _, args in requests), requests
    return requests


def cluster(n: int = 3, *, tracing: bool = False, **flags: Any) -> list[Driven]:
    """Node 0 leads term 1 with its no-op on every follower, committed."""
    nodes = [make_node(i, n, noop=True, tracing=tracing, **flags) for i in range(n)]
    elect(nodes[0])
    for follower in nodes[1:]:
        deliver(nodes[0], follower)
    assert nodes[0].is_leader and nodes[0].commit_index == 1
    return nodes


def events(node: Driven, *names: str) -> list[tuple[str, dict[str, Any]]]:
    """The node's trace events since the last call, those named ``names``."""
    return [(e.name, e.fields) for e in node.node.take_trace() if e.name in names]


def heard_from_leader(b: Driven, how: str = "append") -> None:
    """``b`` receives a valid message of the leader (node 0) of term 1."""
    if how == "append":
        assert b.answer(AppendEntriesArgs(1, 0, 0, 0, (), 0)).success
    else:
        b.answer(InstallSnapshotArgs(1, 0, 0, 0, 0, b"", False))
    assert b.current_term == 1 and b.leader_id == 0


# ---------------------------------------------------------------- 1. Pre-Vote: the pre-candidate


def test_a_timeout_with_pre_vote_asks_for_term_plus_one_and_writes_nothing() -> None:
    # §9.6: "a candidate would first ask other servers whether its log was
    # up-to-date enough to get their vote"; it does not increment its term.
    a = with_log(0, 3, 2, [1, 2], pre_vote=True)
    a.node.voted_for = 1  # its vote in term 2, which a pre-election must not touch
    a.disk.voted_for = 1
    a.take_signals()
    a.election_timeout()
    timer, _, _ = a.take_signals()
    assert a.role is Role.PRE_CANDIDATE
    assert (a.current_term, a.voted_for) == (2, 1), "term and vote unchanged"
    assert timer is not None and MIN <= timer <= MAX, "no majority in time: it asks again"
    settled = a.settle()
    for ready in settled.readies:
        assert ready.hard_state is None and not ready.must_sync, "nothing durable to write"
    assert settled.requests == [(1, PreVoteArgs(3, 0, 2, 2)), (2, PreVoteArgs(3, 0, 2, 2))]
    assert (a.disk.term, a.disk.voted_for) == (2, 1)


def test_a_majority_of_pre_votes_starts_the_real_election() -> None:
    # §9.6: only once a majority says it would vote does the candidate
    # increment its term and hold a normal election.
    a = with_log(0, 5, 2, [1, 2], pre_vote=True)
    (_, args), *_ = pre_elect(a)
    a.node.handle_pre_vote_reply(1, args, PreVoteReply(3, True))
    assert a.role is Role.PRE_CANDIDATE, "2 of 5 is not a majority"
    assert a.current_term == 2, "a grant carries the term asked about; it is not adopted"
    a.node.handle_pre_vote_reply(1, args, PreVoteReply(3, True))
    assert a.role is Role.PRE_CANDIDATE, "a duplicated grant counts once"
    a.take_signals()
    a.node.handle_pre_vote_reply(2, args, PreVoteReply(3, True))
    timer, _, _ = a.take_signals()
    assert a.role is Role.CANDIDATE and (a.current_term, a.voted_for) == (3, 0)
    assert a.votes == {0}, "pre-votes are not votes: the real election counts afresh"
    assert timer is not None and timer != DISARMED
    settled = a.settle()
    assert settled.readies[0].must_sync, "the new term and vote are synced first"
    assert settled.requests == [(peer, RequestVoteArgs(3, 0, 2, 2)) for peer in (1, 2, 3, 4)]


def test_refused_pre_votes_leave_the_term_alone_and_the_timer_asks_again() -> None:
    a = with_log(0, 3, 2, [1, 2], pre_vote=True)
    requests = pre_elect(a)
    for peer, args in requests:
        a.node.handle_pre_vote_reply(peer, args, PreVoteReply(2, False))
    assert a.role is Role.PRE_CANDIDATE and a.current_term == 2 and a.voted_for is None
    assert all(ready.hard_state is None for ready in a.settle().readies)
    again = pre_elect(a)
    assert a.role is Role.PRE_CANDIDATE and a.current_term == 2, "still no term increment"
    assert [args.term for _, args in again] == [3, 3]


def test_a_refusal_with_a_higher_term_makes_the_pre_candidate_a_follower() -> None:
    # All Servers: "If RPC request or response contains term T > currentTerm:
    # set currentTerm = T, convert to follower".
    a = with_log(0, 3, 2, [1, 2], pre_vote=True)
    (peer, args), _ = pre_elect(a)
    a.node.handle_pre_vote_reply(peer, args, PreVoteReply(7, False))
    assert a.role is Role.FOLLOWER and (a.current_term, a.voted_for) == (7, None)
    settled = a.settle()
    assert settled.readies[0].must_sync and (a.disk.term, a.disk.voted_for) == (7, None)


def test_a_refusal_at_the_term_asked_about_also_makes_a_follower() -> None:
    # A peer already at term + 1 refuses with its own term: the pre-candidate is behind.
    a = with_log(0, 3, 2, [1, 2], pre_vote=True)
    (peer, args), _ = pre_elect(a)
    a.node.handle_pre_vote_reply(peer, args, PreVoteReply(3, False))
    assert a.role is Role.FOLLOWER and a.current_term == 3


def test_grants_from_an_earlier_pre_election_are_ignored() -> None:
    a = make_node(0, 3, pre_vote=True)
    old = pre_elect(a)  # asks about term 1
    heard_from_leader(a)  # a leader of term 1 exists after all
    assert a.role is Role.FOLLOWER
    a.election_timeout()  # the lease ends
    new = pre_elect(a)  # asks about term 2
    assert [args.term for _, args in new] == [2, 2]
    for peer, args in old:
        a.node.handle_pre_vote_reply(peer, args, PreVoteReply(args.term, True))
    assert a.role is Role.PRE_CANDIDATE and a.current_term == 1, (
        "grants for term 1 say nothing about term 2"
    )
    peer, args = new[0]
    a.node.handle_pre_vote_reply(peer, args, PreVoteReply(2, True))
    assert a.role is Role.CANDIDATE and a.current_term == 2


def test_a_pre_candidate_yields_to_a_leader_of_its_term() -> None:
    # Candidates: "If AppendEntries RPC received from new leader: convert to follower".
    a = with_log(0, 3, 1, [], pre_vote=True)
    pre_elect(a)
    heard_from_leader(a)
    assert a.role is Role.FOLLOWER and a.leader_id == 0
    requests = pre_elect(a)
    assert a.role is Role.FOLLOWER and requests == [], "the first firing only ends the lease"


def test_a_lone_server_with_pre_vote_elects_itself() -> None:
    a = make_node(0, 1, pre_vote=True)
    a.election_timeout()
    assert a.role is Role.LEADER and a.current_term == 1 and a.voted_for == 0
    assert a.settle().requests == []


def test_elect_runs_a_pre_election_first() -> None:
    # corekit's elect() knows pre-votes: the same peers grant both rounds.
    a = make_node(0, 3, pre_vote=True)
    requests = elect(a)
    assert a.is_leader and a.current_term == 1
    assert [type(args) for _, args in requests] == [RequestVoteArgs, RequestVoteArgs]


# ---------------------------------------------------------------- 2. Pre-Vote: the receiver


def test_a_pre_vote_is_granted_without_changing_term_vote_or_timer() -> None:
    # §9.6: the pre-vote changes nothing on the receiver; the grant carries the
    # term asked about.
    b = with_log(1, 3, 2, [1, 2], pre_vote=True)
    b.node.voted_for = 2
    b.disk.voted_for = 2
    b.take_signals()
    reply, settled = ask(b, PreVoteArgs(9, 0, 2, 2))
    assert reply == PreVoteReply(9, True)
    assert b.role is Role.FOLLOWER and (b.current_term, b.voted_for) == (2, 2)
    assert b.take_signals()[0] is None, "the timer is not reset for a pre-vote"
    assert all(ready.hard_state is None and not ready.must_sync for ready in settled.readies)


@pytest.mark.parametrize(
    ("last_log_term", "last_log_index", "granted"),
    [
        (3, 1, True),  # a later last term wins, however short the log
        (2, 2, True),  # same last term, same length
        (2, 1, False),  # same last term, shorter log
        (1, 9, False),  # an earlier last term loses, however long the log
    ],
)
def test_a_pre_vote_is_granted_only_for_an_up_to_date_log(
    last_log_term: int, last_log_index: int, granted: bool
) -> None:
    # §9.6 with §5.4.1: would it vote for this log?
    b = with_log(1, 3, 3, [1, 2], pre_vote=True)
    reply, _ = ask(b, PreVoteArgs(4, 0, last_log_index, last_log_term))
    assert reply == (PreVoteReply(4, True) if granted else PreVoteReply(3, False))
    assert b.current_term == 3, "the term asked about is never adopted"


@pytest.mark.parametrize("asked", [1, 3])
def test_a_pre_vote_for_a_term_not_above_the_receivers_is_refused_with_its_term(
    asked: int,
) -> None:
    # A refusal carries the receiver's term, so a pre-candidate that is behind learns it.
    b = with_log(1, 3, 3, [1], pre_vote=True)
    reply, _ = ask(b, PreVoteArgs(asked, 0, 5, 3))
    assert reply == PreVoteReply(3, False)
    assert b.current_term == 3 and b.role is Role.FOLLOWER


def test_a_pre_candidate_grants_another_pre_vote() -> None:
    # A pre-candidate has changed nothing: it would still vote at term + 1.
    b = make_node(1, 3, pre_vote=True)
    pre_elect(b)
    reply, _ = ask(b, PreVoteArgs(1, 2, 0, 0))
    assert reply == PreVoteReply(1, True) and b.role is Role.PRE_CANDIDATE


# ---------------------------------------------------------------- 3. vote withholding


@pytest.mark.parametrize("how", ["append", "snapshot"])
def test_a_follower_that_just_heard_from_the_leader_withholds_its_vote(how: str) -> None:
    # §4.2.3: "if a server receives a RequestVote request within the minimum
    # election timeout of hearing from a current leader, it does not update its
    # term or grant its vote."
    b = make_node(1, 3, pre_vote=True, tracing=True)
    heard_from_leader(b, how)
    b.take_signals()
    b.node.take_trace()
    reply, settled = ask(b, RequestVoteArgs(2, 2, 0, 0))
    assert reply == RequestVoteReply(1, False)
    assert (b.current_term, b.voted_for) == (1, None) and b.leader_id == 0
    assert (b.disk.term, b.disk.voted_for) == (1, None)
    assert not any(ready.must_sync for ready in settled.readies)
    assert b.take_signals()[0] is None, "the timer runs on"
    assert events(b, "vote", "term_update") == [
        ("vote", {"candidate": 2, "granted": False, "withheld": True})
    ]
    pre, _ = ask(b, PreVoteArgs(2, 2, 0, 0))
    assert pre == PreVoteReply(1, False), "pre-votes are withheld too"


def test_the_lease_lasts_the_minimum_timeout_then_votes_are_granted() -> None:
    # After hearing from the leader the timer first runs for the minimum
    # timeout (the lease), then for the rest of its random timeout.
    b = make_node(1, 3, pre_vote=True, tracing=True)
    heard_from_leader(b)
    first, _, _ = b.take_signals()
    assert first == MIN
    b.election_timeout()  # the lease ends; no election
    rest, _, _ = b.take_signals()
    assert rest is not None and 0 <= rest <= MAX - MIN
    assert b.role is Role.FOLLOWER and b.current_term == 1
    assert b.settle().requests == []
    assert ask(b, PreVoteArgs(2, 2, 0, 0))[0] == PreVoteReply(2, True)
    assert b.current_term == 1
    b.node.take_trace()
    assert ask(b, RequestVoteArgs(2, 2, 0, 0))[0] == RequestVoteReply(2, True)
    assert (b.current_term, b.voted_for) == (2, 2) and (b.disk.term, b.disk.voted_for) == (2, 2)
    assert events(b, "vote") == [("vote", {"candidate": 2, "granted": True})]


def test_every_message_of_the_leader_starts_a_new_lease() -> None:
    b = make_node(1, 3, pre_vote=True)
    heard_from_leader(b)
    b.election_timeout()  # the lease ends
    heard_from_leader(b)  # the next heartbeat
    assert b.take_signals()[0] == MIN
    assert ask(b, RequestVoteArgs(2, 2, 0, 0))[0] == RequestVoteReply(1, False)


def test_a_leader_withholds_its_vote_and_its_pre_vote() -> None:
    # §4.2.3: a leader believes a leader exists.
    a, _, _ = cluster(pre_vote=True)
    reply, _ = ask(a, RequestVoteArgs(5, 2, 9, 9))
    assert reply == RequestVoteReply(1, False)
    assert a.is_leader and a.current_term == 1 and a.disk.term == 1
    assert ask(a, PreVoteArgs(2, 2, 9, 9))[0] == PreVoteReply(1, False)
    assert a.is_leader


def test_a_leadership_transfer_is_not_withheld() -> None:
    # §3.10/§4.2.3: a TimeoutNow election asks voters to set aside their recent leader.
    b = make_node(1, 3, pre_vote=True)
    heard_from_leader(b)
    reply, _ = ask(b, RequestVoteArgs(2, 2, 0, 0, leadership_transfer=True))
    assert reply == RequestVoteReply(2, True)
    assert (b.current_term, b.voted_for) == (2, 2)
    a, _, _ = cluster(pre_vote=True)
    reply, _ = ask(a, RequestVoteArgs(2, 1, 1, 1, leadership_transfer=True))
    assert reply == RequestVoteReply(2, True)
    assert a.role is Role.FOLLOWER and a.current_term == 2


def test_a_transfer_still_needs_an_up_to_date_log() -> None:
    b = with_log(1, 3, 1, [1, 1], pre_vote=True)
    heard_from_leader(b)
    reply, _ = ask(b, RequestVoteArgs(2, 2, 1, 1, leadership_transfer=True))
    assert reply == RequestVoteReply(2, False), "§5.4.1 is not set aside"


def test_a_higher_term_ends_the_lease_of_the_old_terms_leader() -> None:
    # The lease vouches for the leader of term 1 only: once term 2 is known
    # (here from a transfer's request this log cannot vote for), it is over.
    b = with_log(1, 3, 1, [1, 1], pre_vote=True)
    heard_from_leader(b)
    assert ask(b, RequestVoteArgs(2, 2, 1, 1, leadership_transfer=True))[0] == (
        RequestVoteReply(2, False)
    )
    assert b.current_term == 2 and b.leader_id is None
    assert ask(b, RequestVoteArgs(2, 0, 2, 1))[0] == RequestVoteReply(2, True)
    c = with_log(2, 3, 1, [1, 1], pre_vote=True)
    heard_from_leader(c)
    ask(c, RequestVoteArgs(2, 0, 0, 0, leadership_transfer=True))
    c.election_timeout()  # the timer armed for the lease: no lease to end now
    assert c.role is Role.PRE_CANDIDATE


def test_without_pre_vote_nothing_is_withheld() -> None:
    # Figure 2 as is: a higher term is adopted and the vote decided on the log alone.
    b = make_node(1, 3)
    heard_from_leader(b)
    timer, _, _ = b.take_signals()
    assert timer is not None and MIN <= timer <= MAX, "one random timeout, no lease"
    assert ask(b, RequestVoteArgs(2, 2, 0, 0))[0] == RequestVoteReply(2, True)
    assert (b.current_term, b.voted_for) == (2, 2)
    a, _, _ = cluster()
    assert ask(a, RequestVoteArgs(2, 1, 1, 1))[0] == RequestVoteReply(2, True)
    assert a.role is Role.FOLLOWER and a.current_term == 2
    c = make_node(2, 3)
    heard_from_leader(c)
    c.election_timeout()
    assert c.role is Role.CANDIDATE and c.current_term == 2, "no lease: the first firing elects"


# ---------------------------------------------------------------- 4. CheckQuorum


def test_a_check_quorum_leader_keeps_its_timer_and_one_without_disarms_it() -> None:
    with_check = make_node(0, 3, check_quorum=True)
    elect(with_check)
    assert with_check.take_signals()[0] == MAX, "§6.2: the leader's period is a timeout"
    without = make_node(0, 3)
    elect(without)
    assert without.take_signals()[0] == DISARMED


@pytest.mark.parametrize(
    ("n", "heard", "keeps"),
    [
        (3, [1], True),  # itself and 1: 2 of 3
        (3, [], False),
        (5, [1, 2], True),  # 3 of 5
        (5, [1], False),  # 2 of 5
        (5, [1, 1, 1], False),  # the same follower many times is still one
        (4, [1], False),  # 2 of 4 is half, not a majority
        (4, [1, 2], True),
    ],
)
def test_check_quorum_counts_the_followers_heard_this_period(
    n: int, heard: list[int], keeps: bool
) -> None:
    # §6.2: "if an election timeout elapses without a successful round of
    # heartbeats to a majority of its cluster", the leader steps down.
    nodes = [make_node(i, n, check_quorum=True) for i in range(n)]
    a = nodes[0]
    elect(a)
    for peer in heard:
        deliver(a, nodes[peer])
    a.take_signals()
    a.election_timeout()
    timer, _, _ = a.take_signals()
    assert a.current_term == 1
    if keeps:
        assert a.is_leader and timer == MAX, "re-armed for the next period"
    else:
        assert a.role is Role.FOLLOWER and a.leader_id is None
        assert timer is not None and MIN <= timer <= MAX, "a follower's election timer"


def test_each_period_needs_its_own_majority() -> None:
    a, _, _ = cluster(check_quorum=True)
    a.take_signals()
    a.election_timeout()  # both followers answered during the first period
    assert a.is_leader
    a.election_timeout()  # nobody answered since
    assert a.role is Role.FOLLOWER


def test_a_rejection_of_the_current_term_counts_but_a_stale_reply_does_not() -> None:
    a, _, _ = cluster(check_quorum=True)
    a.election_timeout()  # a new period
    args = a.send(1)
    assert isinstance(args, AppendEntriesArgs)
    a.node.handle_append_entries_reply(1, args, AppendEntriesReply(1, False, 1, 0))
    a.election_timeout()
    assert a.is_leader, "a rejection in its term still answers the leader"
    stale = AppendEntriesArgs(0, 0, 0, 0, (), 0)
    a.node.handle_append_entries_reply(2, stale, AppendEntriesReply(0, True))
    a.election_timeout()
    assert a.role is Role.FOLLOWER, "a reply to a message of another term proves nothing"


def test_losing_the_quorum_steps_down_in_the_same_term_and_fails_reads() -> None:
    a, _, _ = cluster(check_quorum=True, tracing=True)
    a.election_timeout()  # a new period: nobody has answered in it
    a.node.take_trace()
    a.node.read_index("r")
    a.election_timeout()
    assert a.role is Role.FOLLOWER and (a.current_term, a.voted_for) == (1, 0)
    assert a.settle().reads == [("r", None)], "a read waiting on a deposed leader fails"
    assert events(a, "quorum_lost", "become_follower") == [
        ("quorum_lost", {"heard": []}),
        ("become_follower", {}),
    ]
    assert a.propose(raw("x"))[2] is False


# ---------------------------------------------------------------- 5. leadership transfer


def test_a_transfer_to_an_up_to_date_follower_sends_timeout_now_at_once() -> None:
    # §3.10: once the target's log is up to date, the leader sends it TimeoutNow.
    a, b, _ = cluster(tracing=True)
    assert a.match_index[1] == a.log.last_index
    a.take_signals()
    a.node.take_trace()
    assert a.transfer_leadership(1) is True
    assert events(a, "transfer_leadership") == [("transfer_leadership", {"target": 1})]
    timer, _, _ = a.take_signals()
    assert timer == MAX, "abandoned if no election ends it within an election timeout"
    assert a.node.transferring_to == 1
    assert a.settle().requests == [(1, TimeoutNowArgs(1, 0))]
    args = a.send(1)
    assert isinstance(args, AppendEntriesArgs)
    a.node.handle_append_entries_reply(1, args, b.answer(args), a.node.read_round)
    assert a.settle().requests == [], "TimeoutNow goes once"


def test_a_transfer_to_a_lagging_follower_waits_for_its_catch_up() -> None:
    a, b, c = cluster()
    a.propose(raw("x"))
    a.settle()
    deliver(a, c)  # x commits with c; b still lacks it
    assert a.match_index[1] < a.log.last_index
    a.take_signals()
    assert a.transfer_leadership(1)
    _, replicate, _ = a.take_signals()
    assert replicate, "§3.10: the leader brings the target up to date"
    assert a.settle().requests == []
    args = a.send(2)
    assert isinstance(args, AppendEntriesArgs)
    a.node.handle_append_entries_reply(2, args, c.answer(args), a.node.read_round)
    assert a.settle().requests == [], "another follower's reply does not start it"
    args = a.send(1)
    assert isinstance(args, AppendEntriesArgs) and len(args.entries) == 1
    a.node.handle_append_entries_reply(1, args, b.answer(args), a.node.read_round)
    assert a.settle().requests == [(1, TimeoutNowArgs(1, 0))]


def test_no_commands_during_a_transfer_until_it_is_abandoned() -> None:
    # §3.10: "the prior leader stops accepting new client requests"; and if the
    # transfer does not complete within an election timeout, it resumes.
    a, _, _ = cluster(tracing=True)
    a.propose(raw("x"))
    a.settle()
    last = a.log.last_index
    assert a.transfer_leadership(1)
    assert a.settle().requests == [], "the target lacks x: no TimeoutNow yet"
    assert a.propose(raw("y")) == (-1, 1, False)
    assert a.log.last_index == last
    a.node.take_trace()
    a.take_signals()
    a.election_timeout()
    timer, _, _ = a.take_signals()
    assert a.is_leader and a.node.transferring_to is None
    assert timer == DISARMED, "without check_quorum a leader needs no timer once it is over"
    assert events(a, "transfer_abandoned") == [("transfer_abandoned", {"target": 1})]
    assert a.propose(raw("y")) == (last + 1, 1, True)


def test_abandoning_a_transfer_with_check_quorum_also_checks_the_quorum() -> None:
    a, b, _ = cluster(check_quorum=True)
    a.take_signals()
    assert a.transfer_leadership(2)  # c is up to date: TimeoutNow goes, but is lost
    a.settle()
    deliver(a, b)
    a.election_timeout()
    assert a.is_leader and a.node.transferring_to is None
    assert a.take_signals()[0] == MAX


def test_the_target_starts_an_election_at_once_bypassing_pre_vote() -> None:
    # §3.10: TimeoutNow makes the target "start a new election" at once; §4.2.3:
    # its RequestVotes say so, and peers that heard from the leader still vote.
    a, b, c = cluster(pre_vote=True, tracing=True)
    assert b.node._lease_rest is not None, "b heard from a leader just now"
    assert a.transfer_leadership(1)
    ((_, timeout_now),) = a.settle().requests
    b.node.take_trace()
    reply, settled = ask(b, timeout_now)
    assert reply == TimeoutNowReply(1)
    assert b.role is Role.CANDIDATE and (b.current_term, b.voted_for) == (2, 1)
    assert settled.readies[0].must_sync
    last = (b.log.last_index, b.log.last_term)
    assert settled.requests == [
        (peer, RequestVoteArgs(2, 1, *last, leadership_transfer=True)) for peer in (0, 2)
    ], "no pre-vote"
    assert events(b, "timeout_now", "become_pre_candidate") == [("timeout_now", {"leader": 0})]
    for voter in (c, a):  # c heard from a within the lease; a leads: neither withholds
        request = dict(settled.requests)[voter.me]
        vote, _ = ask(voter, request)
        assert vote == RequestVoteReply(2, True)
        b.node.handle_request_vote_reply(voter.me, request, vote)
    assert b.is_leader and b.current_term == 2
    assert a.role is Role.FOLLOWER and a.node.transferring_to is None


def test_a_stale_timeout_now_is_ignored() -> None:
    b = with_log(1, 3, 3, [1], pre_vote=True)
    reply, settled = ask(b, TimeoutNowArgs(2, 0))
    assert reply == TimeoutNowReply(3)
    assert b.role is Role.FOLLOWER and b.current_term == 3 and settled.requests == []


def test_stepping_down_ends_a_transfer() -> None:
    a, _, _ = cluster()
    assert a.transfer_leadership(1)
    a.answer(AppendEntriesArgs(2, 1, 1, 1, (), 1))  # the target won (or anyone did)
    assert a.role is Role.FOLLOWER and a.node.transferring_to is None
    elect(a)  # term 3
    assert a.is_leader and a.node.transferring_to is None
    assert a.propose(raw("x"))[2], "a leader elected again takes commands"


def test_transfer_leadership_outside_a_leader_or_to_itself() -> None:
    a, b, _ = cluster()
    assert b.transfer_leadership(0) is False, "a follower has nothing to hand over"
    for bad in (-1, 3):
        with pytest.raises(ValueError):
            a.transfer_leadership(bad)
    a.settle()
    assert a.transfer_leadership(0) is True
    assert a.node.transferring_to is None and a.settle().requests == []
    assert a.propose(raw("x"))[2], "nothing is under way"


# ---------------------------------------------------------------- 6. ReadIndex in the trace


def test_reads_are_traced_from_request_to_answer() -> None:
    a, b, _ = cluster(tracing=True)
    a.node.take_trace()
    a.node.read_index("r1")
    a.node.read_index("r2")
    assert events(a, "read_index", "read_served") == [
        ("read_index", {"read": 1}),
        ("read_index", {"read": 2}),
    ]
    deliver(a, b)
    assert events(a, "read_index", "read_served") == [
        ("read_served", {"read": 1, "index": 1}),
        ("read_served", {"read": 2, "index": 1}),
    ]
    a.node.read_index("r3")
    deposed = AppendEntriesArgs(2, 1, 1, 1, (), 1)  # before a round confirmed the read
    a.node.handle_append_entries(deposed, deposed)
    assert a.settle().reads == [("r3", None)]
    assert events(a, "read_index", "read_served", "read_failed") == [
        ("read_index", {"read": 3}),
        ("read_failed", {"read": 3}),
    ]
