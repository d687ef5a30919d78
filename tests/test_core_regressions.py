"""Regression tests for bug shapes a mutation run planted in the core and the suite missed.

Each test builds the exact situation in which the planted bug does harm, on the
pure RaftNode under :class:`corekit.Driven` (every Ready's durability order is
checked as well):

1. a leader elected again keeps no bookkeeping from its earlier leadership
   (Figure 2: on election, nextIndex = last log index + 1, matchIndex = 0);
2. a stale AppendEntries whose range crosses the follower's snapshot index is
   applied from the snapshot on, never truncating matching entries (rule 3) and
   never placing an entry at the wrong index;
3. a leader backs up past a follower's short log in one round trip, and past a
   conflicting term one term per round trip (6.824's XTerm/XIndex/XLen).
"""

from __future__ import annotations

import pytest

from corekit import Driven, deliver, elect, make_node, raw
from trioraft.core.messages import AppendEntriesArgs, AppendEntriesReply, Entry
from trioraft.core.node import Role

# ---------------------------------------------------------------- helpers


def campaign(candidate: Driven, voters: list[Driven]) -> None:
    """``candidate`` times out and asks ``voters`` (only them: the others are cut
    off), who answer for real; it must win."""
    candidate.node.election_timeout()
    requests = dict(candidate.settle().requests)
    for voter in voters:
        request = requests[voter.me]
        reply = voter.answer(request)
        candidate.node.handle_request_vote_reply(voter.me, request, reply)
    candidate.settle()
    assert candidate.is_leader, "the candidate was meant to win"


def holders(nodes: list[Driven], index: int, term: int) -> list[int]:
    """The servers whose storage holds the entry (index, term)."""
    return [d.me for d in nodes if d.disk.holds(index, term)]


def assert_committed_on_a_majority(leader: Driven, nodes: list[Driven]) -> None:
    for index in range(leader.log.first_index, leader.commit_index + 1):
        term = leader.log.term_at(index)
        assert term is not None
        held = holders(nodes, index, term)
        assert 2 * len(held) > len(nodes), (
            f"leader {leader.me} committed entry {index} (term {term}) held only by {held}"
        )


# ---------------------------------------------------------------- 1. re-elected leader


def test_a_reelected_leader_does_not_commit_on_stale_match_indexes() -> None:
    """L leads term 1 and gets entries 1-3 onto A only (2 of 5: uncommitted).  B
    wins term 2 with C and D and overwrites L's and A's entry 1 with its own.  L
    wins term 3 with C and D: its matchIndex for A must start at 0.  A stale
    matchIndex[A] = 3 would count A for L's term-3 entry 2, which A does not
    hold, and commit it as soon as C (the only other holder) acknowledges.

    (Five servers: with three, every entry a follower acknowledged is also on
    the leader, hence on a majority, so a stale matchIndex is still true.)
    """
    nodes = [make_node(i, 5) for i in range(5)]
    leader, a, b, c, d = nodes

    campaign(leader, [a, b])  # term 1
    for k in range(3):
        leader.propose(raw(f"term1-{k}"))
    leader.settle()
    deliver(leader, a)
    assert leader.match_index[a.me] == 3 and leader.commit_index == 0, "2 of 5: uncommitted"

    campaign(b, [c, d])  # term 2: L and A are cut off
    b.propose(raw("term2"))
    b.settle()
    for follower in (leader, a, c):
        assert deliver(b, follower).success
    assert [e.term for e in leader.log.entries] == [2], "L's term-1 entries are overwritten"
    assert [e.term for e in a.log.entries] == [2]
    assert b.commit_index == 1

    campaign(leader, [c, d])  # term 3
    assert leader.current_term == 3
    assert leader.match_index == [0] * 5, "matchIndex starts afresh (Figure 2)"
    assert leader.next_index == [leader.log.last_index + 1] * 5, "and nextIndex too"
    leader.propose(raw("term3"))
    leader.settle()
    assert leader.log.last_index == 2
    assert leader.commit_index == 0, "nothing commits before a follower acknowledges"

    while not deliver(leader, c).success:
        pass
    assert holders(nodes, 2, 3) == [leader.me, c.me]
    assert leader.commit_index == 0, "entry 2 is on 2 of 5 servers: not committed"
    assert_committed_on_a_majority(leader, nodes)

    while not deliver(leader, a).success:
        pass
    assert leader.commit_index == 2, "now L, C and A hold it"
    assert_committed_on_a_majority(leader, nodes)


# ---------------------------------------------------------------- 2. stale AE across a snapshot

SNAP = 5
TRUTH_TERMS = [1, 1, 1, 2, 2, 2, 2, 3, 3, 3]  # the leader's log, entries 1..10
TRUTH = [Entry(t, raw(f"entry-{i}")) for i, t in enumerate(TRUTH_TERMS, start=1)]


def truth(index: int) -> Entry:
    return TRUTH[index - 1]


def truth_term(index: int) -> int:
    return 0 if index == 0 else truth(index).term


def follower_with_snapshot(log_end: int) -> Driven:
    """A follower of the term-3 leader: snapshot up to SNAP, then the leader's
    entries up to ``log_end``."""
    entries = tuple(truth(i) for i in range(SNAP + 1, log_end + 1))
    return make_node(1, 3, term=3, entries=entries, snapshot=(SNAP, truth_term(SNAP), b"s5"))


CROSSING = [(prev, end) for prev in (0, 2, 4) for end in (3, 4, SNAP, 6, 7, 10) if end > prev]
"""(prevLogIndex, last index carried): all start inside the snapshot, and end
before it, at it, or after it."""


@pytest.mark.parametrize("log_end", [SNAP, 8, 10])
@pytest.mark.parametrize(("prev", "end"), CROSSING)
def test_a_stale_append_across_the_snapshot_is_applied_from_the_snapshot_on(
    log_end: int, prev: int, end: int
) -> None:
    """A delayed AppendEntries (prevLogIndex < snapshot index) whose entries end
    before, at or after the follower's snapshot: the part inside the snapshot is
    skipped, the rest is checked and appended at its own index, and entries the
    follower already holds past the request's end stay (rule 3 truncates only on
    a conflict)."""
    f = follower_with_snapshot(log_end)
    args = AppendEntriesArgs(
        3, 0, prev, truth_term(prev), tuple(truth(i) for i in range(prev + 1, end + 1)), end
    )
    reply = f.answer(args)
    assert reply == AppendEntriesReply(3, True), "every entry it carries is held or now appended"
    assert f.role is Role.FOLLOWER and f.current_term == 3
    assert (f.log.snapshot_index, f.log.snapshot_term, f.snapshot_data) == (SNAP, 2, b"s5")
    expected = [truth(i) for i in range(SNAP + 1, max(log_end, end) + 1)]
    assert f.log.entries == expected, "each entry at its own index, none cut, none lost"
    assert (f.disk.snapshot_index, f.disk.log) == (SNAP, expected), "and so in storage"
    assert f.commit_index == max(SNAP, end), "commit up to the last entry the request checked"


def test_a_stale_append_across_the_snapshot_then_a_fresh_one_leaves_the_leaders_log() -> None:
    """The same crossing request, from a real leader whose nextIndex for the
    follower is stale; the leader's matchIndex comes out right, and the next
    message completes the follower's log."""
    leader = make_node(0, 3, term=2, entries=tuple(TRUTH))
    elect(leader)
    assert leader.is_leader and leader.current_term == 3
    f = follower_with_snapshot(SNAP)
    leader.next_index[1] = 3  # it believes the follower needs entries from 3 on
    leader.node._max_append_bytes = 64  # four entries per message: 3-6, across index 5
    crossing = leader.send(1)
    assert isinstance(crossing, AppendEntriesArgs)
    assert (crossing.prev_log_index, len(crossing.entries)) == (2, 4)
    assert deliver(leader, f).success
    assert leader.match_index[1] == 6 and f.log.last_index == 6
    while leader.has_news_for(1):
        assert deliver(leader, f).success
    assert f.log.entries == TRUTH[SNAP:]
    assert leader.match_index[1] == 10


# ---------------------------------------------------------------- 3. backing up


def elected(me: int, n: int, term: int, terms: list[int]) -> Driven:
    """A leader of term ``term + 1`` holding a log with these terms."""
    entries = tuple(Entry(t, raw(f"{i}:{t}")) for i, t in enumerate(terms, 1))
    node = make_node(me, n, term=term, entries=entries)
    elect(node)
    assert node.is_leader
    return node


def follower(me: int, term: int, terms: list[int]) -> Driven:
    entries = tuple(Entry(t, raw(f"{i}:{t}")) for i, t in enumerate(terms, 1))
    return make_node(me, 3, term=term, entries=entries)


@pytest.mark.parametrize("short", [0, 1, 3, 40])
def test_a_short_follower_log_costs_one_round_trip(short: int) -> None:
    """The follower's log ends far before the leader's nextIndex: its rejection
    says where its log ends, and the leader's next AppendEntries starts there
    and succeeds."""
    leader = elected(0, 3, 1, [1] * 60)
    f = make_node(1, 3, term=1, entries=tuple(leader.log.entries[:short]))
    first = deliver(leader, f)
    assert not first.success
    assert leader.next_index[1] == short + 1, "straight to the follower's log end"
    second = deliver(leader, f)
    assert second.success, "one rejection, then the follower takes entries"
    assert leader.match_index[1] > short


def test_fast_backup_skips_each_conflicting_term_in_one_round_trip() -> None:
    """6.824's XTerm/XIndex/XLen: the follower is too short, then holds a term the
    leader never had (term 3, the leader skips it whole), then more entries of a
    term the leader has (term 2: the leader resumes after its own last entry of
    that term).  One round trip each, then success."""
    #             1  2  3  4  5  6  7  8  9 10 11 12 13 ...  20
    leader_terms = [1, 1, 2, 2, 2] + [4] * 15
    follower_terms = [1, 1] + [2] * 7 + [3] * 3  # 12 entries
    leader = elected(0, 3, 4, leader_terms)  # term 5
    f = follower(1, 4, follower_terms)
    steps = []
    while True:
        reply = deliver(leader, f)
        if reply.success:
            break
        steps.append((reply.conflict_index, reply.conflict_term, leader.next_index[1]))
        assert len(steps) < 10
    assert steps == [
        (13, 0, 13),  # too short: XLen
        (10, 3, 10),  # term 3, which the leader lacks: back to its first index
        (3, 2, 6),  # term 2, which the leader has: right after its last entry of term 2
    ]
    while leader.has_news_for(1):
        assert deliver(leader, f).success
    assert f.log.entries == leader.log.entries
