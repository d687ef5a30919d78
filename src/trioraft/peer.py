"""The trio shell around :class:`~trioraft.core.node.RaftNode`: one Raft peer.

Rules of operation
------------------
- ``make()`` builds the peer and starts its tasks in the caller's nursery, in
  a cancel scope of the peer's own: ``kill()`` cancels that scope, so a killed
  peer stops at once, sends nothing and applies nothing more, and the caller's
  nursery is left running.
- The election timer is a cancel scope whose deadline is moved forward every
  time the node re-arms it (a valid heartbeat, a granted vote, a new
  election); when the deadline passes the scope is cancelled and the node is
  told.  A leader disarms it (deadline = infinity).
- Each follower gets its own replicator task.  It sends when the follower
  lacks entries and nothing is in flight to it, and otherwise once per
  heartbeat interval; a lost RPC is retried at the next heartbeat.  Every
  message is built at send time from the newest state, so entries proposed
  while an RPC was in flight go out together in the next one.
- A separate applier task delivers committed entries on ``apply_ch`` one by
  one; it may block on an unbuffered channel without holding up RPCs, and
  ``snapshot()`` may be called from the consumer while it is blocked.
- Nothing is sent, replied or applied before the node's durable state is
  saved (:meth:`Raft._flush`).
- The node is only ever touched from trio tasks of one run, and every call
  into it is synchronous, so no lock is needed.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import msgspec
import trio

from . import codec
from .core.apply import ApplyMsg
from .core.config import RaftConfig
from .core.messages import (
    AppendEntriesArgs,
    AppendEntriesReply,
    InstallSnapshotArgs,
    InstallSnapshotReply,
    PersistentState,
    RequestVoteArgs,
    RequestVoteReply,
)
from .core.node import DISARMED, RaftNode
from .persist import Persister
from .rpc import ClientEnd, Handler
from .trace.messages import describe, digest
from .trace.recorder import current_message_id

log = logging.getLogger("trioraft")

_Reply = TypeVar("_Reply", RequestVoteReply, AppendEntriesReply, InstallSnapshotReply)

REQUEST_VOTE = "Raft.RequestVote"
APPEND_ENTRIES = "Raft.AppendEntries"
INSTALL_SNAPSHOT = "Raft.InstallSnapshot"


class CorruptStateError(ValueError):
    """The persister holds bytes that are not a valid Raft state.

    A peer never starts from an empty state over a damaged one: that could
    make it vote twice in a term or forget committed entries.
    """


class _Signal:
    """A wake-up for one waiting task; ``set()`` before ``wait()`` is not lost."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()


def restore_state(persister: Persister, n: int) -> tuple[PersistentState | None, bytes]:
    """Read and check a peer's persisted state; raise :class:`CorruptStateError`."""
    raw = persister.read_raft_state()
    snapshot = persister.read_snapshot()
    if not raw:
        if snapshot:
            raise CorruptStateError("the persister holds a snapshot but no raft state")
        return None, b""
    try:
        state = codec.decode(raw, PersistentState, what="persisted raft state")
    except codec.CodecError as exc:
        raise CorruptStateError(str(exc)) from None
    problems = []
    if state.current_term < 0:
        problems.append(f"current_term {state.current_term} is negative")
    if state.voted_for is not None and not 0 <= state.voted_for < n:
        problems.append(f"voted_for {state.voted_for} is not one of the {n} peers")
    if state.snapshot_index < 0 or state.snapshot_term < 0:
        problems.append("the snapshot index or term is negative")
    if state.snapshot_size < -1:
        problems.append(f"the snapshot size {state.snapshot_size} is negative")
    if state.snapshot_size >= 0 and len(snapshot) != state.snapshot_size:
        problems.append(
            f"the snapshot stored is {len(snapshot)} bytes but the raft state says "
            f"{state.snapshot_size}"
        )
    elif state.snapshot_size < 0 and state.snapshot_index > 0 and not snapshot:
        problems.append(
            f"the log starts after index {state.snapshot_index} but no snapshot is stored"
        )
    previous = state.snapshot_term
    for offset, entry in enumerate(state.entries):
        if entry.term < previous or entry.term > state.current_term:
            index = state.snapshot_index + 1 + offset
            problems.append(f"log entry {index} has term {entry.term} out of order")
            break
        previous = entry.term
    if problems:
        raise CorruptStateError("persisted raft state is corrupt: " + "; ".join(problems))
    return state, snapshot


class Raft:
    """One Raft peer (6.824's ``Raft``).  Build it with :func:`make`."""

    def __init__(
        self,
        peers: Sequence[ClientEnd],
        me: int,
        persister: Persister,
        apply_ch: trio.MemorySendChannel[ApplyMsg],
        config: RaftConfig,
    ) -> None:
        self._peers = list(peers)
        self.me = me
        self._persister = persister
        self._apply_ch = apply_ch
        self._config = config
        n = len(self._peers)
        restored, snapshot = restore_state(persister, n)
        seed = config.seed
        rng = random.Random(f"{seed}:{me}") if seed is not None else random.Random()
        self._tracer = config.tracer
        self._node = RaftNode(
            me,
            n,
            rng=rng,
            election_timeout_min=config.election_timeout_min,
            election_timeout_max=config.election_timeout_max,
            max_append_bytes=config.max_append_bytes,
            snapshot_chunk_bytes=config.snapshot_chunk_bytes,
            restored=restored,
            snapshot_data=snapshot,
            tracing=self._tracer is not None,
        )
        self._scope = trio.CancelScope()
        self._killed = False
        self._nursery: trio.Nursery | None = None
        self._election_deadline = math.inf
        self._timer_scope: trio.CancelScope | None = None
        self._wake = [_Signal() for _ in range(n)]
        self._inflight = [0] * n
        self._backoff = [False] * n
        self._apply_wake = _Signal()
        self._handlers = {
            REQUEST_VOTE: Handler(self._on_request_vote, RequestVoteArgs, RequestVoteReply),
            APPEND_ENTRIES: Handler(self._on_append_entries, AppendEntriesArgs, AppendEntriesReply),
            INSTALL_SNAPSHOT: Handler(
                self._on_install_snapshot, InstallSnapshotArgs, InstallSnapshotReply
            ),
        }
        self._after_step()

    # ------------------------------------------------------------------ public API

    def start(self, command: object) -> tuple[int, int, bool]:
        """Propose ``command``; returns (index, term, is_leader) at once."""
        codec.check_command(command)
        if self._killed:
            return -1, self._node.current_term, False
        index, term, is_leader = self._node.propose(msgspec.Raw(codec.encode(command)))
        if is_leader:
            self._after_step()
        return index, term, is_leader

    def get_state(self) -> tuple[int, bool]:
        return self._node.current_term, self._node.is_leader

    def snapshot(self, index: int, snapshot: bytes) -> None:
        """The service has folded every entry up to ``index`` into ``snapshot``."""
        if self._killed:
            return
        problem = self._node.snapshot(index, snapshot)
        if problem is not None:
            log.warning("peer %d: %s", self.me, problem)
            return
        self._after_step()
        self._flush()

    def kill(self) -> None:
        if not self._killed and self._tracer is not None:
            self._tracer.event(self.me, "crash", self._node.trace_state())
        self._killed = True
        self._scope.cancel()

    def killed(self) -> bool:
        return self._killed

    def rpc_handlers(self) -> Mapping[str, Handler]:
        return self._handlers

    # read-only views, for tests and tools
    @property
    def node(self) -> RaftNode:
        return self._node

    # ------------------------------------------------------------------ tasks

    async def _run(self) -> None:
        with self._scope:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._election_timer)
                nursery.start_soon(self._applier)
                for peer in range(len(self._peers)):
                    if peer != self.me:
                        nursery.start_soon(self._replicator, peer)

    async def _election_timer(self) -> None:
        while True:
            scope = trio.CancelScope(deadline=self._election_deadline)
            self._timer_scope = scope
            with scope:
                await trio.sleep_forever()
            self._timer_scope = None
            if self._killed:
                return  # woken in the same instant as kill(): a dead peer holds no election
            if trio.current_time() >= self._election_deadline:
                self._node.election_timeout()
                self._after_step()

    async def _replicator(self, peer: int) -> None:
        node = self._node
        wake = self._wake[peer]
        interval = self._config.heartbeat_interval
        while True:
            while not node.is_leader:
                await wake.wait()
            term = node.current_term
            while node.is_leader and node.current_term == term:
                if self._killed:
                    return  # woken in the same instant as kill(): a dead peer sends nothing
                self._send_to(peer)
                with trio.move_on_after(interval):
                    while not self._should_send(peer, term):
                        await wake.wait()

    def _should_send(self, peer: int, term: int) -> bool:
        node = self._node
        if not node.is_leader or node.current_term != term:
            return True  # let the loop notice
        return not self._inflight[peer] and not self._backoff[peer] and node.has_news_for(peer)

    def _send_to(self, peer: int) -> None:
        args = self._node.message_for(peer)
        self._flush()
        self._inflight[peer] += 1
        self._backoff[peer] = False
        assert self._nursery is not None
        self._nursery.start_soon(self._replicate, peer, args)

    async def _replicate(self, peer: int, args: AppendEntriesArgs | InstallSnapshotArgs) -> None:
        try:
            if isinstance(args, AppendEntriesArgs):
                reply = await self._call(peer, APPEND_ENTRIES, args)
                if isinstance(reply, AppendEntriesReply):
                    self._node.handle_append_entries_reply(peer, args, reply)
            else:
                reply = await self._call(peer, INSTALL_SNAPSHOT, args)
                if isinstance(reply, InstallSnapshotReply):
                    self._node.handle_install_snapshot_reply(peer, args, reply)
        finally:
            self._inflight[peer] -= 1
        if reply is None:
            self._backoff[peer] = True
        self._after_step()
        if self._node.has_news_for(peer):
            self._wake[peer].set()  # more to send, and this peer has room now

    async def _request_vote(self, peer: int, args: RequestVoteArgs) -> None:
        reply = await self._call(peer, REQUEST_VOTE, args)
        if isinstance(reply, RequestVoteReply):
            self._node.handle_request_vote_reply(peer, args, reply)
            self._after_step()

    async def _call(self, peer: int, method: str, args: object) -> object | None:
        """Send one RPC to ``peer``; trace its sending and its reply's arrival."""
        if self._killed:
            return None  # started before kill() but not yet run: a dead peer sends nothing
        tracer = self._tracer
        if tracer is None:
            reply = await self._peers[peer].call(method, args)
            return None if self._killed else reply
        message_id = tracer.next_message_id()
        tracer.event(
            self.me,
            "send",
            self._node.trace_state(),
            id=message_id,
            msg=describe(args, self.me, peer),
        )
        current_message_id.set(message_id)  # this task's own context: the transport reads it
        reply = await self._peers[peer].call(method, args)
        if self._killed:
            return None  # a dead peer handles no reply
        if reply is not None:
            tracer.event(
                self.me,
                "receive",
                self._node.trace_state(),
                id=message_id,
                msg=describe(reply, peer, self.me),
            )
        return reply

    async def _applier(self) -> None:
        node = self._node
        while not self._killed:
            message = node.next_apply()
            self._emit_trace()  # the apply event belongs to this step, not the node's next one
            if message is None:
                await self._apply_wake.wait()
                continue
            self._flush()
            try:
                await self._apply_ch.send(message)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                log.warning("peer %d: the apply channel is closed; applying stops", self.me)
                return

    # ------------------------------------------------------------------ RPC handlers

    def _on_request_vote(self, args: RequestVoteArgs) -> RequestVoteReply | None:
        if self._killed:
            return None
        sender = args.candidate_id
        self._trace_receive(args, sender)
        reply = self._node.handle_request_vote(args)
        return self._reply(reply, sender)

    def _on_append_entries(self, args: AppendEntriesArgs) -> AppendEntriesReply | None:
        if self._killed:
            return None
        sender = args.leader_id
        self._trace_receive(args, sender)
        reply = self._node.handle_append_entries(args)
        return self._reply(reply, sender)

    def _on_install_snapshot(self, args: InstallSnapshotArgs) -> InstallSnapshotReply | None:
        if self._killed:
            return None
        sender = args.leader_id
        self._trace_receive(args, sender)
        reply = self._node.handle_install_snapshot(args)
        return self._reply(reply, sender)

    def _trace_receive(self, args: object, sender: int) -> None:
        if self._tracer is not None:
            self._tracer.event(
                self.me,
                "receive",
                self._node.trace_state(),
                id=current_message_id.get(),
                msg=describe(args, sender, self.me),
            )

    def _reply(self, reply: _Reply, receiver: int) -> _Reply:
        """Carry out the handler's step, persist, then let the reply go (Figure 2)."""
        self._after_step()
        self._flush()
        if self._tracer is not None:
            self._tracer.event(
                self.me,
                "send",
                self._node.trace_state(),
                id=current_message_id.get(),
                msg=describe(reply, self.me, receiver),
            )
        return reply

    # ------------------------------------------------------------------ carrying out Ready

    def _after_step(self) -> None:
        node = self._node
        ready = node.take_ready()
        self._emit_trace()  # the node's own events first: they happened before what follows
        if ready.election_timeout is not None:
            if ready.election_timeout == DISARMED:
                deadline = math.inf
            else:
                deadline = trio.current_time() + ready.election_timeout
            self._election_deadline = deadline
            if self._timer_scope is not None:
                self._timer_scope.deadline = deadline
        if ready.votes_to_request:
            self._flush()
            assert self._nursery is not None, "an election starts only from the timer task"
            for peer, args in ready.votes_to_request:
                self._nursery.start_soon(self._request_vote, peer, args)
        if ready.replicate:
            for peer, wake in enumerate(self._wake):
                if peer != self.me:
                    wake.set()
        if ready.commit_advanced:
            self._apply_wake.set()

    def _emit_trace(self) -> None:
        """Record the node's buffered events now, in the step that caused them."""
        if self._tracer is not None:
            for event in self._node.take_trace():
                self._tracer.event(self.me, event.name, event.state, **_digested(event.fields))

    def _flush(self) -> None:
        """Save the durable state if it changed (Figure 2: before replying or sending)."""
        node = self._node
        if node.dirty:
            state = codec.encode(node.persistent_state())
            self._persister.save(state, node.snapshot_data)
            node.dirty = False
            if self._tracer is not None:
                self._tracer.event(self.me, "persist", node.trace_state())


def _digested(fields: dict[str, Any]) -> dict[str, Any]:
    """Trace fields with encoded commands (and snapshots) replaced by their digests."""
    command = fields.pop("command", None)
    if command is not None:
        fields["digest"] = digest(command)
    snapshot = fields.pop("snapshot", None)
    if snapshot is not None:
        fields["snapshot_size"] = len(snapshot)
        fields["snapshot_digest"] = digest(snapshot)
    log_entries = fields.get("log")
    if log_entries is not None:
        fields["log"] = [[term, digest(raw)] for term, raw in log_entries]
    return fields


def make(
    peers: Sequence[ClientEnd],
    me: int,
    persister: Persister,
    apply_ch: trio.MemorySendChannel[ApplyMsg],
    *,
    nursery: trio.Nursery,
    config: RaftConfig | None = None,
) -> Raft:
    """Create a Raft peer and start it in ``nursery`` (6.824's ``Make``).

    Returns at once.  ``peers[me]`` is this peer's own end and is never called.
    The state saved in ``persister`` is restored; a corrupt one raises
    :class:`CorruptStateError`.
    """
    if not 0 <= me < len(peers):
        raise ValueError(f"me={me} is not an index into the {len(peers)} peers")
    rf = Raft(peers, me, persister, apply_ch, config if config is not None else RaftConfig())
    nursery.start_soon(rf._run)
    return rf


__all__ = ["CorruptStateError", "Raft", "make"]
