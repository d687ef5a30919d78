"""The trio shell around :class:`~trioraft.core.node.RaftNode`: one Raft peer.

Rules of operation
------------------
- ``make()`` checks its arguments, builds the peer and starts its tasks in the
  caller's nursery, in a cancel scope of the peer's own: ``kill()`` cancels
  that scope, so a killed peer stops at once, sends nothing and applies
  nothing more, and the caller's nursery is left running.
- **One loop carries out the node's Readies** (:meth:`Raft._drive`): write
  the Ready to storage, sync it when it must be durable, send its messages,
  ``advance()``, hand its entries to the applier.  Nothing else sends a reply
  or applies an entry, so nothing leaves before what it depends on is
  durable (``core/ready.py``).  RPC handlers drive the loop inline, so with
  a storage that saves synchronously (a ``Persister``, or any storage in
  virtual time) a reply costs no trip through the scheduler; with a
  :class:`~trioraft.storage.disk.DiskStorage` on the real clock the fsync
  runs in a worker thread (``trio.to_thread``) while heartbeats and replies
  to other peers keep flowing, and one fsync covers every write made while
  the previous one ran (group commit).  ``start()`` only wakes the writer
  task, so a burst of commands shares one Ready.
- The election timer is a cancel scope whose deadline moves forward every
  time the node re-arms it (a valid heartbeat, a granted vote, a new
  election); when the deadline passes the scope is cancelled and the node is
  told.  A leader disarms it.
- Each follower has a replicator task that sends (and awaits the reply to)
  one message at a time: when the follower lacks durable entries, or when a
  heartbeat is due.  One heartbeat task per leader wakes replicators whose
  follower has heard nothing for a heartbeat interval, and sends a heartbeat
  of its own in a separate task when that replicator is stuck on a slow RPC.
  Every message is built at send time from the newest durable state
  (``node.message_for``), so entries proposed while an RPC was in flight go
  out together in the next one.
- The applier task delivers committed entries on ``apply_ch`` in order; it
  may block on an unbuffered channel without holding up RPCs, and
  ``snapshot()`` may be called from the consumer while it is blocked.
- The node is only ever touched from trio tasks of one run, and every call
  into it is synchronous, so no lock is needed.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import math
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter
from typing import Any

import msgspec
import trio

from . import codec
from .checks import check_int, check_make_arguments, check_snapshot_arguments
from .core.apply import ApplyMsg
from .core.config import RaftConfig
from .core.messages import (
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
from .core.node import DISARMED, RaftNode, Role
from .core.ready import NOOP, Ready, Snapshot
from .determinism import in_virtual_time
from .errors import NotLeader
from .persist import Persister
from .rpc import ClientEnd, Handler
from .storage.base import CorruptStateError, Storage, StorageError, check_restored
from .storage.persister import PersisterStorage
from .trace.messages import command_digest, describe, digest
from .trace.recorder import current_message_id

log = logging.getLogger("trioraft")

REQUEST_VOTE = "Raft.RequestVote"
APPEND_ENTRIES = "Raft.AppendEntries"
INSTALL_SNAPSHOT = "Raft.InstallSnapshot"
PRE_VOTE = "Raft.PreVote"
TIMEOUT_NOW = "Raft.TimeoutNow"


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


class _ReplyBox:
    """The reply to one request this peer handles, once the node releases it."""

    __slots__ = ("done", "reply", "trace_id")

    def __init__(self, trace_id: int | None) -> None:
        self.trace_id = trace_id  # the request's id in the trace (the reply shares it)
        self.reply: object = None
        self.done: trio.Event | None = None

    def resolve(self, reply: object) -> None:
        self.reply = reply
        if self.done is not None:
            self.done.set()

    async def wait(self) -> object:
        assert self.done is not None
        await self.done.wait()
        return self.reply


_UNKNOWN = "unknown"
"""A ``wait_committed`` outcome: the entry went into a snapshot this peer cannot read."""


class _Waiter:
    """One ``wait_committed`` call: the entry it waits for and its outcome."""

    __slots__ = ("done", "index", "outcome", "term")

    def __init__(self, index: int, term: int) -> None:
        self.index = index
        self.term = term
        self.outcome: bool | str | None = None
        self.done = trio.Event()


class Raft:
    """One Raft peer (6.824's ``Raft``).  Build it with :func:`make`."""

    def __init__(
        self,
        peers: Sequence[ClientEnd],
        me: int,
        storage: Storage,
        apply_ch: trio.MemorySendChannel[ApplyMsg],
        config: RaftConfig,
    ) -> None:
        self._peers = list(peers)
        self.me = me
        self._storage = storage
        self._apply_ch = apply_ch
        self._config = config
        n = len(self._peers)
        restored = storage.restore()
        check_restored(restored, n, _describe(storage))
        seed = config.seed
        rng = random.Random(f"{seed}:{me}") if seed is not None else random.Random()
        self._tracer = config.tracer
        hard = restored.hard_state
        state = None
        if not restored.fresh:
            state = PersistentState(
                hard.term,
                hard.voted_for,
                restored.snapshot_index,
                restored.snapshot_term,
                tuple(restored.entries),
                len(restored.snapshot),
            )
        self._node = RaftNode(
            me,
            n,
            rng=rng,
            election_timeout_min=config.election_timeout_min,
            election_timeout_max=config.election_timeout_max,
            max_append_bytes=config.max_append_bytes,
            snapshot_chunk_bytes=config.snapshot_chunk_bytes,
            restored=state,
            snapshot_data=restored.snapshot,
            tracing=self._tracer is not None,
            noop_on_election=config.noop_on_election,
            pre_vote=config.pre_vote,
            check_quorum=config.check_quorum,
        )
        self._scope = trio.CancelScope()
        self._killed = False
        self._nursery: trio.Nursery | None = None
        # Election timer: the deadline the node asked for, and the scope that sleeps.
        self._election_deadline = math.inf
        self._timer_scope: trio.CancelScope | None = None
        # Replication: per follower, a wake-up, calls in flight, "a send was
        # lost: wait for the next heartbeat", "a heartbeat is due", last send time.
        self._wake = [_Signal() for _ in range(n)]
        self._inflight = [0] * n
        self._backoff = [False] * n
        self._due = [False] * n
        self._last_sent = [-math.inf] * n
        self._heartbeat_wake = _Signal()
        self._led_term = -1  # the term in which this peer last became leader
        self._seen: tuple[Role, int, int | None] = (Role.FOLLOWER, 0, None)  # for the log
        # Storage: the writer task, and the Ready it is syncing (None when idle).
        self._offload = False
        self._writer_wake = _Signal()
        self._syncing: Ready | None = None
        self._pending_replies: set[_ReplyBox] = set()
        self._failure: StorageError | None = None  # storage failed: the peer stopped
        # Applying: chunks of (first index, entries) or a Snapshot, in order.
        self._to_apply: deque[tuple[int, list[Entry]] | Snapshot] = deque()
        self._apply_wake = _Signal()
        self._delivered = self._node.last_applied  # the service's state goes up to here
        # wait_committed: waiters by index, and a heap of the indexes waited for.
        self._waiters: dict[int, list[_Waiter]] = {}
        self._waiting: list[int] = []
        node = self._node
        candidate, leader = attrgetter("candidate_id"), attrgetter("leader_id")
        self._handlers = {
            REQUEST_VOTE: Handler(
                self._serving(node.handle_request_vote, candidate),
                RequestVoteArgs,
                RequestVoteReply,
            ),
            APPEND_ENTRIES: Handler(
                self._serving(node.handle_append_entries, leader),
                AppendEntriesArgs,
                AppendEntriesReply,
            ),
            INSTALL_SNAPSHOT: Handler(
                self._serving(node.handle_install_snapshot, leader),
                InstallSnapshotArgs,
                InstallSnapshotReply,
            ),
            PRE_VOTE: Handler(
                self._serving(node.handle_pre_vote, candidate), PreVoteArgs, PreVoteReply
            ),
            TIMEOUT_NOW: Handler(
                self._serving(node.handle_timeout_now, leader), TimeoutNowArgs, TimeoutNowReply
            ),
        }
        self._emit_trace()
        timer, _, _ = self._node.take_signals()
        if timer is not None:
            self._election_deadline = trio.current_time() + timer

    # ------------------------------------------------------------------ public API

    def start(self, command: object) -> tuple[int, int, bool]:
        """Propose ``command``; returns (index, term, is_leader) at once."""
        return self._start_encoded(codec.encode_command(command))

    def _start_encoded(self, command: bytes) -> tuple[int, int, bool]:
        """``start()`` of a command already checked and encoded (trioraft's own
        services build theirs from known types and skip the check)."""
        if self._killed:
            return -1, self._node.current_term, False
        index, term, is_leader = self._node.propose(msgspec.Raw(command))
        if is_leader:
            self._emit_trace()
            self._writer_wake.set()  # the writer takes every command proposed by then
        return index, term, is_leader

    def transfer_leadership(self, target: int) -> bool:
        """Leadership transfer (thesis §3.10): this leader stops accepting
        ``start()``, brings peer ``target`` up to date and tells it to start an
        election at once (TimeoutNow).  If no election ends the transfer within
        an election timeout, it is abandoned and this peer leads on.  Returns
        False if this peer is not the leader."""
        target = check_int("target", target)
        if not 0 <= target < len(self._peers):
            raise ValueError(
                f"target must be a peer index in 0..{len(self._peers) - 1}, got {target}"
            )
        if self._killed:
            return False
        started = self._node.transfer_leadership(target)
        if started and target != self.me:
            log.info("peer %d: transferring leadership to node %d", self.me, target)
        self._after_step()
        return started

    def get_state(self) -> tuple[int, bool]:
        return self._node.current_term, self._node.is_leader

    def leader(self) -> tuple[int | None, int]:
        """The leader this peer believes in (its id, or None if it knows of none), and
        its current term."""
        return self._node.leader_id, self._node.current_term

    async def wait_committed(self, index: int, term: int) -> bool:
        """Wait until the entry ``start()`` returned as (``index``, ``term``) is committed
        (True), or until this peer learns that another entry took that index (False).

        Raises ``trio.ClosedResourceError`` if the peer is killed first, and
        ``LookupError`` when the index went into a snapshot before this peer could
        compare terms (a call made long after the commit, or a snapshot installed
        from a leader that jumped past it).
        """
        check_int("wait_committed: index", index, minimum=1)
        check_int("wait_committed: term", term, minimum=1)
        if self._killed:
            raise trio.ClosedResourceError("the peer was killed")
        waiter = _Waiter(index, term)
        waiter.outcome = self._outcome(waiter)
        if waiter.outcome is None:
            self._waiters.setdefault(index, []).append(waiter)
            heapq.heappush(self._waiting, index)
            await waiter.done.wait()
        if waiter.outcome is None:
            raise trio.ClosedResourceError("the peer was killed")
        if waiter.outcome == _UNKNOWN:
            raise LookupError(
                f"entry {index} went into a snapshot before this peer could tell whether it "
                f"was the one of term {term}"
            )
        return waiter.outcome is True

    async def read_index(self) -> int:
        """ReadIndex (thesis §6.4): the commit index once this peer has confirmed,
        with a majority, that it is still the leader.  After ``last_applied`` has
        reached it, a read of the service's state is linearizable.  Raises
        :class:`~trioraft.NotLeader` if this peer is not, or stops being, the
        leader first.  A leader answers only once an entry of its own term is
        committed (``RaftConfig(noop_on_election=True)`` makes that immediate)."""
        node = self._node
        if self._killed or not node.is_leader:
            await trio.lowlevel.checkpoint()
            raise NotLeader(None if self._killed else node.leader_id)
        box = _ReplyBox(None)
        box.done = trio.Event()
        self._pending_replies.add(box)  # kill() resolves it with None
        node.read_index(box)
        self._after_step()
        index = await box.wait()
        self._pending_replies.discard(box)
        if not isinstance(index, int):
            raise NotLeader(node.leader_id)
        return index

    def snapshot(self, index: int, snapshot: bytes) -> None:
        """The service has folded every entry up to ``index`` into ``snapshot``.

        Raises at the call, changing nothing, when the arguments are wrong:
        ``TypeError`` unless ``index`` is an int and ``snapshot`` is bytes,
        ``ValueError`` for an index below 0 or past the last one delivered on
        ``apply_ch``.  A snapshot that is no longer needed (not past the current
        one, 6.824's usual race with an installed snapshot) is ignored with a
        logged reason, as are calls on a killed peer.
        """
        check_snapshot_arguments(index, snapshot, self._delivered)
        if self._killed:
            return
        problem = self._node.snapshot(index, snapshot)
        if problem is not None:
            log.warning("peer %d: %s", self.me, problem)
            return
        log.info("peer %d: snapshot up to index %d (%d bytes)", self.me, index, len(snapshot))
        self._after_step()

    def kill(self) -> None:
        if not self._killed and self._tracer is not None:
            self._tracer.event(self.me, "crash", self._node.trace_state())
        self._killed = True
        self._scope.cancel()
        for box in self._pending_replies:
            box.resolve(None)  # the callers see a lost RPC
        self._pending_replies.clear()
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.done.set()
        self._waiters.clear()
        if self._failure is None:
            self._storage.close()  # what was written is complete; nothing more is
        else:
            with contextlib.suppress(StorageError, OSError):
                self._storage.close()

    def killed(self) -> bool:
        return self._killed

    def rpc_handlers(self) -> Mapping[str, Handler]:
        return self._handlers

    # read-only views, for tests and tools
    @property
    def node(self) -> RaftNode:
        return self._node

    @property
    def storage(self) -> Storage:
        return self._storage

    # ------------------------------------------------------------------ tasks

    async def _run(self) -> None:
        with self._scope:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._offload = self._storage.sync_in_thread and not in_virtual_time()
                nursery.start_soon(self._election_timer)
                nursery.start_soon(self._writer)
                nursery.start_soon(self._applier)
                nursery.start_soon(self._heartbeats)
                for peer in range(len(self._peers)):
                    if peer != self.me:
                        nursery.start_soon(self._replicator, peer)
        if self._failure is not None:
            raise self._failure  # from the peer's own task, into the caller's nursery

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
            # else disarmed since the scope was armed: re-arm to the new deadline

    def _set_timer(self, timeout: float) -> None:
        deadline = math.inf if timeout == DISARMED else trio.current_time() + timeout
        self._election_deadline = deadline
        scope = self._timer_scope
        if scope is not None and deadline != math.inf:
            # Moved on every reset: cheaper than waking at a stale deadline to
            # re-arm (each distinct wake-up instant costs virtual time a loop).
            # A leader's disarm is lazy: the scope wakes once and finds inf.
            scope.deadline = deadline

    async def _writer(self) -> None:
        """Drives the Readies that no handler drove: commands from ``start()``, and
        the ones that wait for a sync in a worker thread."""
        while True:
            await self._writer_wake.wait()
            if self._killed:
                return
            ready = self._syncing
            if ready is not None:
                try:
                    await trio.to_thread.run_sync(self._storage.sync)
                except StorageError as error:
                    self._storage_failed(error)
                    return
                if self._killed:
                    return  # kill() completed the sync; nothing is sent or applied
                self._syncing = None
                self._trace_synced()
                self._carry_out(ready)
            self._after_step()

    async def _heartbeats(self) -> None:
        """Leaders: a heartbeat to every follower that heard nothing for an interval."""
        node = self._node
        interval = self._config.heartbeat_interval
        while True:
            while not node.is_leader:
                await self._heartbeat_wake.wait()
            term = node.current_term
            while node.is_leader and node.current_term == term:
                if self._killed:
                    return
                now = trio.current_time()
                next_due = math.inf
                for peer in range(len(self._peers)):
                    if peer == self.me:
                        continue
                    due_at = self._last_sent[peer] + interval
                    if due_at <= now:
                        self._heartbeat(peer)
                        due_at = now + interval
                    next_due = min(next_due, due_at)
                await trio.sleep_until(next_due)

    def _heartbeat(self, peer: int) -> None:
        if not self._inflight[peer]:
            self._due[peer] = True  # the replicator sends it (with any news)
            self._wake[peer].set()
            return
        # The replicator waits on a slow RPC: send this heartbeat beside it.
        args = self._node.message_for(peer)
        if args is not None:
            assert self._nursery is not None
            round_ = self._node.read_round
            trace_id = self._trace_send(peer, args)
            self._nursery.start_soon(self._exchange, peer, args, trace_id, round_)

    async def _replicator(self, peer: int) -> None:
        wake = self._wake[peer]
        while True:
            if self._wants_to_send(peer):
                args = self._node.message_for(peer)
                if args is not None:
                    round_ = self._node.read_round
                    await self._exchange(peer, args, self._trace_send(peer, args), round_)
                    if self._wants_to_send(peer):
                        await trio.lowlevel.checkpoint()  # others run between back-to-back sends
                    continue
            await wake.wait()
            if self._killed:
                return  # woken in the same instant as kill(): a dead peer sends nothing

    def _wants_to_send(self, peer: int) -> bool:
        """Leader, nothing in flight to ``peer``, and a heartbeat is due or it lacks
        durable entries (unless a lost send waits for the next heartbeat)."""
        node = self._node
        return (
            node.is_leader
            and not self._inflight[peer]
            and (self._due[peer] or (not self._backoff[peer] and node.has_news_for(peer)))
        )

    async def _exchange(
        self,
        peer: int,
        args: AppendEntriesArgs | InstallSnapshotArgs,
        message_id: int | None,
        read_round: int,
    ) -> None:
        """Send one replication message to ``peer`` and handle its reply (its answer
        also confirms, for ReadIndex, that this node led when it was built)."""
        self._inflight[peer] += 1
        self._due[peer] = False
        self._backoff[peer] = False
        self._last_sent[peer] = trio.current_time()
        node = self._node
        try:
            if isinstance(args, AppendEntriesArgs):
                reply = await self._call(peer, APPEND_ENTRIES, args, message_id)
                if isinstance(reply, AppendEntriesReply):
                    node.handle_append_entries_reply(peer, args, reply, read_round)
            else:
                reply = await self._call(peer, INSTALL_SNAPSHOT, args, message_id)
                if isinstance(reply, InstallSnapshotReply):
                    node.handle_install_snapshot_reply(peer, args, reply, read_round)
        finally:
            self._inflight[peer] -= 1
        if reply is None:
            self._backoff[peer] = True  # lost: try again with the next heartbeat
        self._after_step()
        if node.has_news_for(peer):
            self._wake[peer].set()  # more to send, and this peer has room now

    def _still_current(self, args: object) -> bool:
        """Is the (pre-)election or transfer a queued request belongs to still on?"""
        node = self._node
        if isinstance(args, RequestVoteArgs):
            return node.role is Role.CANDIDATE and node.current_term == args.term
        if isinstance(args, PreVoteArgs):
            return node.role is Role.PRE_CANDIDATE and node.current_term + 1 == args.term
        assert isinstance(args, TimeoutNowArgs), f"unexpected request {args!r}"
        return node.is_leader and node.current_term == args.term

    async def _request(self, peer: int, args: object, message_id: int | None) -> None:
        """Send a request of an election, a pre-election or a transfer, and hand the
        node its reply."""
        node = self._node
        if isinstance(args, RequestVoteArgs):
            reply = await self._call(peer, REQUEST_VOTE, args, message_id)
            if not isinstance(reply, RequestVoteReply):
                return
            node.handle_request_vote_reply(peer, args, reply)
        elif isinstance(args, PreVoteArgs):
            reply = await self._call(peer, PRE_VOTE, args, message_id)
            if not isinstance(reply, PreVoteReply):
                return
            node.handle_pre_vote_reply(peer, args, reply)
        else:
            assert isinstance(args, TimeoutNowArgs)
            reply = await self._call(peer, TIMEOUT_NOW, args, message_id)
            if not isinstance(reply, TimeoutNowReply):
                return
            node.handle_timeout_now_reply(peer, args, reply)
        self._after_step()

    def _trace_send(self, peer: int, args: object) -> int | None:
        """Record a request as sent now, when it is built from the node's state (the
        task that hands it to the transport may run a few steps later)."""
        tracer = self._tracer
        if tracer is None:
            return None
        message_id: int = tracer.next_message_id()
        tracer.event(
            self.me,
            "send",
            self._node.trace_state(),
            id=message_id,
            msg=describe(args, self.me, peer),
        )
        return message_id

    async def _call(
        self, peer: int, method: str, args: object, message_id: int | None
    ) -> object | None:
        """Send one RPC to ``peer`` (traced as sent already); trace its reply's arrival."""
        if self._killed:
            return None  # started before kill() but not yet run: a dead peer sends nothing
        if message_id is None:
            reply = await self._peers[peer].call(method, args)
            return None if self._killed else reply
        current_message_id.set(message_id)  # this task's own context: the transport reads it
        reply = await self._peers[peer].call(method, args)
        if self._killed:
            return None  # a dead peer handles no reply
        if reply is not None and self._tracer is not None:
            self._tracer.event(
                self.me,
                "receive",
                self._node.trace_state(),
                id=message_id,
                msg=describe(reply, peer, self.me),
            )
        return reply

    async def _applier(self) -> None:
        """Deliver what advanced Readies handed over, in index order (no-ops skipped)."""
        send = self._apply_ch
        queue = self._to_apply
        try:
            while True:
                while not queue:
                    await self._apply_wake.wait()
                item = queue.popleft()
                if isinstance(item, Snapshot):
                    message = ApplyMsg(
                        snapshot_valid=True,
                        snapshot=item.data,
                        snapshot_term=item.term,
                        snapshot_index=item.index,
                    )
                    await self._deliver(send, message, item.index)
                    continue
                index, entries = item
                for entry in entries:
                    if entry.command != NOOP:  # a no-op is not the service's
                        message = ApplyMsg(
                            command_valid=True,
                            command=codec.decode(entry.command, what="command"),
                            command_index=index,
                            command_term=entry.term,
                        )
                        await self._deliver(send, message, index)
                    else:
                        self._delivered = index
                    index += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            log.warning("peer %d: the apply channel is closed; applying stops", self.me)

    async def _deliver(
        self, send: trio.MemorySendChannel[ApplyMsg], message: ApplyMsg, index: int
    ) -> None:
        # Counted as given before the send completes: the consumer may call
        # snapshot(index) as soon as it has the message, before we run again.
        self._delivered = index
        try:
            send.send_nowait(message)  # a buffered channel with room takes it at once
        except trio.WouldBlock:
            await send.send(message)

    # ------------------------------------------------------------------ RPC handlers

    def _serving(
        self, handle: Callable[[Any, _ReplyBox], None], sender: Callable[[Any], int]
    ) -> Callable[[Any], object]:
        """An RPC handler: record the request's arrival, let the node's ``handle``
        decide it, and answer once the node releases the reply."""

        def serve(args: Any) -> object:
            if self._killed:
                return None
            box = self._receive(args, sender(args))
            handle(args, box)
            return self._answer(box)

        return serve

    def _receive(self, args: object, sender: int) -> _ReplyBox:
        trace_id = current_message_id.get()
        if self._tracer is not None:
            self._tracer.event(
                self.me,
                "receive",
                self._node.trace_state(),
                id=trace_id,
                msg=describe(args, sender, self.me),
            )
        return _ReplyBox(trace_id)

    def _answer(self, box: _ReplyBox) -> object:
        """The reply once the node released it: at once when storage is synchronous,
        else an awaitable the transport waits on (Figure 2: stable storage before
        responding)."""
        self._after_step()
        if box.reply is not None or self._killed:
            return box.reply  # (a peer whose storage failed just now replies nothing)
        box.done = trio.Event()
        self._pending_replies.add(box)
        return box.wait()

    # ------------------------------------------------------------------ carrying out

    def _after_step(self) -> None:
        """After any input: record it, drive the Readies, act on the node's signals."""
        node = self._node
        self._emit_trace()
        if self._syncing is None and not self._killed:
            self._drive()
        timer, replicate, heartbeat_now = node.take_signals()
        if timer is not None:
            self._set_timer(timer)
        if heartbeat_now and node.is_leader:
            for peer in range(len(self._peers)):
                if peer != self.me:
                    self._heartbeat(peer)  # a ReadIndex round: every follower, now
        seen = (node.role, node.current_term, node.leader_id)
        if seen != self._seen:
            self._log_change(seen)
        if node.is_leader and self._led_term != node.current_term:
            self._led_term = node.current_term  # just elected: heartbeats to all at once
            n = len(self._peers)
            self._due = [True] * n
            self._last_sent = [trio.current_time()] * n
            self._heartbeat_wake.set()
            replicate = True
        if replicate:
            for peer, wake in enumerate(self._wake):
                if peer != self.me:
                    wake.set()
        if self._waiting and self._waiting[0] <= node.commit_index:
            self._settle_waiters()

    def _log_change(self, seen: tuple[Role, int, int | None]) -> None:
        """Tell the operator about elections won and lost, step-downs and new leaders
        (a peer is quiet when nothing changes)."""
        role, term, leader = seen
        was_role, was_term, was_leader = self._seen
        self._seen = seen
        me = self.me
        if role is Role.LEADER and was_role is not Role.LEADER:
            log.info("peer %d: won the election of term %d; leading", me, term)
        elif was_role is Role.LEADER and role is not Role.LEADER:
            log.info("peer %d: steps down as leader of term %d (now term %d)", me, was_term, term)
        elif was_role is Role.CANDIDATE and role is Role.FOLLOWER:
            log.info("peer %d: lost the election of term %d", me, was_term)
        elif role is Role.CANDIDATE and (was_role is not Role.CANDIDATE or term != was_term):
            log.debug("peer %d: election timeout; standing for term %d", me, term)
        if leader is not None and leader != me and leader != was_leader:
            log.info("peer %d: following node %d, leader of term %d", me, leader, term)

    def _drive(self) -> None:
        """Carry out every Ready the node has: persist, (sync,) send, advance, apply."""
        node = self._node
        storage = self._storage
        while node.has_ready():
            ready = node.ready()
            if ready.has_writes:
                try:
                    storage.write(ready)
                    if ready.must_sync:
                        if self._offload:
                            # Staged: a crash of this process keeps it (kill()
                            # completes it); durable once the writer's sync is done.
                            self._trace_persist(staged=True)
                            self._syncing = ready
                            self._writer_wake.set()
                            return
                        storage.sync()
                        self._trace_persist()
                except StorageError as error:
                    self._storage_failed(error)
                    return
            self._carry_out(ready)

    def _storage_failed(self, error: StorageError) -> None:
        """Storage could not make state durable: nothing that depends on it may
        leave, so the peer stops (as if killed) and ``make``'s nursery gets the
        error from the peer's own task, never from whichever task was driving."""
        log.critical("peer %d: storage failed, the peer stops: %s", self.me, error)
        self._failure = error
        self.kill()

    def _carry_out(self, ready: Ready) -> None:
        """Send a durable Ready's messages, advance the node, queue its entries."""
        node = self._node
        for out in ready.messages:
            box = out.reply_to
            if box is None:
                args = out.message
                assert self._nursery is not None
                if not self._still_current(args):
                    continue  # an election this peer left while the Ready was syncing
                message_id = self._trace_send(out.to, args)
                self._nursery.start_soon(self._request, out.to, args, message_id)
            else:
                self._trace_reply(box, out.message, out.to)
                box.resolve(out.message)
                self._pending_replies.discard(box)
        node.advance(ready)
        self._emit_trace()  # advance's own events (applies, a leader's commit)
        for box, index in ready.reads:
            box.resolve(index)
        if ready.apply_snapshot is not None:
            snap = ready.apply_snapshot
            log.info(
                "peer %d: installed the leader's snapshot up to index %d (%d bytes)",
                self.me,
                snap.index,
                len(snap.data),
            )
            self._to_apply.append(snap)
            self._apply_wake.set()
        if ready.apply_entries:
            self._to_apply.append((ready.apply_from, ready.apply_entries))
            self._apply_wake.set()

    def _settle_waiters(self) -> None:
        """Resolve the ``wait_committed`` calls whose index is now committed."""
        waiting = self._waiting
        commit = self._node.commit_index
        while waiting and waiting[0] <= commit:
            self._settle(heapq.heappop(waiting))

    def _settle(self, index: int) -> None:
        waiters = self._waiters.get(index)
        if not waiters:
            return
        left = []
        for waiter in waiters:
            waiter.outcome = self._outcome(waiter)
            if waiter.outcome is None:
                left.append(waiter)
            else:
                waiter.done.set()
        if left:
            self._waiters[index] = left
        else:
            del self._waiters[index]

    def _outcome(self, waiter: _Waiter) -> bool | str | None:
        """Decided once this peer's commit index reaches the entry's index: True if
        the committed entry there is of the waiter's term, else False; None before
        that; :data:`_UNKNOWN` when it went into a snapshot unread.  (An entry cut
        from this log may still come back from a later leader, so only a commit
        decides.)"""
        node = self._node
        if waiter.index > node.commit_index:
            return None
        term_there = node.log.term_at(waiter.index)
        if term_there is None:
            return _UNKNOWN
        return term_there == waiter.term

    # ------------------------------------------------------------------ trace

    def _emit_trace(self) -> None:
        """Record the node's buffered events now, in the step that caused them."""
        if self._tracer is not None:
            for event in self._node.take_trace():
                self._tracer.event(self.me, event.name, event.state, **_digested(event.fields))

    def _trace_persist(self, *, staged: bool = False) -> None:
        if self._tracer is not None:
            if staged:
                self._tracer.event(self.me, "persist", self._node.trace_state(), staged=True)
            else:
                self._tracer.event(self.me, "persist", self._node.trace_state())

    def _trace_synced(self) -> None:
        if self._tracer is not None:
            self._tracer.event(self.me, "synced", self._node.trace_state())

    def _trace_reply(self, box: _ReplyBox, reply: object, receiver: int) -> None:
        if self._tracer is not None:
            self._tracer.event(
                self.me,
                "send",
                self._node.trace_state(),
                id=box.trace_id,
                msg=describe(reply, self.me, receiver),
            )


def _digested(fields: dict[str, Any]) -> dict[str, Any]:
    """Trace fields with encoded commands (and snapshots) replaced by their digests."""
    command = fields.pop("command", None)
    if command is not None:
        fields["digest"] = command_digest(command)
    snapshot = fields.pop("snapshot", None)
    if snapshot is not None:
        fields["snapshot_size"] = len(snapshot)
        fields["snapshot_digest"] = digest(snapshot)
    log_entries = fields.get("log")
    if log_entries is not None:
        fields["log"] = [[term, command_digest(raw)] for term, raw in log_entries]
    return fields


def _describe(storage: Storage) -> str:
    path = getattr(storage, "path", None)
    return f"storage {path}" if path is not None else "the persister"


def make(
    peers: Sequence[ClientEnd],
    me: int,
    persister: Persister | Storage,
    apply_ch: trio.MemorySendChannel[ApplyMsg],
    *,
    nursery: trio.Nursery,
    config: RaftConfig | None = None,
) -> Raft:
    """Create a Raft peer and start it in ``nursery`` (6.824's ``Make``).

    Returns at once.  ``peers[me]`` is this peer's own end and is never called.
    ``persister`` is a 6.824 :class:`~trioraft.Persister` (or
    :class:`~trioraft.FilePersister`) or a :class:`~trioraft.DiskStorage`; the
    state saved in it is restored.  Every argument is checked before anything
    starts (``TypeError``/``ValueError`` naming the argument); a corrupt saved
    state raises :class:`CorruptStateError`.  If storage later fails to make
    state durable, the peer stops (logged at CRITICAL) and the
    :class:`~trioraft.StorageError` is raised in ``nursery``.
    """
    check_make_arguments(peers, me, persister, apply_ch, nursery, config)
    storage = PersisterStorage(persister) if isinstance(persister, Persister) else persister
    rf = Raft(peers, me, storage, apply_ch, config if config is not None else RaftConfig())
    nursery.start_soon(rf._run)
    return rf


__all__ = ["CorruptStateError", "Raft", "make"]
