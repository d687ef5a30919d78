"""Drive a pure RaftNode through Ready/Advance in tests, checking the durability order.

:class:`Driven` wraps a node with a mirror of what its storage would hold.
Every Ready is written to the mirror first; then each message it carries and
each entry it lets the service apply is checked against the mirror: nothing
may depend on state that is not durable (Figure 2: "updated on stable storage
before responding to RPCs").  Messages the leader builds on demand
(``message_for``) are checked the same way.  A broken order fails the test
that caused it, whatever that test asserts itself.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import msgspec

from trioraft.core.messages import (
    AppendEntriesArgs,
    AppendEntriesReply,
    Entry,
    InstallSnapshotArgs,
    InstallSnapshotReply,
    PersistentState,
    PreVoteArgs,
    PreVoteReply,
    RequestVoteArgs,
    RequestVoteReply,
    TimeoutNowArgs,
)
from trioraft.core.node import RaftNode
from trioraft.core.ready import NOOP, Ready, Snapshot


def raw(value: object) -> msgspec.Raw:
    return msgspec.Raw(msgspec.msgpack.encode(value))


def make_node(
    me: int,
    n: int = 3,
    *,
    term: int = 0,
    voted_for: int | None = None,
    entries: tuple[Entry, ...] = (),
    snapshot: tuple[int, int, bytes] = (0, 0, b""),
    max_bytes: int = 1 << 16,
    chunk: int = 1 << 16,
    noop: bool = False,
    pre_vote: bool = False,
    check_quorum: bool = False,
    tracing: bool = False,
) -> Driven:
    index, snap_term, data = snapshot
    restored = None
    if term or entries or index:
        restored = PersistentState(term, voted_for, index, snap_term, entries, len(data))
    node = RaftNode(
        me,
        n,
        rng=random.Random(me),
        election_timeout_min=0.3,
        election_timeout_max=0.6,
        max_append_bytes=max_bytes,
        snapshot_chunk_bytes=chunk,
        restored=restored,
        snapshot_data=data,
        noop_on_election=noop,
        pre_vote=pre_vote,
        check_quorum=check_quorum,
        tracing=tracing,
    )
    return Driven(node)


@dataclass
class Mirror:
    """What storage holds after the Readies written so far."""

    term: int = 0
    voted_for: int | None = None
    commit: int = 0
    snapshot_index: int = 0
    snapshot_term: int = 0
    log: list[Entry] = field(default_factory=list)  # entries after the snapshot

    def term_at(self, index: int) -> int | None:
        if index == self.snapshot_index:
            return self.snapshot_term
        k = index - self.snapshot_index - 1
        return self.log[k].term if 0 <= k < len(self.log) else None

    def holds(self, index: int, term: int) -> bool:
        """Is the entry (index, term) durable, in the log or folded into the snapshot?"""
        return index <= self.snapshot_index or self.term_at(index) == term

    def write(self, ready: Ready) -> None:
        if ready.hard_state is not None:
            hard = ready.hard_state
            self.term, self.voted_for, self.commit = hard.term, hard.voted_for, hard.commit
        if ready.entries_from is not None:
            del self.log[max(ready.entries_from - self.snapshot_index - 1, 0) :]
        if ready.snapshot is not None:
            snap = ready.snapshot
            del self.log[: max(snap.index - self.snapshot_index, 0)]
            self.snapshot_index, self.snapshot_term = snap.index, snap.term
        if ready.entries:
            assert ready.entries_from is not None
            assert ready.entries_from == self.snapshot_index + len(self.log) + 1, (
                "entries are appended right after what storage holds"
            )
            self.log.extend(ready.entries)


@dataclass
class Settled:
    """What the Readies of one settle() released."""

    # (to, RequestVoteArgs / PreVoteArgs / TimeoutNowArgs)
    requests: list[tuple[int, Any]] = field(default_factory=list)
    replies: dict[int, Any] = field(default_factory=dict)  # id(request) -> reply
    applied: list[tuple[int, Any]] = field(default_factory=list)  # (index, value) / snapshot
    reads: list[tuple[Any, int | None]] = field(default_factory=list)  # ReadIndex answers
    readies: list[Ready] = field(default_factory=list)


class Driven:
    """A RaftNode with a durable mirror; every Ready checked against it."""

    def __init__(self, node: RaftNode) -> None:
        self.node = node
        log = node.log
        self.disk = Mirror(
            node.current_term,
            node.voted_for,
            node.commit_index,
            log.snapshot_index,
            log.snapshot_term,
            list(log.entries),
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.node, name)

    # -- inputs that produce replies ---------------------------------------

    def answer(self, args: Any) -> Any:
        """Hand the node a request, settle, and return its (durable) reply."""
        handle = {
            RequestVoteArgs: self.node.handle_request_vote,
            AppendEntriesArgs: self.node.handle_append_entries,
            InstallSnapshotArgs: self.node.handle_install_snapshot,
            PreVoteArgs: self.node.handle_pre_vote,
            TimeoutNowArgs: self.node.handle_timeout_now,
        }[type(args)]
        handle(args, args)
        settled = self.settle()
        return settled.replies[id(args)]

    # -- the shell's loop, checked ----------------------------------------

    def settle(self) -> Settled:
        out = Settled()
        while self.node.has_ready():
            ready = self.node.ready()
            out.readies.append(ready)
            self._check_sync(ready)
            self.disk.write(ready)
            for message in ready.messages:
                self._check_message(message.message, message.reply_to)
                if message.reply_to is None:
                    out.requests.append((message.to, message.message))
                else:
                    out.replies[id(message.reply_to)] = message.message
            self._check_applies(ready)
            self.node.advance(ready)
            out.reads.extend(ready.reads)
            if ready.apply_snapshot is not None:
                out.applied.append(("snapshot", ready.apply_snapshot))
            for k, entry in enumerate(ready.apply_entries):
                value = "noop" if entry.command == NOOP else msgspec.msgpack.decode(entry.command)
                out.applied.append((ready.apply_from + k, value))
        return out

    def send(self, peer: int) -> AppendEntriesArgs | InstallSnapshotArgs | None:
        """The leader's next message for ``peer``: of a durable term (its entries may
        still be being written: thesis §10.2.1), and a durable snapshot."""
        message = self.node.message_for(peer)
        disk = self.disk
        if isinstance(message, AppendEntriesArgs):
            assert message.term <= disk.term, "a leader sends only in a term it saved"
            for k, entry in enumerate(message.entries):
                index = message.prev_log_index + 1 + k
                assert self.node.log.term_at(index) == entry.term, f"entry {index} is not its own"
        elif isinstance(message, InstallSnapshotArgs):
            assert message.last_included_index <= disk.snapshot_index, (
                "a snapshot sent before it was durable"
            )
        return message

    def _check_sync(self, ready: Ready) -> None:
        """A Ready the shell need not fsync changes nothing but the commit index:
        entries, a snapshot, a term or a vote must be fsynced before what they allow."""
        if ready.must_sync:
            return
        assert ready.entries_from is None and ready.snapshot is None, "entries not synced"
        hard = ready.hard_state
        if hard is not None:
            assert (hard.term, hard.voted_for) == (self.disk.term, self.disk.voted_for), (
                "a new term or vote that would not be synced"
            )

    def _check_message(self, message: Any, request: Any) -> None:
        disk = self.disk
        if isinstance(message, PreVoteArgs):
            # Thesis §9.6: a pre-vote asks about the term after the saved one and
            # changes nothing, so nothing need be durable for it but the log it shows.
            assert message.term <= disk.term + 1, "a pre-vote beyond the next term"
            assert disk.holds(message.last_log_index, message.last_log_term)
            return
        if isinstance(message, PreVoteReply) and message.vote_granted:
            # A grant answers with the term asked about, and promises nothing.
            assert message.term == request.term, "a pre-vote grant not of the term asked"
            return
        assert message.term <= disk.term, f"{type(message).__name__} of an unsaved term"
        if isinstance(message, RequestVoteArgs):
            assert (disk.term, disk.voted_for) == (message.term, self.node.me), (
                "RequestVote before the new term and the vote for itself were durable"
            )
            assert disk.holds(message.last_log_index, message.last_log_term)
        elif isinstance(message, RequestVoteReply) and message.vote_granted:
            assert disk.voted_for == request.candidate_id, "a vote granted before it was durable"
        elif isinstance(message, AppendEntriesReply) and message.success:
            for k, entry in enumerate(request.entries):
                index = request.prev_log_index + 1 + k
                assert disk.holds(index, entry.term), f"acknowledged entry {index} not durable"
        elif (
            isinstance(message, InstallSnapshotReply)
            and request.done
            and message.received >= request.offset + len(request.data)
        ):
            assert disk.holds(request.last_included_index, request.last_included_term), (
                "a snapshot acknowledged before it was durable"
            )

    def _check_applies(self, ready: Ready) -> None:
        disk = self.disk
        if ready.apply_snapshot is not None:
            assert ready.apply_snapshot.index <= disk.snapshot_index
        for k, entry in enumerate(ready.apply_entries):
            index = ready.apply_from + k
            assert disk.holds(index, entry.term), f"entry {index} applied before it was durable"


def elect(a: Driven, granted_by: list[int] | None = None) -> list[tuple[int, Any]]:
    """Time ``a`` out and grant it every other vote (or those of ``granted_by``);
    with ``pre_vote`` the same peers grant its pre-votes first.  Returns the
    RequestVotes sent."""
    a.node.election_timeout()
    requests = a.settle().requests
    if requests and isinstance(requests[0][1], PreVoteArgs):
        voters = granted_by if granted_by is not None else [peer for peer, _ in requests]
        for peer, request in requests:
            if peer in voters:
                a.node.handle_pre_vote_reply(peer, request, PreVoteReply(request.term, True))
        requests = a.settle().requests
    voters = granted_by if granted_by is not None else [peer for peer, _ in requests]
    for peer, request in requests:
        if peer in voters:
            a.node.handle_request_vote_reply(peer, request, RequestVoteReply(request.term, True))
    a.settle()
    return requests


def deliver(leader: Driven, follower: Driven) -> Any:
    """One AppendEntries (or InstallSnapshot chunk) from leader to follower and back."""
    args = leader.send(follower.node.me)
    assert args is not None
    read_round = leader.node.read_round  # the round the message was built in
    reply = follower.answer(args)
    if isinstance(args, AppendEntriesArgs):
        leader.node.handle_append_entries_reply(follower.node.me, args, reply, read_round)
    else:
        leader.node.handle_install_snapshot_reply(follower.node.me, args, reply, read_round)
    leader.settle()
    return reply


def snapshot_of(index: int, term: int, data: bytes) -> Snapshot:
    return Snapshot(index, term, data)
