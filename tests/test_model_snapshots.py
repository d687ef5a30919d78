"""Snapshots in the Figure 2 model (Figure 13): the actions rule by rule, and the
checker exploring compaction and InstallSnapshot with its mutant caught."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import pytest

from trioraft.model import actions as a
from trioraft.model.check_cli import add_arguments, found_with, resolve, run
from trioraft.model.checker import check
from trioraft.model.invariants import INVARIANTS, Invariant, violations
from trioraft.model.mutants import MUTANT_BY_NAME
from trioraft.model.registry import apply_step, successors
from trioraft.model.search import Bounds, Step, settle, tidy_network
from trioraft.model.state import (
    CANDIDATE,
    FOLLOWER,
    LEADER,
    AppendEntriesRequest,
    AppendEntriesResponse,
    Entry,
    InstallSnapshotRequest,
    InstallSnapshotResponse,
    Message,
    RequestVoteRequest,
    RequestVoteResponse,
    State,
    append_entries_request,
    append_entries_response,
    format_message,
    initial_state,
    install_snapshot_request,
)
from trioraft.model.story import format_trace

MUTANT = "install-snapshot-discards-log"


def _step(state: State | None) -> State:
    assert state is not None, "a scripted step was not enabled"
    return state


def _only(state: State, kind: type[Message]) -> Message:
    (m,) = [m for m in state.network if isinstance(m, kind)]
    return m


def leader_with_two_entries() -> State:
    """Server 0 leads term 1 (server 1 voted for it) and holds two entries of term 1."""
    state = initial_state(3)
    state = _step(a.timeout(state, 0))
    state = _step(a.request_vote(state, 0, 1))
    request = _only(state, RequestVoteRequest)
    assert isinstance(request, RequestVoteRequest)
    state = _step(a.handle_request_vote(state, request))
    reply = _only(state, RequestVoteResponse)
    assert isinstance(reply, RequestVoteResponse)
    state = _step(a.handle_request_vote_response(state, reply))
    state, taken = settle(state, 0)
    assert taken == ("become_leader",)
    state = _step(a.client_request(state, 0, 1))
    return _step(a.client_request(state, 0, 2))


def deliver(state: State, m: Message) -> State:
    state = _step(a.receive(state, m))
    state, _ = settle(state, m.dest)
    return state


def snapshot_race(compact: bool = True) -> State:
    """Server 2 holds both entries (its success reply still in flight); server 1 took
    entry 1 and its reply committed it; the leader then compacted entry 1 away.  The
    leader's nextIndex for server 2 is still 1: it will send InstallSnapshot."""
    state = leader_with_two_entries()
    state = _step(a.append_entries(state, 0, 2, 2))
    state = deliver(state, _only(state, AppendEntriesRequest))
    held = _only(state, AppendEntriesResponse)
    state = _step(a.append_entries(state, 0, 1, 1))
    state = deliver(state, _only(state, AppendEntriesRequest))
    (reply,) = [m for m in state.network if m != held]
    state = deliver(state, reply)
    assert state.servers[0].commit_index == state.servers[0].last_applied == 1
    return _step(a.take_snapshot(state, 0, 1)) if compact else state


# --------------------------------------------------------------------- the actions


def test_a_snapshot_covers_only_applied_entries() -> None:
    state = snapshot_race()
    leader = state.servers[0]
    assert leader.snapshot_index == 1 and leader.log == state.servers[2].log
    # Not past lastApplied, and never backwards or in place.
    assert a.take_snapshot(state, 0, 2) is None
    assert a.take_snapshot(state, 0, 1) is None
    assert a.take_snapshot(state, 2, 1) is None  # server 2 applied nothing yet


def test_a_leader_sends_install_snapshot_instead_of_compacted_entries() -> None:
    state = snapshot_race()
    assert state.servers[0].next_index[2] == 1
    for count in range(3):
        assert a.append_entries(state, 0, 2, count) is None  # would start inside the snapshot
    sent = _step(a.install_snapshot(state, 0, 2))
    m = _only(sent, InstallSnapshotRequest)
    assert isinstance(m, InstallSnapshotRequest)
    assert (m.term, m.last_included_index, m.last_included_term) == (1, 1, 1)
    assert m.data == state.servers[0].log[:1]
    assert "snapshot 1/t1" in format_message(m)
    # Server 1's nextIndex (2) is past the snapshot: AppendEntries, not InstallSnapshot.
    assert a.install_snapshot(state, 0, 1) is None
    assert a.append_entries(state, 0, 1, 1) is not None


def test_install_snapshot_keeps_the_entries_after_a_matching_last_entry() -> None:
    """Figure 13 rule 6; the mutant drops them (rule 7 applied always)."""
    state = _step(a.install_snapshot(snapshot_race(), 0, 2))
    m = _only(state, InstallSnapshotRequest)
    assert isinstance(m, InstallSnapshotRequest)
    after = deliver(state, m)
    follower = after.servers[2]
    assert follower.log == state.servers[2].log  # both entries kept
    assert (follower.snapshot_index, follower.commit_index, follower.last_applied) == (1, 1, 1)
    assert (1, 1, 1) in follower.applied  # the state machine was reset to the snapshot
    reply = _only(after, InstallSnapshotResponse)
    assert isinstance(reply, InstallSnapshotResponse) and reply.last_included_index == 1

    mutated = _step(a.handle_install_snapshot(state, m, mutant=MUTANT))
    assert mutated.servers[2].log == m.data


def test_install_snapshot_replaces_a_conflicting_log() -> None:
    """Figure 13 rule 7: the entry at lastIncludedIndex has another term, so the whole
    log is discarded, entries after it included (rule 6 would keep those)."""
    state = snapshot_race()
    data = (Entry(1, 1), Entry(2, 5))
    m = install_snapshot_request(
        term=2, source=0, dest=2, last_included_index=2, last_included_term=2, data=data
    )
    follower = state.servers[2]._replace(log=(Entry(1, 1), Entry(1, 2), Entry(1, 3)))
    state = state._replace(servers=(*state.servers[:2], follower), network=(m,))
    after = _step(a.handle_install_snapshot(state, m))
    s = after.servers[2]
    assert s.log == data
    assert (s.current_term, s.commit_index, s.snapshot_index) == (2, 2, 2)


def test_a_chunk_that_does_not_complete_the_snapshot_only_carries_the_term() -> None:
    state = snapshot_race()
    candidate = state.servers[2]._replace(role=CANDIDATE, voted_for=2, votes_granted=1 << 2)
    state = state._replace(servers=(*state.servers[:2], candidate))
    sent = _step(a.install_snapshot_chunk(state, 0, 2))
    chunk = _only(sent, InstallSnapshotRequest)
    assert isinstance(chunk, InstallSnapshotRequest)
    assert (chunk.last_included_index, chunk.data) == (0, ())
    assert "not the last" in format_message(chunk)
    after = _step(a.handle_install_snapshot(sent, chunk))
    s = after.servers[2]
    assert s.role == FOLLOWER and s.log == candidate.log and s.snapshot_index == 0
    reply = _only(after, InstallSnapshotResponse)
    back = deliver(after, reply)
    assert back.servers[0] == after.servers[0]  # the leader learns nothing from it
    assert a.install_snapshot_chunk(state, 0, 1) is None  # nextIndex[1] is past the snapshot


def test_an_old_snapshot_changes_nothing_but_is_acknowledged() -> None:
    state = _step(a.install_snapshot(snapshot_race(), 0, 2))
    m = _only(state, InstallSnapshotRequest)
    assert isinstance(m, InstallSnapshotRequest)
    ahead = state.servers[2]._replace(commit_index=2)
    state = state._replace(servers=(*state.servers[:2], ahead))
    after = _step(a.handle_install_snapshot(state, m))
    assert after.servers[2] == ahead
    reply = _only(after, InstallSnapshotResponse)
    assert isinstance(reply, InstallSnapshotResponse) and reply.last_included_index == 1


def test_a_stale_install_snapshot_is_refused_for_the_term() -> None:
    state = _step(a.install_snapshot(snapshot_race(), 0, 2))
    m = _only(state, InstallSnapshotRequest)
    assert isinstance(m, InstallSnapshotRequest)
    newer = state.servers[2]._replace(current_term=2)
    state = state._replace(servers=(*state.servers[:2], newer))
    after = _step(a.handle_install_snapshot(state, m))
    assert after.servers[2] == newer
    reply = _only(after, InstallSnapshotResponse)
    assert isinstance(reply, InstallSnapshotResponse)
    assert (reply.term, reply.last_included_index) == (2, 0)
    back = deliver(after, reply)
    assert back.servers[0].role == FOLLOWER and back.servers[0].current_term == 2


def test_the_reply_raises_match_index_and_commits() -> None:
    state = _step(a.install_snapshot(snapshot_race(), 0, 2))
    m = _only(state, InstallSnapshotRequest)
    assert isinstance(m, InstallSnapshotRequest)
    state = deliver(state, m)
    reply = _only(state, InstallSnapshotResponse)
    after = deliver(state, reply)
    leader = after.servers[0]
    assert leader.match_index[2] == 1 and leader.next_index[2] == 2
    # The success reply of the earlier AppendEntries (match 2) is still in flight.
    late = _only(after, AppendEntriesResponse)
    done = deliver(after, late)
    assert done.servers[0].match_index[2] == 2 and done.servers[0].commit_index == 2


def test_append_entries_inside_the_follower_snapshot_is_skipped() -> None:
    """The part of an AppendEntries the follower's snapshot covers is committed and
    matching: it is skipped, and a message wholly inside succeeds at once."""
    state = leader_with_two_entries()
    state = _step(a.append_entries(state, 0, 1, 1))
    state = deliver(state, _only(state, AppendEntriesRequest))
    state = deliver(state, _only(state, AppendEntriesResponse))
    state = _step(a.append_entries(state, 0, 1, 1))  # entry 2, leaderCommit 1
    state = deliver(state, _only(state, AppendEntriesRequest))
    assert state.servers[1].commit_index == 1 and state.servers[1].last_applied == 1
    state = _step(a.take_snapshot(state, 1, 1))
    follower = state.servers[1]
    # A stale, duplicate AppendEntries from index 0 with one entry: inside the snapshot.
    inside = append_entries_request(
        term=1,
        source=0,
        dest=1,
        prev_log_index=0,
        prev_log_term=0,
        entries=follower.log[:1],
        leader_commit=0,
    )
    net = tuple(sorted((*state.network, inside)))
    after = _step(a.handle_append_entries(state._replace(network=net), inside))
    assert after.servers[1] == follower
    assert (
        append_entries_response(
            term=1, source=1, dest=0, success=True, match_index=1, prev_log_index=0
        )
        in after.network
    )


def test_restart_restores_the_snapshot() -> None:
    state = snapshot_race()
    after = _step(a.restart(state, 0))
    s = after.servers[0]
    assert s.role == FOLLOWER and s.snapshot_index == 1
    assert s.commit_index == s.last_applied == 1  # the snapshot is committed and applied
    assert not violations(after)
    # Entries inside the snapshot are never applied one by one again.
    assert a.apply(after, 0) is None


def test_apply_never_reaches_into_an_uninstalled_snapshot() -> None:
    state = _step(a.install_snapshot(snapshot_race(), 0, 2))
    m = _only(state, InstallSnapshotRequest)
    assert isinstance(m, InstallSnapshotRequest)
    raw = _step(a.handle_install_snapshot(state, m))  # no follow-ups yet
    s = raw.servers[2]
    assert (s.commit_index, s.last_applied, s.snapshot_index) == (1, 0, 1)
    assert a.apply(raw, 2) is None  # entry 1 is the snapshot's: install it instead
    settled, taken = settle(raw, 2)
    assert taken == ("apply_snapshot",)
    assert settled.servers[2].last_applied == 1


# --------------------------------------------------------------------- the checker

SNAPSHOT_BOUNDS, _ = found_with(MUTANT_BY_NAME[MUTANT])  # 3 servers, T 2, L 2, M 2, snapshots


def _replays(trace: tuple[tuple[Step | None, State], ...], mutant: str | None) -> None:
    for (_, before), (step, after) in pairwise(trace):
        assert step is not None
        replayed = apply_step(before, step, mutant)
        assert replayed is not None, f"{step} is not enabled"
        assert tidy_network(replayed) == after


def test_the_discarding_mutant_is_caught_and_the_correct_model_passes() -> None:
    """The follower holds entry 2 (its ack is in flight), then installs a snapshot of
    entry 1 and, with the mutant, drops entry 2; the ack commits entry 2 anyway,
    and a leader of term 2 is elected without it."""
    start = snapshot_race()
    result = check(SNAPSHOT_BOUNDS, mutant=MUTANT, initial=start)
    assert result.violation is not None
    assert result.violation[0] == MUTANT_BY_NAME[MUTANT].caught_by == "LeaderCompleteness"
    assert len(result.trace) - 1 == result.depth == 7
    assert all(not violations(state) for _, state in result.trace[:-1])
    _replays(result.trace, MUTANT)
    story = format_trace(result.trace)
    assert "leader 0 sends InstallSnapshot to server 2" in story
    assert "installs it: log now [1:t1=1]" in story

    correct = check(SNAPSHOT_BOUNDS, initial=start)
    assert correct.ok and correct.complete
    assert correct.states > 100_000


def _probe(name: str, found: Callable[[State], object]) -> Invariant:
    """An 'invariant' that fails where ``found(state)`` is true: a reachability test."""

    def check_(state: State) -> str | None:
        return f"{name} reached" if found(state) else None

    return Invariant(name, check_, name)


@pytest.mark.parametrize("fine_grained", [False, True])
def test_snapshot_paths_are_explored_and_safe(fine_grained: bool) -> None:
    bounds = Bounds(3, 1, 1, 2, 0, fine_grained=fine_grained, snapshots=True)
    installed = _probe(
        "InstalledOnAFollower",
        lambda st: (
            any(s.role == FOLLOWER and s.snapshot_index and not s.led_terms for s in st.servers)
            and any(
                isinstance(m, InstallSnapshotResponse) and m.last_included_index for m in st.network
            )
        ),
    )
    reached = check(bounds, symmetry=True, invariants=(installed,))
    assert reached.violation is not None  # InstallSnapshot is delivered and answered
    result = check(bounds, symmetry=True)
    assert result.ok and result.complete
    assert result.states > check(bounds._replace(snapshots=False), symmetry=True).states


def test_snapshots_with_a_restart_are_safe() -> None:
    bounds = Bounds(3, 2, 1, 1, 1, snapshots=True)
    result = check(bounds, symmetry=True)
    assert result.ok and result.complete


def test_without_snapshots_no_snapshot_action_is_offered() -> None:
    state = snapshot_race(compact=False)
    actions = {step.action for step, _ in successors(state, Bounds(3, 2, 2, 3, 0))}
    assert "take_snapshot" not in actions
    with_snapshots = {
        step.action for step, _ in successors(state, Bounds(3, 2, 2, 3, 0, snapshots=True))
    }
    assert "take_snapshot" in with_snapshots


def test_cli_needs_snapshots_for_the_snapshot_mutant(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    bounds, _ = resolve(parser.parse_args(["--mutant", MUTANT, "--max-msgs", "1"]))
    assert bounds.snapshots  # the mutant's own options bring snapshots
    assert run(parser.parse_args(["--mutant", MUTANT, "--no-snapshots"])) == 2
    assert "it needs --snapshots (drop --no-snapshots)" in capsys.readouterr().err
    args = parser.parse_args(["--snapshots", "--max-msgs", "1", "--quiet", "--symmetry"])
    assert run(args) == 0
    out = capsys.readouterr().out
    assert "snapshots" in out and "no invariant violated" in out


def test_registry_still_holds_in_every_snapshot_state_of_a_small_space() -> None:
    """Every invariant evaluated on every state of a small snapshot space (not only
    on the checker's path through its caches)."""
    bounds = Bounds(3, 1, 1, 1, 1, snapshots=True)
    seen = {initial_state(3)}
    frontier = list(seen)
    snapshots = restored = 0
    while frontier:
        state = frontier.pop()
        for step, child in successors(state, bounds):
            if step.action == "restart" and state.servers[step.server].snapshot_index:
                restored += 1
            if child not in seen:
                seen.add(child)
                frontier.append(child)
                assert not violations(child, INVARIANTS), violations(child)
                snapshots += any(s.snapshot_index for s in child.servers)
    assert snapshots > 1000 and restored > 100
    assert any(s.role == LEADER and s.snapshot_index for st in seen for s in st.servers)
