"""The TCP transport: peers and clients over trio streams, with mutual TLS.

Rules of operation
------------------
- **Links.**  Each pair of nodes shares one connection, reused for calls
  both ways: the node with the lower id dials, the other accepts (so two
  nodes never race to connect).  A dialler reconnects after a failure with
  capped exponential backoff and jitter.  Clients dial any node; their
  connection carries their calls only.
- **Who is on the other end.**  With TLS (the default) both sides present a
  certificate of the cluster's CA: a dialler checks the server's name
  (``node-<k>.trioraft``: the server IS node k), the acceptor reads the
  client certificate's identity (node j, or a client).  The first frame each
  way is a :class:`~.frames.Hello` whose claim must agree with the
  certificate (without TLS, asked for by name with ``insecure``, the claim
  is all there is).  A stranger (no certificate, another CA's, a client's
  posing as a node, the wrong node) is refused with a logged reason before it
  can send anything else; the rest of the cluster never notices.
- **Calls.**  :class:`TcpClientEnd` is the peer's ``ClientEnd`` for one other
  node: it frames the request (with the trace's message id), queues it on the
  link and waits for the response; no link, a full send queue, a lost
  connection or ``rpc_timeout`` without an answer all come back as ``None``
  (a lost RPC, as on the simulated network).  Each link's send queue is
  bounded, and its writer sends every queued frame in one write.
- **Serving.**  A request is decoded into its handler's argument type and
  the handler runs with the trace's message id set; a synchronous answer is
  sent at once, an asynchronous one (a reply waiting for an fsync) from a task
  of its own, so the link keeps reading.  Nodes may call the node handlers
  ("Raft.*"), clients the client handlers; anything else is answered with an
  error.  A frame that does not decode closes that one connection, with a
  logged reason.
"""

from __future__ import annotations

import inspect
import logging
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from ..codec import CodecError, decode
from ..rpc import Handler
from ..trace.recorder import current_message_id
from .frames import (
    DEFAULT_MAX_FRAME,
    NIL,
    FrameDecoder,
    FrameError,
    Hello,
    Request,
    Response,
    encode_frame,
    encode_value,
)
from .tls import TLSError, TLSFiles, client_context, identity_of, node_hostname, server_context

log = logging.getLogger("trioraft.net")

NODE = "node"
CLIENT = "client"

HANDSHAKE_TIMEOUT = 5.0
RECEIVE_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class NetConfig:
    """How a node (or a client) talks TCP.  ``tls`` None means plaintext, which is
    only allowed with ``insecure=True``."""

    tls: TLSFiles | None
    insecure: bool = False
    rpc_timeout: float = 2.0
    max_frame: int = DEFAULT_MAX_FRAME
    send_queue: int = 4096  # frames waiting on one link before calls are dropped
    backoff_min: float = 0.05
    backoff_max: float = 2.0

    def __post_init__(self) -> None:
        if self.tls is None and not self.insecure:
            raise ValueError("no TLS files given: pass tls=TLSFiles(...) or insecure=True")
        if self.tls is not None and self.insecure:
            raise ValueError("insecure=True and TLS files given: choose one")


def parse_address(text: str, what: str = "address") -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as (host, port); ValueError naming it."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} must be host:port, got {text!r}")
    return host, int(port)


class _Call:
    __slots__ = ("done", "response")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.response: Response | None = None


class Link:
    """One connection, after the handshake: frames in and out, calls both ways."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        role: str,
        peer: int | None,
        handlers: Mapping[str, Handler],
        config: NetConfig,
        label: str,
    ) -> None:
        self.stream = stream
        self.role = role  # who is on the other end: NODE or CLIENT
        self.peer = peer
        self.label = label
        self._handlers = handlers  # what the other end may call
        self._config = config
        self._send, self._queue = trio.open_memory_channel[bytes](config.send_queue)
        self._pending: dict[int, _Call] = {}
        self._next_id = 0
        self._closed = False
        self.done = trio.Event()  # set once the connection is gone
        self._nursery: trio.Nursery | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    async def run(self, decoder: FrameDecoder) -> None:
        """Serve the connection until it breaks or is closed; fail pending calls."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._writer)
                await self._reader(decoder)
                nursery.cancel_scope.cancel()
        except* FrameError as group:
            log.warning("%s: closing the connection: %s", self.label, group.exceptions[0])
        except* (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            ssl.SSLError,
            OSError,
        ) as group:
            exc = group.exceptions[0]
            # a node's link lost is news for the operator; a client's going away is not
            level = logging.INFO if self.role == NODE else logging.DEBUG
            log.log(level, "%s: connection lost (%s)", self.label, str(exc) or type(exc).__name__)
        finally:
            self._closed = True
            self.done.set()
            for call in self._pending.values():
                call.done.set()  # no response: a lost RPC
            self._pending.clear()
            self._send.close()
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await trio.aclose_forcefully(self.stream)

    def close(self) -> None:
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def call(self, method: str, args: object, timeout: float) -> Response | None:
        """Send a request and wait for its response (None: lost)."""
        if self._closed:
            return None
        self._next_id += 1
        call_id = self._next_id
        frame = encode_frame(Request(call_id, method, encode_value(args), current_message_id.get()))
        if not self._queue_frame(frame):
            return None  # the send queue is full (or the link is going): dropped
        call = self._pending[call_id] = _Call()
        with trio.move_on_after(timeout):
            await call.done.wait()
        self._pending.pop(call_id, None)
        return call.response

    def _respond(self, call_id: int, result: object) -> None:
        if result is None:
            self._queue_frame(encode_frame(Response(call_id, NIL, "no reply")))
        else:
            self._queue_frame(encode_frame(Response(call_id, encode_value(result))))

    def _queue_frame(self, frame: bytes) -> bool:
        """Queue a frame for the writer; False when the queue is full or the link
        is going (the frame is dropped: its caller sees a lost RPC)."""
        try:
            self._send.send_nowait(frame)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True

    async def _writer(self) -> None:
        """Send what is queued, every frame waiting in one write."""
        queue = self._queue
        stream = self.stream
        while True:
            frames = [await queue.receive()]
            while True:
                try:
                    frames.append(queue.receive_nowait())
                except trio.WouldBlock:
                    break
            await stream.send_all(frames[0] if len(frames) == 1 else b"".join(frames))

    async def _reader(self, decoder: FrameDecoder) -> None:
        stream = self.stream
        while True:
            data = await stream.receive_some(RECEIVE_BYTES)
            if not data:
                return  # the other end closed it
            for message in decoder.feed(data):
                if isinstance(message, Response):
                    call = self._pending.get(message.id)
                    if call is not None:
                        call.response = message
                        call.done.set()
                elif isinstance(message, Request):
                    self._serve(message)
                else:
                    raise FrameError("a second Hello on an open connection")

    def _serve(self, request: Request) -> None:
        handler = self._handlers.get(request.method)
        if handler is None:
            log.warning("%s: refused a call of %s", self.label, request.method)
            self._respond_error(request.id, f"{request.method} is not for a {self.role}")
            return
        try:
            args = decode(request.args, handler.arg_type, what=f"{request.method} arguments")
        except CodecError as exc:
            raise FrameError(str(exc)) from None
        token = current_message_id.set(request.trace_id)
        try:
            result = handler.fn(args)
        finally:
            current_message_id.reset(token)
        if inspect.isawaitable(result):
            assert self._nursery is not None
            self._nursery.start_soon(self._respond_later, request.id, result)
        else:
            self._respond(request.id, result)

    async def _respond_later(self, call_id: int, pending: Awaitable[object]) -> None:
        self._respond(call_id, await pending)

    def _respond_error(self, call_id: int, error: str) -> None:
        self._queue_frame(encode_frame(Response(call_id, NIL, error)))


class TcpClientEnd:
    """The ``ClientEnd`` of one node for calling node ``peer`` over its link."""

    __slots__ = ("_transport", "peer")

    def __init__(self, transport: Transport, peer: int) -> None:
        self._transport = transport
        self.peer = peer

    async def call(self, method: str, args: object) -> object | None:
        link = self._transport.links.get(self.peer)
        if link is None or link.closed:
            await trio.lowlevel.checkpoint()
            return None
        response = await link.call(method, args, self._transport.config.rpc_timeout)
        if response is None or response.error is not None:
            return None
        try:
            reply: object = decode(response.result, self._transport.reply_type(method))
        except CodecError:
            log.warning("%s: a %s reply that does not decode", link.label, method)
            return None
        return reply


class Transport:
    """One node's TCP endpoint: its links to the other nodes, its clients."""

    def __init__(
        self,
        me: int,
        addresses: Sequence[tuple[str, int]],
        config: NetConfig,
        node_handlers: Mapping[str, Handler],
        client_handlers: Mapping[str, Handler],
    ) -> None:
        self.me = me
        self.addresses = list(addresses)
        self.config = config
        self.links: dict[int, Link] = {}
        self._node_handlers = node_handlers
        self._client_handlers = client_handlers
        self._server_context = server_context(config.tls) if config.tls else None
        self._client_context = client_context(config.tls) if config.tls else None
        self._rng = random.Random()
        self.listen_port = 0

    def end(self, peer: int) -> TcpClientEnd:
        return TcpClientEnd(self, peer)

    def reply_type(self, method: str) -> Any:
        """What a node's ``method`` replies (every node runs the same handlers)."""
        handler = self._node_handlers.get(method)
        return Any if handler is None else handler.reply_type

    # ------------------------------------------------------------ running

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        host, port = self.addresses[self.me]
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.listen_port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._accept, listeners)
            for peer in range(self.me + 1, len(self.addresses)):
                nursery.start_soon(self._dial_forever, peer)
            task_status.started()

    async def _accept(self, stream: trio.SocketStream) -> None:
        where = _remote(stream)
        decoder = FrameDecoder(self.config.max_frame)
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                wrapped, role, peer = await self._handshake_in(stream, decoder)
        except (trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError, OSError) as exc:
            log.warning("node %d: refused a connection from %s: %s", self.me, where, _reason(exc))
            await trio.aclose_forcefully(stream)
            return
        except (HandshakeError, TLSError, FrameError) as exc:
            log.warning("node %d: refused a connection from %s: %s", self.me, where, exc)
            await trio.aclose_forcefully(stream)
            return
        if role == CLIENT:
            link = Link(
                wrapped, CLIENT, None, self._client_handlers, self.config, f"client {where}"
            )
            await link.run(decoder)
            return
        assert peer is not None
        link = Link(wrapped, NODE, peer, self._node_handlers, self.config, f"node {peer}")
        old = self.links.get(peer)
        if old is not None:
            old.close()  # it dialled again: its old connection is dead to it
        self.links[peer] = link
        log.info("node %d: link to node %d up (it dialled from %s)", self.me, peer, where)
        await link.run(decoder)
        if self.links.get(peer) is link:
            del self.links[peer]

    async def _handshake_in(
        self, stream: trio.SocketStream, decoder: FrameDecoder
    ) -> tuple[trio.abc.Stream, str, int | None]:
        wrapped: trio.abc.Stream = stream
        certified: tuple[str, int | None] | None = None
        if self._server_context is not None:
            tls = trio.SSLStream(stream, self._server_context, server_side=True)
            await tls.do_handshake()
            certified = identity_of(tls)
            wrapped = tls
        hello = await _receive_hello(wrapped, decoder)
        role, peer = hello.role, hello.node
        if hello.cluster != len(self.addresses):
            raise HandshakeError(
                f"it belongs to a cluster of {hello.cluster} nodes, not {len(self.addresses)}"
            )
        if role == NODE:
            if peer is None or not 0 <= peer < self.me:
                raise HandshakeError(
                    f"node {peer} may not dial node {self.me} (the lower id dials)"
                )
        elif role != CLIENT:
            raise HandshakeError(f"an unknown role {role!r}")
        if certified is not None and certified != (role, peer if role == NODE else None):
            raise HandshakeError(
                f"its certificate says {_who(*certified)} but it claims to be {_who(role, peer)}"
            )
        await wrapped.send_all(encode_frame(Hello(NODE, self.me, len(self.addresses))))
        return wrapped, role, peer

    async def _dial_forever(self, peer: int) -> None:
        """Keep a link to ``peer`` up (the lower id dials), backing off after failures."""
        delay = self.config.backoff_min
        host, port = self.addresses[peer]
        while True:
            decoder = FrameDecoder(self.config.max_frame)
            try:
                with trio.fail_after(HANDSHAKE_TIMEOUT):
                    stream = await self._handshake_out(host, port, peer, decoder)
            except (
                trio.TooSlowError,
                OSError,
                ssl.SSLError,
                trio.BrokenResourceError,
                HandshakeError,
                FrameError,
            ) as exc:
                log.debug(
                    "node %d: cannot reach node %d at %s:%d: %s", self.me, peer, host, port, exc
                )
            else:
                delay = self.config.backoff_min
                link = Link(stream, NODE, peer, self._node_handlers, self.config, f"node {peer}")
                self.links[peer] = link
                log.info("node %d: link to node %d up", self.me, peer)
                await link.run(decoder)
                if self.links.get(peer) is link:
                    del self.links[peer]
            # capped exponential backoff, with jitter so restarts do not synchronise
            await trio.sleep(delay * (0.5 + self._rng.random()))
            delay = min(delay * 2, self.config.backoff_max)

    async def _handshake_out(
        self, host: str, port: int, peer: int, decoder: FrameDecoder
    ) -> trio.abc.Stream:
        hello = Hello(NODE, self.me, len(self.addresses))
        return await _dial_node(host, port, peer, self._client_context, hello, decoder)


async def _dial_node(
    host: str,
    port: int,
    node: int,
    context: ssl.SSLContext | None,
    hello: Hello,
    decoder: FrameDecoder,
) -> trio.abc.Stream:
    """A connection to node ``node`` that has proved it is that node: TLS (if
    ``context``) checked against its name, then our Hello, then its own."""
    stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    try:
        if context is not None:
            tls = trio.SSLStream(stream, context, server_hostname=node_hostname(node))
            await tls.do_handshake()
            stream = tls
        await stream.send_all(encode_frame(hello))
        theirs = await _receive_hello(stream, decoder)
        if (theirs.role, theirs.node) != (NODE, node):
            raise HandshakeError(
                f"expected node {node}, it says it is {_who(theirs.role, theirs.node)}"
            )
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream


class HandshakeError(Exception):
    """The other end of a connection is not who it must be (or said nothing)."""


async def _receive_hello(stream: trio.abc.Stream, decoder: FrameDecoder) -> Hello:
    while True:
        data = await stream.receive_some(RECEIVE_BYTES)
        if not data:
            raise HandshakeError("it closed the connection before saying who it is")
        messages = decoder.feed(data)
        if messages:
            first = messages[0]
            if not isinstance(first, Hello):
                raise HandshakeError("its first frame is not a Hello")
            if len(messages) > 1:
                raise HandshakeError("it sent calls before the handshake completed")
            return first


def _who(role: str, node: int | None) -> str:
    return f"node {node}" if role == NODE else "a client"


def _remote(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "?"
    return f"{host}:{port}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, trio.TooSlowError):
        return "no handshake within 5 s"
    return str(exc) or type(exc).__name__


@asynccontextmanager
async def open_transport(
    me: int,
    addresses: Sequence[tuple[str, int]],
    config: NetConfig,
    node_handlers: Mapping[str, Handler],
    client_handlers: Mapping[str, Handler],
) -> AsyncIterator[Transport]:
    """Listen on ``addresses[me]`` and keep links to the other nodes while open."""
    transport = Transport(me, addresses, config, node_handlers, client_handlers)
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.serve)
        try:
            yield transport
        finally:
            nursery.cancel_scope.cancel()


# ---------------------------------------------------------------- clients


class ClientConnection:
    """A client's connection to one node (see :func:`connect_client`)."""

    def __init__(self, link: Link, node: int) -> None:
        self.link = link
        self.node = node

    async def call(self, method: str, args: object, reply_type: Any, timeout: float) -> Any:
        """The decoded reply; None when it was lost (connection, timeout, no reply)."""
        response = await self.link.call(method, args, timeout)
        if response is None or response.error is not None:
            return None
        return decode(response.result, reply_type, what=f"{method} reply")


@asynccontextmanager
async def connect_client(
    address: tuple[str, int], node: int, nodes: int, config: NetConfig
) -> AsyncIterator[ClientConnection]:
    """A client's connection to node ``node`` at ``address`` (TLS: it must be that node)."""
    decoder = FrameDecoder(config.max_frame)
    host, port = address
    context = None if config.tls is None else client_context(config.tls)
    with trio.fail_after(HANDSHAKE_TIMEOUT):
        stream = await _dial_node(host, port, node, context, Hello(CLIENT, None, nodes), decoder)
    link = Link(stream, NODE, node, {}, config, f"node {node} at {host}:{port}")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run, decoder)
        try:
            yield ClientConnection(link, node)
        finally:
            link.close()


__all__ = [
    "ClientConnection",
    "HandshakeError",
    "Link",
    "NetConfig",
    "TcpClientEnd",
    "Transport",
    "connect_client",
    "open_transport",
    "parse_address",
]
