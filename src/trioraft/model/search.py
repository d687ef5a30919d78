"""The model checker's search over Figure 2's actions: what is explored from a state.

Rules of operation
------------------
:mod:`.actions` says what Figure 2 allows (one function per rule, enabled or
not); this module says what the checker explores and how it keeps the space
small.  Nothing here is a Raft rule:

- :class:`Bounds` keeps the space finite (max_term, max_log, max_msgs,
  max_restarts, values); the actions never read it, so a trace may go beyond.
- :func:`settle` takes a server's local follow-ups (BecomeLeader,
  AdvanceCommitIndex, ApplySnapshot, Apply) in the step that enables them, as
  the implementation does (``Bounds.fine_grained`` turns it off).
- :func:`tidy_network` replaces each in-flight message by the simplest one with
  the same effect (or removes it), merging states that differ only there.
- :func:`next_states` / :func:`successors` enumerate every enabled action
  within the bounds (the checker's hot path: :func:`_expand`), and
  :class:`Step` / :func:`apply_step` name one of them so a counterexample can
  be replayed and told (:mod:`.story`).
"""

from __future__ import annotations

from typing import NamedTuple

from .actions import (
    advance_commit_index,
    append_entries,
    apply,
    apply_snapshot,
    become_leader,
    client_request,
    commit_index_limit,
    drop_message,
    duplicate_message,
    handle_append_entries,
    handle_append_entries_response,
    handle_install_snapshot,
    handle_install_snapshot_response,
    handle_request_vote,
    handle_request_vote_response,
    install_snapshot,
    install_snapshot_chunk,
    next_index_choices,
    receive,
    request_vote,
    restart,
    take_snapshot,
    timeout,
)
from .mutants import LEADER_OVERWRITES_LOG
from .state import (
    APPEND_ENTRIES_REQUEST,
    APPEND_ENTRIES_RESPONSE,
    CANDIDATE,
    INSTALL_SNAPSHOT_REQUEST,
    INSTALL_SNAPSHOT_RESPONSE,
    LEADER,
    NOBODY,
    REQUEST_VOTE_REQUEST,
    REQUEST_VOTE_RESPONSE,
    AppendEntriesRequest,
    AppendEntriesResponse,
    InstallSnapshotRequest,
    InstallSnapshotResponse,
    Message,
    RequestVoteRequest,
    RequestVoteResponse,
    Server,
    State,
    Value,
    request_vote_request,
)

_new = tuple.__new__


def probe(source: int, dest: int) -> RequestVoteRequest:
    """The canonical stale request from ``source`` to ``dest`` (term 0: see tidy_network)."""
    return request_vote_request(term=0, source=source, dest=dest, last_log_term=0, last_log_index=0)


def tidy_network(state: State, changed: int = -1) -> State:
    """``state`` with each in-flight message replaced by the simplest message that
    has the same effect now and in every future state, or removed when it has none.

    The checker applies this after every action; it merges states that differ
    only in messages that can no longer make a difference.  Terms, a leader's
    matchIndex and a candidate's votes only grow, so:

    - a request of an older term than its receiver's can only be refused, and the
      refusal only tells the sender the receiver's term at delivery: every such
      request from the same sender to the same receiver is the same, and is
      replaced by :func:`probe` (a RequestVote of term 0);
    - a response of a newer term than its receiver's only makes it a follower of
      that term (a granted vote or a success never is newer): it is replaced by
      a refused vote of that term;
    - (a leader's nextIndex[j] is always above matchIndex[j]: every raise of
      matchIndex raises nextIndex with it, and a rejection moves nextIndex to at
      least matchIndex + 1; so a success that does not raise matchIndex cannot
      raise nextIndex either)
    - a response that changes nothing when delivered is removed: one of an older
      term, a refused vote of the current term, a vote its candidate has
      counted or can no longer use, a successful AppendEntries or InstallSnapshot
      reply that does not raise matchIndex, any such reply to a non-leader, a
      rejection for the term.  It could only be delivered as a no-op or dropped, and dropping
      it was always possible.

    ``changed`` is a bitmask of the servers whose messages may need it (the
    others' are known to be tidy already); all servers by default.
    """
    network = state.network
    if not network:
        return state
    servers = state.servers
    kept: list[Message] | None = None
    for k, m in enumerate(network):
        if not changed >> m.dest & 1:
            if kept is not None:
                kept.append(m)
            continue
        kind = m.kind
        d = servers[m.dest]
        term = d.current_term
        new: Message | None = m
        if kind in (REQUEST_VOTE_REQUEST, APPEND_ENTRIES_REQUEST, INSTALL_SNAPSHOT_REQUEST):
            if m.term < term and (m.term or kind != REQUEST_VOTE_REQUEST):
                new = _new(RequestVoteRequest, (REQUEST_VOTE_REQUEST, 0, m.source, m.dest, 0, 0))
        elif m.term > term:
            if kind in (APPEND_ENTRIES_RESPONSE, INSTALL_SNAPSHOT_RESPONSE):
                new = _new(
                    RequestVoteResponse, (REQUEST_VOTE_RESPONSE, m.term, m.source, m.dest, False)
                )
        elif m.term < term:
            new = None
        elif isinstance(m, RequestVoteResponse):
            if not m.vote_granted or d.role != CANDIDATE or d.votes_granted >> m.source & 1:
                new = None
        elif d.role != LEADER:
            new = None
        elif isinstance(m, AppendEntriesResponse):
            if m.success:
                if m.match_index <= d.match_index[m.source]:
                    new = None
            elif m.prev_log_index == 0:
                new = None
        elif isinstance(m, InstallSnapshotResponse):
            index = m.last_included_index
            if not index or index <= d.match_index[m.source]:
                new = None
        if new is not m:
            if kept is None:
                kept = list(network[:k])
            if new is not None:
                kept.append(new)
        elif kept is not None:
            kept.append(m)
    if kept is None:
        return state
    kept.sort()
    return _new(State, (servers, tuple(kept), state.committed, state.restarts))


def settle(state: State, i: int, *, mutant: str | None = None) -> tuple[State, tuple[str, ...]]:
    """Server ``i``'s local follow-ups, taken at once as the implementation does:
    BecomeLeader when a candidate holds a majority of votes, AdvanceCommitIndex when
    a leader can, ApplySnapshot when an installed snapshot is ahead of lastApplied,
    then Apply until lastApplied reaches commitIndex.  Returns the state and the
    names of the actions taken (in order)."""
    taken: list[str] = []
    s = state.servers[i]
    if s.role == CANDIDATE and 2 * s.votes_granted.bit_count() > len(state.servers):
        state = become_leader(state, i) or state
        taken.append("become_leader")
        s = state.servers[i]
    if s.role == LEADER and commit_index_limit(state, i) > s.commit_index:
        t = advance_commit_index(state, i, mutant=mutant)
        if t is not None:
            state = t
            taken.append("advance_commit_index")
            s = state.servers[i]
    if s.last_applied < s.snapshot_index:
        t = apply_snapshot(state, i, s.snapshot_index)
        if t is not None:
            state = t
            taken.append("apply_snapshot")
            s = state.servers[i]
    while s.last_applied < s.commit_index:
        t = apply(state, i)
        if t is None:
            break
        state = t
        taken.append("apply")
        s = state.servers[i]
    return state, tuple(taken)


class Bounds(NamedTuple):
    """What keeps the checker's state space finite, and how finely it interleaves."""

    servers: int = 3
    max_term: int = 2  # no Timeout beyond this term
    max_log: int = 1  # no ClientRequest that would make a log longer
    max_msgs: int = 4  # no send (or duplicate) while this many messages are in flight
    max_restarts: int = 0  # Restart actions in a whole behaviour
    values: int = 1  # client requests carry a value in 1..values
    fine_grained: bool = False
    """False: BecomeLeader, AdvanceCommitIndex and Apply happen in the same step as
    the action that enables them (:func:`settle`), as in the implementation; True:
    they are separate actions, interleaved with everything else (Figure 2 read
    literally; many more states, the same verdicts)."""
    snapshots: bool = False
    """True: servers may take snapshots of what they applied, and leaders send
    InstallSnapshot to followers that need compacted entries (Figure 13)."""


class Step(NamedTuple):
    """One action with its parameters: what :func:`apply_step` replays."""

    action: str
    server: int = NOBODY  # the server that acts (the receiver, for ``receive``)
    peer: int = NOBODY  # request_vote, append_entries: the destination
    entries: int = 0  # append_entries: how many entries
    value: Value = 0  # client_request
    snapshot_index: int = 0  # take_snapshot: the last index the snapshot covers
    message: Message | None = None  # receive, drop_message, duplicate_message
    next_index: int | None = None  # receive of a rejected AppendEntries
    then: tuple[str, ...] = ()  # follow-ups of ``server`` in the same step (see settle)


def apply_step(state: State, step: Step, mutant: str | None = None) -> State | None:
    """Take ``step`` from ``state``: the next state, or None if it is not enabled."""
    t = _apply_action(state, step, mutant)
    for follow_up in step.then:
        if t is None:
            return None
        i = step.server
        if follow_up == "become_leader":
            t = become_leader(t, i)
        elif follow_up == "advance_commit_index":
            t = advance_commit_index(t, i, mutant=mutant)
        elif follow_up == "apply":
            t = apply(t, i)
        elif follow_up == "apply_snapshot":
            t = apply_snapshot(t, i, t.servers[i].snapshot_index)
        else:
            raise ValueError(f"unknown follow-up action {follow_up!r}")
    return t


def _apply_action(state: State, step: Step, mutant: str | None) -> State | None:
    action, i, m = step.action, step.server, step.message
    if action == "timeout":
        return timeout(state, i)
    if action == "request_vote":
        return request_vote(state, i, step.peer)
    if action == "become_leader":
        return become_leader(state, i)
    if action == "client_request":
        return client_request(state, i, step.value, mutant=mutant)
    if action == "append_entries":
        return append_entries(state, i, step.peer, step.entries)
    if action == "advance_commit_index":
        return advance_commit_index(state, i, mutant=mutant)
    if action == "apply":
        return apply(state, i)
    if action == "restart":
        return restart(state, i, mutant=mutant)
    if action == "take_snapshot":
        return take_snapshot(state, i, step.snapshot_index)
    if action == "install_snapshot":
        return install_snapshot(state, i, step.peer)
    if action == "install_snapshot_chunk":
        return install_snapshot_chunk(state, i, step.peer)
    if action == "apply_snapshot":
        return apply_snapshot(state, i, state.servers[i].snapshot_index)
    if m is None:
        raise ValueError(f"step {action!r} needs a message")
    if action == "receive":
        return receive(state, m, next_index=step.next_index, mutant=mutant)
    if action == "drop_message":
        return drop_message(state, m)
    if action == "duplicate_message":
        return duplicate_message(state, m)
    raise ValueError(f"unknown action {action!r}")


def _moved(old: Server, new: Server) -> int:
    """1 if a server changed in a way that can change what messages to it would
    do (its term, role, votes or matchIndex), else 0."""
    if new is old:
        return 0
    return int(
        new.current_term != old.current_term
        or new.role != old.role
        or new.votes_granted != old.votes_granted
        or new.match_index != old.match_index
    )


def _expand(
    state: State, bounds: Bounds, mutant: str | None, steps: list[Step] | None
) -> list[State]:
    """Every state one enabled action away, within ``bounds``, its network tidied
    (:func:`tidy_network`); with ``steps``, the actions too (same order).

    The checker's hot path, hence the inlined tests: a network is tidied only
    after an action that can change what its messages would do (one that
    changes a server's term, role, votes or matchIndex, or sends to a server of
    a newer term); dropping or copying a message never does.
    """
    out: list[State] = []
    add = out.append
    servers = state.servers
    n = len(servers)
    network = state.network
    room = len(network) < bounds.max_msgs
    fine = bounds.fine_grained
    then: tuple[str, ...] = ()
    t: State | None
    for i in range(n):
        s = servers[i]
        role = s.role
        if role == LEADER:
            log = s.log
            if len(log) < bounds.max_log or mutant == LEADER_OVERWRITES_LOG:
                for value in range(1, bounds.values + 1):
                    then = ()
                    t = client_request(state, i, value, mutant=mutant)
                    if t is not None and len(t.servers[i].log) <= bounds.max_log:
                        if not fine:
                            t, then = settle(t, i, mutant=mutant)
                        add(t)
                        if steps is not None:
                            steps.append(Step("client_request", i, value=value, then=then))
            if room:
                next_index = s.next_index
                term = s.current_term
                snapshot = s.snapshot_index
                for j in range(n):
                    if j == i:
                        continue
                    stale = term < servers[j].current_term
                    if next_index[j] <= snapshot:
                        t = install_snapshot(state, i, j)
                        if t is not None:
                            add(tidy_network(t, 1 << j) if stale else t)
                            if steps is not None:
                                steps.append(Step("install_snapshot", i, j))
                        t = install_snapshot_chunk(state, i, j)
                        if t is not None:
                            add(tidy_network(t, 1 << j) if stale else t)
                            if steps is not None:
                                steps.append(Step("install_snapshot_chunk", i, j))
                        continue
                    for count in range(len(log) - next_index[j] + 2):
                        t = append_entries(state, i, j, count)
                        if t is not None:
                            add(tidy_network(t, 1 << j) if stale else t)
                            if steps is not None:
                                steps.append(Step("append_entries", i, j, count))
            if fine and commit_index_limit(state, i) > s.commit_index:
                t = advance_commit_index(state, i, mutant=mutant)
                if t is not None:
                    add(t)
                    if steps is not None:
                        steps.append(Step("advance_commit_index", i))
        else:
            if s.current_term < bounds.max_term:
                then = ()
                t = timeout(state, i)
                if t is not None:
                    if not fine and n == 1:
                        t, then = settle(t, i, mutant=mutant)
                    add(tidy_network(t, 1 << i))
                    if steps is not None:
                        steps.append(Step("timeout", i, then=then))
            if role == CANDIDATE:
                votes = s.votes_granted
                if fine and 2 * votes.bit_count() > n:
                    t = become_leader(state, i)
                    if t is not None:
                        add(tidy_network(t, 1 << i))
                        if steps is not None:
                            steps.append(Step("become_leader", i))
                if room:
                    term = s.current_term
                    for j in range(n):
                        if j != i and not votes >> j & 1:
                            t = request_vote(state, i, j)
                            if t is not None:
                                if term < servers[j].current_term:
                                    t = tidy_network(t, 1 << j)
                                add(t)
                                if steps is not None:
                                    steps.append(Step("request_vote", i, j))
        if fine and s.last_applied < s.snapshot_index:
            t = apply_snapshot(state, i, s.snapshot_index)
            if t is not None:
                add(t)
                if steps is not None:
                    steps.append(Step("apply_snapshot", i))
        elif fine and s.last_applied < s.commit_index:
            t = apply(state, i)
            if t is not None:
                add(t)
                if steps is not None:
                    steps.append(Step("apply", i))
        if bounds.snapshots:
            for index in range(s.snapshot_index + 1, s.last_applied + 1):
                t = take_snapshot(state, i, index)
                if t is not None:
                    add(t)
                    if steps is not None:
                        steps.append(Step("take_snapshot", i, snapshot_index=index))
        if state.restarts < bounds.max_restarts:
            t = restart(state, i, mutant=mutant)
            # A restart that changes nothing but the counter is not worth a state.
            if t is not None and t.servers[i] != s:
                add(tidy_network(t, 1 << i))
                if steps is not None:
                    steps.append(Step("restart", i))
    previous: Message | None = None
    for m in network:
        if m == previous:
            continue  # the bag is sorted: copies of a message are adjacent
        previous = m
        dest = m.dest
        reply_to = 1 << m.source
        was = servers[dest]
        then = ()
        if isinstance(m, AppendEntriesResponse):
            choices = next_index_choices(state, m)
            for choice in choices or (None,):
                then = ()
                t = handle_append_entries_response(state, m, choice)
                if t is not None:
                    if not fine and m.success:
                        t, then = settle(t, dest, mutant=mutant)
                    add(tidy_network(t, _moved(was, t.servers[dest]) << dest))
                    if steps is not None:
                        steps.append(Step("receive", dest, message=m, next_index=choice, then=then))
        else:
            if isinstance(m, RequestVoteRequest):
                t = handle_request_vote(state, m, mutant=mutant)
            elif isinstance(m, (AppendEntriesRequest, InstallSnapshotRequest)):
                if isinstance(m, AppendEntriesRequest):
                    t = handle_append_entries(state, m, mutant=mutant)
                else:
                    t = handle_install_snapshot(state, m, mutant=mutant)
                if not fine and t is not None:
                    r = t.servers[dest]
                    if r.last_applied < r.commit_index:
                        t, then = settle(t, dest, mutant=mutant)
            elif isinstance(m, RequestVoteResponse):
                t = handle_request_vote_response(state, m)
                if not fine and m.vote_granted and t is not None:
                    t, then = settle(t, dest, mutant=mutant)
            else:
                t = handle_install_snapshot_response(state, m)
                if not fine and m.last_included_index and t is not None:
                    t, then = settle(t, dest, mutant=mutant)
            if t is not None:
                add(tidy_network(t, reply_to | _moved(was, t.servers[dest]) << dest))
                if steps is not None:
                    steps.append(Step("receive", dest, message=m, then=then))
        t = drop_message(state, m)
        if t is not None:
            add(t)
            if steps is not None:
                steps.append(Step("drop_message", message=m))
        if room:
            t = duplicate_message(state, m)
            if t is not None:
                add(t)
                if steps is not None:
                    steps.append(Step("duplicate_message", message=m))
    return out


def next_states(state: State, bounds: Bounds, mutant: str | None = None) -> list[State]:
    """Every state one enabled action away from ``state`` within ``bounds``."""
    return _expand(state, bounds, mutant, None)


def successors(state: State, bounds: Bounds, mutant: str | None = None) -> list[tuple[Step, State]]:
    """Every enabled action within ``bounds``, with the state it leads to."""
    steps: list[Step] = []
    states = _expand(state, bounds, mutant, steps)
    return list(zip(steps, states, strict=True))
