"""A client of the replicated key-value service (``trioraft kv``).

Rules of operation
------------------
- The client has a random id and numbers its requests 1, 2, 3, ...; a
  request keeps its number through every retry, so the service applies it at
  most once however often it is resent (6.824 Lab 3).
- It sends to the node it believes leads (at first node 0).  ``not_leader``
  with a hint: it goes there; without one (an election is under way), or a
  timeout, or a connection that fails: it tries the next node, after a short
  pause once it has tried them all.  It gives up after ``timeout`` seconds.
- ``batch`` sends requests in chunks of ``window``; each chunk is one
  ``KV.Batch`` call, and the requests of a chunk not acknowledged (lost,
  ``not_leader``, ``timeout``) are sent again, with the same numbers, until
  every one is.  Replies come back in request order.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import ssl
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any, cast

import trio

from ..net.frames import FrameError
from ..net.transport import (
    ClientConnection,
    HandshakeError,
    NetConfig,
    connect_client,
    parse_address,
)
from .machine import DELETE, GET, PUT
from .service import NOT_FOUND, NOT_LEADER, OK, TIMEOUT, KVReply, KVRequest, StatusReply

log = logging.getLogger("trioraft.kv")


class Unavailable(Exception):
    """No node answered (or none led) before the client's time ran out."""


class KVClient:
    """Use as ``async with KVClient(cluster, net) as kv: await kv.put(k, v)``."""

    def __init__(
        self,
        cluster: Sequence[str],
        net: NetConfig,
        *,
        timeout: float = 30.0,
        rpc_timeout: float = 3.0,
        window: int = 256,
    ) -> None:
        self.addresses = [parse_address(a, f"cluster[{k}]") for k, a in enumerate(cluster)]
        self.net = net
        self.timeout = timeout
        self.rpc_timeout = rpc_timeout
        self.window = window
        self.id = secrets.randbits(62)
        self._seq = 0
        self._leader = 0
        self._connections: dict[int, ClientConnection] = {}
        self._stack = contextlib.AsyncExitStack()
        self._nursery: trio.Nursery | None = None

    async def __aenter__(self) -> KVClient:
        # Connections live in tasks of this nursery (each holds its connection open
        # until it breaks or the client closes).
        self._nursery = await self._stack.enter_async_context(trio.open_nursery())
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        await self._stack.aclose()

    # ------------------------------------------------------------ requests

    async def put(self, key: str, value: str) -> None:
        await self._one(PUT, key, value)

    async def delete(self, key: str) -> None:
        await self._one(DELETE, key, None)

    async def get(self, key: str) -> str | None:
        """The value (linearizable), or None when the key is absent."""
        reply = await self._one(GET, key, None)
        return reply.value if reply.status == OK else None

    async def batch(self, requests: Sequence[tuple[str, str, str | None]]) -> list[KVReply]:
        """(op, key, value) requests, acknowledged in order (see the module docstring)."""
        replies: list[KVReply] = []
        for start in range(0, len(requests), self.window):
            chunk = [
                self._request(op, key, value)
                for op, key, value in requests[start : start + self.window]
            ]
            replies += await self._send_all(chunk)
        return replies

    async def status(self, node: int) -> StatusReply | None:
        """Node ``node``'s view, or None if it does not answer."""
        connection = await self._connection(node)
        if connection is None:
            return None
        reply: StatusReply | None = await connection.call(
            "KV.Status", None, StatusReply | None, self.rpc_timeout
        )
        return reply

    # ------------------------------------------------------------ the retry loop

    def _request(self, op: str, key: str, value: str | None) -> KVRequest:
        self._seq += 1
        return KVRequest(self.id, self._seq, op, key, value)

    async def _one(self, op: str, key: str, value: str | None) -> KVReply:
        replies = await self._send_all([self._request(op, key, value)])
        return replies[0]

    async def _send_all(self, requests: list[KVRequest]) -> list[KVReply]:
        done: dict[int, KVReply] = {}
        todo = list(requests)
        node = self._leader
        tried = 0
        with trio.move_on_after(self.timeout) as scope:
            while todo:
                replies = await self._call(node, todo)
                if replies is None or all(r.status == TIMEOUT for r in replies):
                    node, tried = await self._next(node, tried)
                    continue
                hint = None
                left = []
                for request, reply in zip(todo, replies, strict=True):
                    if reply.status in (NOT_LEADER, TIMEOUT):
                        left.append(request)
                        if reply.leader is not None:
                            hint = reply.leader
                    else:
                        done[request.seq] = reply
                if len(left) < len(todo):
                    self._leader, tried = node, 0  # it acknowledged something: it leads
                todo = left
                if todo:
                    if hint is not None and hint != node:
                        node = hint
                    else:
                        node, tried = await self._next(node, tried)
        if scope.cancelled_caught:
            raise Unavailable(
                f"no leader acknowledged {len(todo)} request(s) within {self.timeout} s"
            )
        return [done[r.seq] for r in requests]

    async def _next(self, node: int, tried: int) -> tuple[int, int]:
        """The next node to try; a pause once every node was tried in a row."""
        tried += 1
        if tried % len(self.addresses) == 0:
            await trio.sleep(0.05)
        return (node + 1) % len(self.addresses), tried

    async def _call(self, node: int, requests: list[KVRequest]) -> list[KVReply] | None:
        connection = await self._connection(node)
        if connection is None:
            return None
        try:
            replies: list[KVReply] | None = await connection.call(
                "KV.Batch", requests, list[KVReply] | None, self.rpc_timeout
            )
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            replies = None
        if replies is None or len(replies) != len(requests):
            self._drop(node)
            return None
        return replies

    async def _connection(self, node: int) -> ClientConnection | None:
        connection = self._connections.get(node)
        if connection is not None and not connection.link.closed:
            return connection
        assert self._nursery is not None, "use the client as `async with KVClient(...)`"
        try:
            connection = cast(ClientConnection, await self._nursery.start(self._hold, node))
        except (
            OSError,
            ssl.SSLError,
            trio.TooSlowError,
            trio.BrokenResourceError,
            HandshakeError,
            FrameError,
        ) as error:
            log.debug("cannot reach node %d: %s", node, error)
            return None
        self._connections[node] = connection
        return connection

    async def _hold(self, node: int, *, task_status: trio.TaskStatus[ClientConnection]) -> None:
        """Open a connection to ``node`` and keep it open until it breaks."""
        async with connect_client(
            self.addresses[node], node, len(self.addresses), self.net
        ) as connection:
            task_status.started(connection)
            await connection.link.done.wait()

    def _drop(self, node: int) -> None:
        connection = self._connections.pop(node, None)
        if connection is not None:
            connection.link.close()


@contextlib.asynccontextmanager
async def open_client(
    cluster: Sequence[str], net: NetConfig, **options: Any
) -> AsyncIterator[KVClient]:
    async with KVClient(cluster, net, **options) as client:
        yield client


__all__ = ["NOT_FOUND", "KVClient", "Unavailable", "open_client"]
