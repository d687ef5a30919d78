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
- :class:`Step` names one action with its arguments, so a counterexample can be
  replayed and told.  What is enumerated from a state, and how each action is
  replayed and told, is the registry's (:mod:`.registry`: ``next_states``,
  ``successors``, ``apply_step``, driven by one entry per action).
"""

from __future__ import annotations

from typing import NamedTuple

from .actions import (
    advance_commit_index,
    apply,
    apply_snapshot,
    become_candidate,
    become_leader,
    commit_index_limit,
)
from .extensions import servable, serve_read
from .state import (
    APPEND_ENTRIES_REQUEST,
    CANDIDATE,
    CHECK_QUORUM,
    INSTALL_SNAPSHOT_REQUEST,
    INSTALL_SNAPSHOT_RESPONSE,
    LEADER,
    NOBODY,
    PRE_CANDIDATE,
    PRE_VOTE,
    PRE_VOTE_REQUEST,
    PRE_VOTE_RESPONSE,
    READ_INDEX,
    REQUEST_VOTE_REQUEST,
    REQUEST_VOTE_RESPONSE,
    TIMEOUT_NOW_REQUEST,
    TRANSFER,
    AppendEntriesResponse,
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
        dest = m.dest
        if not changed >> dest & 1:
            if kept is not None:
                kept.append(m)
            continue
        kind = m.kind
        m_term = m.term
        d = servers[dest]
        term = d.current_term
        new: Message | None = m
        if kind in _REQUESTS:
            # (a PreVote's term is the one asked about: refused unless above the receiver's)
            stale = m_term <= term if kind == PRE_VOTE_REQUEST else m_term < term
            if stale and (m_term or kind != REQUEST_VOTE_REQUEST):
                new = _new(
                    RequestVoteRequest, (REQUEST_VOTE_REQUEST, 0, m.source, dest, 0, 0, False)
                )
        elif m_term > term:
            # (a granted pre-vote carries the term asked about: it counts whenever its
            # receiver asks for that term, so it stays)
            if kind != REQUEST_VOTE_RESPONSE and not (kind == PRE_VOTE_RESPONSE and m[4]):  # type: ignore[misc]
                new = _new(
                    RequestVoteResponse, (REQUEST_VOTE_RESPONSE, m_term, m.source, dest, False)
                )
        elif m_term < term or kind > INSTALL_SNAPSHOT_RESPONSE:
            # (a PreVote or TimeoutNow reply of the receiver's term changes nothing)
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
    return _new(State, (servers, tuple(kept), state.committed, state.restarts, state.stood))


_REQUESTS = frozenset(
    {
        REQUEST_VOTE_REQUEST,
        APPEND_ENTRIES_REQUEST,
        INSTALL_SNAPSHOT_REQUEST,
        PRE_VOTE_REQUEST,
        TIMEOUT_NOW_REQUEST,
    }
)


def settle(state: State, i: int, *, mutant: str | None = None) -> tuple[State, tuple[str, ...]]:
    """Server ``i``'s local follow-ups, taken at once as the implementation does:
    BecomeLeader when a candidate holds a majority of votes, AdvanceCommitIndex when
    a leader can, ApplySnapshot when an installed snapshot is ahead of lastApplied,
    then Apply until lastApplied reaches commitIndex.  Returns the state and the
    names of the actions taken (in order)."""
    taken: list[str] = []
    s = state.servers[i]
    if s.role == PRE_CANDIDATE and 2 * s.votes_granted.bit_count() > len(state.servers):
        state = become_candidate(state, i) or state
        taken.append("become_candidate")
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
    if s.ext.reads and servable(state, i, mutant=mutant):
        t = serve_read(state, i, mutant=mutant)
        if t is not None:
            state = t
            taken.append("serve_read")
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
    pre_vote: bool = False  # Pre-Vote and vote withholding (thesis §9.6, §4.2.3)
    check_quorum: bool = False  # CheckQuorum (§6.2)
    transfer: bool = False  # leadership transfer (§3.10)
    read_index: bool = False  # ReadIndex (§6.4)
    max_reads: int = 1  # ReadIndex: reads waiting at once, cluster-wide

    @property
    def options(self) -> int:
        """The extensions every server runs, as ``state.Ext.options`` bits."""
        return (
            PRE_VOTE * self.pre_vote
            | CHECK_QUORUM * self.check_quorum
            | TRANSFER * self.transfer
            | READ_INDEX * self.read_index
        )


class Step(NamedTuple):
    """One action with its parameters: what ``registry.apply_step`` replays."""

    action: str
    server: int = NOBODY  # the server that acts (the receiver, for ``receive``)
    peer: int = NOBODY  # request_vote, append_entries: the destination
    entries: int = 0  # append_entries: how many entries
    value: Value = 0  # client_request
    snapshot_index: int = 0  # take_snapshot: the last index the snapshot covers
    message: Message | None = None  # receive, drop_message, duplicate_message
    next_index: int | None = None  # receive of a rejected AppendEntries
    then: tuple[str, ...] = ()  # follow-ups of ``server`` in the same step (see settle)
    expire_lease_first: bool = False  # receive: the receiver's lease ended just before


def moved(old: Server, new: Server) -> int:
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
