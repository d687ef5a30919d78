"""Figure 2 as actions on the model's state.

Rules of operation
------------------
Each action is a plain function of a :class:`~.state.State` and explicit
parameters (which server, which message, how many entries, which value, which
next_index), returning the next state, or None when Figure 2 does not enable it
in that state.  Nothing else changes state, so the checker (which explores
every enabled action) and the trace validator (which replays one recorded
event at a time) share one definition of Raft.

- Actions check Raft's own enabling conditions only.  The checker's bounds
  (max_term, max_log, max_msgs, max_restarts) are applied by the search
  (:mod:`.search`), never here: a trace may go beyond them.
- Receiving a message consumes it; a request is replaced by its response in
  the same step (the network's size is unchanged).  Sending adds a message to
  the bag; the network may also drop or duplicate any message.
- Every handler first applies "All Servers: if RPC request or response
  contains term T > currentTerm: set currentTerm = T, convert to follower"
  (``_observe_term``), then the rule for the receiver's role.
- The implementation's freedom is a parameter: how many entries an
  AppendEntries carries (0 .. all from nextIndex), where nextIndex goes after
  a rejection (any value in [matchIndex + 1, prevLogIndex], or unchanged for a
  stale rejection), which index a leader commits (default: the highest that
  Figure 2 allows).
- Actions keep the history variables (led_terms, leader_log, applied,
  committed) up to date; the Raft rules never read them.
- ``mutant`` names a planted bug (see :mod:`.mutants`); only the actions the
  bug touches take it.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import TypeAlias, TypeVar

from .mutants import (
    APPEND_WITHOUT_PREV_CHECK,
    COMMIT_OLD_TERM_BY_COUNTING,
    FOLLOWER_COMMITS_PAST_NEW_ENTRIES,
    FORGET_VOTED_FOR_ON_RESTART,
    INSTALL_SNAPSHOT_DISCARDS_LOG,
    LEADER_OVERWRITES_LOG,
    PRE_VOTE_PERSISTS_TERM,
    TRANSFER_ACCEPTS_REQUESTS,
    VOTE_DESPITE_LEASE,
    VOTE_WITHOUT_LOG_CHECK,
)
from .state import (
    APPEND_ENTRIES_REQUEST,
    APPEND_ENTRIES_RESPONSE,
    CANDIDATE,
    FOLLOWER,
    INSTALL_SNAPSHOT_REQUEST,
    INSTALL_SNAPSHOT_RESPONSE,
    LEADER,
    NOBODY,
    PRE_CANDIDATE,
    PRE_VOTE,
    PRE_VOTE_REQUEST,
    PRE_VOTE_RESPONSE,
    REQUEST_VOTE_REQUEST,
    REQUEST_VOTE_RESPONSE,
    TIMEOUT_NOW_RESPONSE,
    AppendEntriesRequest,
    AppendEntriesResponse,
    Applied,
    Committed,
    Entry,
    Ext,
    InstallSnapshotRequest,
    InstallSnapshotResponse,
    Log,
    Message,
    PreVoteRequest,
    PreVoteResponse,
    RequestVoteRequest,
    RequestVoteResponse,
    Server,
    State,
    TimeoutNowRequest,
    TimeoutNowResponse,
    Value,
)

_new = tuple.__new__

M = TypeVar("M", bound=Message)
Sent: TypeAlias = tuple[State, M]
"""What an action that sends returns: the next state and the message it put in flight
(a request it sent, or the reply that replaced the request it handled), so its
callers never have to find the message by comparing network bags."""


def _state_of(sent: tuple[State, Message] | None) -> State | None:
    """The next state of an action that sends (None when it is not enabled)."""
    return None if sent is None else sent[0]


# --------------------------------------------------------------------- helpers


def _with_server(state: State, i: int, server: Server) -> tuple[Server, ...]:
    servers = list(state.servers)
    servers[i] = server
    return tuple(servers)


def _bag_add(network: tuple[Message, ...], m: Message) -> tuple[Message, ...]:
    if not network or network[-1] <= m:
        return (*network, m)
    bag = list(network)
    insort(bag, m)
    return tuple(bag)


def _bag_remove(network: tuple[Message, ...], m: Message) -> tuple[Message, ...] | None:
    """The bag without one copy of ``m``; None if ``m`` is not in flight."""
    try:
        k = network.index(m)
    except ValueError:
        return None
    return network[:k] + network[k + 1 :]


def _bag_replace(
    network: tuple[Message, ...], m: Message, reply: Message
) -> tuple[Message, ...] | None:
    """The bag with one copy of request ``m`` replaced by ``reply``; None if ``m``
    is not in flight."""
    bag = list(network)
    try:
        bag.remove(m)
    except ValueError:
        return None
    insort(bag, reply)
    return tuple(bag)


def _observe_term(s: Server, term: int) -> Server:
    """All Servers: a higher term in an RPC makes any server a follower of that term."""
    if term <= s.current_term:
        return s
    return _new(
        Server,
        (
            term,
            NOBODY,
            s.log,
            s.snapshot_index,
            FOLLOWER,
            s.commit_index,
            s.last_applied,
            0,
            (),
            (),
            (),
            s.led_terms,
            s.applied,
            _ext_volatile_lost(s.ext),
        ),
    )


def _ext_volatile_lost(ext: Ext) -> Ext:
    """The extensions' volatile state reset (a new term, a new election, a new
    leader, a restart): no lease, no transfer, no waiting reads (they fail)."""
    if not (ext.lease or ext.campaign or ext.reads or ext.abandoned) and ext.transfer_to == NOBODY:
        return ext
    return ext._replace(lease=False, transfer_to=NOBODY, abandoned=False, campaign=False, reads=())


def _withholds_vote(s: Server) -> bool:
    """Thesis §4.2.3 (with Pre-Vote): a leader, or a follower within its lease, refuses
    to help an election of a higher term (unless a transfer asks)."""
    return bool(s.ext.options & PRE_VOTE) and (s.role == LEADER or s.ext.lease)


def _heard_leader(s: Server, log: Log, snapshot: int, commit: int) -> Server:
    """Server ``s`` after a valid AppendEntries or InstallSnapshot of its current term:
    Candidates: "if AppendEntries RPC received from new leader: convert to
    follower"; its log, snapshot and commitIndex become the given ones.  ``s``
    itself when nothing changes."""
    role = FOLLOWER if s.role in (CANDIDATE, PRE_CANDIDATE) else s.role
    ext = s.ext
    if ext.options:
        if role != s.role:
            ext = _ext_volatile_lost(ext)
        if ext.options & PRE_VOTE and role == FOLLOWER and not ext.lease:
            ext = ext._replace(lease=True)  # §4.2.3: it heard its leader just now
    if (
        role == s.role
        and log is s.log
        and commit == s.commit_index
        and snapshot == s.snapshot_index
        and ext is s.ext
    ):
        return s
    return _new(
        Server,
        (
            s.current_term,
            s.voted_for,
            log,
            snapshot,
            role,
            commit,
            s.last_applied,
            0 if role == FOLLOWER else s.votes_granted,
            s.next_index,
            s.match_index,
            _leader_log(s.leader_log, log) if role == LEADER else (),
            s.led_terms,
            s.applied,
            ext,
        ),
    )


def _leader_log(old: Log, new: Log) -> Log:
    """History for Leader Append-Only: follow the log while it only grows, else keep
    the evidence (the log the leader held before it lost or changed entries)."""
    if new[: len(old)] == old:
        return new
    return old


def _record_commits(
    committed: tuple[Committed, ...], log: Log, old: int, new: int, term: int
) -> tuple[Committed, ...]:
    """History: entries old+1..new of ``log`` are known committed in ``term``."""
    for index in range(old + 1, new + 1):
        entry = log[index - 1]
        # ``committed`` is sorted, and (index,) sorts before every record of that
        # index: only the records from the bisection point on can match.
        pos = bisect_left(committed, (index,))
        size = len(committed)
        while pos < size:
            c_index, c_term, c_value, _ = committed[pos]
            if c_index != index:
                pos = size
            elif c_term == entry.term and c_value == entry.value:
                break
            else:
                pos += 1
        if pos < size:
            if committed[pos][3] > term:
                rest = committed[:pos] + committed[pos + 1 :]
                committed = tuple(sorted((*rest, (index, entry.term, entry.value, term))))
        else:
            record = (index, entry.term, entry.value, term)
            if not committed or committed[-1] < record:
                committed = (*committed, record)
            else:
                committed = tuple(sorted((*committed, record)))
    return committed


def _set_commit_index(
    state: State, i: int, s: Server, new_commit: int
) -> tuple[Server, tuple[Committed, ...]]:
    """Server ``s`` (the new version of server ``i``) moves commit_index forward."""
    committed = _record_commits(state.committed, s.log, s.commit_index, new_commit, s.current_term)
    server = _new(
        Server,
        (
            s.current_term,
            s.voted_for,
            s.log,
            s.snapshot_index,
            s.role,
            new_commit,
            s.last_applied,
            s.votes_granted,
            s.next_index,
            s.match_index,
            s.leader_log,
            s.led_terms,
            s.applied,
            s.ext,
        ),
    )
    return server, committed


def _log_up_to_date(s: Server, last_log_term: int, last_log_index: int) -> bool:
    """§5.4.1: the candidate's log is at least as up-to-date as the voter's."""
    log = s.log
    my_term = log[-1].term if log else 0
    if last_log_term != my_term:
        return last_log_term > my_term
    return last_log_index >= len(log)


# --------------------------------------------------------------------- elections


def timeout(state: State, i: int) -> State | None:
    """Followers/Candidates: the election timeout elapses, so server ``i`` starts an
    election: increments currentTerm, becomes candidate, votes for itself.  With
    Pre-Vote (thesis §9.6) it becomes a pre-candidate instead: its term and vote
    unchanged, its own pre-vote counted.  Not within a lease (§4.2.3: the timer's
    first part is the lease, :func:`~.extensions.expire_lease` ends it)."""
    s = state.servers[i]
    if s.role == LEADER:
        return None
    if s.ext.options:
        if s.ext.lease:
            return None
        if s.ext.options & PRE_VOTE:
            return _with(state, i, _campaigner(s, PRE_CANDIDATE, s.current_term, s.voted_for, i))
    return _standing(state, i, _campaigner(s, CANDIDATE, s.current_term + 1, i, i))


def _campaigner(s: Server, role: int, term: int, voted_for: int, i: int) -> Server:
    """Server ``i`` (``s`` now) standing in an election or a pre-election: only its own
    vote counted so far."""
    return _new(
        Server,
        (
            term,
            voted_for,
            s.log,
            s.snapshot_index,
            role,
            s.commit_index,
            s.last_applied,
            1 << i,
            (),
            (),
            (),
            s.led_terms,
            s.applied,
            _ext_volatile_lost(s.ext) if s.ext.options else s.ext,
        ),
    )


def _with(state: State, i: int, server: Server) -> State:
    """``state`` with server ``i`` replaced."""
    return _new(
        State,
        (
            _with_server(state, i, server),
            state.network,
            state.committed,
            state.restarts,
            state.stood,
        ),
    )


def _standing(state: State, i: int, candidate: Server) -> State:
    """``state`` with server ``i`` replaced by ``candidate``, which stands in its term
    (history: ``State.stood``)."""
    term = candidate.current_term
    stood = term if term > state.stood else state.stood
    servers = _with_server(state, i, candidate)
    return _new(State, (servers, state.network, state.committed, state.restarts, stood))


def request_vote_sent(state: State, i: int, j: int) -> Sent[RequestVoteRequest] | None:
    """Candidates: send a RequestVote RPC to server ``j`` (one that has not granted).
    The next state and the request it put in flight (:func:`request_vote`: the state)."""
    s = state.servers[i]
    if s.role != CANDIDATE or j == i or not 0 <= j < len(state.servers):
        return None
    if s.votes_granted >> j & 1:
        return None
    log = s.log
    m = _new(
        RequestVoteRequest,
        (
            REQUEST_VOTE_REQUEST,
            s.current_term,
            i,
            j,
            log[-1].term if log else 0,
            len(log),
            s.ext.campaign,
        ),
    )
    return _new(
        State,
        (state.servers, _bag_add(state.network, m), state.committed, state.restarts, state.stood),
    ), m


def request_vote(state: State, i: int, j: int) -> State | None:
    """:func:`request_vote_sent`'s next state."""
    return _state_of(request_vote_sent(state, i, j))


def handle_request_vote_sent(
    state: State, m: RequestVoteRequest, *, mutant: str | None = None
) -> Sent[RequestVoteResponse] | None:
    """RequestVote receiver: reply false if term < currentTerm; grant if votedFor is
    null or candidateId and the candidate's log is at least as up-to-date.  The next
    state and the reply it put in flight (:func:`handle_request_vote`: the state)."""
    j = m.dest
    s = state.servers[j]
    in_lease = s.ext.options and m.term > s.current_term and not m.transfer and _withholds_vote(s)
    if in_lease and mutant != VOTE_DESPITE_LEASE:
        # §4.2.3: it believes a leader is alive: neither update the term nor grant.
        reply = _new(
            RequestVoteResponse, (REQUEST_VOTE_RESPONSE, s.current_term, j, m.source, False)
        )
        network = _bag_replace(state.network, m, reply)
        if network is None:
            return None
        return _new(
            State, (state.servers, network, state.committed, state.restarts, state.stood)
        ), reply
    s = _observe_term(s, m.term)
    granted = False
    if (
        m.term == s.current_term
        and s.voted_for in (NOBODY, m.source)
        and (
            mutant == VOTE_WITHOUT_LOG_CHECK
            or _log_up_to_date(s, m.last_log_term, m.last_log_index)
        )
    ):
        granted = True
        if s.voted_for != m.source:
            s = _new(
                Server,
                (
                    s.current_term,
                    m.source,
                    s.log,
                    s.snapshot_index,
                    s.role,
                    s.commit_index,
                    s.last_applied,
                    s.votes_granted,
                    s.next_index,
                    s.match_index,
                    s.leader_log,
                    s.led_terms,
                    s.applied,
                    s.ext,
                ),
            )
    if granted and in_lease:
        ext = s.ext
        s = s._replace(ext=ext._replace(lease_votes=(*ext.lease_votes, m.term)))
    reply = _new(RequestVoteResponse, (REQUEST_VOTE_RESPONSE, s.current_term, j, m.source, granted))
    network = _bag_replace(state.network, m, reply)
    if network is None:
        return None
    servers = state.servers if s is state.servers[j] else _with_server(state, j, s)
    return _new(State, (servers, network, state.committed, state.restarts, state.stood)), reply


def handle_request_vote(
    state: State, m: RequestVoteRequest, *, mutant: str | None = None
) -> State | None:
    """:func:`handle_request_vote_sent`'s next state."""
    return _state_of(handle_request_vote_sent(state, m, mutant=mutant))


def handle_request_vote_response(state: State, m: RequestVoteResponse) -> State | None:
    """Candidates: count a vote granted in the current term."""
    network = _bag_remove(state.network, m)
    if network is None:
        return None
    i = m.dest
    s = _observe_term(state.servers[i], m.term)
    if s.role == CANDIDATE and m.term == s.current_term and m.vote_granted:
        s = _new(
            Server,
            (
                s.current_term,
                s.voted_for,
                s.log,
                s.snapshot_index,
                s.role,
                s.commit_index,
                s.last_applied,
                s.votes_granted | 1 << m.source,
                s.next_index,
                s.match_index,
                s.leader_log,
                s.led_terms,
                s.applied,
                s.ext,
            ),
        )
    servers = state.servers if s is state.servers[i] else _with_server(state, i, s)
    return _new(State, (servers, network, state.committed, state.restarts, state.stood))


def become_leader(state: State, i: int) -> State | None:
    """Candidates: votes received from a majority of servers, so become leader;
    nextIndex = last log index + 1 and matchIndex = 0 for every server."""
    s = state.servers[i]
    n = len(state.servers)
    if s.role != CANDIDATE or 2 * s.votes_granted.bit_count() <= n:
        return None
    log = s.log
    server = _new(
        Server,
        (
            s.current_term,
            s.voted_for,
            log,
            s.snapshot_index,
            LEADER,
            s.commit_index,
            s.last_applied,
            0,
            (len(log) + 1,) * n,
            (0,) * n,
            log,
            (*s.led_terms, s.current_term),
            s.applied,
            _ext_volatile_lost(s.ext),
        ),
    )
    return _with(state, i, server)


# --------------------------------------------------------------------- Pre-Vote and transfer


def pre_vote_sent(state: State, i: int, j: int) -> Sent[PreVoteRequest] | None:
    """Pre-candidates (thesis §9.6): ask server ``j`` (one that has not granted) whether
    it would vote at term + 1."""
    s = state.servers[i]
    if s.role != PRE_CANDIDATE or j == i or not 0 <= j < len(state.servers):
        return None
    if s.votes_granted >> j & 1:
        return None
    log = s.log
    m = _new(
        PreVoteRequest,
        (PRE_VOTE_REQUEST, s.current_term + 1, i, j, log[-1].term if log else 0, len(log)),
    )
    return _new(
        State,
        (state.servers, _bag_add(state.network, m), state.committed, state.restarts, state.stood),
    ), m


def pre_vote(state: State, i: int, j: int) -> State | None:
    """:func:`pre_vote_sent`'s next state."""
    return _state_of(pre_vote_sent(state, i, j))


def handle_pre_vote_sent(
    state: State, m: PreVoteRequest, *, mutant: str | None = None
) -> Sent[PreVoteResponse] | None:
    """PreVote receiver (§9.6, §4.2.3): grant iff the asked term is above its own, it
    neither leads nor holds a lease, and the candidate's log is at least as
    up-to-date (§5.4.1).  It changes nothing of its own state; the reply carries
    the asked term when granted, its own when refused."""
    j = m.dest
    s = state.servers[j]
    if mutant == PRE_VOTE_PERSISTS_TERM:
        s = _observe_term(s, m.term)  # the bug: a pre-vote raises the voter's term
    granted = (
        m.term > s.current_term
        and not _withholds_vote(s)
        and _log_up_to_date(s, m.last_log_term, m.last_log_index)
    )
    reply = _new(
        PreVoteResponse,
        (PRE_VOTE_RESPONSE, m.term if granted else s.current_term, j, m.source, granted),
    )
    network = _bag_replace(state.network, m, reply)
    if network is None:
        return None
    servers = state.servers if s is state.servers[j] else _with_server(state, j, s)
    return _new(State, (servers, network, state.committed, state.restarts, state.stood)), reply


def handle_pre_vote(state: State, m: PreVoteRequest, *, mutant: str | None = None) -> State | None:
    """:func:`handle_pre_vote_sent`'s next state."""
    return _state_of(handle_pre_vote_sent(state, m, mutant=mutant))


def handle_pre_vote_response(state: State, m: PreVoteResponse) -> State | None:
    """Pre-candidates: a refusal of a higher term is a higher term (All Servers); a
    grant for term + 1 counts."""
    network = _bag_remove(state.network, m)
    if network is None:
        return None
    i = m.dest
    s = state.servers[i]
    if not m.vote_granted:
        s = _observe_term(s, m.term)
    elif s.role == PRE_CANDIDATE and m.term == s.current_term + 1:
        s = s._replace(votes_granted=s.votes_granted | 1 << m.source)
    servers = state.servers if s is state.servers[i] else _with_server(state, i, s)
    return _new(State, (servers, network, state.committed, state.restarts, state.stood))


def become_candidate(state: State, i: int) -> State | None:
    """Pre-candidates (§9.6): a majority would vote, so start the election: increment
    currentTerm, become candidate, vote for self."""
    s = state.servers[i]
    if s.role != PRE_CANDIDATE or 2 * s.votes_granted.bit_count() <= len(state.servers):
        return None
    return _standing(state, i, _stand(s, i, campaign=False))


def _stand(s: Server, i: int, *, campaign: bool) -> Server:
    """Server ``i`` stands for term + 1: a term a majority pre-approved, or a
    transfer's (``campaign``)."""
    server = _campaigner(s, CANDIDATE, s.current_term + 1, i, i)
    return server._replace(ext=server.ext._replace(campaign=campaign)) if campaign else server


def handle_timeout_now_sent(state: State, m: TimeoutNowRequest) -> Sent[TimeoutNowResponse] | None:
    """TimeoutNow receiver (§3.10): acknowledge with its term; if the request is of its
    term and it does not lead, start an election at once (no pre-vote), whose
    RequestVotes say it is a transfer's."""
    j = m.dest
    s = _observe_term(state.servers[j], m.term)
    reply = _new(TimeoutNowResponse, (TIMEOUT_NOW_RESPONSE, s.current_term, j, m.source))
    stood = state.stood
    if m.term == s.current_term and s.role != LEADER:
        s = _stand(s, j, campaign=True)
        stood = max(stood, s.current_term)
    network = _bag_replace(state.network, m, reply)
    if network is None:
        return None
    servers = state.servers if s is state.servers[j] else _with_server(state, j, s)
    return _new(State, (servers, network, state.committed, state.restarts, stood)), reply


def handle_timeout_now(state: State, m: TimeoutNowRequest) -> State | None:
    """:func:`handle_timeout_now_sent`'s next state."""
    return _state_of(handle_timeout_now_sent(state, m))


def handle_timeout_now_response(state: State, m: TimeoutNowResponse) -> State | None:
    """A TimeoutNow's acknowledgement only carries a term (All Servers)."""
    network = _bag_remove(state.network, m)
    if network is None:
        return None
    i = m.dest
    s = _observe_term(state.servers[i], m.term)
    servers = state.servers if s is state.servers[i] else _with_server(state, i, s)
    return _new(State, (servers, network, state.committed, state.restarts, state.stood))


# --------------------------------------------------------------------- replication


def client_request(
    state: State, i: int, value: Value, *, mutant: str | None = None
) -> State | None:
    """Leaders: a command from a client is appended to the local log."""
    s = state.servers[i]
    if s.role != LEADER:
        return None
    if s.ext.transfer_to != NOBODY and mutant != TRANSFER_ACCEPTS_REQUESTS:
        return None  # §3.10: a leader handing over takes no new commands
    entry = Entry(s.current_term, value)
    if mutant == LEADER_OVERWRITES_LOG:
        log: Log = (*s.log[: s.commit_index], entry)
    else:
        log = (*s.log, entry)
    server = _new(
        Server,
        (
            s.current_term,
            s.voted_for,
            log,
            s.snapshot_index,
            LEADER,
            s.commit_index,
            s.last_applied,
            0,
            s.next_index,
            s.match_index,
            _leader_log(s.leader_log, log),
            s.led_terms,
            s.applied,
            s.ext,
        ),
    )
    return _with(state, i, server)


def append_entries_sent(
    state: State, i: int, j: int, entries: int
) -> Sent[AppendEntriesRequest] | None:
    """Leaders: send server ``j`` an AppendEntries RPC starting at nextIndex[j] with
    ``entries`` entries (0 is a heartbeat), carrying the leader's commitIndex.  The
    next state and the request it put in flight (:func:`append_entries`: the state)."""
    s = state.servers[i]
    if s.role != LEADER or j == i or not 0 <= j < len(state.servers):
        return None
    log = s.log
    prev = s.next_index[j] - 1
    # Entries up to snapshot_index are compacted: InstallSnapshot sends those.
    if prev < s.snapshot_index or entries < 0 or prev + entries > len(log):
        return None
    m = _new(
        AppendEntriesRequest,
        (
            APPEND_ENTRIES_REQUEST,
            s.current_term,
            i,
            j,
            prev,
            log[prev - 1].term if prev else 0,
            log[prev : prev + entries],
            s.commit_index,
        ),
    )
    return _new(
        State,
        (state.servers, _bag_add(state.network, m), state.committed, state.restarts, state.stood),
    ), m


def append_entries(state: State, i: int, j: int, entries: int) -> State | None:
    """:func:`append_entries_sent`'s next state."""
    return _state_of(append_entries_sent(state, i, j, entries))


def _merge_entries(log: Log, prev: int, entries: Log) -> Log:
    """Receiver rules 3 and 4: delete a conflicting entry and all that follow it;
    append new entries not already in the log.  Matching entries stay, so a stale,
    shorter request never cuts off what a newer one delivered."""
    for k, entry in enumerate(entries):
        pos = prev + k
        if pos < len(log):
            if log[pos].term == entry.term:
                continue
            return log[:pos] + entries[k:]
        return log + entries[k:]
    return log


def handle_append_entries_sent(
    state: State, m: AppendEntriesRequest, *, mutant: str | None = None
) -> Sent[AppendEntriesResponse] | None:
    """AppendEntries receiver (Figure 2, rules 1-5); Candidates: an AppendEntries
    from the leader of the current term makes them followers.  The next state and the
    reply it put in flight (:func:`handle_append_entries`: the state)."""
    j = m.dest
    old = state.servers[j]
    s = _observe_term(old, m.term)
    term = s.current_term
    committed = state.committed
    prev = m.prev_log_index
    if m.term < term:
        # 1. Reply false if term < currentTerm.  prev_log_index 0 marks a rejection
        # for the term, never one for the log (index 0 always matches).
        reply = _new(
            AppendEntriesResponse, (APPEND_ENTRIES_RESPONSE, term, j, m.source, False, 0, 0)
        )
    else:
        log = s.log
        entries = m.entries
        prev_term = m.prev_log_term
        commit = s.commit_index
        snapshot = s.snapshot_index
        covered = False
        if prev < snapshot:
            # Entries up to snapshot_index are in the snapshot, hence committed and
            # matching: skip them (and reply success at once if that is all).
            skip = snapshot - prev
            covered = skip >= len(entries)
            entries = entries[skip:]
            prev, prev_term = snapshot, log[snapshot - 1].term
        # 2. Reply false if the log has no entry at prevLogIndex whose term is prevLogTerm.
        if mutant == APPEND_WITHOUT_PREV_CHECK:
            consistent = prev <= len(log)
        else:
            consistent = prev == 0 or (prev <= len(log) and log[prev - 1].term == prev_term)
        if covered:
            reply = _new(
                AppendEntriesResponse,
                (3, term, j, m.source, True, m.prev_log_index + len(m.entries), 0),
            )
        elif consistent:
            log = _merge_entries(log, prev, entries)
            # 5. If leaderCommit > commitIndex: commitIndex = min(leaderCommit, last new).
            match = last_new = prev + len(entries)
            if mutant == FOLLOWER_COMMITS_PAST_NEW_ENTRIES:
                last_new = len(log)
            if m.leader_commit > commit and last_new > commit:
                new_commit = min(m.leader_commit, last_new)
                committed = _record_commits(committed, log, commit, new_commit, term)
                commit = new_commit
            reply = _new(
                AppendEntriesResponse, (APPEND_ENTRIES_RESPONSE, term, j, m.source, True, match, 0)
            )
        else:
            reply = _new(
                AppendEntriesResponse,
                (APPEND_ENTRIES_RESPONSE, term, j, m.source, False, 0, m.prev_log_index),
            )
        s = _heard_leader(s, log, snapshot, commit)
    network = _bag_replace(state.network, m, reply)
    if network is None:
        return None
    servers = state.servers if s is old else _with_server(state, j, s)
    return _new(State, (servers, network, committed, state.restarts, state.stood)), reply


def handle_append_entries(
    state: State, m: AppendEntriesRequest, *, mutant: str | None = None
) -> State | None:
    """:func:`handle_append_entries_sent`'s next state."""
    return _state_of(handle_append_entries_sent(state, m, mutant=mutant))


def next_index_choices(state: State, m: AppendEntriesResponse) -> tuple[int, ...]:
    """Where a rejection may move nextIndex[m.source]: [matchIndex + 1, prevLogIndex].

    Empty when the response is not a rejection the leader acts on (a success, a
    rejection for the term, a stale term, a receiver that is not leader).  The
    leader may also leave nextIndex unchanged (the implementation ignores a
    rejection of an older request); that choice equals dropping the message, so
    it is not listed.
    """
    s = state.servers[m.dest]
    if m.success or m.prev_log_index == 0 or s.role != LEADER or m.term != s.current_term:
        return ()
    low = s.match_index[m.source] + 1
    return tuple(range(low, max(low, m.prev_log_index) + 1))


def handle_append_entries_response(
    state: State, m: AppendEntriesResponse, next_index: int | None = None
) -> State | None:
    """Leaders: on success update nextIndex and matchIndex for the follower (never
    backwards: responses may arrive out of order); "if AppendEntries fails because
    of log inconsistency", move nextIndex back and retry.  ``next_index`` picks
    where (see :func:`next_index_choices`); None means Figure 2's decrement,
    max(matchIndex + 1, prevLogIndex).  A rejection for the term (prev_log_index
    0) only carries the term."""
    network = _bag_remove(state.network, m)
    if network is None:
        return None
    i = m.dest
    old = state.servers[i]
    s = _observe_term(old, m.term)
    if s.role == LEADER and m.term == s.current_term:
        j = m.source
        next_indexes = list(s.next_index)
        match_indexes = s.match_index
        if m.success:
            if m.match_index > match_indexes[j]:
                match_indexes = (*match_indexes[:j], m.match_index, *match_indexes[j + 1 :])
            next_indexes[j] = max(next_indexes[j], m.match_index + 1)
        elif m.prev_log_index == 0:
            if next_index is not None and next_index != next_indexes[j]:
                return None
        else:
            low = match_indexes[j] + 1
            high = max(low, m.prev_log_index)
            if next_index is None:
                next_index = high
            elif not (low <= next_index <= high or next_index == next_indexes[j]):
                return None
            next_indexes[j] = next_index
        s = _new(
            Server,
            (
                s.current_term,
                s.voted_for,
                s.log,
                s.snapshot_index,
                LEADER,
                s.commit_index,
                s.last_applied,
                0,
                tuple(next_indexes),
                match_indexes,
                s.leader_log,
                s.led_terms,
                s.applied,
                s.ext,
            ),
        )
    servers = state.servers if s is old else _with_server(state, i, s)
    return _new(State, (servers, network, state.committed, state.restarts, state.stood))


def commit_index_limit(state: State, i: int) -> int:
    """The highest N that a majority of matchIndex (the leader counting its own log)
    has reached; Figure 2 lets leader ``i`` commit it if log[N].term == currentTerm."""
    s = state.servers[i]
    n = len(state.servers)
    own = len(s.log)
    matches = list(s.match_index)
    matches[i] = own
    matches.sort()
    return min(matches[(n - 1) // 2], own)


def advance_commit_index(
    state: State, i: int, index: int | None = None, *, mutant: str | None = None
) -> State | None:
    """Leaders: if there exists an N > commitIndex such that a majority of
    matchIndex[i] >= N and log[N].term == currentTerm, set commitIndex = N.
    ``index`` is that N; None takes the highest (the only one Figure 2 needs)."""
    s = state.servers[i]
    if s.role != LEADER:
        return None
    limit = commit_index_limit(state, i)
    if index is None:
        index = limit
    if not s.commit_index < index <= limit:
        return None
    if s.log[index - 1].term != s.current_term and mutant != COMMIT_OLD_TERM_BY_COUNTING:
        return None  # Figure 8: never commit an older term's entry by counting replicas
    server, committed = _set_commit_index(state, i, s, index)
    return _new(
        State,
        (_with_server(state, i, server), state.network, committed, state.restarts, state.stood),
    )


def _with_applied(
    state: State, i: int, s: Server, last_applied: int, applied: tuple[Applied, ...]
) -> State:
    """``state`` with server i's lastApplied and its record of applied entries replaced."""
    server = _new(
        Server,
        (
            s.current_term,
            s.voted_for,
            s.log,
            s.snapshot_index,
            s.role,
            s.commit_index,
            last_applied,
            s.votes_granted,
            s.next_index,
            s.match_index,
            s.leader_log,
            s.led_terms,
            applied,
            s.ext,
        ),
    )
    return _with(state, i, server)


def apply(state: State, i: int) -> State | None:
    """All Servers: if commitIndex > lastApplied, increment lastApplied and apply
    log[lastApplied] to the state machine (recorded in ``Server.applied``)."""
    s = state.servers[i]
    index = s.last_applied + 1
    # An entry inside the snapshot is applied only by installing the snapshot.
    if index > s.commit_index or index > len(s.log) or index <= s.snapshot_index:
        return None
    entry = s.log[index - 1]
    record: Applied = (index, entry.term, entry.value)
    applied = s.applied
    if not applied or applied[-1] < record:
        applied = (*applied, record)
    else:
        # ``applied`` is sorted: bisect instead of scanning it for ``record``.
        k = bisect_left(applied, record)
        if k == len(applied) or applied[k] != record:
            applied = tuple(sorted((*applied, record)))
    return _with_applied(state, i, s, index, applied)


# --------------------------------------------------------------------- failures


def restart(state: State, i: int, *, mutant: str | None = None) -> State | None:
    """Server ``i`` crashes and restarts: currentTerm, votedFor, log and snapshot
    (persistent state) are kept; role, commitIndex, lastApplied and candidate and
    leader state are lost.  The state machine is restored from the snapshot (§7:
    it holds only committed entries, so commitIndex and lastApplied restart at
    its last included index) and rebuilt from there by applying the log."""
    s = state.servers[i]
    voted_for = NOBODY if mutant == FORGET_VOTED_FOR_ON_RESTART else s.voted_for
    snapshot = s.snapshot_index
    server = _new(
        Server,
        (
            s.current_term,
            voted_for,
            s.log,
            snapshot,
            FOLLOWER,
            snapshot,
            0,
            0,
            (),
            (),
            (),
            s.led_terms,
            s.applied,
            _ext_volatile_lost(s.ext),
        ),
    )
    restarted = _new(
        State,
        (
            _with_server(state, i, server),
            state.network,
            state.committed,
            state.restarts + 1,
            state.stood,
        ),
    )
    return apply_snapshot(restarted, i, snapshot) if snapshot else restarted


def drop_message(state: State, m: Message) -> State | None:
    """The network loses one copy of ``m``."""
    network = _bag_remove(state.network, m)
    if network is None:
        return None
    return _new(State, (state.servers, network, state.committed, state.restarts, state.stood))


def duplicate_message(state: State, m: Message) -> State | None:
    """The network delivers ``m`` twice: one more copy is in flight."""
    if m not in state.network:
        return None
    return _new(
        State,
        (state.servers, _bag_add(state.network, m), state.committed, state.restarts, state.stood),
    )


def receive(
    state: State, m: Message, *, next_index: int | None = None, mutant: str | None = None
) -> State | None:
    """Deliver ``m`` to its destination: the handler for its kind."""
    if isinstance(m, RequestVoteRequest):
        return handle_request_vote(state, m, mutant=mutant)
    if isinstance(m, RequestVoteResponse):
        return handle_request_vote_response(state, m)
    if isinstance(m, AppendEntriesRequest):
        return handle_append_entries(state, m, mutant=mutant)
    if isinstance(m, AppendEntriesResponse):
        return handle_append_entries_response(state, m, next_index)
    if isinstance(m, InstallSnapshotRequest):
        return handle_install_snapshot(state, m, mutant=mutant)
    if isinstance(m, InstallSnapshotResponse):
        return handle_install_snapshot_response(state, m)
    if isinstance(m, PreVoteRequest):
        return handle_pre_vote(state, m, mutant=mutant)
    if isinstance(m, PreVoteResponse):
        return handle_pre_vote_response(state, m)
    if isinstance(m, TimeoutNowRequest):
        return handle_timeout_now(state, m)
    return handle_timeout_now_response(state, m)


# --------------------------------------------------------------------- snapshots (Figure 13)
#
# The log keeps the snapshot's entries (see state.py): ``snapshot_index`` says
# how many of them are compacted.  Taking a snapshot changes no logical state;
# what it changes is which rules may touch those entries.


def take_snapshot(state: State, i: int, index: int) -> State | None:
    """The service on server ``i`` folds the entries it applied, up to ``index``, into a
    snapshot, and the log is compacted to it (§7): snapshot_index < index <=
    lastApplied."""
    s = state.servers[i]
    if not s.snapshot_index < index <= s.last_applied:
        return None
    server = s._replace(snapshot_index=index)
    return _with(state, i, server)


def install_snapshot_sent(
    state: State, i: int, j: int, *, whole: bool = True
) -> Sent[InstallSnapshotRequest] | None:
    """Leaders: a follower whose nextIndex is inside the snapshot (its entries are
    gone from the log) is sent an InstallSnapshot RPC with the whole snapshot; or,
    with ``whole`` False, a chunk that does not complete it (the implementation
    sends snapshots in chunks, and chunks get lost): last_included_index 0 and no
    data, from which the follower only learns the leader's term.  The next state and
    the request it put in flight (:func:`install_snapshot`: the state)."""
    s = state.servers[i]
    if s.role != LEADER or j == i or not 0 <= j < len(state.servers):
        return None
    index = s.snapshot_index
    if index == 0 or s.next_index[j] > index:
        return None
    log = s.log
    m = _new(
        InstallSnapshotRequest,
        (INSTALL_SNAPSHOT_REQUEST, s.current_term, i, j, index, log[index - 1].term, log[:index])
        if whole
        else (INSTALL_SNAPSHOT_REQUEST, s.current_term, i, j, 0, 0, ()),
    )
    return _new(
        State,
        (state.servers, _bag_add(state.network, m), state.committed, state.restarts, state.stood),
    ), m


def install_snapshot_chunk(state: State, i: int, j: int) -> State | None:
    """:func:`install_snapshot` of a chunk that does not complete the snapshot."""
    return install_snapshot(state, i, j, whole=False)


def install_snapshot(state: State, i: int, j: int, *, whole: bool = True) -> State | None:
    """:func:`install_snapshot_sent`'s next state."""
    return _state_of(install_snapshot_sent(state, i, j, whole=whole))


def handle_install_snapshot_sent(
    state: State, m: InstallSnapshotRequest, *, mutant: str | None = None
) -> Sent[InstallSnapshotResponse] | None:
    """InstallSnapshot receiver (Figure 13, rules 1 and 5-8, the snapshot in one chunk).

    A snapshot at or below commitIndex holds nothing new: the receiver keeps its
    log (the implementation's choice; Figure 13 would discard the log's prefix,
    which changes nothing logical) and replies that it holds it.  Otherwise
    commitIndex becomes its last included index; lastApplied follows when the
    state machine is reset (:func:`apply_snapshot`, a follow-up step, as the
    implementation delivers the snapshot to the service).  The next state and the
    reply it put in flight (:func:`handle_install_snapshot`: the state)."""
    j = m.dest
    old = state.servers[j]
    s = _observe_term(old, m.term)
    term = s.current_term
    committed = state.committed
    index = m.last_included_index
    if m.term < term:
        # 1. Reply immediately if term < currentTerm.
        reply = _new(InstallSnapshotResponse, (INSTALL_SNAPSHOT_RESPONSE, term, j, m.source, 0))
    else:
        log = s.log
        commit = s.commit_index
        snapshot = s.snapshot_index
        if index > commit:
            # 6. If an existing log entry has the same index and term as the snapshot's
            # last included entry, retain log entries following it; 7. else discard
            # the entire log.  The retained prefix is the snapshot's.
            if (
                mutant != INSTALL_SNAPSHOT_DISCARDS_LOG
                and index <= len(log)
                and log[index - 1].term == m.last_included_term
            ):
                log = m.data + log[index:]
            else:
                log = m.data
            committed = _record_commits(committed, log, commit, index, term)
            commit = snapshot = index
        reply = _new(InstallSnapshotResponse, (INSTALL_SNAPSHOT_RESPONSE, term, j, m.source, index))
        s = _heard_leader(s, log, snapshot, commit)
    network = _bag_replace(state.network, m, reply)
    if network is None:
        return None
    servers = state.servers if s is old else _with_server(state, j, s)
    return _new(State, (servers, network, committed, state.restarts, state.stood)), reply


def handle_install_snapshot(
    state: State, m: InstallSnapshotRequest, *, mutant: str | None = None
) -> State | None:
    """:func:`handle_install_snapshot_sent`'s next state."""
    return _state_of(handle_install_snapshot_sent(state, m, mutant=mutant))


def handle_install_snapshot_response(state: State, m: InstallSnapshotResponse) -> State | None:
    """Leaders: a follower that holds the snapshot matches the leader up to its last
    included index: raise matchIndex and nextIndex to it (never backwards)."""
    network = _bag_remove(state.network, m)
    if network is None:
        return None
    i = m.dest
    old = state.servers[i]
    s = _observe_term(old, m.term)
    index = m.last_included_index
    if s.role == LEADER and m.term == s.current_term and index:
        j = m.source
        match_indexes = s.match_index
        next_indexes = s.next_index
        if index > match_indexes[j]:
            match_indexes = (*match_indexes[:j], index, *match_indexes[j + 1 :])
        if index >= next_indexes[j]:
            next_indexes = (*next_indexes[:j], index + 1, *next_indexes[j + 1 :])
        if match_indexes is not s.match_index or next_indexes is not s.next_index:
            s = s._replace(next_index=next_indexes, match_index=match_indexes)
    servers = state.servers if s is old else _with_server(state, i, s)
    return _new(State, (servers, network, state.committed, state.restarts, state.stood))


def apply_snapshot(state: State, i: int, index: int) -> State | None:
    """Figure 13 receiver rule 8, "reset state machine using snapshot contents": the
    state machine becomes the result of applying entries 1..``index`` (all
    committed), so lastApplied = index; each entry is recorded as applied."""
    s = state.servers[i]
    if not s.last_applied < index <= min(s.commit_index, len(s.log)):
        return None
    applied = s.applied
    known = set(applied)
    new = [(k, e.term, e.value) for k, e in enumerate(s.log[:index], 1)]
    missing = [record for record in new if record not in known]
    if missing:
        applied = tuple(sorted((*applied, *missing)))
    return _with_applied(state, i, s, index, applied)
