"""ReadIndex on the pure RaftNode (thesis §6.4), message by message.

A read is answered with the commit index once (1) the leader has committed an
entry of its own term and (2) a majority answered a message the leader built
after the read arrived: then it was still the leader when the read began.
"""

from __future__ import annotations

from corekit import Driven, deliver, elect, make_node, raw
from trioraft.core.messages import AppendEntriesArgs, AppendEntriesReply, RequestVoteArgs


def cluster(n: int = 3, *, noop: bool = True) -> list[Driven]:
    nodes = [make_node(i, n, noop=noop) for i in range(n)]
    elect(nodes[0])
    for follower in nodes[1:]:
        deliver(nodes[0], follower)  # the no-op reaches everyone and commits
    nodes[0].settle()
    return nodes


def round_trip(leader: Driven, follower: Driven) -> list[tuple[object, int | None]]:
    """One message from the leader and its answer; the reads that answered."""
    args = leader.send(follower.me)
    assert isinstance(args, AppendEntriesArgs)
    read_round = leader.node.read_round  # the round it was built in
    reply = follower.answer(args)
    leader.node.handle_append_entries_reply(follower.me, args, reply, read_round)
    return leader.settle().reads


def test_a_read_waits_for_a_majority_round_started_after_it() -> None:
    a, b, _ = cluster()
    assert a.commit_index == 1
    before = a.send(1)  # built before the read: its answer proves nothing about it
    assert isinstance(before, AppendEntriesArgs)
    a.take_signals()
    a.node.read_index("r")
    assert a.take_signals()[2], "a heartbeat round is asked for at once"
    assert a.settle().reads == []
    a.node.handle_append_entries_reply(1, before, b.answer(before), read_round=0)
    assert a.settle().reads == [], "an answer to an older message does not confirm the read"
    assert round_trip(a, b) == [("r", 1)], "the leader and b are a majority of 3"


def test_reads_waiting_together_share_one_round() -> None:
    a, b, c = cluster()
    a.node.read_index("first")
    a.node.read_index("second")
    args = a.send(1)
    assert isinstance(args, AppendEntriesArgs)
    read_round = a.node.read_round
    a.node.read_index("third")  # after a message of the round was built: the next round
    assert a.node.read_round == read_round + 1
    reply = b.answer(args)
    a.node.handle_append_entries_reply(1, args, reply, read_round)
    assert a.settle().reads == [("first", 1), ("second", 1)]
    assert round_trip(a, c) == [("third", 1)]


def test_a_read_is_answered_with_the_commit_index_once_confirmed() -> None:
    a, b, c = cluster()
    a.propose(raw("x"))
    a.settle()
    deliver(a, b)  # x commits at 2
    a.node.read_index("r")
    assert round_trip(a, c) == [("r", 2)]


def test_a_read_waits_for_a_commit_of_the_leaders_term() -> None:
    a, b, _ = cluster(noop=False)
    assert a.commit_index == 0, "no entry of term 1 committed yet"
    a.node.read_index("r")
    assert round_trip(a, b) == [], "§6.4: not before an entry of its term is committed"
    a.propose(raw("x"))
    a.settle()
    assert round_trip(a, b) == [("r", 1)], "x (term 1) committed with this round trip"


def test_a_follower_or_a_deposed_leader_answers_none() -> None:
    a, b, _ = cluster()
    b.node.read_index("at a follower")
    assert b.settle().reads == [("at a follower", None)]
    a.node.read_index("r")
    vote = RequestVoteArgs(5, 2, 9, 9)
    a.node.handle_request_vote(vote, vote)  # a higher term: a steps down
    assert a.settle().reads == [("r", None)]


def test_a_lone_server_answers_at_once() -> None:
    (a,) = cluster(1)
    a.node.read_index("r")
    assert a.settle().reads == [("r", a.commit_index)]


def test_a_rejection_in_the_current_term_still_confirms_leadership() -> None:
    a, _, _ = cluster()
    a.node.read_index("r")
    args = a.send(1)
    assert isinstance(args, AppendEntriesArgs)
    rejection = AppendEntriesReply(a.current_term, False, 1, 0)
    a.node.handle_append_entries_reply(1, args, rejection, a.node.read_round)
    assert a.settle().reads == [("r", 1)]
