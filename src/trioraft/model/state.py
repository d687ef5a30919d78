"""The model's state: Figure 2's variables as frozen tuples of ints, plus history.

Rules of data layout
--------------------
Everything is a ``NamedTuple`` (frozen, slotted, hashable, compared by value),
so a whole cluster state hashes to a 64-bit fingerprint (see
``checker.Fingerprinter``) and two states are equal exactly when every field
is.  The checker builds millions of them, so the hot paths construct them
positionally with ``tuple.__new__`` and the fields hold only ints, tuples and
opaque values; roles are small ints.

Canonical forms keep equal situations equal: state a role does not use is
reset to its empty value (``votes_granted`` is 0 unless candidate,
``next_index``/``match_index``/``leader_log`` are ``()`` unless leader), the
network is a sorted tuple (a bag: duplicates are repeated), and history
records are sorted.

History variables (never read by the Raft rules, only by the invariants) live
in the state and are updated by the actions, so the trace validator and the
checker see the same thing:

- ``Server.led_terms``: every term in which this server became leader
  (Election Safety is checked against this history, not only current leaders);
- ``Server.leader_log``: while leader, the longest log it has held as leader
  this term (Leader Append-Only compares it with the current log);
- ``Server.applied``: every ``(index, term, value)`` this server ever applied,
  kept across restarts (State Machine Safety);
- ``State.committed``: every entry ever known committed by some server, with
  the earliest term in which it was (Leader Completeness);
- ``State.stood``: the highest term any server stood for (PreVoteTerms).

The log is a tuple of entries, index 1 first (entry k is ``log[k - 1]``).
Snapshots (Figure 13) are ``Server.snapshot_index``: the log keeps every
entry, and the first ``snapshot_index`` of them are the snapshot's contents.  A
snapshot holds exactly a committed prefix of the state machine (entry by entry
here), so keeping it in the log loses nothing and keeps index arithmetic plain
(entry k is still ``log[k - 1]``, ``len(log)`` the last index).  What
compaction changes is which rules may touch those entries, and the actions say
so: a leader sends InstallSnapshot instead of AppendEntries for them, a
follower never truncates them, and a server applies them only by installing
the snapshot (after a restart, or on an InstallSnapshot).
"""

from __future__ import annotations

from typing import Final, Literal, NamedTuple, TypeAlias

_new = tuple.__new__

FOLLOWER: Final = 0
CANDIDATE: Final = 1
LEADER: Final = 2
PRE_CANDIDATE: Final = 3  # Pre-Vote (thesis §9.6): asking for pre-votes, term unchanged
ROLE_NAMES: Final = ("follower", "candidate", "leader", "pre_candidate")

# The extensions a server runs (its configuration; ``Ext.options``), as bits.
PRE_VOTE: Final = 1  # thesis §9.6, with vote withholding (§4.2.3)
CHECK_QUORUM: Final = 2  # §6.2
TRANSFER: Final = 4  # leadership transfer, §3.10
READ_INDEX: Final = 8  # §6.4
OPTION_NAMES: Final = {
    PRE_VOTE: "pre_vote",
    CHECK_QUORUM: "check_quorum",
    TRANSFER: "transfer",
    READ_INDEX: "read_index",
}

NOBODY: Final = -1
"""``voted_for`` when the server has not voted in its current term."""

Value: TypeAlias = int | str | bytes
"""A client command, opaque to Raft: a small int in the checker, a digest in the
validator.  Values must be hashable and ordered among themselves."""


class Entry(NamedTuple):
    """One log entry: the term in which a leader received it, and its value."""

    term: int
    value: Value


Log: TypeAlias = tuple[Entry, ...]

Applied: TypeAlias = tuple[int, int, Value]
"""A record of applying one entry: ``(index, term, value)``."""

Committed: TypeAlias = tuple[int, int, Value, int]
"""A record of an entry known committed: ``(index, term, value, commit_term)``,
``commit_term`` being the earliest current_term of a server that counted it
committed (its commit_index reached ``index``)."""


class Read(NamedTuple):
    """A leader's read waiting for its confirmation round (ReadIndex, thesis §6.4)."""

    floor: int  # history: the highest index known committed anywhere when it began
    acks: int  # the servers (a bitmask, the leader too) that confirmed it since


class Ext(NamedTuple):
    """One server's state for the extensions; :data:`NO_EXT` when it runs none, so
    Figure 2's state space is unchanged."""

    options: int  # the extensions this server runs (PRE_VOTE | CHECK_QUORUM | ...)
    # Volatile (lost by Restart).
    lease: bool  # §4.2.3: a follower that heard its leader within the minimum timeout
    transfer_to: int  # leader: the target of a transfer under way (NOBODY: none)
    abandoned: bool  # leader: it abandoned a transfer this term (a TimeoutNow may be stale)
    campaign: bool  # candidate: its election was started by a TimeoutNow (§3.10)
    reads: tuple[Read, ...]  # leader: reads waiting for their round
    # History (kept across restarts; never read by the rules).
    lease_votes: tuple[int, ...]  # terms of votes it granted inside a lease (never, but a mutant)
    # Reads it served at an index below their floor: (floor, index) (never, but a
    # mutant).  A read served at or above its floor can never become a violation,
    # so it is not kept: the search does not split on reads long served.
    stale_reads: tuple[tuple[int, int], ...]


class Server(NamedTuple):
    """One server: Figure 2's state, then this server's history variables."""

    # Persistent state on all servers (kept by Restart).
    current_term: int
    voted_for: int  # NOBODY when none
    log: Log
    # Figure 13: the index of the last entry folded into this server's snapshot
    # (0: none).  Entries 1..snapshot_index stay in ``log`` as the snapshot's
    # contents (its state machine, entry by entry, and its last included term),
    # but the rules treat them as compacted: they are never sent as entries,
    # never truncated, and are applied all at once by installing the snapshot.
    snapshot_index: int
    # Volatile state on all servers (lost by Restart).
    role: int
    commit_index: int
    last_applied: int
    # Volatile state on candidates: the servers that granted a vote, as a bitmask.
    votes_granted: int
    # Volatile state on leaders, indexed by server id (``()`` unless leader).
    next_index: tuple[int, ...]
    match_index: tuple[int, ...]
    # History (see the module docstring).
    leader_log: Log
    led_terms: tuple[int, ...]
    applied: tuple[Applied, ...]
    # The extensions (Pre-Vote, CheckQuorum, leadership transfer, ReadIndex).
    ext: Ext


NO_EXT: Final = Ext(0, False, -1, False, False, (), (), ())
"""The extensions' state of a server that runs none of them."""


# Message kinds: the first field of every message, so messages of different
# kinds sort apart and a bag of them has one canonical order.  Every message is
# built with one of these names, never a literal tag (the named builders below;
# the actions, on the checker's hot path, build the tuple directly with them).
REQUEST_VOTE_REQUEST: Final = 0
REQUEST_VOTE_RESPONSE: Final = 1
APPEND_ENTRIES_REQUEST: Final = 2
APPEND_ENTRIES_RESPONSE: Final = 3
INSTALL_SNAPSHOT_REQUEST: Final = 4
INSTALL_SNAPSHOT_RESPONSE: Final = 5
PRE_VOTE_REQUEST: Final = 6
PRE_VOTE_RESPONSE: Final = 7
TIMEOUT_NOW_REQUEST: Final = 8
TIMEOUT_NOW_RESPONSE: Final = 9


class RequestVoteRequest(NamedTuple):
    """RequestVote RPC arguments (Figure 2); the candidate is ``source``."""

    kind: Literal[0]
    term: int
    source: int
    dest: int
    last_log_term: int
    last_log_index: int
    transfer: bool  # a leadership transfer's election: voters do not withhold (§3.10)


class RequestVoteResponse(NamedTuple):
    """RequestVote RPC results (Figure 2)."""

    kind: Literal[1]
    term: int
    source: int
    dest: int
    vote_granted: bool


class AppendEntriesRequest(NamedTuple):
    """AppendEntries RPC arguments (Figure 2); the leader is ``source``."""

    kind: Literal[2]
    term: int
    source: int
    dest: int
    prev_log_index: int
    prev_log_term: int
    entries: Log
    leader_commit: int


class AppendEntriesResponse(NamedTuple):
    """AppendEntries RPC results (Figure 2), with what the leader needs of its request.

    On success ``match_index`` is the request's prev_log_index plus its number
    of entries (the follower now agrees up to there) and ``prev_log_index`` is
    0; on failure ``match_index`` is 0 and ``prev_log_index`` is the request's.
    """

    kind: Literal[3]
    term: int
    source: int
    dest: int
    success: bool
    match_index: int
    prev_log_index: int


class InstallSnapshotRequest(NamedTuple):
    """InstallSnapshot RPC arguments (Figure 13), in one chunk; the leader is ``source``.

    ``data`` is the snapshot's contents: the leader's entries 1..last_included_index
    (the state machine they build, entry by entry).  The model sends a snapshot
    whole, or a chunk that does not complete it: last_included_index 0 and no
    data (the receiver learns only the leader's term).
    """

    kind: Literal[4]
    term: int
    source: int
    dest: int
    last_included_index: int
    last_included_term: int
    data: Log


class InstallSnapshotResponse(NamedTuple):
    """InstallSnapshot RPC results (Figure 13: the term), with what the leader needs
    of its request: ``last_included_index`` when the follower holds the snapshot
    (installed now, or covered by its commitIndex already), 0 for a refusal for
    the term or the reply to a chunk that did not complete the snapshot."""

    kind: Literal[5]
    term: int
    source: int
    dest: int
    last_included_index: int


class PreVoteRequest(NamedTuple):
    """Pre-Vote (thesis §9.6): RequestVote's fields, ``term`` being the term the
    pre-candidate (``source``) would stand for: its own plus one."""

    kind: Literal[6]
    term: int
    source: int
    dest: int
    last_log_term: int
    last_log_index: int


class PreVoteResponse(NamedTuple):
    """Pre-Vote results: a grant carries the term asked about, a refusal the
    voter's own term."""

    kind: Literal[7]
    term: int
    source: int
    dest: int
    vote_granted: bool


class TimeoutNowRequest(NamedTuple):
    """Leadership transfer (thesis §3.10): the leader (``source``) tells the target to
    stand at once."""

    kind: Literal[8]
    term: int
    source: int
    dest: int


class TimeoutNowResponse(NamedTuple):
    """TimeoutNow's acknowledgement: the target's term when it got it."""

    kind: Literal[9]
    term: int
    source: int
    dest: int


Message: TypeAlias = (
    RequestVoteRequest
    | RequestVoteResponse
    | AppendEntriesRequest
    | AppendEntriesResponse
    | InstallSnapshotRequest
    | InstallSnapshotResponse
    | PreVoteRequest
    | PreVoteResponse
    | TimeoutNowRequest
    | TimeoutNowResponse
)

MESSAGE_NAMES: Final = (
    "RequestVote",
    "RequestVoteReply",
    "AppendEntries",
    "AppendEntriesReply",
    "InstallSnapshot",
    "InstallSnapshotReply",
    "PreVote",
    "PreVoteReply",
    "TimeoutNow",
    "TimeoutNowReply",
)
"""The trace's name of each message kind (spec/TRACE.md), indexed by kind."""


# Named builders: a message from its fields by name, its kind filled in.  For
# everything off the checker's hot path (the validator, the search's canonical
# messages, tests): a field order mistake cannot hide behind a positional tuple.


def request_vote_request(
    *,
    term: int,
    source: int,
    dest: int,
    last_log_term: int,
    last_log_index: int,
    transfer: bool = False,
) -> RequestVoteRequest:
    """Candidates: a RequestVote RPC (Figure 2, "Arguments")."""
    return _new(
        RequestVoteRequest,
        (REQUEST_VOTE_REQUEST, term, source, dest, last_log_term, last_log_index, transfer),
    )


def pre_vote_request(
    *, term: int, source: int, dest: int, last_log_term: int, last_log_index: int
) -> PreVoteRequest:
    """Pre-candidates: a PreVote RPC (thesis §9.6) for ``term``."""
    return _new(
        PreVoteRequest, (PRE_VOTE_REQUEST, term, source, dest, last_log_term, last_log_index)
    )


def pre_vote_response(*, term: int, source: int, dest: int, vote_granted: bool) -> PreVoteResponse:
    """PreVote receiver: its reply."""
    return _new(PreVoteResponse, (PRE_VOTE_RESPONSE, term, source, dest, vote_granted))


def timeout_now_request(*, term: int, source: int, dest: int) -> TimeoutNowRequest:
    """Leaders transferring leadership: a TimeoutNow RPC (thesis §3.10)."""
    return _new(TimeoutNowRequest, (TIMEOUT_NOW_REQUEST, term, source, dest))


def timeout_now_response(*, term: int, source: int, dest: int) -> TimeoutNowResponse:
    """TimeoutNow receiver: its acknowledgement."""
    return _new(TimeoutNowResponse, (TIMEOUT_NOW_RESPONSE, term, source, dest))


def request_vote_response(
    *, term: int, source: int, dest: int, vote_granted: bool
) -> RequestVoteResponse:
    """RequestVote receiver: its reply (Figure 2, "Results")."""
    return _new(RequestVoteResponse, (REQUEST_VOTE_RESPONSE, term, source, dest, vote_granted))


def append_entries_request(
    *,
    term: int,
    source: int,
    dest: int,
    prev_log_index: int,
    prev_log_term: int,
    entries: Log,
    leader_commit: int,
) -> AppendEntriesRequest:
    """Leaders: an AppendEntries RPC (Figure 2, "Arguments")."""
    return _new(
        AppendEntriesRequest,
        (
            APPEND_ENTRIES_REQUEST,
            term,
            source,
            dest,
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit,
        ),
    )


def append_entries_response(
    *, term: int, source: int, dest: int, success: bool, match_index: int, prev_log_index: int
) -> AppendEntriesResponse:
    """AppendEntries receiver: its reply (Figure 2, "Results", and what the leader
    needs of its request: see :class:`AppendEntriesResponse`)."""
    return _new(
        AppendEntriesResponse,
        (APPEND_ENTRIES_RESPONSE, term, source, dest, success, match_index, prev_log_index),
    )


def install_snapshot_request(
    *,
    term: int,
    source: int,
    dest: int,
    last_included_index: int,
    last_included_term: int,
    data: Log,
) -> InstallSnapshotRequest:
    """Leaders: an InstallSnapshot RPC (Figure 13, "Arguments", in one chunk)."""
    return _new(
        InstallSnapshotRequest,
        (
            INSTALL_SNAPSHOT_REQUEST,
            term,
            source,
            dest,
            last_included_index,
            last_included_term,
            data,
        ),
    )


def install_snapshot_response(
    *, term: int, source: int, dest: int, last_included_index: int
) -> InstallSnapshotResponse:
    """InstallSnapshot receiver: its reply (Figure 13, "Results", and what the leader
    needs: see :class:`InstallSnapshotResponse`)."""
    return _new(
        InstallSnapshotResponse,
        (INSTALL_SNAPSHOT_RESPONSE, term, source, dest, last_included_index),
    )


class State(NamedTuple):
    """The whole cluster: servers, the network (a sorted bag), committed history."""

    servers: tuple[Server, ...]
    network: tuple[Message, ...]
    committed: tuple[Committed, ...]
    restarts: int
    # History: the highest term any server stood for as a candidate (Timeout; with
    # Pre-Vote, a pre-vote majority; or a transfer's TimeoutNow).  No server may
    # hold a higher term (PreVoteTerms).  In a correct run it is the highest term
    # held, so it never splits states.
    stood: int


def initial_server(options: int = 0) -> Server:
    """A server as it first boots: term 0, no vote, empty log, follower; running the
    extensions in ``options`` (PRE_VOTE | CHECK_QUORUM | TRANSFER | READ_INDEX)."""
    return Server(
        current_term=0,
        voted_for=NOBODY,
        log=(),
        snapshot_index=0,
        role=FOLLOWER,
        commit_index=0,
        last_applied=0,
        votes_granted=0,
        next_index=(),
        match_index=(),
        leader_log=(),
        led_terms=(),
        applied=(),
        ext=NO_EXT._replace(options=options) if options else NO_EXT,
    )


def initial_state(servers: int, options: int = 0) -> State:
    """``servers`` fresh servers, each running the extensions in ``options``, and an
    empty network."""
    if servers < 1:
        raise ValueError(f"a cluster needs at least 1 server, got {servers}")
    boot = initial_server(options)
    return State(servers=(boot,) * servers, network=(), committed=(), restarts=0, stood=0)


def last_log_index(server: Server) -> int:
    """The index of the server's last log entry, 0 when the log is empty."""
    return len(server.log)


def last_log_term(server: Server) -> int:
    """The term of the server's last log entry, 0 when the log is empty."""
    log = server.log
    return log[-1].term if log else 0


def snapshot_term(server: Server) -> int:
    """The term of the last entry in the server's snapshot, 0 when it has none."""
    index = server.snapshot_index
    return server.log[index - 1].term if index else 0


def term_at(log: Log, index: int) -> int | None:
    """The term of the entry at ``index`` (0 for index 0), None past the end."""
    if index == 0:
        return 0
    if index > len(log):
        return None
    return log[index - 1].term


# --------------------------------------------------------------------- rendering


def format_log(log: Log) -> str:
    """``[1:t1=v1 2:t2=v5]``: index, term and value of each entry."""
    return "[" + " ".join(f"{k}:t{e.term}={e.value!r}" for k, e in enumerate(log, 1)) + "]"


def format_message(m: Message) -> str:
    """One message in a line, e.g. ``AppendEntries 0->1 t2 prev 1/t1 [2:t2=1] commit 1``."""
    if isinstance(m, RequestVoteRequest) and m.term == 0:
        # The checker's canonical stale request (see search.tidy_network).
        return f"stale request {m.source}->{m.dest} (its reply only carries {m.dest}'s term)"
    head = f"{MESSAGE_NAMES[m.kind]} {m.source}->{m.dest} t{m.term}"
    if isinstance(m, (RequestVoteRequest, PreVoteRequest)):
        transfer = (
            " (leadership transfer)" if isinstance(m, RequestVoteRequest) and m.transfer else ""
        )
        return f"{head} last {m.last_log_index}/t{m.last_log_term}{transfer}"
    if isinstance(m, (RequestVoteResponse, PreVoteResponse)):
        return f"{head} {'granted' if m.vote_granted else 'refused'}"
    if isinstance(m, (TimeoutNowRequest, TimeoutNowResponse)):
        return head
    if isinstance(m, AppendEntriesRequest):
        entries = " ".join(
            f"{m.prev_log_index + k}:t{e.term}={e.value!r}" for k, e in enumerate(m.entries, 1)
        )
        return (
            f"{head} prev {m.prev_log_index}/t{m.prev_log_term} [{entries}] "
            f"commit {m.leader_commit}"
        )
    if isinstance(m, InstallSnapshotRequest) and not m.last_included_index:
        return f"{head} a chunk (not the last) of a snapshot"
    if isinstance(m, InstallSnapshotRequest):
        return (
            f"{head} snapshot {m.last_included_index}/t{m.last_included_term} {format_log(m.data)}"
        )
    if isinstance(m, InstallSnapshotResponse):
        if m.last_included_index:
            return f"{head} holds snapshot {m.last_included_index}"
        return f"{head} without a snapshot (refused, or a chunk received)"
    if m.success:
        return f"{head} success match {m.match_index}"
    return f"{head} failure at prev {m.prev_log_index}"


def format_server(i: int, s: Server) -> str:
    """One server in a line: role, term, vote, log, commit and apply indexes."""
    voted = "-" if s.voted_for == NOBODY else str(s.voted_for)
    text = (
        f"s{i} {ROLE_NAMES[s.role]:<9} term {s.current_term} voted_for {voted} "
        f"log {format_log(s.log)} commit {s.commit_index} applied {s.last_applied}"
    )
    if s.snapshot_index:
        text += f" snapshot {s.snapshot_index}"
    if s.role in (CANDIDATE, PRE_CANDIDATE):
        votes = [str(k) for k in range(len(s.next_index) or 64) if s.votes_granted >> k & 1]
        text += (" pre-votes {" if s.role == PRE_CANDIDATE else " votes {") + ",".join(votes) + "}"
    elif s.role == LEADER:
        text += f" next_index {list(s.next_index)} match_index {list(s.match_index)}"
    ext = s.ext
    if ext.lease:
        text += " (in its leader's lease)"
    if ext.transfer_to != NOBODY:
        text += f" transferring to {ext.transfer_to}"
    if ext.campaign:
        text += " (a transfer's election)"
    for read in ext.reads:
        acks = [str(k) for k in range(64) if read.acks >> k & 1]
        text += f" read waiting (floor {read.floor}, confirmed by {{{','.join(acks)}}})"
    return text


def format_state(state: State, indent: str = "") -> str:
    """The servers one per line, then the network, then the committed history."""
    lines = [indent + format_server(i, s) for i, s in enumerate(state.servers)]
    if state.network:
        lines.append(indent + "network:")
        lines.extend(indent + "  " + format_message(m) for m in state.network)
    else:
        lines.append(indent + "network: empty")
    if state.committed:
        known = " ".join(f"{i}:t{t}={v!r}(in t{c})" for i, t, v, c in state.committed)
        lines.append(indent + "committed: " + known)
    return "\n".join(lines)
