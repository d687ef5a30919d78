"""The replicated key-value service: what ``trioraft serve`` runs.

A node of the cluster serves clients on its own address (the transport's
client handlers): ``KV.Request`` (one put, get or delete), ``KV.Batch`` (many,
in order, writes pipelined) and ``KV.Status``.  Writes go through the log, a
client's run of writes in one entry (:class:`~.machine.KVMachine` applies each
client request at most once); a get
is linearizable through ReadIndex (``node.read_barrier()``), then reads this
node's state machine.  A follower answers ``not_leader`` with the leader it
knows of, which the client follows.
"""

from __future__ import annotations

from typing import Any

import msgspec
import trio

from .. import codec
from ..errors import NotLeader
from ..node import Node
from ..rpc import Handler
from .machine import GET, REPEAT, KVMachine, writes_command
from .machine import OK as APPLIED

OK = "ok"
NOT_FOUND = "not_found"
NOT_LEADER = "not_leader"
TIMEOUT = "timeout"
ERROR = "error"

REQUEST_BUDGET = 10.0
"""How long the service works on one request before answering ``timeout``."""


class KVRequest(msgspec.Struct, frozen=True, array_like=True):
    """One client request; ``seq`` numbers a client's requests 1, 2, 3, ..."""

    client: int
    seq: int
    op: str
    key: str
    value: str | None = None


class KVReply(msgspec.Struct, frozen=True, array_like=True):
    """``status`` is ok, not_found (a get of an absent key), not_leader (ask
    ``leader`` at ``address``), timeout or error (``error`` says why)."""

    status: str
    value: str | None = None
    leader: int | None = None
    address: str | None = None
    error: str | None = None


class StatusReply(msgspec.Struct, frozen=True, array_like=True):
    """A node's view (``trioraft status``), with its key-value machine's counts:
    client writes applied (each once) and repeats answered without applying."""

    id: int
    term: int
    role: str
    leader: int | None
    commit_index: int
    last_applied: int
    writes: int = 0
    duplicates: int = 0


class KVService:
    """The client handlers of one node (``node`` is set once it runs)."""

    def __init__(self, machine: KVMachine) -> None:
        self.machine = machine
        self.node: Node | None = None

    def handlers(self) -> dict[str, Handler]:
        return {
            "KV.Request": Handler(self.request, KVRequest, KVReply),
            "KV.Batch": Handler(self.batch, list[KVRequest], list[KVReply]),
            "KV.Status": Handler(self.status, Any, StatusReply),
        }

    async def request(self, request: KVRequest) -> KVReply:
        replies = await self.batch([request])
        return replies[0]

    async def batch(self, requests: list[KVRequest]) -> list[KVReply]:
        """The requests in order: each run of writes proposed together, each run of
        gets read after the writes before it were applied, behind one barrier."""
        node = self.node
        if node is None:
            return [KVReply(NOT_LEADER) for _ in requests]
        replies: list[KVReply] = []
        with trio.move_on_after(REQUEST_BUDGET):
            start = 0
            while start < len(requests):
                is_get = requests[start].op == GET
                stop = start
                while stop < len(requests) and (requests[stop].op == GET) == is_get:
                    stop += 1
                run = requests[start:stop]
                replies += await (self._gets(node, run) if is_get else self._writes(node, run))
                start = stop
        replies += [KVReply(TIMEOUT)] * (len(requests) - len(replies))
        return replies

    async def _writes(self, node: Node, run: list[KVRequest]) -> list[KVReply]:
        """One log entry per client's run of writes (see ``machine.py``)."""
        groups: list[list[KVRequest]] = []
        for r in run:
            if groups and groups[-1][0].client == r.client:
                groups[-1].append(r)
            else:
                groups.append([r])
        commands = [
            writes_command(group[0].client, [[r.seq, r.op, r.key, r.value] for r in group])
            for group in groups
        ]
        # built from decoded requests (ints, strs): encoded without a second check
        outcomes = await node._propose_encoded([codec.encode(c) for c in commands])
        replies: list[KVReply] = []
        for group, outcome in zip(groups, outcomes, strict=True):
            if isinstance(outcome, list) and len(outcome) == len(group):
                replies += [
                    REPLY_OK if r is APPLIED or r is REPEAT else _reply_of(r) for r in outcome
                ]
            else:
                replies += [_reply_of(outcome)] * len(group)
        return replies

    async def _gets(self, node: Node, run: list[KVRequest]) -> list[KVReply]:
        try:
            await node.read_barrier()
        except NotLeader as error:
            return [_not_leader(error)] * len(run)
        machine = self.machine
        replies = []
        for r in run:
            value = machine.get(r.key)
            replies.append(REPLY_NOT_FOUND if value is None else KVReply(OK, value))
        return replies

    def status(self, _: Any) -> StatusReply | None:
        if self.node is None:
            return None
        machine = self.machine
        return StatusReply(*self.node.status(), machine.writes, machine.duplicates)


REPLY_OK = KVReply(OK)  # frozen: one shared instance, not one per request
REPLY_NOT_FOUND = KVReply(NOT_FOUND)


def _reply_of(result: Any) -> KVReply:
    if isinstance(result, NotLeader):
        return _not_leader(result)
    if isinstance(result, BaseException):
        return KVReply(ERROR, error=str(result))
    if isinstance(result, dict) and "error" in result:
        return KVReply(ERROR, error=str(result["error"]))
    return REPLY_OK


def _not_leader(error: NotLeader) -> KVReply:
    return KVReply(NOT_LEADER, leader=error.leader, address=error.address)
