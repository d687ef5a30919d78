"""What a transport needs from a peer, and what a peer needs from a transport.

A peer (or any service, as in labrpc's tests) exposes its RPC handlers as a
mapping from method name ("Raft.AppendEntries") to :class:`Handler`.  A
transport (the simulated network in :mod:`trioraft.sim`, later TCP) gives each
peer one :class:`ClientEnd` per other peer.  Arguments and replies always cross
a transport encoded, so caller and callee never share objects.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Handler:
    """One RPC method: a function of the decoded arguments returning the reply.

    ``fn`` may be sync or async.  Returning ``None`` means "no reply" (a killed
    peer does that): the caller sees a lost RPC.  ``arg_type`` and
    ``reply_type`` are what the transport decodes the bytes into.
    """

    fn: Callable[[Any], Any]
    arg_type: Any = Any
    reply_type: Any = Any

    async def invoke(self, args: object) -> object:
        result = self.fn(args)
        if inspect.isawaitable(result):
            result = await result
        return result


@runtime_checkable
class RpcServer(Protocol):
    """Anything whose handlers a transport can dispatch to."""

    def rpc_handlers(self) -> Mapping[str, Handler]: ...


@runtime_checkable
class ClientEnd(Protocol):
    """One peer's way of calling one other peer (labrpc's ClientEnd)."""

    def call(self, method: str, args: object) -> Awaitable[object | None]:
        """Send ``args`` to ``method``; the decoded reply, or ``None`` if lost."""
        ...
