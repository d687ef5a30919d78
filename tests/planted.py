"""Named bugs to plant in the core for the length of a ``with`` block (test-only).

Each entry of :data:`PLANTED` is a zero-argument callable returning a context
manager.  Inside it, one rule of the running implementation is broken by
patching a method of :class:`trioraft.core.node.RaftNode` on the class (where
every call looks it up, so nodes and peers already created are affected too);
on exit the original is put back, even on an exception.  Nothing in ``src/``
knows about these bugs: there is no flag in the shipped API.

Each patch captures the method it replaces when the block is entered (not when
this module is imported), so plants compose with other patches and do not
depend on the order tests run in.  ``tests/test_planted.py`` shows, for each
one, a check that fails with it planted and passes without.

- ``double-vote``: a follower ignores votedFor and grants a second candidate
  its vote in the same term (Figure 2, RequestVote receiver rule 2).
- ``commit-old-term``: a leader commits an entry of an earlier term by counting
  replicas (the ``log[N].term == currentTerm`` test of Figure 2's leader rule is
  dropped; the paper's Figure 8).
- ``skip-after-snapshot``: after installing a leader's snapshot, the first
  command that follows it is never handed to the service (the node counts it
  applied; the Ready hands it to the shell as a no-op, which is not delivered).
- ``stale-match-index``: a leader elected again keeps the matchIndex of its
  previous leadership instead of starting from 0 (Figure 2, "Reinitialized
  after election"), so it may count followers for entries they do not hold.
- ``snapshot-overlap``: a stale AppendEntries whose range starts inside the
  follower's snapshot is trimmed off by one, so the entry at the snapshot index
  is appended after it and every following entry lands one index too far.
- ``heartbeats-never-reset``: a follower resets its election timer only for a new
  leader, never for the heartbeats of the one it follows (Figure 2, Followers:
  "If election timeout elapses without receiving AppendEntries RPC from current
  leader ..."), so it calls elections nobody needs: a liveness bug only the
  simulator's stability phase and one 2C test notice.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import msgspec

from trioraft.core.messages import AppendEntriesArgs, AppendEntriesReply, Entry, RequestVoteArgs
from trioraft.core.node import RaftNode, Role
from trioraft.core.ready import NOOP, Ready


@contextlib.contextmanager
def double_vote() -> Iterator[None]:
    original = RaftNode.handle_request_vote

    def handle_request_vote(self: RaftNode, args: RequestVoteArgs, reply_to: Any = None) -> None:
        voted = self.voted_for
        if (
            self.role is Role.FOLLOWER
            and args.term == self.current_term
            and voted not in (None, args.candidate_id)
        ):
            self.voted_for = None  # the bug: votedFor is not consulted
            original(self, args, reply_to)
            if self.voted_for is None:  # not granted (log check): the old vote stands
                self.voted_for = voted
            return
        original(self, args, reply_to)

    with mock.patch.object(RaftNode, "handle_request_vote", handle_request_vote):
        yield


@contextlib.contextmanager
def commit_old_term() -> Iterator[None]:
    def _advance_commit_index(self: RaftNode) -> None:
        # RaftNode._advance_commit_index without "log[N].term == currentTerm".
        matches = sorted(
            (self._stable_last if peer == self.me else self.match_index[peer])
            for peer in range(self.n)
        )
        majority_match = matches[(self.n - 1) // 2]
        if majority_match > self.commit_index and self.log.term_at(majority_match) is not None:
            self._set_commit_index(majority_match)

    with mock.patch.object(RaftNode, "_advance_commit_index", _advance_commit_index):
        yield


@contextlib.contextmanager
def skip_after_snapshot() -> Iterator[None]:
    original = RaftNode.advance
    # node -> index of the snapshot it installed, until the entry after it comes
    installed: weakref.WeakKeyDictionary[RaftNode, int] = weakref.WeakKeyDictionary()

    def advance(self: RaftNode, ready: Ready) -> None:
        original(self, ready)
        # The shell applies what the Ready carries once advance returns: the
        # first command after an installed snapshot becomes a no-op, which the
        # shell never delivers (it skips no-ops).
        if ready.apply_snapshot is not None:
            installed[self] = ready.apply_snapshot.index
        if self not in installed:
            return
        for k, entry in enumerate(ready.apply_entries):
            if entry.command != NOOP:
                entries = list(ready.apply_entries)
                entries[k] = Entry(entry.term, NOOP)
                ready.apply_entries = entries
                del installed[self]
                return

    with mock.patch.object(RaftNode, "advance", advance):
        yield


@contextlib.contextmanager
def stale_match_index() -> Iterator[None]:
    original = RaftNode._become_leader

    def _become_leader(self: RaftNode) -> None:
        kept = list(self.match_index)
        original(self)
        if len(kept) == self.n:  # it led before: the old matchIndex stays
            self.match_index = kept
            self._advance_commit_index()

    with mock.patch.object(RaftNode, "_become_leader", _become_leader):
        yield


@contextlib.contextmanager
def snapshot_overlap() -> Iterator[None]:
    original = RaftNode._append_entries

    def _append_entries(self: RaftNode, args: AppendEntriesArgs) -> AppendEntriesReply:
        snap = self.log.snapshot_index
        prev, count = args.prev_log_index, len(args.entries)
        if args.term >= self.current_term and prev < snap < prev + count:
            # The part inside the snapshot is skipped one entry short: the entry
            # at the snapshot index is kept and checked against the entry after it.
            args = msgspec.structs.replace(
                args,
                prev_log_index=snap,
                prev_log_term=self.log.snapshot_term,
                entries=args.entries[snap - prev - 1 :],
            )
        return original(self, args)

    with mock.patch.object(RaftNode, "_append_entries", _append_entries):
        yield


@contextlib.contextmanager
def heartbeats_never_reset() -> Iterator[None]:
    def _accept_leader(self: RaftNode, leader_id: int) -> None:
        # RaftNode._accept_leader, but only a new leader resets the election timer:
        # a follower's heartbeats from the leader it already follows never do.
        if self.role is Role.CANDIDATE:
            self._become_follower()
        if self.leader_id != leader_id:
            self._reset_election_timer()
        self.leader_id = leader_id

    with mock.patch.object(RaftNode, "_accept_leader", _accept_leader):
        yield


PLANTED: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
    "double-vote": double_vote,
    "commit-old-term": commit_old_term,
    "skip-after-snapshot": skip_after_snapshot,
    "stale-match-index": stale_match_index,
    "snapshot-overlap": snapshot_overlap,
    "heartbeats-never-reset": heartbeats_never_reset,
}
"""Bug name -> a context manager that plants it (and removes it on exit)."""
