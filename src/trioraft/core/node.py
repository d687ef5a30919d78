"""The Raft algorithm of Figure 2 as a plain object: no trio, no clock, no I/O.

Rules of operation
------------------
The shell (``trioraft.peer``) drives a :class:`RaftNode` through its inputs
and carries out what it asks for:

- inputs: ``election_timeout()`` (the timer the node last armed fired),
  ``propose(command)`` (a client's ``start()``; the command already encoded),
  ``handle_*(args, reply_to)`` (an RPC arrived; its reply comes out in a
  Ready, tagged with ``reply_to``), ``handle_*_reply(peer, args, reply,
  read_round)`` (a reply to an RPC this node sent, with the ReadIndex round
  current when it was built), ``snapshot(index, data)`` (the service
  compacted), ``read_index(token)`` (a linearizable read, thesis §6.4).
- local signals, taken after every input with ``take_signals()``: re-arm the
  election timer (a random timeout from the node's own seeded generator) or
  disarm it (a leader needs none), "a follower may have something new to
  receive", and "send every follower a heartbeat now" (a ReadIndex round).
  They need nothing durable, so they take effect at once.
- everything else comes out as a :class:`~trioraft.core.ready.Ready`
  (``has_ready()``, ``ready()``, ``advance()``): the writes to make durable,
  then the messages and entries they allow (see ``core/ready.py`` for the
  shell's loop).  The node tracks what storage holds: ``_stable_last`` (the
  last entry acknowledged durable, and still in the log) and
  ``_stable_snapshot``.  A leader counts its own entries towards a majority
  only once durable; the messages it builds on demand (``message_for(peer)``)
  may carry entries it is still writing (thesis §10.2.1: the followers'
  writes and its own overlap) but only a durable snapshot, so a follower that
  is behind gets the newest entries in one batch, bounded by
  ``max_append_bytes``.

Every RPC first goes through :meth:`_observe_term` (Figure 2, "Rules for
Servers, All Servers": a higher term turns any role into a follower), then to
the rule for the current role.  Only the ``_become_*`` methods change the role.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .log import RaftLog
from .messages import (
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
    TimeoutNowReply,
)
from .ready import NOOP, HardState, Outbound, Ready, Snapshot


class Role(Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"  # asking for pre-votes (thesis §9.6); term unchanged
    CANDIDATE = "candidate"
    LEADER = "leader"


DISARMED = math.inf
"""Election-timer signal meaning "no election timer" (a leader's)."""


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
        noop_on_election: bool = False,
        pre_vote: bool = False,
        check_quorum: bool = False,
    ) -> None:
        if not 0 <= me < n:
            raise ValueError(f"me={me} is not an index into {n} peers")
        self.me = me
        self.n = n
        self.rng = rng
        self._timeout_range = (election_timeout_min, election_timeout_max)
        self._max_append_bytes = max_append_bytes
        self._chunk_bytes = snapshot_chunk_bytes
        self._noop_on_election = noop_on_election
        self._pre_vote = pre_vote
        self._check_quorum = check_quorum

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

        # What storage holds, as far as the node knows (all restored state is durable).
        self._stable_last = self.log.last_index
        self._stable_snapshot = Snapshot(
            self.log.snapshot_index, self.log.snapshot_term, snapshot_data
        )
        # What the next Ready must write: entries from _unstable_from on (after
        # dropping stored ones from there when _rewrite is set), a snapshot, the
        # hard state (must_sync when the term or vote changed).
        self._unstable_from = self.log.last_index + 1
        self._rewrite = False
        self._snapshot_unsaved = False
        self._hard_changed = False
        self._term_or_vote_changed = False
        self._snapshot_to_apply = False
        self._messages: list[Outbound] = []
        # The Ready handed out and not yet advanced, and the last entry it writes
        # that is still in the log.
        self._outstanding: Ready | None = None
        self._outstanding_last = 0

        # Vote withholding (thesis §4.2.3, with Pre-Vote): after hearing from a
        # leader, the election timer first runs for the minimum timeout (the
        # lease: votes and pre-votes are refused), then for the rest of its
        # random timeout.  None: not in a lease.
        self._lease_rest: float | None = None
        # CheckQuorum (thesis §6.2): followers a leader heard from this period.
        self._recent_active: set[int] = set()
        # Leadership transfer (thesis §3.10): the target, and whether it was
        # told to start its election.
        self._transfer: int | None = None
        self._timeout_now_sent = False

        # Local signals (take_signals).
        self._timer: float | None = self._random_timeout()
        self._replicate = False
        self._heartbeat_now = False

        # ReadIndex (thesis §6.4): reads waiting for their heartbeat round, the
        # round each follower last answered, whether the newest round still
        # takes reads (no message built with it yet), and answers to hand out.
        self._reads: list[tuple[Any, int, int]] = []  # (token, round, read number)
        self._read_count = 0  # numbers the reads, for the trace
        self._read_round = 0
        self._round_open = False
        self._round_acked = [0] * n
        self._read_answers: list[tuple[Any, int | None]] = []

        self.trace: list[TraceEvent] | None = [] if tracing else None
        if self.trace is not None:
            log = [(entry.term, entry.command) for entry in self.log.entries]
            extensions = {"pre_vote": pre_vote, "check_quorum": check_quorum}
            on = {name: True for name, flag in extensions.items() if flag}  # (absent: off)
            self._note("init", restored=restored is not None, log=log, **on)

    # ------------------------------------------------------------------ queries

    @property
    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    @property
    def stable_last_index(self) -> int:
        """The last log index acknowledged durable (through ``advance``)."""
        return self._stable_last

    def hard_state(self) -> HardState:
        return HardState(self.current_term, self.voted_for, self.commit_index)

    def persistent_state(self) -> PersistentState:
        """The state Figure 2 says must be durable (with the log's offset), whole."""
        return PersistentState(
            self.current_term,
            self.voted_for,
            self.log.snapshot_index,
            self.log.snapshot_term,
            tuple(self.log.entries),
            len(self.snapshot_data),
        )

    def take_signals(self) -> tuple[float | None, bool, bool]:
        """(election timer, replicate, heartbeat now): the timer to re-arm (seconds
        from now, :data:`DISARMED`, or None to leave it), whether a follower may
        have something new to receive, and whether every follower must get a
        message now (a ReadIndex round).  All are cleared."""
        signals = self._timer, self._replicate, self._heartbeat_now
        self._timer = None
        self._replicate = self._heartbeat_now = False
        return signals

    @property
    def read_round(self) -> int:
        """The ReadIndex round a message built now belongs to: hand it back with
        the reply (``handle_*_reply(..., read_round)``)."""
        return self._read_round

    def take_trace(self) -> list[TraceEvent]:
        events = self.trace or []
        if self.trace is not None:
            self.trace = []
        return events

    def has_news_for(self, peer: int) -> bool:
        """Leader: does ``peer`` lack entries (or a snapshot) the leader holds?"""
        return self.role is Role.LEADER and self.next_index[peer] <= self.log.last_index

    # ------------------------------------------------------------------ Ready / Advance

    def has_ready(self) -> bool:
        """Is there a Ready to take (and is none outstanding)?"""
        if self._outstanding is not None:
            return False
        return bool(
            self._messages
            or self._hard_changed
            or self._snapshot_unsaved
            or self._rewrite
            or self._unstable_from <= self.log.last_index
            or self._snapshot_to_apply
            or self.last_applied < min(self.commit_index, self.log.last_index)
            or self._read_answers
        )

    def ready(self) -> Ready:
        """The writes to make durable and what they allow (see ``core/ready.py``)."""
        if self._outstanding is not None:
            raise RuntimeError("ready() before the previous Ready was advanced")
        log = self.log
        ready = Ready()
        if self._hard_changed:
            ready.hard_state = self.hard_state()
            ready.must_sync = self._term_or_vote_changed
            self._hard_changed = self._term_or_vote_changed = False
        if self._snapshot_unsaved:
            ready.snapshot = Snapshot(log.snapshot_index, log.snapshot_term, self.snapshot_data)
            ready.must_sync = True
            self._snapshot_unsaved = False
        first = max(self._unstable_from, log.first_index)
        if self._rewrite or first <= log.last_index:
            ready.entries_from = first
            ready.entries = log.entries[first - log.first_index :]
            ready.must_sync = True
            self._rewrite = False
        self._unstable_from = log.last_index + 1
        self._outstanding_last = log.last_index
        ready.messages, self._messages = self._messages, []
        ready.reads, self._read_answers = self._read_answers, []
        # Entries may be applied once durable: this Ready's own writes are
        # durable before the shell applies anything it carries.
        if self._snapshot_to_apply:
            self._snapshot_to_apply = False
            if log.snapshot_index > self.last_applied:
                ready.apply_snapshot = Snapshot(
                    log.snapshot_index, log.snapshot_term, self.snapshot_data
                )
        start = max(self.last_applied, log.snapshot_index) + 1
        stop = min(self.commit_index, log.last_index)
        if start <= stop:
            ready.apply_from = start
            ready.apply_entries = log.slice(start, stop + 1)
        self._outstanding = ready
        return ready

    def advance(self, ready: Ready) -> None:
        """The shell made ``ready``'s writes durable and sent its messages; it
        will apply its entries now (Figure 2, All Servers: "If commitIndex >
        lastApplied: increment lastApplied, apply log[lastApplied]")."""
        if ready is not self._outstanding:
            raise RuntimeError("advance() of a Ready that is not the outstanding one")
        self._outstanding = None
        grew = self._outstanding_last > self._stable_last
        self._stable_last = self._outstanding_last
        if ready.snapshot is not None:
            self._stable_snapshot = ready.snapshot
            grew = True
        if ready.apply_snapshot is not None:
            snap = ready.apply_snapshot
            self.last_applied = snap.index
            self._note(
                "apply_snapshot", index=snap.index, snapshot_term=snap.term, snapshot=snap.data
            )
        index = ready.apply_from
        for entry in ready.apply_entries:
            self.last_applied = index
            self._note("apply", index=index, term=entry.term, command=entry.command)
            index += 1
        if grew and self.role is Role.LEADER:
            self._replicate = True
            self._advance_commit_index()  # the leader's own entries count once durable

    # ------------------------------------------------------------------ timers

    def election_timeout(self) -> None:
        """The election timer fired: start an election (Figure 2, Followers/Candidates),
        or a pre-election first (thesis §9.6, ``pre_vote``).  With ``pre_vote`` the
        first firing after hearing from a leader only ends the lease (§4.2.3); a
        leader's timer (``check_quorum``, or a transfer under way) ends its period."""
        if self._lease_rest is not None:
            self._timer, self._lease_rest = self._lease_rest, None
            return
        if self.role is Role.LEADER:
            self._leader_period_over()
            return
        self._note("timeout")
        if self._pre_vote:
            self._become_pre_candidate()
        else:
            self._become_candidate()

    def _leader_period_over(self) -> None:
        """A leader's election timeout passed: a transfer under way is abandoned
        (thesis §3.10), and with ``check_quorum`` a leader that heard from no
        majority during the period steps down (§6.2)."""
        if self._transfer is not None:
            self._note("transfer_abandoned", target=self._transfer)
            self._transfer = None
        if not self._check_quorum:
            self._timer = DISARMED
            return
        if 2 * (len(self._recent_active) + 1) > self.n:
            self._recent_active = set()
            self._timer = self._leader_period()
            return
        self._note("quorum_lost", heard=sorted(self._recent_active))
        self._become_follower()

    def _leader_period(self) -> float:
        """How long a leader waits to check its quorum or abandon a transfer: the
        longest election timeout, so no follower's timer runs longer."""
        return self._timeout_range[1]

    # ------------------------------------------------------------------ client

    def propose(self, command: Any) -> tuple[int, int, bool]:
        """A client command (encoded, ``msgspec.Raw``): a leader appends it to its
        log (Figure 2, Leaders) and replicates it while writing it."""
        if self.role is not Role.LEADER or self._transfer is not None:
            # A leader handing over leadership takes no new commands (thesis §3.10).
            return -1, self.current_term, False
        index = self.log.append(Entry(self.current_term, command))
        self._replicate = True
        self._note("client_request", index=index, term=self.current_term, command=command)
        return index, self.current_term, True

    # ------------------------------------------------------------------ RequestVote

    def handle_request_vote(self, args: RequestVoteArgs, reply_to: Any = None) -> None:
        """RequestVote receiver implementation (Figure 2)."""
        if args.term > self.current_term and self._withholds_vote(args.leadership_transfer):
            # Thesis §4.2.3: heard from a leader within the minimum election
            # timeout: neither update the term nor grant the vote.
            self._note("vote", candidate=args.candidate_id, granted=False, withheld=True)
            self._reply(args.candidate_id, RequestVoteReply(self.current_term, False), reply_to)
            return
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
                self._term_or_vote_changed = self._hard_changed = True
            self._reset_election_timer()  # Followers: "granting vote to candidate"
        self._note("vote", candidate=args.candidate_id, granted=granted)
        self._reply(args.candidate_id, RequestVoteReply(self.current_term, granted), reply_to)

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

    def _withholds_vote(self, leadership_transfer: bool = False) -> bool:
        """Thesis §4.2.3 (with ``pre_vote``): a leader, or a follower that heard from
        one within the minimum election timeout, believes a leader exists and
        refuses to help depose it, unless a transfer asks it to."""
        if not self._pre_vote or leadership_transfer:
            return False
        return self.role is Role.LEADER or self._lease_rest is not None

    # ------------------------------------------------------------------ Pre-Vote

    def handle_pre_vote(self, args: PreVoteArgs, reply_to: Any = None) -> None:
        """Pre-Vote receiver (thesis §9.6): would this peer vote for the candidate
        at ``args.term``?  It changes neither its term nor its vote, nor its timer."""
        granted = (
            args.term > self.current_term
            and not self._withholds_vote()
            and self._candidate_log_is_up_to_date(args.last_log_term, args.last_log_index)
        )
        self._note("pre_vote", candidate=args.candidate_id, granted=granted)
        reply = PreVoteReply(args.term if granted else self.current_term, granted)
        self._reply(args.candidate_id, reply, reply_to)

    def handle_pre_vote_reply(self, peer: int, args: PreVoteArgs, reply: PreVoteReply) -> None:
        if not reply.vote_granted:
            self._observe_term(reply.term)  # a refusal carries the voter's term
        if self.role is not Role.PRE_CANDIDATE or args.term != self.current_term + 1:
            return  # a reply from a pre-election that is over
        if reply.vote_granted:
            self.votes.add(peer)
            # §9.6: only a pre-candidate a majority would vote for starts an election.
            if 2 * len(self.votes) > self.n:
                self._become_candidate()

    # ------------------------------------------------------------------ leadership transfer

    def transfer_leadership(self, target: int) -> bool:
        """Leader: hand leadership to ``target`` (thesis §3.10): take no new
        commands, bring ``target``'s log up to date, then send it TimeoutNow.
        Abandoned if no election ends it within an election timeout.  False if
        this node is not the leader."""
        if not 0 <= target < self.n:
            raise ValueError(f"target={target} is not an index into {self.n} peers")
        if self.role is not Role.LEADER:
            return False
        if target == self.me:
            return True
        self._transfer = target
        self._timeout_now_sent = False
        self._timer = self._leader_period()
        self._note("transfer_leadership", target=target)
        self._replicate = True
        self._send_timeout_now_if_caught_up()
        return True

    @property
    def transferring_to(self) -> int | None:
        """The target of a leadership transfer under way, or None."""
        return self._transfer

    def _send_timeout_now_if_caught_up(self) -> None:
        target = self._transfer
        if target is None or self._timeout_now_sent:
            return
        if self.match_index[target] >= self.log.last_index:
            self._timeout_now_sent = True
            self._messages.append(Outbound(target, TimeoutNowArgs(self.current_term, self.me)))

    def handle_timeout_now(self, args: TimeoutNowArgs, reply_to: Any = None) -> None:
        """TimeoutNow receiver (thesis §3.10): start an election at once, with no
        pre-election, asking voters to set aside their recent leader."""
        self._observe_term(args.term)
        self._reply(args.leader_id, TimeoutNowReply(self.current_term), reply_to)
        if args.term == self.current_term and self.role is not Role.LEADER:
            self._note("timeout_now", leader=args.leader_id)
            self._become_candidate(leadership_transfer=True)

    def handle_timeout_now_reply(
        self, peer: int, args: TimeoutNowArgs, reply: TimeoutNowReply
    ) -> None:
        self._observe_term(reply.term)

    def _candidate_log_is_up_to_date(self, last_log_term: int, last_log_index: int) -> bool:
        # §5.4.1: compare the terms of the last entries; if equal, the longer log wins.
        if last_log_term != self.log.last_term:
            return last_log_term > self.log.last_term
        return last_log_index >= self.log.last_index

    # ------------------------------------------------------------------ AppendEntries

    def message_for(self, peer: int) -> AppendEntriesArgs | InstallSnapshotArgs | None:
        """Leader: the next AppendEntries (or InstallSnapshot chunk) for ``peer``,
        built from durable state only; None when nothing durable can be sent yet
        (the entries it needs were compacted into a snapshot not yet durable)."""
        if self.role is not Role.LEADER:
            raise RuntimeError("only a leader replicates")
        self._round_open = False  # this message carries the round: later reads need a new one
        log = self.log
        next_index = self.next_index[peer]
        if next_index <= log.snapshot_index:
            if next_index > self._stable_snapshot.index:
                return None  # inside a snapshot that is not durable yet
            return self._snapshot_chunk_for(peer)
        prev_log_index = next_index - 1
        prev_log_term = log.term_at(prev_log_index)
        assert prev_log_term is not None, "next_index is kept within the log"
        entries: list[Entry] = []
        budget = self._max_append_bytes
        # Entries not yet durable here may go too: the leader writes its own copy
        # in parallel and counts itself towards a majority only once it is
        # durable (thesis §10.2.1), so one fsync leaves the critical path.
        for entry in log.entries[next_index - log.first_index :]:
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

    def handle_append_entries(self, args: AppendEntriesArgs, reply_to: Any = None) -> None:
        """AppendEntries receiver implementation (Figure 2)."""
        self._reply(args.leader_id, self._append_entries(args), reply_to)

    def _append_entries(self, args: AppendEntriesArgs) -> AppendEntriesReply:
        self._observe_term(args.term)
        # 1. Reply false if term < currentTerm.
        if args.term < self.current_term:
            return AppendEntriesReply(self.current_term, False)
        self._accept_leader(args.leader_id)
        log = self.log

        # 2. Reply false if the log doesn't contain an entry at prevLogIndex whose
        #    term matches prevLogTerm; say where the leader should look next.
        prev_index, prev_term, entries = args.prev_log_index, args.prev_log_term, args.entries
        if prev_index < log.snapshot_index:
            # The start of this message is already in our snapshot, hence
            # committed and matching: skip the part the snapshot covers.
            skip = log.snapshot_index - prev_index
            if skip >= len(entries):
                return AppendEntriesReply(self.current_term, True)
            entries = entries[skip:]
            prev_index, prev_term = log.snapshot_index, log.snapshot_term
        if prev_index > log.last_index:
            return AppendEntriesReply(self.current_term, False, log.last_index + 1, 0)
        term_there = log.term_at(prev_index)
        if term_there != prev_term:
            assert term_there is not None
            first = log.first_index_of_term(prev_index)
            return AppendEntriesReply(self.current_term, False, first, term_there)

        # 3. If an existing entry conflicts with a new one (same index, different
        #    term), delete it and all that follow.  4. Append new entries not
        #    already in the log.  Entries that match stay: a stale, shorter
        #    AppendEntries must not cut off entries a newer one delivered.
        index = prev_index
        for i, entry in enumerate(entries):
            index = prev_index + 1 + i
            existing = log.term_at(index)
            if existing == entry.term:
                continue
            if existing is not None:
                self._truncate_after(index - 1)
            log.extend(entries[i:])
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
        self, peer: int, args: AppendEntriesArgs, reply: AppendEntriesReply, read_round: int = 0
    ) -> None:
        """Leaders: update nextIndex and matchIndex for the follower (Figure 2)."""
        self._observe_term(reply.term)
        if self.role is not Role.LEADER or self.current_term != args.term:
            return  # stale: sent in an earlier term
        self._heard_from(peer, read_round)
        if reply.success:
            match = args.prev_log_index + len(args.entries)
            if match > self.match_index[peer]:
                self.match_index[peer] = match
                self._advance_commit_index()
                self._send_timeout_now_if_caught_up()
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
        self._replicate = True

    # ------------------------------------------------------------------ ReadIndex

    def read_index(self, token: Any) -> None:
        """A linearizable read (ReadIndex, thesis §6.4).  Its answer comes out in a
        Ready's ``reads``: (token, index) once this leader has committed an entry
        of its term and a majority answered a message built after the read
        arrived (so it was still the leader then); the service may then read its
        state once it has applied ``index``.  (token, None) if this node is not,
        or stops being, the leader first.  Reads waiting at the same moment share
        one heartbeat round."""
        if self.role is not Role.LEADER:
            self._read_answers.append((token, None))
            return
        if not self._round_open:
            self._read_round += 1
            self._round_open = True
            self._heartbeat_now = True
        self._read_count += 1
        self._reads.append((token, self._read_round, self._read_count))
        self._note("read_index", read=self._read_count)
        self._answer_reads()  # a lone server is its own majority

    def _heard_from(self, peer: int, read_round: int) -> None:
        """A follower answered, in this term, a message of round ``read_round``:
        it counts towards CheckQuorum's majority (§6.2) and confirms the round's
        reads (§6.4)."""
        self._recent_active.add(peer)
        if read_round > self._round_acked[peer]:
            self._round_acked[peer] = read_round
            self._answer_reads()

    def _answer_reads(self) -> None:
        if not self._reads:
            return
        # §6.4 step 1: the leader has committed an entry of its own term, so its
        # commitIndex is at least that of any earlier leader.
        if self.log.term_at(self.commit_index) != self.current_term:
            return
        acked = sorted(
            (self._round_acked[peer] for peer in range(self.n) if peer != self.me), reverse=True
        )
        needed = self.n // 2  # others that must have answered, beside the leader itself
        confirmed = acked[needed - 1] if needed else self._read_round
        if self._reads[0][1] > confirmed:
            return
        waiting = []
        for read in self._reads:
            token, read_round, number = read
            if read_round <= confirmed:
                # §6.4 steps 2-3: a majority answered a message built after the
                # read arrived, so this was the leader then: commitIndex serves.
                self._read_answers.append((token, self.commit_index))
                self._note("read_served", read=number, index=self.commit_index)
            else:
                waiting.append(read)
        self._reads = waiting

    def _fail_reads(self) -> None:
        for token, _, number in self._reads:
            self._read_answers.append((token, None))
            self._note("read_failed", read=number)
        self._reads = []

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
        self.snapshot_data = data
        self._snapshot_unsaved = True
        self._note("snapshot", index=index, snapshot=data)
        return None

    def _snapshot_chunk_for(self, peer: int) -> InstallSnapshotArgs:
        snap = self._stable_snapshot
        sent_index, offset = self._snapshot_progress.get(peer, (snap.index, 0))
        if sent_index != snap.index:
            offset = 0  # our snapshot moved on; start the new one from the top
        chunk = snap.data[offset : offset + self._chunk_bytes]
        done = offset + len(chunk) >= len(snap.data)
        return InstallSnapshotArgs(
            self.current_term, self.me, snap.index, snap.term, offset, chunk, done
        )

    def handle_install_snapshot(self, args: InstallSnapshotArgs, reply_to: Any = None) -> None:
        """InstallSnapshot receiver implementation (Figure 13)."""
        self._reply(args.leader_id, self._install_chunk(args), reply_to)

    def _install_chunk(self, args: InstallSnapshotArgs) -> InstallSnapshotReply:
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
        log = self.log
        # 6. If an existing entry has the same index and term as the snapshot's
        #    last included entry, retain the entries following it.
        if log.term_at(index) == term:
            log.compact(index)
        else:
            # 7. Discard the entire log: storage must drop what follows the
            #    snapshot too, before anything is appended after it.
            self._cut(index)
            log.reset(index, term)
        # 8. Reset the state machine using the snapshot contents.
        self.snapshot_data = data
        self._snapshot_unsaved = True
        self._snapshot_to_apply = True
        self._set_commit_index(index, note=False)  # everything in it is committed
        self._note("install_snapshot", index=index, snapshot_term=term, snapshot=data)

    def handle_install_snapshot_reply(
        self,
        peer: int,
        args: InstallSnapshotArgs,
        reply: InstallSnapshotReply,
        read_round: int = 0,
    ) -> None:
        self._observe_term(reply.term)
        if self.role is not Role.LEADER or self.current_term != args.term:
            return
        self._heard_from(peer, read_round)
        total = args.offset + len(args.data)
        if args.done and reply.received >= total:
            self._snapshot_progress.pop(peer, None)
            index = args.last_included_index
            if index > self.match_index[peer]:
                self.match_index[peer] = index
                self._advance_commit_index()
                self._send_timeout_now_if_caught_up()
            self.next_index[peer] = max(self.next_index[peer], index + 1)
        else:
            self._snapshot_progress[peer] = (args.last_included_index, reply.received)
        self._replicate = True

    # ------------------------------------------------------------------ transitions

    def _observe_term(self, term: int) -> None:
        # All Servers: "If RPC request or response contains term T > currentTerm:
        # set currentTerm = T, convert to follower".
        if term > self.current_term:
            self.current_term = term
            self.voted_for = None
            self._term_or_vote_changed = self._hard_changed = True
            self._become_follower(new_term=True)

    def _accept_leader(self, leader_id: int) -> None:
        """A valid AppendEntries/InstallSnapshot of the current term arrived."""
        if self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
            # Candidates: "If AppendEntries RPC received from new leader: convert to follower".
            self._become_follower()
        self.leader_id = leader_id
        self._reset_election_timer(lease=self._pre_vote)

    def _become_follower(self, *, new_term: bool = False) -> None:
        """Convert to follower; ``new_term``: because a higher term was just seen
        (its ``term_update`` event is recorded with the role already a follower's,
        the state Figure 2 gives the node, before the step-down's own event)."""
        was_leader = self.role is Role.LEADER
        stepped_down = self.role is not Role.FOLLOWER
        self.role = Role.FOLLOWER
        self._transfer = None
        if new_term:
            self._note("term_update", new_term=self.current_term)
            if self._lease_rest is not None:
                # The lease was for the old term's leader.  The timer runs on to
                # the end of the lease phase, still past the minimum timeout.
                self._lease_rest = None
        if stepped_down:
            self._note("become_follower")
        # The waiting reads fail once the step-down is recorded: a read_failed
        # logs a follower's state, never a leader's of the new term.
        self._fail_reads()
        self.leader_id = None
        self.votes = set()
        if was_leader:
            self._reset_election_timer()

    def _become_pre_candidate(self) -> None:
        """Thesis §9.6: ask every peer whether it would vote at term + 1, changing
        neither term nor vote; the election starts only with a majority's yes."""
        self.role = Role.PRE_CANDIDATE
        self.leader_id = None
        self.votes = {self.me}
        self._reset_election_timer()  # no majority in time: ask again
        self._note("become_pre_candidate")
        if 2 * len(self.votes) > self.n:
            self._become_candidate()
            return
        args = PreVoteArgs(self.current_term + 1, self.me, self.log.last_index, self.log.last_term)
        self._messages = [m for m in self._messages if not _is_election_request(m)]
        self._messages.extend(Outbound(peer, args) for peer in self._others())

    def _become_candidate(self, *, leadership_transfer: bool = False) -> None:
        # Candidates: increment currentTerm, vote for self, reset election
        # timer, send RequestVote RPCs to all other servers.
        self.role = Role.CANDIDATE
        self.current_term += 1
        self.voted_for = self.me
        self.leader_id = None
        self.votes = {self.me}
        self._term_or_vote_changed = self._hard_changed = True
        self._reset_election_timer()
        self._note("become_candidate")
        if 2 * len(self.votes) > self.n:
            self._become_leader()
            return
        # The requests leave in the next Ready, once the new term and the vote
        # for itself are durable (a candidate that crashed and forgot them
        # could vote for another in the same term).
        args = RequestVoteArgs(
            self.current_term,
            self.me,
            self.log.last_index,
            self.log.last_term,
            leadership_transfer,
        )
        self._messages = [m for m in self._messages if not _is_election_request(m)]
        self._messages.extend(Outbound(peer, args) for peer in self._others())

    def _become_leader(self) -> None:
        if self.role is not Role.CANDIDATE:
            raise RuntimeError(f"only a candidate can become leader, not a {self.role.value}")
        self.role = Role.LEADER
        self.leader_id = self.me
        # Leaders: nextIndex initialized to leader last log index + 1,
        # matchIndex to 0; then send initial empty AppendEntries (heartbeats).
        self.next_index = [self.log.last_index + 1] * self.n
        self.match_index = [0] * self.n
        self._round_acked = [0] * self.n
        self._round_open = False
        self._snapshot_progress = {}
        self._transfer = None
        self._recent_active = set()
        # A leader needs no election timer, except to check its quorum (§6.2).
        self._timer = self._leader_period() if self._check_quorum else DISARMED
        self._messages = [m for m in self._messages if not _is_election_request(m)]
        self._replicate = True
        self._note("become_leader")
        if self._noop_on_election:
            # Raft §8: a no-op entry of the new term lets everything before it
            # commit (Figure 8) without waiting for a client's command.
            index = self.log.append(Entry(self.current_term, NOOP))
            self._note("noop", index=index, term=self.current_term)
        self._advance_commit_index()  # a lone server is its own majority

    def _advance_commit_index(self) -> None:
        # Leaders: "If there exists an N such that N > commitIndex, a majority of
        # matchIndex[i] >= N, and log[N].term == currentTerm: set commitIndex = N".
        # The term test is Figure 8's lesson: an older term's entry is never
        # committed by counting replicas.  The leader counts itself only for
        # entries it has made durable.
        matches = sorted(
            (self._stable_last if peer == self.me else self.match_index[peer])
            for peer in range(self.n)
        )
        majority_match = matches[(self.n - 1) // 2]
        if (
            majority_match > self.commit_index
            and self.log.term_at(majority_match) == self.current_term
        ):
            self._set_commit_index(majority_match)

    def _set_commit_index(self, index: int, *, note: bool = True) -> None:
        self.commit_index = index
        self._hard_changed = True
        if note:
            self._note("commit", index=index)
        if self._reads:
            self._answer_reads()  # an entry of this term committed: reads may go

    def _truncate_after(self, index: int) -> None:
        """Figure 2, AppendEntries rule 3: drop a conflicting suffix (memory and storage)."""
        self._cut(index)
        self.log.truncate_after(index)

    def _cut(self, index: int) -> None:
        """Entries after ``index`` are leaving the log: storage must drop them too."""
        self._unstable_from = min(self._unstable_from, index + 1)
        self._rewrite = True
        self._stable_last = min(self._stable_last, index)
        self._outstanding_last = min(self._outstanding_last, index)

    # ------------------------------------------------------------------ helpers

    def _reply(self, to: int, reply: Any, reply_to: Any) -> None:
        """Queue a reply: it leaves in the next Ready, once what it says is durable."""
        self._messages.append(Outbound(to, reply, reply_to))

    def _others(self) -> Sequence[int]:
        return [peer for peer in range(self.n) if peer != self.me]

    def _random_timeout(self) -> float:
        low, high = self._timeout_range
        return self.rng.uniform(low, high)

    def _reset_election_timer(self, *, lease: bool = False) -> None:
        timeout = self._random_timeout()
        if lease:
            # §4.2.3: the first part of the timeout is the lease (see election_timeout).
            low = self._timeout_range[0]
            self._timer, self._lease_rest = low, timeout - low
        else:
            self._timer, self._lease_rest = timeout, None

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


def _is_election_request(out: Outbound) -> bool:
    """A RequestVote or PreVote still queued: a new election replaces it."""
    return isinstance(out.message, (RequestVoteArgs, PreVoteArgs))
