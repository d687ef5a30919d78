"""``open_node``: a Raft node for a trio application, across processes and machines.

Rules of operation
------------------
- ``open_node(config, state_machine)`` opens the node's DiskStorage (creating
  the data directory), restores the state machine from the latest snapshot,
  listens on its address with the TCP transport (mutual TLS unless
  ``insecure``), starts a Raft peer and an applier, and closes all of it when
  the ``async with`` block ends.
- **The applier** takes committed commands in order and runs
  ``state_machine.apply(command, index)``; the result goes back to the
  ``propose`` call waiting for that index on this node.  An installed
  snapshot goes to ``state_machine.restore``.  Once the log holds more than
  ``snapshot_log_bytes`` past the last snapshot, the node asks
  ``state_machine.snapshot()`` and compacts.
- **propose** appends the command at the leader and returns ``apply``'s result
  once the entry is applied here; if another entry took its index (the leader
  lost office first) it raises :class:`~trioraft.NotLeader`, as it does at
  once on a follower, naming the leader it knows of.
- **read_barrier** is ReadIndex (thesis §6.4): one heartbeat round confirms
  that this node still leads, for every read waiting at that moment; then it
  waits until the state machine has applied up to the read index.  After it,
  reading the state machine is linearizable.  A new leader commits a no-op of
  its term first (Raft §8), so it is never stale at a read.
- Arguments are checked at the call, before anything changes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, Protocol, runtime_checkable

import trio

from . import codec
from .checks import check_int
from .core.apply import ApplyMsg
from .core.config import RaftConfig
from .errors import NotLeader
from .net.tls import TLSFiles, own_identity
from .net.transport import NetConfig, open_transport, parse_address
from .peer import Raft, make
from .rpc import Handler
from .storage.disk import DiskStorage
from .trace.recorder import TraceRecorder, incarnation_message_ids

log = logging.getLogger("trioraft")

APPLY_BUFFER = 1024


@runtime_checkable
class StateMachine(Protocol):
    """What a node replicates: a deterministic state machine."""

    def apply(self, command: Any, index: int) -> Any:
        """Apply a committed command; the result goes back to its ``propose``."""
        ...

    def snapshot(self) -> bytes:
        """The whole state, as bytes (to compact the log)."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot's."""
        ...


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """One node of a cluster.

    - ``id``: this node's index in ``cluster``;
    - ``cluster``: every node's ``host:port``, in id order (peers and clients use
      the same address);
    - ``data_dir``: where its DiskStorage lives (made if missing);
    - ``tls`` (:class:`~trioraft.TLSFiles`) or ``insecure=True``: one of them;
    - ``raft``: timing and limits (default: a no-op on election, as a node
      serving reads needs, and Pre-Vote and CheckQuorum on);
    - ``snapshot_log_bytes``: compact once the log holds this much past the
      last snapshot;
    - ``listen``: the ``host:port`` to bind when not ``cluster[id]`` (e.g. all
      interfaces);
    - ``trace``: a path to write this node's execution trace to;
    - ``rpc_timeout``: how long a call to another node may take;
    - ``fsync``: False skips every fsync (benchmarks only: a power failure then
      loses acknowledged writes).
    """

    id: int
    cluster: Sequence[str]
    data_dir: str | os.PathLike[str]
    tls: TLSFiles | None = None
    insecure: bool = False
    raft: RaftConfig | None = None
    snapshot_log_bytes: int = 64 * 2**20
    listen: str | None = None
    trace: str | os.PathLike[str] | None = None
    rpc_timeout: float = 2.0
    fsync: bool = True
    addresses: list[tuple[str, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.cluster, str) or not isinstance(self.cluster, Sequence):
            raise TypeError("NodeConfig.cluster must be a list of host:port strings")
        if not self.cluster:
            raise ValueError("NodeConfig.cluster must name at least one node")
        addresses = [
            parse_address(a, f"NodeConfig.cluster[{k}]") for k, a in enumerate(self.cluster)
        ]
        object.__setattr__(self, "addresses", addresses)
        check_int("NodeConfig.id", self.id, minimum=0)
        if self.id >= len(self.cluster):
            raise ValueError(
                f"NodeConfig.id {self.id} is not an index into the {len(self.cluster)} nodes"
            )
        if not isinstance(self.data_dir, (str, os.PathLike)):
            raise TypeError("NodeConfig.data_dir must be a path")
        if self.tls is None and not self.insecure:
            raise ValueError(
                "NodeConfig needs tls=TLSFiles(ca=..., cert=..., key=...), or insecure=True "
                "to run without TLS (it must be asked for by name)"
            )
        if self.tls is not None and self.insecure:
            raise ValueError("NodeConfig: tls and insecure=True are exclusive")
        if self.tls is not None and not isinstance(self.tls, TLSFiles):
            raise TypeError("NodeConfig.tls must be a trioraft.TLSFiles")
        if self.raft is not None and not isinstance(self.raft, RaftConfig):
            raise TypeError("NodeConfig.raft must be a trioraft.RaftConfig")
        check_int("NodeConfig.snapshot_log_bytes", self.snapshot_log_bytes, minimum=1)
        if self.listen is not None:
            parse_address(self.listen, "NodeConfig.listen")
        if not isinstance(self.rpc_timeout, (int, float)) or not self.rpc_timeout > 0:
            raise ValueError(f"NodeConfig.rpc_timeout must be positive, got {self.rpc_timeout!r}")

    def address(self, node: int | None) -> str | None:
        return None if node is None else self.cluster[node]


class NodeStatus(NamedTuple):
    """A node's view of the cluster (``node.status()``)."""

    id: int
    term: int
    role: str
    leader: int | None
    commit_index: int
    last_applied: int


class _Proposal:
    __slots__ = ("done", "error", "result", "term")

    def __init__(self, term: int) -> None:
        self.term = term
        self.done = trio.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class Node:
    """A running node (see :func:`open_node`)."""

    def __init__(
        self,
        config: NodeConfig,
        machine: StateMachine,
        storage: DiskStorage,
        applied: int,
    ) -> None:
        self.config = config
        self.id = config.id
        self._machine = machine
        self._storage = storage
        self._raft: Raft | None = None
        self._applied = applied  # what the state machine holds, up to this index
        self._snapshot_index = applied
        self._applied_event = trio.Event()
        self._proposals: dict[int, _Proposal] = {}

    @property
    def raft(self) -> Raft:
        assert self._raft is not None, "the node is not running"
        return self._raft

    async def propose(self, command: Any) -> Any:
        """Replicate ``command``; ``state_machine.apply``'s result once applied here.

        Raises :class:`~trioraft.NotLeader` on a follower (naming the leader it
        knows of), or when the entry was lost to another leader; ``TypeError``
        for a command that is not plain data (nothing changes then).
        """
        codec.check_command(command)
        raft = self.raft
        index, term, ok = raft.start(command)
        if not ok:
            await trio.lowlevel.checkpoint()
            raise self._not_leader()
        proposal = self._register(index, term)
        await proposal.done.wait()
        if proposal.error is not None:
            raise proposal.error
        return proposal.result

    async def propose_many(self, commands: Sequence[Any]) -> list[Any]:
        """Replicate several commands in this order, pipelined; for each, its result
        or the exception (``NotLeader``) that :meth:`propose` would have raised."""
        return await self._propose_encoded([codec.encode_command(c) for c in commands])

    async def _propose_encoded(self, commands: Sequence[bytes]) -> list[Any]:
        """:meth:`propose_many` of commands already encoded by trioraft's own
        services (built from known types, so not checked again)."""
        raft = self.raft
        proposals: list[_Proposal | None] = []
        for command in commands:
            index, term, ok = raft._start_encoded(command)
            proposals.append(self._register(index, term) if ok else None)
        results: list[Any] = []
        for proposal in proposals:
            if proposal is None:
                results.append(self._not_leader())
                continue
            await proposal.done.wait()
            results.append(proposal.error if proposal.error is not None else proposal.result)
        return results

    async def read_barrier(self, timeout: float | None = None) -> None:
        """ReadIndex: after it returns, reading the state machine is linearizable.

        Raises :class:`~trioraft.NotLeader` on a follower, or when this node
        cannot confirm its leadership with a majority within ``timeout``
        (default: twice the longest election timeout).
        """
        raft = self.raft
        if timeout is None:
            timeout = 2 * (self.config.raft or RaftConfig()).election_timeout_max
        with trio.move_on_after(timeout):
            index = await raft.read_index()
            while self._applied < index:
                await self._wait_applied()
            return
        raise self._not_leader()

    def _register(self, index: int, term: int) -> _Proposal:
        """Wait for the entry (index, term); an older proposal at the same index was
        overwritten by this leader's log, so it was lost."""
        old = self._proposals.get(index)
        if old is not None:
            old.error = self._not_leader()
            old.done.set()
        proposal = self._proposals[index] = _Proposal(term)
        return proposal

    def status(self) -> NodeStatus:
        raft = self.raft
        node = raft.node
        leader, term = raft.leader()
        return NodeStatus(self.id, term, node.role.value, leader, node.commit_index, self._applied)

    def _not_leader(self) -> NotLeader:
        leader, _ = self.raft.leader()
        if leader == self.id:
            leader = None
        return NotLeader(leader, self.config.address(leader))

    async def _wait_applied(self) -> None:
        await self._applied_event.wait()

    def _note_applied(self, index: int) -> None:
        self._applied = index
        self._applied_event.set()
        self._applied_event = trio.Event()

    # ------------------------------------------------------------ applying

    async def _apply_loop(self, receive: trio.MemoryReceiveChannel[ApplyMsg]) -> None:
        machine = self._machine
        while True:
            message = await receive.receive()
            while True:
                self._apply_one(machine, message)
                try:
                    message = receive.receive_nowait()
                except trio.WouldBlock:
                    break
            self._maybe_snapshot()

    def _apply_one(self, machine: StateMachine, message: ApplyMsg) -> None:
        if message.snapshot_valid:
            machine.restore(message.snapshot)
            self._snapshot_index = message.snapshot_index
            self._fail_proposals_up_to(message.snapshot_index)
            self._note_applied(message.snapshot_index)
            return
        index = message.command_index
        result = machine.apply(message.command, index)
        self._fail_proposals_up_to(index - 1)  # no-ops between: nothing of ours there
        proposal = self._proposals.pop(index, None)
        if proposal is not None:
            if proposal.term == message.command_term:
                proposal.result = result
            else:
                proposal.error = self._not_leader()  # another leader's entry took it
            proposal.done.set()
        self._note_applied(index)

    def _fail_proposals_up_to(self, index: int) -> None:
        """Proposals at or below ``index`` that were not applied were lost."""
        for k in [k for k in self._proposals if k <= index]:
            proposal = self._proposals.pop(k)
            proposal.error = self._not_leader()
            proposal.done.set()

    def _maybe_snapshot(self) -> None:
        if self._applied <= self._snapshot_index:
            return
        if self._storage.raft_state_size() < self.config.snapshot_log_bytes:
            return
        data = self._machine.snapshot()
        self.raft.snapshot(self._applied, data)
        self._snapshot_index = self._applied


def _node_raft_config(config: NodeConfig, tracer: TraceRecorder | None) -> RaftConfig:
    raft = config.raft or RaftConfig(noop_on_election=True, pre_vote=True, check_quorum=True)
    return replace(raft, tracer=tracer) if tracer is not None else raft


@contextlib.asynccontextmanager
async def open_node(
    config: NodeConfig,
    state_machine: StateMachine,
    *,
    client_handlers: Mapping[str, Handler] | None = None,
) -> AsyncIterator[Node]:
    """Run node ``config.id`` of a cluster while the ``async with`` block lasts.

    ``client_handlers`` are RPC methods this node serves to clients (on the
    same address as its peers); a service such as the key-value store of
    ``trioraft serve`` adds its own.  Raises at once, before anything starts,
    for a wrong argument, unusable TLS files or a damaged data directory.
    """
    if not isinstance(config, NodeConfig):
        raise TypeError(f"config must be a trioraft.NodeConfig, not {type(config).__name__}")
    if not isinstance(state_machine, StateMachine):
        raise TypeError(
            "state_machine must have apply(command, index), snapshot() and restore(data)"
        )
    if config.tls is not None and own_identity(config.tls) != ("node", config.id):
        raise ValueError(
            f"{config.tls.cert} is not node {config.id}'s certificate "
            f"(it names {own_identity(config.tls)})"
        )
    storage = DiskStorage(config.data_dir, create=True, fsync=config.fsync)
    try:
        snapshot = storage.read_snapshot()
        applied = storage.restore().snapshot_index
        if snapshot or applied:
            state_machine.restore(snapshot)
            log.info(
                "node %d: state machine restored from the snapshot up to %d", config.id, applied
            )
    except BaseException:
        storage.close()
        raise
    node = Node(config, state_machine, storage, applied)
    net = NetConfig(tls=config.tls, insecure=config.insecure, rpc_timeout=config.rpc_timeout)
    addresses = list(config.addresses)
    if config.listen is not None:
        addresses[config.id] = parse_address(config.listen)
    handlers: dict[str, Handler] = {}  # the peer's, once it exists
    with _trace_sink(config) as tracer:
        async with (
            open_transport(config.id, addresses, net, handlers, client_handlers or {}) as transport,
            trio.open_nursery() as nursery,
        ):
            send, receive = trio.open_memory_channel[ApplyMsg](APPLY_BUFFER)
            ends = [transport.end(j) for j in range(len(addresses))]
            raft = make(
                ends,
                config.id,
                storage,
                send,
                nursery=nursery,
                config=_node_raft_config(config, tracer),
            )
            handlers.update(raft.rpc_handlers())
            node._raft = raft
            nursery.start_soon(node._apply_loop, receive)
            log.info(
                "node %d: serving on %s (cluster of %d, %s)",
                config.id,
                config.cluster[config.id],
                len(addresses),
                "mutual TLS" if config.tls else "plaintext (insecure)",
            )
            try:
                yield node
            finally:
                raft.kill()  # closes the storage, completing what was written
                nursery.cancel_scope.cancel()


@contextlib.contextmanager
def _trace_sink(config: NodeConfig) -> Iterator[TraceRecorder | None]:
    if config.trace is None:
        yield None
        return
    # Unbuffered: the recorder writes each line with one system call, so a
    # kill -9 cuts the file between lines (or, rarely, inside the last one).
    # A new file per incarnation: an existing one is never appended to or replaced.
    with open(config.trace, "xb", buffering=0) as sink:
        yield TraceRecorder(
            nodes=len(config.cluster),
            node=config.id,
            first_message_id=incarnation_message_ids(),
            sink=sink,
            keep=False,
            meta={"started": time.time(), "pid": os.getpid()},  # wall-clock ok
        )
