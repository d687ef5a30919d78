"""Figure 2's election and replication rules in the model, one rule at a time.

Until now these actions were reached only through the checker's mutants and
the validator; each test here sets up the few servers a rule needs and checks
what the rule does, quoting the rule.
"""

from __future__ import annotations

from typing import Any

import pytest

from trioraft.model import actions as a
from trioraft.model import extensions as a_ext
from trioraft.model.registry import ACTIONS, apply_step
from trioraft.model.search import Step
from trioraft.model.state import (
    CANDIDATE,
    CHECK_QUORUM,
    FOLLOWER,
    LEADER,
    NOBODY,
    PRE_CANDIDATE,
    PRE_VOTE,
    READ_INDEX,
    TRANSFER,
    AppendEntriesRequest,
    AppendEntriesResponse,
    Entry,
    Message,
    PreVoteResponse,
    Read,
    RequestVoteRequest,
    RequestVoteResponse,
    State,
    TimeoutNowResponse,
    append_entries_request,
    append_entries_response,
    initial_state,
    pre_vote_request,
    pre_vote_response,
    request_vote_request,
    request_vote_response,
    timeout_now_request,
)
from trioraft.model.story import describe


def changed(state: State, i: int, **fields: Any) -> State:
    servers = list(state.servers)
    servers[i] = servers[i]._replace(**fields)
    return state._replace(servers=tuple(servers))


def sent(state: State, m: Message) -> State:
    return state._replace(network=tuple(sorted((*state.network, m))))


def only(state: State, kind: type) -> Any:
    (m,) = [m for m in state.network if isinstance(m, kind)]
    return m


def step(state: State | None) -> State:
    assert state is not None, "the action was not enabled"
    return state


def log(*terms: int) -> tuple[Entry, ...]:
    return tuple(Entry(t, k + 1) for k, t in enumerate(terms))


def vote_request(term: int, candidate: int, voter: int, last_term: int, last_index: int) -> Any:
    return request_vote_request(
        term=term, source=candidate, dest=voter, last_log_term=last_term, last_log_index=last_index
    )


def append(
    term: int, prev: int, prev_term: int, entries: tuple[Entry, ...], commit: int = 0
) -> Any:
    return append_entries_request(
        term=term,
        source=0,
        dest=1,
        prev_log_index=prev,
        prev_log_term=prev_term,
        entries=entries,
        leader_commit=commit,
    )


# ------------------------------------------------------------------ elections


def test_timeout_makes_a_candidate_of_the_next_term_voting_for_itself() -> None:
    # Candidates: "increment currentTerm, vote for self".
    after = step(a.timeout(initial_state(3), 1))
    s = after.servers[1]
    assert (s.current_term, s.role, s.voted_for, s.votes_granted) == (1, CANDIDATE, 1, 0b010)
    assert after.stood == 1  # history: the highest term stood for
    leader = changed(initial_state(3), 0, role=LEADER)
    assert a.timeout(leader, 0) is None  # a leader has no election timeout


def test_a_vote_goes_to_the_first_candidate_of_a_term_only() -> None:
    # RequestVote receiver 2: "If votedFor is null or candidateId ... grant vote".
    state = initial_state(3)
    state = step(
        a.handle_request_vote(sent(state, vote_request(1, 0, 2, 0, 0)), vote_request(1, 0, 2, 0, 0))
    )
    assert state.servers[2].voted_for == 0 and only(state, RequestVoteResponse).vote_granted
    state = state._replace(network=())
    again = vote_request(1, 0, 2, 0, 0)  # the same candidate asking again: granted again
    state = step(a.handle_request_vote(sent(state, again), again))
    assert only(state, RequestVoteResponse).vote_granted
    state = state._replace(network=())
    other = vote_request(1, 1, 2, 0, 0)
    state = step(a.handle_request_vote(sent(state, other), other))
    assert state.servers[2].voted_for == 0 and not only(state, RequestVoteResponse).vote_granted


def test_a_vote_needs_a_log_at_least_as_up_to_date() -> None:
    # RequestVote receiver 2: "... and candidate's log is at least as up-to-date".
    voter = changed(initial_state(3), 2, log=log(1, 2), current_term=2)
    for last_term, last_index, granted in [
        (1, 5, False),
        (2, 1, False),
        (2, 2, True),
        (3, 1, True),
    ]:
        m = vote_request(3, 0, 2, last_term, last_index)
        after = step(a.handle_request_vote(sent(voter, m), m))
        assert only(after, RequestVoteResponse).vote_granted is granted, (last_term, last_index)
        # All Servers: a higher term is adopted whatever the vote.
        assert after.servers[2].current_term == 3
        assert after.servers[2].voted_for == (0 if granted else NOBODY)


def test_a_stale_candidate_is_refused_and_changes_nothing() -> None:
    # RequestVote receiver 1: "Reply false if term < currentTerm".
    voter = changed(initial_state(3), 2, current_term=5)
    m = vote_request(4, 0, 2, 9, 9)
    after = step(a.handle_request_vote(sent(voter, m), m))
    assert after.servers[2] == voter.servers[2]
    reply = only(after, RequestVoteResponse)
    assert not reply.vote_granted and reply.term == 5


def test_a_majority_of_votes_and_only_a_majority_makes_a_leader() -> None:
    state = step(a.timeout(initial_state(5), 0))
    for voter, expect_leader in [(1, False), (2, True)]:
        assert (a.become_leader(state, 0) is not None) is False
        reply = request_vote_response(term=1, source=voter, dest=0, vote_granted=True)
        state = step(a.handle_request_vote_response(sent(state, reply), reply))
        assert (a.become_leader(state, 0) is not None) is expect_leader
    refused = request_vote_response(term=1, source=3, dest=0, vote_granted=False)
    counted = step(a.handle_request_vote_response(sent(state, refused), refused))
    assert counted.servers[0].votes_granted == state.servers[0].votes_granted


def test_a_vote_from_an_old_term_is_not_counted() -> None:
    state = step(a.timeout(step(a.timeout(initial_state(3), 0)), 0))  # term 2
    late = request_vote_response(term=1, source=1, dest=0, vote_granted=True)
    after = step(a.handle_request_vote_response(sent(state, late), late))
    assert after.servers[0].votes_granted == 0b001 and a.become_leader(after, 0) is None


def test_a_new_leader_sets_up_its_bookkeeping_afresh() -> None:
    # Leaders, "Reinitialized after election": nextIndex = last log index + 1,
    # matchIndex = 0, whatever they were when this server led before.
    state = changed(initial_state(3), 0, role=CANDIDATE, current_term=3, voted_for=0,
                    votes_granted=0b011, log=log(1, 1, 3),
                    next_index=(9, 9, 9), match_index=(4, 4, 4))  # fmt: skip
    s = step(a.become_leader(state, 0)).servers[0]
    assert s.role == LEADER and s.next_index == (4, 4, 4) and s.match_index == (0, 0, 0)


def test_a_higher_term_in_any_reply_makes_a_leader_a_follower() -> None:
    # All Servers: "If RPC request or response contains term T > currentTerm: set
    # currentTerm = T, convert to follower".
    leader = changed(initial_state(3), 0, role=LEADER, current_term=2, voted_for=0,
                     next_index=(1, 1, 1), match_index=(0, 0, 0))  # fmt: skip
    reply = append_entries_response(
        term=4, source=1, dest=0, success=False, match_index=0, prev_log_index=0
    )
    s = step(a.handle_append_entries_response(sent(leader, reply), reply)).servers[0]
    assert (s.role, s.current_term, s.voted_for) == (FOLLOWER, 4, NOBODY)


# ------------------------------------------------------------------ AppendEntries receiver


def receive_append(follower: State, m: Any) -> tuple[State, Any]:
    after = step(a.handle_append_entries(sent(follower, m), m))
    return after, only(after, AppendEntriesResponse)


def follower_with(*terms: int, term: int = 3, commit: int = 0) -> State:
    return changed(initial_state(3), 1, log=log(*terms), current_term=term, commit_index=commit)


def test_rule_1_a_stale_leader_is_refused() -> None:
    follower = follower_with(1, 2, term=3)
    after, reply = receive_append(follower, append(2, 2, 2, log(2)))
    assert not reply.success and reply.term == 3 and after.servers[1] == follower.servers[1]


def test_rule_2_a_log_without_prev_is_refused() -> None:
    for prev, prev_term in [(3, 2), (2, 1)]:  # too short; a different term at prev
        after, reply = receive_append(follower_with(1, 2), append(3, prev, prev_term, ()))
        assert not reply.success and reply.prev_log_index == prev
        assert after.servers[1].log == log(1, 2)


def test_rules_3_and_4_a_conflict_is_cut_and_new_entries_appended() -> None:
    new = (Entry(3, 7), Entry(3, 8))
    after, reply = receive_append(follower_with(1, 2, 2), append(3, 1, 1, new))
    assert reply.success and reply.match_index == 3
    assert after.servers[1].log == (Entry(1, 1), *new)


def test_rule_3_a_stale_shorter_request_cuts_nothing() -> None:
    # "If an existing entry conflicts with a new one ... delete": only on conflict.
    follower = follower_with(1, 3, 3)
    after, reply = receive_append(follower, append(3, 1, 1, (Entry(3, 2),)))
    assert reply.success and after.servers[1].log == follower.servers[1].log


def test_rule_5_commit_index_follows_the_leader_up_to_the_last_new_entry() -> None:
    # "If leaderCommit > commitIndex, set commitIndex = min(leaderCommit, index of
    # last new entry)".
    after, _ = receive_append(follower_with(1), append(3, 1, 1, (Entry(3, 2),), commit=9))
    assert after.servers[1].commit_index == 2
    after, _ = receive_append(follower_with(1, 1, 1), append(3, 1, 1, (), commit=2))
    assert after.servers[1].commit_index == 1  # min(2, index of last new entry: 1)


# ------------------------------------------------------------------ leaders


def leader_of(term: int, terms: tuple[int, ...], match: tuple[int, ...]) -> State:
    return changed(initial_state(len(match)), 0, role=LEADER, current_term=term, voted_for=0,
                   log=log(*terms), next_index=tuple(m + 1 for m in match),
                   match_index=match, leader_log=log(*terms))  # fmt: skip


def test_a_leader_commits_only_its_own_terms_entries_by_counting() -> None:
    # Leaders: "If there exists an N > commitIndex such that a majority of
    # matchIndex[i] >= N, and log[N].term == currentTerm: set commitIndex = N".
    old_only = leader_of(3, (1, 3), (0, 1, 0))  # entry 1 (term 1) on a majority
    assert a.commit_index_limit(old_only, 0) == 1
    assert a.advance_commit_index(old_only, 0) is None  # Figure 8
    both = leader_of(3, (1, 3), (0, 2, 0))
    assert step(a.advance_commit_index(both, 0)).servers[0].commit_index == 2
    minority = leader_of(3, (3, 3), (0, 2, 0, 0, 0))
    assert a.advance_commit_index(minority, 0) is None  # 2 of 5 hold entry 1


def test_a_success_raises_match_index_and_never_lowers_it() -> None:
    leader = leader_of(2, (2, 2, 2), (0, 0, 0))
    reply = append_entries_response(
        term=2, source=1, dest=0, success=True, match_index=3, prev_log_index=0
    )
    after = step(a.handle_append_entries_response(sent(leader, reply), reply))
    s = after.servers[0]
    assert s.match_index[1] == 3 and s.next_index[1] == 4
    late = append_entries_response(
        term=2, source=1, dest=0, success=True, match_index=1, prev_log_index=0
    )  # an older request's reply
    s = step(a.handle_append_entries_response(sent(after, late), late)).servers[0]
    assert s.match_index[1] == 3 and s.next_index[1] == 4


def test_a_rejection_moves_next_index_back_but_not_below_match() -> None:
    # "If AppendEntries fails because of log inconsistency: decrement nextIndex and retry".
    leader = leader_of(2, (1, 1, 2, 2), (0, 1, 0))._replace()
    leader = changed(leader, 0, next_index=(5, 5, 5))
    reply = append_entries_response(
        term=2, source=1, dest=0, success=False, match_index=0, prev_log_index=4
    )
    assert a.next_index_choices(sent(leader, reply), reply) == (2, 3, 4)
    s = step(a.handle_append_entries_response(sent(leader, reply), reply)).servers[0]
    assert s.next_index[1] == 4  # Figure 2's own choice: prevLogIndex
    assert a.handle_append_entries_response(sent(leader, reply), reply, next_index=1) is None


def test_a_leader_sends_from_next_index_with_its_prev_term_and_commit() -> None:
    leader = changed(leader_of(2, (1, 2, 2), (0, 0, 0)), 0, next_index=(4, 2, 4), commit_index=1)
    m = only(step(a.append_entries(leader, 0, 1, 2)), AppendEntriesRequest)
    assert (m.prev_log_index, m.prev_log_term, m.entries, m.leader_commit) == (
        1, 1, log(1, 2, 2)[1:3], 1)  # fmt: skip
    assert a.append_entries(leader, 0, 1, 3) is None  # past the end of its log
    assert a.append_entries(changed(leader, 0, role=FOLLOWER), 0, 1, 0) is None


# ------------------------------------------------------------------ one test per registry entry
#
# Each action of the registry (trioraft.model.registry.ACTIONS) is enabled in one
# scripted state and not in another, as its Figure 2 rule says; replaying its
# Step through the registry (apply_step) must be the rule itself.  A new action
# without a line in ENABLING fails test_every_registry_entry_has_an_enabling_case.


def candidate_of(term: int, n: int = 3, votes: int = 0b001) -> State:
    return changed(initial_state(n), 0, role=CANDIDATE, current_term=term, voted_for=0,
                   votes_granted=votes)  # fmt: skip


def with_snapshot(state: State, i: int, index: int) -> State:
    return changed(state, i, snapshot_index=index)


HEARTBEAT = append_entries_request(
    term=2, source=0, dest=1, prev_log_index=0, prev_log_term=0, entries=(), leader_commit=0
)


def ext(state: State, i: int, **fields: Any) -> State:
    """``state`` with server ``i``'s extensions' state changed."""
    return changed(state, i, ext=state.servers[i].ext._replace(**fields))


def _extension_cases() -> dict[str, tuple[str, State, State, Step]]:
    """The extensions' actions (thesis §9.6, §4.2.3, §6.2, §3.10, §6.4)."""
    pre = changed(initial_state(3), 0, role=PRE_CANDIDATE, votes_granted=0b001)
    pre = ext(pre, 0, options=PRE_VOTE)
    leader = leader_of(2, (2,), (0, 0, 0))
    transferring = ext(leader, 0, options=TRANSFER, transfer_to=1)
    caught_up = ext(leader_of(2, (2,), (0, 1, 0)), 0, options=TRANSFER, transfer_to=1)
    reading = ext(changed(leader, 0, current_term=2), 0, options=READ_INDEX, reads=(Read(0, 1),))
    reading = changed(reading, 1, current_term=2)
    committed = changed(leader_of(2, (2,), (0, 1, 0)), 0, commit_index=1)
    confirmed = ext(committed, 0, options=READ_INDEX, reads=(Read(1, 0b011),))
    return {
        "pre_vote": (
            "§9.6: a pre-candidate asks every server whether it would vote at term + 1",
            pre, changed(pre, 0, votes_granted=0b011), Step("pre_vote", 0, 1)),
        "become_candidate": (
            "§9.6: a pre-candidate a majority would vote for starts the election",
            changed(pre, 0, votes_granted=0b011), pre, Step("become_candidate", 0)),
        "expire_lease": (
            "§4.2.3: the minimum election timeout passes since the follower heard its leader",
            ext(initial_state(3), 1, options=PRE_VOTE, lease=True), initial_state(3),
            Step("expire_lease", 1)),
        "check_quorum": (
            "§6.2: a leader that heard from no majority in an election timeout steps down",
            ext(leader, 0, options=CHECK_QUORUM), leader, Step("check_quorum", 0)),
        "transfer_leadership": (
            "§3.10: a leader starts handing leadership to another server",
            ext(leader, 0, options=TRANSFER), leader, Step("transfer_leadership", 0, 1)),
        "timeout_now": (
            "§3.10: once the target's log matches the leader's, send it TimeoutNow",
            caught_up, transferring, Step("timeout_now", 0)),
        "abandon_transfer": (
            "§3.10: a transfer not done within an election timeout is abandoned",
            transferring, ext(leader, 0, options=TRANSFER), Step("abandon_transfer", 0)),
        "read_index": (
            "§6.4: a leader takes a read and starts a confirmation round",
            ext(leader, 0, options=READ_INDEX), leader, Step("read_index", 0)),
        "ack_read": (
            "§6.4: a follower in the leader's term answers a message of the read's round",
            reading, changed(reading, 1, current_term=3), Step("ack_read", 0, 1)),
        "serve_read": (
            "§6.4: own-term entry committed and a majority confirmed: serve at commitIndex",
            confirmed, ext(committed, 0, options=READ_INDEX, reads=(Read(1, 0b001),)),
            Step("serve_read", 0)),
    }  # fmt: skip


def _enabling() -> dict[str, tuple[str, State, State, Step]]:
    """name -> (the Figure 2 rule, a state where it is enabled, one where it is not,
    the Step)."""
    leader = leader_of(2, (2,), (0, 0, 0))
    applied_up_to_1 = changed(leader_of(2, (2, 2), (0, 2, 0)), 0, commit_index=1)
    snapshotted = changed(applied_up_to_1, 0, last_applied=1)
    lagging = changed(with_snapshot(snapshotted, 0, 1), 0, next_index=(3, 1, 3))
    installed = changed(initial_state(3), 1, log=log(2), commit_index=1, snapshot_index=1)
    return {
        "timeout": (
            "Followers: if election timeout elapses ... convert to candidate",
            initial_state(3), leader, Step("timeout", 0)),
        "request_vote": (
            "Candidates: send RequestVote RPCs to all other servers",
            candidate_of(1), candidate_of(1, votes=0b011), Step("request_vote", 0, 1)),
        "become_leader": (
            "Candidates: if votes received from majority of servers: become leader",
            candidate_of(1, votes=0b011), candidate_of(1), Step("become_leader", 0)),
        "client_request": (
            "Leaders: if command received from client: append entry to local log",
            leader, initial_state(3), Step("client_request", 0, value=1)),
        "append_entries": (
            "Leaders: send AppendEntries RPC with log entries starting at nextIndex",
            leader, changed(leader, 0, role=FOLLOWER), Step("append_entries", 0, 1, 1)),
        "advance_commit_index": (
            "Leaders: if there exists an N > commitIndex such that a majority of "
            "matchIndex[i] >= N, and log[N].term == currentTerm: set commitIndex = N",
            leader_of(2, (2,), (0, 1, 0)), leader, Step("advance_commit_index", 0)),
        "apply": (
            "All Servers: if commitIndex > lastApplied: increment lastApplied, apply "
            "log[lastApplied] to state machine",
            applied_up_to_1, leader, Step("apply", 0)),
        "restart": (
            "persistent state ... updated on stable storage before responding to RPCs",
            leader, leader, Step("restart", 0)),
        "take_snapshot": (
            "§7: each server takes snapshots independently, covering committed entries",
            snapshotted, applied_up_to_1, Step("take_snapshot", 0, snapshot_index=1)),
        "install_snapshot": (
            "Leaders (Figure 13): send InstallSnapshot when nextIndex is inside the snapshot",
            lagging, with_snapshot(snapshotted, 0, 1), Step("install_snapshot", 0, 1)),
        "install_snapshot_chunk": (
            "Figure 13: a snapshot is sent in chunks; a chunk that does not complete it",
            lagging, with_snapshot(snapshotted, 0, 1), Step("install_snapshot_chunk", 0, 1)),
        "apply_snapshot": (
            "Figure 13 receiver 8: reset state machine using snapshot contents",
            installed, initial_state(3), Step("apply_snapshot", 1)),
        "receive": (
            "AppendEntries RPC: invoked by leader to replicate log entries",
            sent(follower_with(term=2), HEARTBEAT), follower_with(term=2),
            Step("receive", 1, message=HEARTBEAT)),
        "drop_message": (
            "the network may lose a message",
            sent(initial_state(3), HEARTBEAT), initial_state(3),
            Step("drop_message", message=HEARTBEAT)),
        "duplicate_message": (
            "the network may deliver a message twice",
            sent(initial_state(3), HEARTBEAT), initial_state(3),
            Step("duplicate_message", message=HEARTBEAT)),
        **_extension_cases(),
    }  # fmt: skip


def test_every_registry_entry_has_an_enabling_case() -> None:
    assert set(_enabling()) == set(ACTIONS)


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_each_registry_entry_is_enabled_only_where_its_rule_says(name: str) -> None:
    rule, enabled, disabled, the_step = _enabling()[name]
    after = apply_step(enabled, the_step)
    assert after is not None and after != enabled, f"{name} not enabled: {rule}"
    if name == "restart":
        # A restart is always enabled (a crash can happen any time); what it keeps
        # is persistent state only: the leader comes back a follower of its term.
        s = after.servers[0]
        assert (s.role, s.current_term, s.voted_for, s.log) == (FOLLOWER, 2, 0, log(2))
        assert (s.next_index, s.match_index, s.commit_index) == ((), (), 0)
    else:
        assert apply_step(disabled, the_step) is None, f"{name} enabled against: {rule}"
    # The registry also tells the step (the counterexample's story).
    assert describe(the_step, enabled, after)


def test_apply_never_applies_an_entry_inside_the_snapshot() -> None:
    # Figure 13: a server applies its snapshot's entries only by installing it.
    state = changed(leader_of(2, (2, 2), (0, 2, 0)), 0, commit_index=2, snapshot_index=1)
    assert a.apply(state, 0) is None
    assert step(a.apply_snapshot(state, 0, 1)).servers[0].last_applied == 1


def test_request_vote_is_sent_only_to_another_server_by_a_candidate() -> None:
    # Candidates: "send RequestVote RPCs to all other servers".
    assert a.request_vote(candidate_of(1), 0, 0) is None  # not to itself
    assert a.request_vote(candidate_of(1), 0, 3) is None  # not outside the cluster
    assert a.request_vote(changed(candidate_of(1), 0, role=FOLLOWER), 0, 1) is None
    m = only(step(a.request_vote(changed(candidate_of(1), 0, log=log(1, 1)), 0, 2)),
             RequestVoteRequest)  # fmt: skip
    assert (m.term, m.source, m.dest, m.last_log_term, m.last_log_index) == (1, 0, 2, 1, 2)


def test_actions_that_send_return_the_message_they_put_in_flight() -> None:
    # What the validator relies on instead of diffing network bags.
    before = sent(candidate_of(1), vote_request(1, 0, 1, 0, 0))
    state, m = a.request_vote_sent(before, 0, 2) or (None, None)
    assert state is not None and m is not None
    assert state.network.count(m) == before.network.count(m) + 1
    request = vote_request(1, 0, 1, 0, 0)
    handled = a.handle_request_vote_sent(before, request)
    assert handled is not None
    after, reply = handled
    assert isinstance(reply, RequestVoteResponse) and reply in after.network
    assert request not in after.network and reply.vote_granted
    leader = leader_of(2, (2,), (0, 0, 0))
    sent_entries = a.append_entries_sent(leader, 0, 1, 1)
    assert sent_entries is not None and sent_entries[1].entries == log(2)
    assert a.append_entries(leader, 0, 1, 1) == sent_entries[0]


# ------------------------------------------------------------------ the extensions' handlers


def pre_vote_of(term: int, candidate: int, voter: int) -> Any:
    return pre_vote_request(term=term, source=candidate, dest=voter, last_log_term=0,
                            last_log_index=0)  # fmt: skip


def test_a_pre_vote_is_granted_without_changing_the_voter() -> None:
    # §9.6: the voter answers whether it would vote; its term and vote stay.
    state = ext(initial_state(3), 1, options=PRE_VOTE)
    m = pre_vote_of(1, 0, 1)
    after = step(a.handle_pre_vote(sent(state, m), m))
    assert after.servers[1] == state.servers[1]
    reply = only(after, PreVoteResponse)
    assert reply.vote_granted and reply.term == 1  # a grant carries the asked term
    stale = pre_vote_of(1, 0, 1)
    behind = changed(state, 1, current_term=1)
    reply = only(step(a.handle_pre_vote(sent(behind, stale), stale)), PreVoteResponse)
    assert not reply.vote_granted and reply.term == 1  # not above its term: its own term


def test_a_pre_candidate_stands_only_with_a_majority_of_pre_votes() -> None:
    # §9.6: the timer makes a pre-candidate (no term stood for); a majority starts the
    # election, and only then is term + 1 a term stood for (State.stood).
    state = step(a.timeout(ext(initial_state(3), 1, options=PRE_VOTE), 1))
    s = state.servers[1]
    assert (s.role, s.current_term, s.votes_granted, state.stood) == (PRE_CANDIDATE, 0, 0b010, 0)
    assert a.become_candidate(state, 1) is None  # its own pre-vote is no majority
    grant = pre_vote_response(term=1, source=0, dest=1, vote_granted=True)
    state = step(a.handle_pre_vote_response(sent(state, grant), grant))
    after = step(a.become_candidate(state, 1))
    s = after.servers[1]
    assert (s.role, s.current_term, s.voted_for, after.stood) == (CANDIDATE, 1, 1, 1)


def test_a_server_in_its_lease_withholds_votes_and_pre_votes_unless_a_transfer_asks() -> None:
    # §4.2.3: heard from a leader within the minimum timeout: neither term nor vote.
    leased = ext(changed(initial_state(3), 1, current_term=1), 1, options=PRE_VOTE, lease=True)
    m = vote_request(2, 0, 1, 0, 0)
    after = step(a.handle_request_vote(sent(leased, m), m))
    assert after.servers[1] == leased.servers[1]
    assert not only(after, RequestVoteResponse).vote_granted
    p = pre_vote_of(2, 0, 1)
    assert not only(step(a.handle_pre_vote(sent(leased, p), p)), PreVoteResponse).vote_granted
    transfer = m._replace(transfer=True)
    after = step(a.handle_request_vote(sent(leased, transfer), transfer))
    assert (after.servers[1].current_term, after.servers[1].voted_for) == (2, 0)


def test_timeout_now_starts_a_transfer_election_at_once() -> None:
    # §3.10: a TimeoutNow of its term: stand now, no pre-vote, say it is a transfer.
    state = ext(changed(initial_state(3), 1, current_term=2), 1, options=PRE_VOTE)
    m = timeout_now_request(term=2, source=0, dest=1)
    after = step(a.handle_timeout_now(sent(state, m), m))
    s = after.servers[1]
    assert (s.role, s.current_term, s.voted_for) == (CANDIDATE, 3, 1)
    assert s.ext.campaign and after.stood == 3  # history: a term stood for
    assert only(after, TimeoutNowResponse).term == 2  # acknowledged with its term then
    request = only(step(a.request_vote(after, 1, 2)), RequestVoteRequest)
    assert request.transfer
    stale = timeout_now_request(term=1, source=0, dest=1)
    after = step(a.handle_timeout_now(sent(state, stale), stale))
    assert after.servers[1] == state.servers[1]  # an old term's: ignored


def test_a_pre_candidate_counts_grants_and_follows_a_higher_refusal() -> None:
    pre = ext(changed(initial_state(3), 0, role=PRE_CANDIDATE, current_term=1,
                      votes_granted=0b001), 0, options=PRE_VOTE)  # fmt: skip
    grant = pre_vote_response(term=2, source=1, dest=0, vote_granted=True)
    assert step(a.handle_pre_vote_response(sent(pre, grant), grant)).servers[0].votes_granted == 3
    refusal = pre_vote_response(term=3, source=2, dest=0, vote_granted=False)
    s = step(a.handle_pre_vote_response(sent(pre, refusal), refusal)).servers[0]
    assert (s.role, s.current_term) == (FOLLOWER, 3)
    # a pre-vote timeout changes neither term nor vote; within a lease it cannot fire
    follower = ext(changed(initial_state(3), 1, current_term=1, voted_for=2), 1, options=PRE_VOTE)
    s = step(a.timeout(follower, 1)).servers[1]
    assert (s.role, s.current_term, s.voted_for, s.votes_granted) == (PRE_CANDIDATE, 1, 2, 0b010)
    assert a.timeout(ext(follower, 1, lease=True), 1) is None


def test_a_transfer_under_way_can_be_retargeted_and_its_timeout_now_is_then_stale() -> None:
    # §3.10 as implemented: a second transfer replaces the first.
    leader = ext(leader_of(2, (2,), (0, 0, 0)), 0, options=TRANSFER, transfer_to=1)
    s = step(a_ext.transfer_leadership(leader, 0, 2)).servers[0]
    assert (s.ext.transfer_to, s.ext.abandoned) == (2, True)
    assert a_ext.transfer_leadership(leader, 0, 1) is None  # already its target
