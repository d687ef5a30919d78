"""Messages and commands as they appear in a trace (spec/TRACE.md, "Messages")."""

from __future__ import annotations

import hashlib
from typing import Any

from ..core.messages import (
    AppendEntriesArgs,
    AppendEntriesReply,
    Entry,
    InstallSnapshotArgs,
    InstallSnapshotReply,
    PreVoteArgs,
    PreVoteReply,
    RequestVoteArgs,
    RequestVoteReply,
    TimeoutNowArgs,
    TimeoutNowReply,
)
from ..core.ready import NOOP


def digest(data: bytes | memoryview | Any) -> str:
    """The first 16 hex digits of BLAKE2b of a command's (or snapshot's) encoded bytes."""
    return hashlib.blake2b(bytes(data), digest_size=8).hexdigest()


NOOP_DIGEST = "noop"
"""The digest of a leader's no-op entry: named, not hashed."""

_NOOP_BYTES = bytes(NOOP)


def command_digest(command: bytes | memoryview | Any) -> str:
    """A log entry's command digest: :data:`NOOP_DIGEST` for a no-op, else :func:`digest`."""
    data = bytes(command)
    if data == _NOOP_BYTES:
        return NOOP_DIGEST
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def entries(items: tuple[Entry, ...] | list[Entry]) -> list[list[Any]]:
    return [[entry.term, command_digest(entry.command)] for entry in items]


def describe(message: object, sender: int, receiver: int) -> dict[str, Any]:
    """The whole message as a JSON-ready dict, with its type and direction."""
    base: dict[str, Any] = {"from": sender, "to": receiver}
    if isinstance(message, AppendEntriesArgs):
        base.update(
            type="AppendEntries",
            term=message.term,
            leader_id=message.leader_id,
            prev_log_index=message.prev_log_index,
            prev_log_term=message.prev_log_term,
            entries=entries(message.entries),
            leader_commit=message.leader_commit,
        )
    elif isinstance(message, AppendEntriesReply):
        base.update(
            type="AppendEntriesReply",
            term=message.term,
            success=message.success,
            conflict_index=message.conflict_index,
            conflict_term=message.conflict_term,
        )
    elif isinstance(message, (RequestVoteArgs, PreVoteArgs)):
        base.update(
            type="RequestVote" if isinstance(message, RequestVoteArgs) else "PreVote",
            term=message.term,
            candidate_id=message.candidate_id,
            last_log_index=message.last_log_index,
            last_log_term=message.last_log_term,
        )
        if isinstance(message, RequestVoteArgs) and message.leadership_transfer:
            base["leadership_transfer"] = True  # (absent: false)
    elif isinstance(message, (RequestVoteReply, PreVoteReply)):
        name = "RequestVoteReply" if isinstance(message, RequestVoteReply) else "PreVoteReply"
        base.update(type=name, term=message.term, vote_granted=message.vote_granted)
    elif isinstance(message, TimeoutNowArgs):
        base.update(type="TimeoutNow", term=message.term, leader_id=message.leader_id)
    elif isinstance(message, TimeoutNowReply):
        base.update(type="TimeoutNowReply", term=message.term)
    elif isinstance(message, InstallSnapshotArgs):
        base.update(
            type="InstallSnapshot",
            term=message.term,
            leader_id=message.leader_id,
            last_included_index=message.last_included_index,
            last_included_term=message.last_included_term,
            offset=message.offset,
            data_len=len(message.data),
            data_digest=digest(message.data),
            done=message.done,
        )
    elif isinstance(message, InstallSnapshotReply):
        base.update(type="InstallSnapshotReply", term=message.term, received=message.received)
    else:
        raise TypeError(f"not a Raft message: {type(message).__name__}")
    return base
