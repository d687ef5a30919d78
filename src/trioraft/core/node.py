"""The Raft algorithm of Figure 2 as a plain object: no trio, no clock, no I/O.

Rules of operation
------------------
The shell (``trioraft.peer``) drives a :class:`RaftNode` through its inputs
and carries out what it asks for:

- inputs: ``election_timeout()`` (the timer the node last armed fired),
  ``propose(command)`` (a client's ``start()``), ``handle_*(args)`` (an RPC
  arrived; returns the reply), ``handle_*_reply(peer, args, reply)`` (a reply
  to an RPC this node sent), ``snapshot(index, data)`` (the service compacted).
- outputs, collected by ``take_ready()``: re-arm the election timer (with a
  random timeout drawn from the node's own seeded generator) or disarm it (a
  leader needs none); RequestVote messages to send; "there is something new
  to replicate"; "commit_index moved".
- durability: every change to ``current_term``, ``voted_for``, the log or the
  snapshot sets ``dirty``.  The shell must persist (``persistent_state()``,
  ``snapshot_data``) before it returns a reply, sends a message or applies an
  entry; that is Figure 2's "updated on stable storage before responding to
  RPCs", and it lets a burst of ``propose()`` calls share one write.
- the leader builds each follower's next message on demand
  (``message_for(peer)``), so a follower that is behind gets the newest entries
  in one batch, bounded by ``max_append_bytes``.

Every RPC first goes through :meth:`_observe_term` (Figure 2, "Rules for
Servers, All Servers": a higher term turns any role into a follower), then to
the rule for the current role.  Only the ``_become_*`` methods change the role.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import msgspec

from .apply import ApplyMsg
from .log import RaftLog
from .messages import (
    AppendEntriesArgs,
    AppendEntriesReply,
    Entry,
    InstallSnapshotArgs,
    InstallSnapshotReply,
    PersistentState,
    RequestVoteArgs,
    RequestVoteReply,
)


class Role(Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


DISARMED = math.inf
"""``Ready.election_timeout`` value meaning "no election timer" (a leader's)."""


@dataclass(slots=True)
class Ready:
    """What the shell must do after feeding the node an input.

    ``election_timeout``: None leaves the timer as it is; a number re-arms it
    to fire that many seconds from now; :data:`DISARMED` stops it.
    """

    election_timeout: float | None = None
    votes_to_request: list[tuple[int, RequestVoteArgs]] = field(default_factory=list)
    replicate: bool = False
    commit_advanced: bool = False


@dataclass(slots=True)
class TraceEvent:
    """One step of the node, for the trace (``trioraft.trace``), with the state after it.

    ``state`` is (term, role, voted_for, commit_index, last_applied,
    last_index, last_term, snapshot_index, snapshot_term).  Commands appear
    in ``fields`` still encoded (``msgspec.Raw``); the recorder digests them.
    """

    name: str
    fields: dict[str, Any]
    state: tuple[Any, ...]


class RaftNode:
    """One Raft server's state and transition rules (Figure 2, Figure 13)."""

    def __init__(
        self,
        me: int,
        n: int,
        *,
        rng: random.Random,
        election_timeout_min: float,
        election_timeout_max: float,
        max_append_bytes: int,
        snapshot_chunk_bytes: int,
        restored: PersistentState | None = None,
        snapshot_data: bytes = b"",
        tracing: bool = False,
    ) -> None:
        if not 0 <= me < n:
            raise ValueError(f"me={me} is not an index into {n} peers")
        self.me = me
        self.n = n
        self.rng = rng
        self._timeout_range = (election_timeout_min, election_timeout_max)
        self._max_append_bytes = max_append_bytes
        self._chunk_bytes = snapshot_chunk_bytes

        # Persistent state on all servers (Figure 2).
        self.current_term = 0
        self.voted_for: int | None = None
        self.log = RaftLog()
        self.snapshot_data = snapshot_data
        if restored is not None:
            self.current_term = restored.current_term
            self.voted_for = restored.voted_for
            self.log = RaftLog(restored.snapshot_index, restored.snapshot_term, restored.entries)

        # Volatile state on all servers.  After a restart everything up to the
        # snapshot is known committed and applied (the service restores it).
        self.commit_index = self.log.snapshot_index
        self.last_applied = self.log.snapshot_index
        self.role = Role.FOLLOWER
        self.leader_id: int | None = None

        # Volatile state on candidates and leaders.
        self.votes: set[int] = set()
        self.next_index: list[int] = []
        self.match_index: list[int] = []
        # Per follower: the snapshot being sent and how far (Figure 13 offset).
        self._snapshot_progress: dict[int, tuple[int, int]] = {}

        # Follower side of InstallSnapshot: chunks received so far.
        # (leader's term, last included index, last included term, bytes so far):
        # chunks of one leader's snapshot only, never spliced across terms.
        self._incoming_snapshot: tuple[int, int, int, bytearray] | None = None
        self._snapshot_to_apply = False

        self.dirty = False
        self._ready = Ready()
        self.trace: list[TraceEvent] | None = [] if tracing else None

        self._ready.election_timeout = self._random_timeout()
        if self.trace is not None:
            log = [(entry.term, entry.command) for entry in self.log.entries]
            self._note("init", restored=restored is not None, log=log)

    # ------------------------------------------------------------------ queries

    @property
    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    def persistent_state(self) -> PersistentState:
        """The state Figure 2 says must be durable (with the log's offset)."""
        return PersistentState(
            self.current_term,
            self.voted_for,
            self.log.snapshot_index,
            self.log.snapshot_term,
            tuple(self.log.entries),
            len(self.snapshot_data),
        )

    def take_ready(self) -> Ready:
        ready, self._ready = self._ready, Ready()
        return ready

    def take_trace(self) -> list[TraceEvent]:
        events = self.trace or []
        if self.trace is not None:
            self.trace = []
        return events

    def has_news_for(self, peer: int) -> bool:
        """Leader: does ``peer`` lack entries (or a snapshot) the leader holds?"""
        return self.role is Role.LEADER and self.next_index[peer] <= self.log.last_index

    # ------------------------------------------------------------------ timers

    def election_timeout(self) -> None:
        """The election timer fired: start an election (Figure 2, Followers/Candidates)."""
        if self.role is Role.LEADER:
            return
        self._note("timeout")
        self._become_candidate()

    # ------------------------------------------------------------------ client

    def propose(self, command: msgspec.Raw) -> tuple[int, int, bool]:
        """A client command (encoded): a leader appends it to its log (Figure 2, Leaders)."""
        if self.role is not Role.LEADER:
            return -1, self.current_term, False
        index = self.log.append(Entry(self.current_term, command))
        self.dirty = True
        self._ready.replicate = True
        self._note("client_request", index=index, term=self.current_term, command=command)
        self._advance_commit_index()  # a lone server is its own majority
        return index, self.current_term, True

    # ------------------------------------------------------------------ RequestVote

    def handle_request_vote(self, args: RequestVoteArgs) -> RequestVoteReply:
        """RequestVote receiver implementation (Figure 2)."""
        self._observe_term(args.term)
        granted = False
        # 1. Reply false if term < currentTerm.
        # 2. If votedFor is null or candidateId, and the candidate's log is at
        #    least as up-to-date as the receiver's (§5.4.1), grant the vote.
        if (
            args.term == self.current_term
            and self.voted_for in (None, args.candidate_id)
            and self._candidate_log_is_up_to_date(args.last_log_term, args.last_log_index)
        ):
            granted = True
            if self.voted_for is None:
                self.voted_for = args.candidate_id
                self.dirty = True
            self._reset_election_timer()  # Followers: "granting vote to candidate"
        self._note("vote", candidate=args.candidate_id, granted=granted)
        return RequestVoteReply(self.current_term, granted)

    def handle_request_vote_reply(
        self, peer: int, args: RequestVoteArgs, reply: RequestVoteReply
    ) -> None:
        self._observe_term(reply.term)
        if self.role is not Role.CANDIDATE or self.current_term != args.term:
            return  # a reply from an election that is over
        if reply.vote_granted:
            self.votes.add(peer)
            # Candidates: "If votes received from majority of servers: become leader".
            if 2 * len(self.votes) > self.n:
                self._become_leader()

    def _candidate_log_is_up_to_date(self, last_log_term: int, last_log_index: int) -> bool:
        # §5.4.1: compare the terms of the last entries; if equal, the longer log wins.
        if last_log_term != self.log.last_term:
            return last_log_term > self.log.last_term
        return last_log_index >= self.log.last_index

    # ------------------------------------------------------------------ AppendEntries

    def message_for(self, peer: int) -> AppendEntriesArgs | InstallSnapshotArgs:
        """Leader: the next AppendEntries (or InstallSnapshot chunk) for ``peer``."""
        if self.role is not Role.LEADER:
            raise RuntimeError("only a leader replicates")
        next_index = self.next_index[peer]
        if next_index <= self.log.snapshot_index:
            return self._snapshot_chunk_for(peer)
        prev_log_index = next_index - 1
        prev_log_term = self.log.term_at(prev_log_index)
        assert prev_log_term is not None, "next_index is kept within the log"
        entries: list[Entry] = []
        budget = self._max_append_bytes
        for entry in self.log.entries[next_index - self.log.first_index :]:
            size = len(entry.command) + 8
            if entries and size > budget:
                break
            entries.append(entry)
            budget -= size
        return AppendEntriesArgs(
            self.current_term,
            self.me,
            prev_log_index,
            prev_log_term,
            tuple(entries),
            self.commit_index,
        )

    def handle_append_entries(self, args: AppendEntriesArgs) -> AppendEntriesReply:
        """AppendEntries receiver implementation (Figure 2)."""
        self._observe_term(args.term)
        # 1. Reply false if term < currentTerm.
        if args.term < self.current_term:
            return AppendEntriesReply(self.current_term, False)
        self._accept_leader(args.leader_id)

        # 2. Reply false if the log doesn't contain an entry at prevLogIndex whose
        #    term matches prevLogTerm; say where the leader should look next.
        prev_index, prev_term, entries = args.prev_log_index, args.prev_log_term, args.entries
        if prev_index < self.log.snapshot_index:
            # The start of this message is already in our snapshot, hence
            # committed and matching: skip the part the snapshot covers.
            skip = self.log.snapshot_index - prev_index
            if skip >= len(entries):
                return AppendEntriesReply(self.current_term, True)
            entries = entries[skip:]
            prev_index, prev_term = self.log.snapshot_index, self.log.snapshot_term
        if prev_index > self.log.last_index:
            return AppendEntriesReply(self.current_term, False, self.log.last_index + 1, 0)
        term_there = self.log.term_at(prev_index)
        if term_there != prev_term:
            assert term_there is not None
            first = self.log.first_index_of_term(prev_index)
            return AppendEntriesReply(self.current_term, False, first, term_there)

        # 3. If an existing entry conflicts with a new one (same index, different
        #    term), delete it and all that follow.  4. Append new entries not
        #    already in the log.  Entries that match stay: a stale, shorter
        #    AppendEntries must not cut off entries a newer one delivered.
        index = prev_index
        for i, entry in enumerate(entries):
            index = prev_index + 1 + i
            existing = self.log.term_at(index)
            if existing == entry.term:
                continue
            if existing is not None:
                self.log.truncate_after(index - 1)
            self.log.extend(entries[i:])
            self.dirty = True
            self._note("append", index=index, count=len(entries) - i)
            break

        # 5. If leaderCommit > commitIndex, set commitIndex =
        #    min(leaderCommit, index of last new entry).
        last_new = prev_index + len(entries)
        if args.leader_commit > self.commit_index:
            new_commit = min(args.leader_commit, last_new)
            if new_commit > self.commit_index:
                self._set_commit_index(new_commit)
        return AppendEntriesReply(self.current_term, True)

    def handle_append_entries_reply(
        self, peer: int, args: AppendEntriesArgs, reply: AppendEntriesReply
    ) -> None:
        """Leaders: update nextIndex and matchIndex for the follower (Figure 2)."""
        self._observe_term(reply.term)
        if self.role is not Role.LEADER or self.current_term != args.term:
            return  # stale: sent in an earlier term
        if reply.success:
            match = args.prev_log_index + len(args.entries)
            if match > self.match_index[peer]:
                self.match_index[peer] = match
                self._advance_commit_index()
            self.next_index[peer] = max(self.next_index[peer], match + 1)
            return
        if args.prev_log_index + 1 != self.next_index[peer]:
            return  # an older rejection; nextIndex has moved since
        # "If AppendEntries fails because of log inconsistency: decrement
        # nextIndex and retry", by a whole term at a time (§5.3, fast backup).
        if reply.conflict_term == 0:
            next_index = reply.conflict_index
        else:
            last_of_term = self.log.last_index_of_term(reply.conflict_term)
            next_index = last_of_term + 1 if last_of_term is not None else reply.conflict_index
        next_index = max(self.match_index[peer] + 1, min(next_index, args.prev_log_index))
        self.next_index[peer] = next_index
        self._ready.replicate = True

    # ------------------------------------------------------------------ snapshots

    def snapshot(self, index: int, data: bytes) -> str | None:
        """The service folded everything up to ``index`` into ``data``.

        Returns None when done, or why the call was ignored (an index the service
        has not been given yet, or one the log has already compacted).
        """
        if index > self.last_applied:
            # §7: a snapshot folds in what the state machine applied.  Past that, it
            # would skip entries (or an installed snapshot) never delivered.
            return f"snapshot index {index} is beyond last_applied {self.last_applied}; ignored"
        if index <= self.log.snapshot_index:
            return (
                f"snapshot index {index} is not past the current snapshot "
                f"({self.log.snapshot_index}); ignored"
            )
        self.log.compact(index)
        self.snapshot_data = bytes(data)
        self.dirty = True
        self._note("snapshot", index=index, snapshot=self.snapshot_data)
        return None

    def _snapshot_chunk_for(self, peer: int) -> InstallSnapshotArgs:
        index = self.log.snapshot_index
        sent_index, offset = self._snapshot_progress.get(peer, (index, 0))
        if sent_index != index:
            offset = 0  # our snapshot moved on; start the new one from the top
        chunk = self.snapshot_data[offset : offset + self._chunk_bytes]
        done = offset + len(chunk) >= len(self.snapshot_data)
        return InstallSnapshotArgs(
            self.current_term, self.me, index, self.log.snapshot_term, offset, chunk, done
        )

    def handle_install_snapshot(self, args: InstallSnapshotArgs) -> InstallSnapshotReply:
        """InstallSnapshot receiver implementation (Figure 13)."""
        self._observe_term(args.term)
        # 1. Reply immediately if term < currentTerm.
        if args.term < self.current_term:
            return InstallSnapshotReply(self.current_term, 0)
        self._accept_leader(args.leader_id)
        key = (args.term, args.last_included_index, args.last_included_term)
        # 2. Create a new snapshot file if first chunk (offset is 0).
        if args.offset == 0:
            self._incoming_snapshot = (*key, bytearray())
        incoming = self._incoming_snapshot
        if incoming is None or incoming[:3] != key or args.offset != len(incoming[3]):
            # A chunk out of order (an earlier one was lost): say where we are.
            have = len(incoming[3]) if incoming is not None and incoming[:3] == key else 0
            return InstallSnapshotReply(self.current_term, have)
        # 3. Write data into the snapshot file at given offset.
        buffer = incoming[3]
        buffer += args.data
        # 4. Reply and wait for more data chunks if done is false.
        if not args.done:
            return InstallSnapshotReply(self.current_term, len(buffer))
        self._incoming_snapshot = None
        self._install_snapshot(args.last_included_index, args.last_included_term, bytes(buffer))
        return InstallSnapshotReply(self.current_term, len(buffer))

    def _install_snapshot(self, index: int, term: int, data: bytes) -> None:
        if index <= self.commit_index:
            return  # we already have everything it holds; keep our log
        # 6. If an existing entry has the same index and term as the snapshot's
        #    last included entry, retain the entries following it.
        if self.log.term_at(index) == term:
            self.log.compact(index)
        else:
            # 7. Discard the entire log.
            self.log.reset(index, term)
        # 8. Reset the state machine using the snapshot contents.
        self.snapshot_data = data
        self.commit_index = index
        self._snapshot_to_apply = True
        self.dirty = True
        self._ready.commit_advanced = True
        self._note("install_snapshot", index=index, snapshot_term=term, snapshot=data)

    def handle_install_snapshot_reply(
        self, peer: int, args: InstallSnapshotArgs, reply: InstallSnapshotReply
    ) -> None:
        self._observe_term(reply.term)
        if self.role is not Role.LEADER or self.current_term != args.term:
            return
        total = args.offset + len(args.data)
        if args.done and reply.received >= total:
            self._snapshot_progress.pop(peer, None)
            index = args.last_included_index
            if index > self.match_index[peer]:
                self.match_index[peer] = index
                self._advance_commit_index()
            self.next_index[peer] = max(self.next_index[peer], index + 1)
        else:
            self._snapshot_progress[peer] = (args.last_included_index, reply.received)
        self._ready.replicate = True

    # ------------------------------------------------------------------ applying

    def next_apply(self) -> ApplyMsg | None:
        """The next message for the service (Figure 2, All Servers: "If commitIndex >
        lastApplied: increment lastApplied, apply log[lastApplied]"), or None."""
        if self._snapshot_to_apply:
            self._snapshot_to_apply = False
            if self.log.snapshot_index > self.last_applied:
                self.last_applied = self.log.snapshot_index
                self._note(
                    "apply_snapshot",
                    index=self.last_applied,
                    snapshot_term=self.log.snapshot_term,
                    snapshot=self.snapshot_data,
                )
                return ApplyMsg(
                    snapshot_valid=True,
                    snapshot=self.snapshot_data,
                    snapshot_term=self.log.snapshot_term,
                    snapshot_index=self.log.snapshot_index,
                )
        if self.last_applied >= self.commit_index:
            return None
        self.last_applied += 1
        entry = self.log.entry(self.last_applied)
        self._note("apply", index=self.last_applied, term=entry.term, command=entry.command)
        return ApplyMsg(
            command_valid=True,
            command=msgspec.msgpack.decode(entry.command),
            command_index=self.last_applied,
            command_term=entry.term,
        )

    # ------------------------------------------------------------------ transitions

    def _observe_term(self, term: int) -> None:
        # All Servers: "If RPC request or response contains term T > currentTerm:
        # set currentTerm = T, convert to follower".
        if term > self.current_term:
            self.current_term = term
            self.voted_for = None
            self.dirty = True
            self._note("term_update", new_term=term)
            self._become_follower()

    def _accept_leader(self, leader_id: int) -> None:
        """A valid AppendEntries/InstallSnapshot of the current term arrived."""
        if self.role is Role.CANDIDATE:
            # Candidates: "If AppendEntries RPC received from new leader: convert to follower".
            self._become_follower()
        self.leader_id = leader_id
        self._reset_election_timer()

    def _become_follower(self) -> None:
        was_leader = self.role is Role.LEADER
        if self.role is not Role.FOLLOWER:
            self.role = Role.FOLLOWER
            self._note("become_follower")
        self.leader_id = None
        self.votes = set()
        if was_leader:
            self._reset_election_timer()

    def _become_candidate(self) -> None:
        # Candidates: increment currentTerm, vote for self, reset election
        # timer, send RequestVote RPCs to all other servers.
        self.role = Role.CANDIDATE
        self.current_term += 1
        self.voted_for = self.me
        self.leader_id = None
        self.votes = {self.me}
        self.dirty = True
        self._reset_election_timer()
        self._note("become_candidate")
        if 2 * len(self.votes) > self.n:
            self._become_leader()
            return
        args = RequestVoteArgs(self.current_term, self.me, self.log.last_index, self.log.last_term)
        self._ready.votes_to_request = [(peer, args) for peer in self._others()]

    def _become_leader(self) -> None:
        if self.role is not Role.CANDIDATE:
            raise RuntimeError(f"only a candidate can become leader, not a {self.role.value}")
        self.role = Role.LEADER
        self.leader_id = self.me
        # Leaders: nextIndex initialized to leader last log index + 1,
        # matchIndex to 0; then send initial empty AppendEntries (heartbeats).
        self.next_index = [self.log.last_index + 1] * self.n
        self.match_index = [0] * self.n
        self._snapshot_progress = {}
        self._ready.election_timeout = DISARMED
        self._ready.votes_to_request = []
        self._ready.replicate = True
        self._note("become_leader")

    def _advance_commit_index(self) -> None:
        # Leaders: "If there exists an N such that N > commitIndex, a majority of
        # matchIndex[i] >= N, and log[N].term == currentTerm: set commitIndex = N".
        # The term test is Figure 8's lesson: an older term's entry is never
        # committed by counting replicas.
        matches = sorted(
            (self.log.last_index if peer == self.me else self.match_index[peer])
            for peer in range(self.n)
        )
        majority_match = matches[(self.n - 1) // 2]
        if (
            majority_match > self.commit_index
            and self.log.term_at(majority_match) == self.current_term
        ):
            self._set_commit_index(majority_match)

    def _set_commit_index(self, index: int) -> None:
        self.commit_index = index
        self._ready.commit_advanced = True
        self._note("commit", index=index)

    # ------------------------------------------------------------------ helpers

    def _others(self) -> Sequence[int]:
        return [peer for peer in range(self.n) if peer != self.me]

    def _random_timeout(self) -> float:
        low, high = self._timeout_range
        return self.rng.uniform(low, high)

    def _reset_election_timer(self) -> None:
        self._ready.election_timeout = self._random_timeout()

    def trace_state(self) -> tuple[Any, ...]:
        """The state every trace event records (see spec/TRACE.md)."""
        log = self.log
        return (
            self.current_term,
            self.role.value,
            self.voted_for,
            self.commit_index,
            self.last_applied,
            log.last_index,
            log.last_term,
            log.snapshot_index,
            log.snapshot_term,
        )

    def _note(self, name: str, **fields: Any) -> None:
        if self.trace is not None:
            self.trace.append(TraceEvent(name, fields, self.trace_state()))
