"""Each invariant of the Figure 2 model flags a hand-made bad state, and holds in
good ones (Raft paper Figure 3 for the first five)."""

from __future__ import annotations

import pytest

from trioraft.model import invariants as inv
from trioraft.model.checker import check
from trioraft.model.invariants import INVARIANTS, INVARIANTS_BY_NAME, first_violation, violations
from trioraft.model.registry import successors
from trioraft.model.search import Bounds
from trioraft.model.state import (
    CANDIDATE,
    LEADER,
    NO_EXT,
    NOBODY,
    PRE_VOTE,
    READ_INDEX,
    TRANSFER,
    Committed,
    Entry,
    Message,
    Server,
    State,
    append_entries_request,
    initial_state,
    request_vote_request,
    timeout_now_request,
)

E1 = Entry(1, 1)
E2 = Entry(2, 1)
E2B = Entry(2, 2)


def cluster(
    *servers: Server,
    network: tuple[Message, ...] = (),
    committed: tuple[Committed, ...] = (),
    stood: int = 0,
) -> State:
    return State(tuple(servers), network, committed, 0, stood)


def follower(term: int = 0, log: tuple[Entry, ...] = (), **changes: object) -> Server:
    base = initial_state(1).servers[0]._replace(current_term=term, log=log)
    return base._replace(**changes)


def leader(i: int, term: int, log: tuple[Entry, ...] = (), n: int = 3, **changes: object) -> Server:
    base = follower(
        term,
        log,
        role=LEADER,
        voted_for=i,
        next_index=(len(log) + 1,) * n,
        match_index=(0,) * n,
        leader_log=log,
        led_terms=(term,),
    )
    return base._replace(**changes)


def good_states() -> set[State]:
    """Every state reachable in term 1 with one entry and one message in flight."""
    bounds = Bounds(3, 1, 1, 1, 1)
    found = {initial_state(3)}
    frontier = list(found)
    while frontier:
        state = frontier.pop()
        for _, child in successors(state, bounds):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return found


def test_all_invariants_hold_in_good_states() -> None:
    states = good_states()
    assert any(s.role == LEADER for state in states for s in state.servers)
    assert any(state.committed for state in states)
    for state in states:
        assert violations(state) == []


# One bad state per invariant: (invariant name, state, words the description must contain).
BAD: list[tuple[str, State, str]] = [
    (
        "ElectionSafety",
        # Server 0 led term 1 earlier (history), server 1 leads term 1 now.
        cluster(follower(1, led_terms=(1,)), leader(1, 1), follower(1)),
        "servers 0 and 1 were both elected leader in term 1",
    ),
    (
        "LeaderAppendOnly",
        cluster(leader(0, 2, (E2,), leader_log=(E1,)), follower(2), follower(2)),
        "leader 0 of term 2 held log [1:t1=1] and now has [1:t2=1]",
    ),
    (
        "LogMatching",
        cluster(follower(2, (E1, E2)), follower(2, (E2, E2)), follower(2)),
        "servers 0 and 1 both have term 2 at index 2",
    ),
    (
        "LeaderCompleteness",
        cluster(
            leader(0, 3, (E2,)), follower(3, (E1,)), follower(3, (E1,)), committed=((1, 1, 1, 2),)
        ),
        "entry 1:t1=1, committed in term 2, is missing from the log of leader 0 of term 3",
    ),
    (
        "StateMachineSafety",
        cluster(
            follower(2, (E2,), commit_index=1, last_applied=1, applied=((1, 2, 1),)),
            follower(2, (E2B,), commit_index=1, last_applied=1, applied=((1, 2, 2),)),
            follower(2),
        ),
        "server 1 applied t2=2 at index 1, where t2=1 was committed or applied",
    ),
    (
        "StateMachineSafety",
        cluster(follower(2), follower(2), follower(2), committed=((1, 1, 1, 1), (1, 2, 1, 2))),
        "two different entries were committed at index 1",
    ),
    (
        "VotedForInTerm",
        cluster(follower(2, voted_for=1), follower(1), follower(2)),
        "server 0 has voted_for 1 in term 2, but server 1 is only in term 1",
    ),
    (
        "VotedForInTerm",
        cluster(follower(2, role=CANDIDATE, voted_for=NOBODY), follower(2), follower(2)),
        "server 0 is a candidate of term 2 with no vote",
    ),
    (
        "TermCoversLog",
        cluster(follower(1, (E2,)), follower(2), follower(2)),
        "server 0 is in term 1 but holds entry 1 of term 2",
    ),
    (
        "LogTermsNonDecreasing",
        cluster(follower(2, (E2, E1)), follower(2), follower(2)),
        "server 0's log goes back from term 2 to 1 at 2",
    ),
    (
        "CommitWithinLog",
        cluster(follower(1, (E1,), commit_index=2), follower(1), follower(1)),
        "server 0 has last_applied 0, commit_index 2 and 1 log entries",
    ),
    (
        "CommitWithinLog",
        cluster(follower(1, (E1,), snapshot_index=1), follower(1), follower(1)),
        "server 0 has a snapshot up to 1 beyond its commit_index 0",
    ),
    (
        "CommittedPrefixKnown",
        cluster(follower(1, (E1,), commit_index=1), follower(1), follower(1)),
        "server 0 has commit_index 1 but its entry 1:t1=1 was never known committed",
    ),
    (
        "AppliedPrefixesIdentical",
        cluster(follower(1, (E1,), applied=((2, 1, 1),)), follower(1), follower(1)),
        "server 0 applied index 2 as its entry number 1",
    ),
    (
        "AppliedWereCommitted",
        cluster(
            follower(1, (E1,), commit_index=1, last_applied=1, applied=((1, 1, 1),)),
            follower(1),
            follower(1),
        ),
        "server 0 applied 1:t1=1, never committed",
    ),
    (
        "MessageTermAtMostSender",
        cluster(
            follower(1),
            follower(1),
            follower(1),
            network=(
                request_vote_request(term=2, source=0, dest=1, last_log_term=0, last_log_index=0),
            ),
        ),
        "a message from server 0 carries term 2 > its term 1",
    ),
    (
        "PreVoteTerms",
        cluster(
            *(follower(1, ext=NO_EXT._replace(options=PRE_VOTE)) for _ in range(3)),
        ),
        "server 0 is in term 1, which no server stood for after a majority of pre-votes "
        "or a TimeoutNow (the highest: 0)",
    ),
    (
        "VoteWithholding",
        cluster(follower(2, voted_for=1, ext=NO_EXT._replace(lease_votes=(2,))), follower(2)),
        "server 0 granted a vote in term 2 while it believed a leader was alive",
    ),
    (
        "ReadIndexLinearizable",
        cluster(
            leader(0, 1, (E1,), ext=NO_EXT._replace(options=READ_INDEX, stale_reads=((2, 1),)))
        ),
        "leader 0 served a read at index 1, but entry 2 was committed before the read began",
    ),
    (
        "TransferCompleteness",
        cluster(
            leader(0, 1, (E1,), ext=NO_EXT._replace(options=TRANSFER, transfer_to=1)),
            follower(1),
            follower(1),
            network=(timeout_now_request(term=1, source=0, dest=1),),
        ),
        "leader 0 told server 1 to stand while holding [1:t1=1], but server 1 has []",
    ),
]


def test_every_invariant_has_a_bad_state() -> None:
    assert {name for name, _, _ in BAD} == set(INVARIANTS_BY_NAME)


@pytest.mark.parametrize(("name", "state", "words"), BAD, ids=[name for name, _, _ in BAD])
def test_invariant_flags_a_bad_state(name: str, state: State, words: str) -> None:
    problem = INVARIANTS_BY_NAME[name].check(state)
    assert problem is not None
    assert words in problem
    assert name in [found for found, _ in violations(state)]


def test_extension_invariants_hold_in_good_states_with_every_extension() -> None:
    """Every state reachable with Pre-Vote, CheckQuorum, transfer and ReadIndex in term 1
    with one entry and one message in flight keeps every invariant."""
    bounds = Bounds(3, 1, 1, 1, 0, pre_vote=True, check_quorum=True, transfer=True, read_index=True)
    result = check(bounds, symmetry=True)
    assert result.ok and result.complete, result.violation
    plain = check(Bounds(3, 1, 1, 1, 0), symmetry=True)
    assert result.states > 5 * plain.states, "the extensions' actions were explored"


def test_transfer_completeness_ignores_a_timeout_now_after_an_abandoned_transfer() -> None:
    # §3.10: a TimeoutNow still in flight after the leader gave up and took more
    # requests is stale (the implementation can send it too): not a violation.
    ext = NO_EXT._replace(options=TRANSFER, transfer_to=1, abandoned=True)
    state = cluster(
        leader(0, 1, (E1,), ext=ext),
        follower(1),
        follower(1),
        network=(timeout_now_request(term=1, source=0, dest=1),),
    )
    assert inv.transfer_completeness(state) is None


def test_first_violation_follows_registry_order() -> None:
    # Breaks ElectionSafety and TermCoversLog; the first in the registry is reported.
    state = cluster(follower(1, (E2,), led_terms=(1,)), leader(1, 1), follower(1))
    found = first_violation(state)
    assert found is not None and found[0] == "ElectionSafety"
    assert [name for name, _ in violations(state)] == ["ElectionSafety", "TermCoversLog"]


def test_election_safety_reads_history_not_only_current_leaders() -> None:
    # Nobody is leader now, yet two servers were elected in term 1.
    state = cluster(follower(1, led_terms=(1,)), follower(1, led_terms=(1,)), follower(1))
    assert inv.election_safety(state) is not None


def test_leader_completeness_ignores_leaders_of_older_terms() -> None:
    # A stale leader of term 1 lacking an entry committed in term 2 is allowed.
    state = cluster(
        leader(0, 1),
        follower(2, (E2,), commit_index=1),
        follower(2, (E2,)),
        committed=((1, 2, 1, 2),),
    )
    assert inv.leader_completeness(state) is None


def test_log_matching_accepts_diverging_uncommitted_suffixes() -> None:
    state = cluster(follower(3, (E1, Entry(2, 1))), follower(3, (E1, Entry(3, 1))), follower(3))
    assert inv.log_matching(state) is None


def test_invariants_report_roles_by_name() -> None:
    state = cluster(
        follower(2, role=LEADER, voted_for=1, next_index=(2, 2, 2), match_index=(0, 0, 0)),
        follower(2),
        follower(2),
    )
    problem = inv.voted_for_in_term(state)
    assert problem == "server 0 is a leader of term 2 but voted for 1"


def test_message_invariant_accepts_stale_probes() -> None:
    probe = request_vote_request(term=0, source=0, dest=1, last_log_term=0, last_log_index=0)
    heartbeat = append_entries_request(
        term=1, source=0, dest=1, prev_log_index=0, prev_log_term=0, entries=(), leader_commit=0
    )
    state = cluster(follower(1), follower(2), follower(2), network=(probe, heartbeat))
    assert inv.message_term_at_most_sender(state) is None


def test_registry_summaries_are_one_line() -> None:
    for invariant in INVARIANTS:
        assert invariant.summary and "\n" not in invariant.summary
