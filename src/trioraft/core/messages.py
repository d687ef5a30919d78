"""The RPC messages of Figure 2 (and Figure 13 for InstallSnapshot).

Messages are frozen, array-encoded msgspec structs: they are values (compared
and copied by value), and the codec turns them into compact msgpack without
field names, which keeps the 6.824 byte bounds (TestRPCBytes, MAXLOGSIZE)
honest.  Field names are the paper's.
"""

from __future__ import annotations

import msgspec


class Entry(msgspec.Struct, frozen=True, array_like=True):
    """One log entry: the term in which the leader received it, and the command.

    The command is kept encoded (``msgspec.Raw``): it is validated and encoded
    once, at ``start()``, then copied verbatim into every AppendEntries and
    every save, and decoded only when applied.  Its length is what the
    leader's batching budget counts.
    """

    term: int
    command: msgspec.Raw


class RequestVoteArgs(msgspec.Struct, frozen=True, array_like=True):
    """RequestVote RPC arguments (Figure 2).

    ``leadership_transfer``: the election was started by a leader's TimeoutNow
    (thesis §3.10), so a peer that heard from that leader recently still
    decides it instead of withholding its vote (§4.2.3).
    """

    term: int
    candidate_id: int
    last_log_index: int
    last_log_term: int
    leadership_transfer: bool = False


class RequestVoteReply(msgspec.Struct, frozen=True, array_like=True):
    """RequestVote RPC results (Figure 2)."""

    term: int
    vote_granted: bool


class PreVoteArgs(msgspec.Struct, frozen=True, array_like=True):
    """Pre-Vote request (thesis §9.6): RequestVote's fields, with ``term`` the term
    the pre-candidate would stand for (its own plus one).  Neither side changes
    its term or vote for it."""

    term: int
    candidate_id: int
    last_log_index: int
    last_log_term: int


class PreVoteReply(msgspec.Struct, frozen=True, array_like=True):
    """Pre-Vote result: a grant carries the term asked about; a refusal the
    receiver's own term (so a pre-candidate that is behind learns it)."""

    term: int
    vote_granted: bool


class TimeoutNowArgs(msgspec.Struct, frozen=True, array_like=True):
    """Leadership transfer (thesis §3.10): the leader tells an up-to-date follower
    to start an election at once."""

    term: int
    leader_id: int


class TimeoutNowReply(msgspec.Struct, frozen=True, array_like=True):
    """TimeoutNow's acknowledgement: the receiver's term when it got it."""

    term: int


class AppendEntriesArgs(msgspec.Struct, frozen=True, array_like=True):
    """AppendEntries RPC arguments (Figure 2); no entries means a heartbeat."""

    term: int
    leader_id: int
    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...]
    leader_commit: int


class AppendEntriesReply(msgspec.Struct, frozen=True, array_like=True):
    """AppendEntries RPC results (Figure 2), plus the fast-backup hints.

    On a consistency-check failure the follower says where the leader should
    look next (the "accelerated log backtracking" of §5.3, as taught in 6.824):
    ``conflict_term`` is the term of the follower's entry at prev_log_index
    (0 if it has no entry there) and ``conflict_index`` the first index the
    follower holds for that term (or its log length + 1 when it is too short).
    """

    term: int
    success: bool
    conflict_index: int = 0
    conflict_term: int = 0


class InstallSnapshotArgs(msgspec.Struct, frozen=True, array_like=True):
    """InstallSnapshot RPC arguments (Figure 13), sent in chunks."""

    term: int
    leader_id: int
    last_included_index: int
    last_included_term: int
    offset: int
    data: bytes
    done: bool


class InstallSnapshotReply(msgspec.Struct, frozen=True, array_like=True):
    """InstallSnapshot RPC results (Figure 13), plus how many bytes the follower holds.

    ``received`` lets the leader resume after a lost chunk, and tells it the
    snapshot was installed (``received`` equals the snapshot's size).
    """

    term: int
    received: int = 0


RPC_ARGS = (RequestVoteArgs, AppendEntriesArgs, InstallSnapshotArgs, PreVoteArgs, TimeoutNowArgs)
"""The request types a peer handles."""

AnyArgs = RequestVoteArgs | AppendEntriesArgs | InstallSnapshotArgs | PreVoteArgs | TimeoutNowArgs
AnyReply = (
    RequestVoteReply | AppendEntriesReply | InstallSnapshotReply | PreVoteReply | TimeoutNowReply
)


class PersistentState(msgspec.Struct, frozen=True, array_like=True):
    """What Figure 2 says must be on stable storage, plus the log's offset.

    ``snapshot_index``/``snapshot_term`` are the last entry folded into the
    snapshot (0/0 when there is none); ``entries`` start at snapshot_index + 1.
    ``snapshot_size`` is the length of the snapshot saved beside this state, so
    a restart can tell a lost snapshot from an empty one (-1: not recorded, as
    in states saved before the field existed).
    """

    current_term: int
    voted_for: int | None
    snapshot_index: int
    snapshot_term: int
    entries: tuple[Entry, ...]
    snapshot_size: int = -1
