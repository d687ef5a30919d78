"""A simulated network for trio: a port of MIT 6.824/6.5840's labrpc (2023).

Rules of operation (labrpc's, with its constants):

* The network holds client ends (by name), ``enabled[endname]`` (default
  false), ``connections[endname] -> servername`` and ``servers[servername]``,
  plus the flags ``reliable`` (default true), ``long_delays`` and
  ``long_reordering`` (default false).
* ``end.call(method, args)`` encodes ``args`` with :mod:`trioraft.codec` and
  hands the request to the network, which counts it (total count, and the
  request's bytes in total bytes), reads where it goes, and starts
  ``_process_req`` for it (labrpc's dispatcher goroutine, done in the caller:
  it never waits).  The caller then waits for the reply: the decoded reply,
  or ``None`` when the network lost the request or the reply, or the server
  is down.  There is no timeout in ``call`` itself: every "timeout" is
  simulated by the network.
* ``_process_req`` reads (enabled, servername, server, reliable,
  long_reordering) once, at its start.  If the end is enabled and connected to
  a live server:

  1. unreliable: sleep 0-26 ms, then drop the request with probability 10 %;
  2. dispatch: the server's count goes up, the arguments are decoded and the
     handler runs (in its own task if it is async); while it runs, every
     100 ms, check whether the server is dead (the end is now disabled, or
     the server name now maps to another server or to none); if so, stop
     waiting (the handler finishes in the background) and reply ``None``;
  3. after the handler returns, re-check that the server is alive: a killed
     server's reply is never delivered (the tester deletes a server before it
     swaps its Persister);
  4. unreliable: drop the reply with probability 10 % (the handler's side
     effects have happened);
  5. long reordering: with probability 600/900 deliver the reply after
     200 + rand(1 + rand(2000)) ms, its bytes counted at delivery;
  6. otherwise deliver the reply now and count its bytes.

  Otherwise (end disabled, not connected, or no server) reply ``None`` after
  rand 0-6999 ms with long delays on, rand 0-99 ms with them off.  A request
  sent while the end is disabled is never delivered, even if the end is
  enabled later.
* Arguments and replies always cross the network encoded, so caller and
  callee never share objects.  Bytes that do not decode to the handler's
  ``arg_type`` (or the caller's reply to ``reply_type``) are a lost RPC.
* All randomness comes from one ``random.Random(seed)`` owned by the network,
  all timing from trio's clock, so a run in virtual time is reproducible.
* ``cleanup()`` (labrpc's Cleanup) makes pending and future calls return
  ``None`` at once; leaving ``open_network``'s ``async with`` calls it and
  cancels the handlers still running.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final

import trio

from trioraft.codec import CodecError, decode, encode
from trioraft.rpc import Handler, RpcServer
from trioraft.trace.recorder import current_message_id

__all__ = ["Network", "SimClientEnd", "open_network"]

SHORTDELAY: Final = 27  # ms; unreliable: every request waits rand 0-26 ms
LONGDELAY: Final = 7000  # ms; a call on a dead connection fails after up to this, long delays on
SHORTFAIL: Final = 100  # ms; ... and after up to this with long delays off
DROP_PER_MILLE: Final = 100  # unreliable: requests and replies each lost with 100/1000
REORDER_OUT_OF: Final = 900  # long reordering: a reply is delayed with 600/900
REORDER_BELOW: Final = 600
REORDER_MIN: Final = 200  # ms; a delayed reply waits 200 + rand(1 + rand(2000)) ms
REORDER_SPREAD: Final = 2000
DEATH_POLL: Final = 0.1  # s; how often a waiting request checks whether its server died


class _Request:
    """labrpc's reqMsg plus its replyCh: one call on its way and its one-shot reply."""

    __slots__ = (
        "args",
        "endname",
        "error",
        "fate",
        "handler",
        "method",
        "replied",
        "reply",
        "reply_type",
        "trace_id",
        "waiter",
    )

    def __init__(self, endname: str, method: str, args: bytes) -> None:
        self.endname = endname
        self.method = method  # e.g. "Raft.AppendEntries"
        self.args = args
        self.reply: bytes | None = None  # None: no reply (the RPC was lost)
        self.reply_type: Any = Any
        self.error: Exception | None = None  # a programming error, raised in the caller
        self.handler: Handler | None = None  # the handler it was dispatched to
        self.replied = False  # the caller may take the reply (or its absence)
        self.waiter: trio.Event | None = None  # made only when the caller must wait
        self.trace_id: int | None = current_message_id.get()  # the sender's trace id
        self.fate = ("request", "unreachable")  # (leg, reason) if no reply comes back


class _Route:
    """Where a request goes, read once when it is dispatched (labrpc's readEndnameInfo)."""

    __slots__ = ("endname", "server", "servername")

    def __init__(self, endname: str, servername: str, server: _Server) -> None:
        self.endname = endname
        self.servername = servername
        self.server = server


_LOST: Final = object()
"""A request that gets no reply (lost, garbled, or a programming error)."""


class _Server:
    """labrpc's Server: one incarnation of a service added under a name.

    Every ``add_server`` makes a new one, so a request in flight to an older
    incarnation sees its server as dead (labrpc's ``servers[name] != server``).
    """

    __slots__ = ("count", "handlers")

    def __init__(self, handlers: Mapping[str, Handler]) -> None:
        self.handlers = handlers
        self.count = 0  # incoming RPCs dispatched to this server


class _HandlerRun:
    """The outcome of an async handler running in its own task."""

    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.result: object = None
        self.done = trio.Event()


async def _run_handler(run: _HandlerRun, pending: Awaitable[object]) -> None:
    run.result = await pending
    run.done.set()


class SimClientEnd:
    """labrpc's ClientEnd: one end-point that calls the server it is connected to.

    It is fine to have several calls in progress on one end at the same time;
    the network may deliver them in any order.
    """

    __slots__ = ("_net", "endname")

    def __init__(self, endname: str, net: Network) -> None:
        self.endname = endname  # this end-point's name
        self._net = net

    async def call(self, method: str, args: object) -> object | None:
        """Send an RPC and wait for the reply.

        Returns the decoded reply, or ``None`` if no reply was received (the
        network lost the request or the reply, or the server is down).  Raises
        ``TypeError`` if ``args`` cannot be encoded and ``ValueError`` if the
        server has no such method: both are programming errors.

        A call that is answered at once (reliable network, no long reordering,
        a synchronous handler) returns without a trip through the scheduler, as
        a local function call would; a caller that calls in a loop and may never
        otherwise wait should yield (``trio.lowlevel.checkpoint()``) itself.
        """
        req = _Request(self.endname, method, encode(args))
        if not self._net._dispatch(req):
            await trio.lowlevel.checkpoint()
            return None  # the entire network has been cleaned up
        if not req.replied:
            req.waiter = trio.Event()
            await req.waiter.wait()
        reply = req.reply
        if reply is None:
            if req.error is not None:
                raise req.error
            return None
        try:
            result: object = decode(reply, req.reply_type)
        except CodecError:
            return None
        return result


class Network:
    """labrpc's Network: ends, servers, the connections between them, and faults.

    Made by :func:`open_network`, which runs its dispatcher.
    """

    _requests: trio.Nursery  # every _process_req (cancelled by cleanup)
    _handlers: trio.Nursery  # async handlers (cancelled when open_network exits)

    def __init__(self, seed: int = 1, tracer: Any = None) -> None:
        self.tracer = tracer  # a trioraft.trace.TraceRecorder, told of every lost message
        self._rng = random.Random(seed)
        self._reliable = True
        self._long_delays = False  # pause a long time on send on a disabled connection
        self._long_reordering = False  # sometimes delay replies a long time
        self._duplicate = False  # deliver every request a second time, a little later
        self._delay_requests = False  # hold back some requests a long time
        self._ends: dict[str, SimClientEnd] = {}
        self._enabled: dict[str, bool] = {}  # by end name
        self._deaf: set[str] = set()  # ends whose requests arrive but whose replies are lost
        self._servers: dict[str, _Server] = {}  # by server name
        self._connections: dict[str, str] = {}  # end name -> server name
        self._closed = False  # cleaned up: calls return None at once
        self._count = 0  # total RPC count, for statistics
        self._bytes = 0  # total bytes sent, for statistics

    # -- configuration (labrpc's MakeEnd, AddServer, Connect, Enable, ...) --

    def make_end(self, endname: str) -> SimClientEnd:
        """Create a client end-point named ``endname`` (disabled, not connected)."""
        if endname in self._ends:
            raise ValueError(f"make_end: {endname!r} already exists; end names must be unique")
        end = SimClientEnd(endname, self)
        self._ends[endname] = end
        self._enabled[endname] = False
        self._connections.pop(endname, None)
        return end

    def add_server(self, servername: str, server: RpcServer) -> None:
        """Add (or replace) the server ``servername``; its handlers are read now."""
        self._servers[servername] = _Server(dict(server.rpc_handlers()))

    def delete_server(self, servername: str) -> None:
        """Eliminate the server ``servername``: calls into it fail, its replies are lost."""
        self._servers.pop(servername, None)

    def connect(self, endname: str, servername: str) -> None:
        """Connect a client end to a server (labrpc connects an end once in its lifetime)."""
        self._connections[endname] = servername

    def enable(self, endname: str, enabled: bool) -> None:
        """Enable or disable a client end."""
        self._enabled[endname] = enabled

    def set_replies_lost(self, endname: str, lost: bool) -> None:
        """A one-way link: requests sent through ``endname`` still arrive, but
        every reply to them is lost (the caller can send but not hear)."""
        if lost:
            self._deaf.add(endname)
        else:
            self._deaf.discard(endname)

    def set_reliable(self, yes: bool) -> None:
        """``False`` means delay requests and drop requests and replies."""
        self._reliable = yes

    def set_long_reordering(self, yes: bool) -> None:
        """``True`` means sometimes delay replies a long time (200-2200 ms)."""
        self._long_reordering = yes

    def set_duplicate(self, yes: bool) -> None:
        """``True`` means deliver every delivered request again, 1-200 ms after its reply.

        Not in labrpc.  The copy is handled by the server as a request of its
        own (the same message id in a trace: a duplicate), and its reply is
        never delivered: the caller has had its answer.
        """
        self._duplicate = yes

    def set_delay_requests(self, yes: bool) -> None:
        """``True`` means hold back half the requests 200-2200 ms before delivering them.

        Not in labrpc (whose long reordering delays replies): it makes stale
        requests arrive after newer ones, e.g. an old AppendEntries after a
        snapshot was installed.
        """
        self._delay_requests = yes

    def set_long_delays(self, yes: bool) -> None:
        """``True`` means a call on a dead connection fails after up to 7 s (else 100 ms)."""
        self._long_delays = yes

    # -- statistics --

    def get_count(self, servername: str) -> int:
        """The number of RPCs dispatched to the server now named ``servername`` (0 if none)."""
        server = self._servers.get(servername)
        return 0 if server is None else server.count

    def get_total_count(self) -> int:
        """The number of calls submitted, including lost ones and ones to dead connections."""
        return self._count

    def get_total_bytes(self) -> int:
        """Encoded bytes of every request submitted plus every reply delivered."""
        return self._bytes

    def cleanup(self) -> None:
        """Shut the network down: pending and future calls return ``None`` at once."""
        self._closed = True  # future calls return None at once
        self._requests.cancel_scope.cancel()  # every _process_req replies None

    # -- the machinery --

    async def _serve(
        self,
        handlers: trio.Nursery,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._handlers = handlers
        async with trio.open_nursery() as requests:
            self._requests = requests
            task_status.started()
            await trio.sleep_forever()  # keeps the nursery open for _process_req tasks

    def _dispatch(self, req: _Request) -> bool:
        """labrpc's dispatcher: count the request and send it on its way (False:
        the network was cleaned up).

        A request that can be answered without waiting (reliable network, no
        long reordering, a live server with a synchronous handler) is answered
        here and now: every ``_process_req`` step that could wait is skipped in
        that case anyway, so the outcome is the same, and the simulation saves
        a task and two trips through the scheduler per RPC.  Everything else
        gets its own ``_process_req`` task.
        """
        if self._closed:
            return False
        self._count += 1
        self._bytes += len(req.args)
        route = self._route(req)
        if (
            route is None
            or not self._reliable
            or self._long_reordering
            or self._duplicate
            or self._delay_requests
        ):
            self._requests.start_soon(self._process_req, req, route)
        else:
            self._serve_now(req, route)
        return True

    def _is_server_dead(self, endname: str, servername: str, server: _Server) -> bool:
        return not self._enabled.get(endname, False) or self._servers.get(servername) is not server

    def _route(self, req: _Request) -> _Route | None:
        """readEndnameInfo: where this request goes, fixed now; None if nowhere."""
        endname = req.endname
        if not self._enabled.get(endname, False):
            return None
        servername = self._connections.get(endname)
        server = None if servername is None else self._servers.get(servername)
        if servername is None or server is None:
            return None
        return _Route(endname, servername, server)

    def _execute(self, req: _Request, route: _Route) -> object:
        """labrpc's Server.dispatch: count, find the handler, decode, call it.

        Returns the handler's result (an awaitable for an async handler), or
        :data:`_LOST` when there is no reply (``req.error`` says why if it is
        a programming error).
        """
        server = route.server
        server.count += 1
        handler = server.handlers.get(req.method)
        if handler is None:
            req.error = ValueError(
                f"unknown method {req.method!r} on server {route.servername!r}; "
                f"expecting one of {sorted(server.handlers)}"
            )
            return _LOST
        req.handler = handler
        try:
            args = decode(req.args, handler.arg_type)
        except CodecError:
            req.fate = ("request", "garbled")
            return _LOST  # garbled arguments: a lost RPC
        req.fate = ("reply", "no reply")  # the handler runs; None from it means no reply
        token = current_message_id.set(req.trace_id)
        try:
            return handler.fn(args)
        finally:
            current_message_id.reset(token)

    def _reply_bytes(self, req: _Request, route: _Route, result: object) -> bytes | None:
        """The encoded reply, or None when there is none to deliver.

        Do not reply if delete_server() has been called, i.e. the server has
        been killed: a client must never get a positive reply to an Append
        that the server persisted into an old Persister.
        """
        if result is _LOST or result is None:
            return None
        if self._is_server_dead(route.endname, route.servername, route.server):
            req.fate = ("reply", "server dead")
            return None
        if route.endname in self._deaf:
            req.fate = ("reply", "one-way link")
            return None
        try:
            return encode(result)
        except TypeError as exc:
            req.error = TypeError(f"{req.method} on server {route.servername!r} replied with {exc}")
            return None

    def _deliver(self, req: _Request, route: _Route, reply: bytes) -> None:
        self._bytes += len(reply)
        assert req.handler is not None
        req.reply_type = req.handler.reply_type
        req.reply = reply
        self._finish(req)

    def _finish(self, req: _Request) -> None:
        """Wake the caller; trace the loss when there is no reply."""
        if req.replied:
            return
        req.replied = True
        if req.waiter is not None:
            req.waiter.set()
        if req.reply is None and self.tracer is not None and req.trace_id is not None:
            leg, reason = req.fate
            self.tracer.event(-1, "drop", None, id=req.trace_id, leg=leg, reason=reason)

    def _serve_now(self, req: _Request, route: _Route) -> None:
        """The fast path: nothing on it waits, so no task is needed."""
        try:
            result = self._execute(req, route)
            if inspect.isawaitable(result):
                self._requests.start_soon(self._finish_async, req, route, result)
                return
            reply = self._reply_bytes(req, route, result)
            if reply is not None:
                self._deliver(req, route, reply)
        except BaseException:
            self._finish(req)
            raise
        self._finish(req)

    async def _finish_async(self, req: _Request, route: _Route, pending: Awaitable[object]) -> None:
        """Run an async handler in its own task and deliver its reply (fast path's tail)."""
        try:
            result = await self._await_handler(req, route, pending)
            reply = self._reply_bytes(req, route, result)
            if reply is not None:
                self._deliver(req, route, reply)
        finally:
            self._finish(req)

    async def _await_handler(
        self, req: _Request, route: _Route, pending: Awaitable[object]
    ) -> object:
        """Wait for an async handler, checking every 100 ms whether its server died.

        The handler runs in its own task so that we can periodically check
        whether the server has been killed and the RPC should get a failure
        reply; if so we stop waiting (it finishes in the background).
        """
        run = _HandlerRun()
        self._handlers.start_soon(_run_handler, run, pending)
        done = run.done
        while not done.is_set():
            with trio.move_on_after(DEATH_POLL):
                await done.wait()
            if not done.is_set() and self._is_server_dead(
                route.endname, route.servername, route.server
            ):
                req.fate = ("reply", "server dead")
                return _LOST
        return run.result

    async def _process_req(self, req: _Request, route: _Route | None) -> None:
        """labrpc's processReq: decide the request's fate and deliver its reply.

        Returning without setting ``req.reply`` means "no reply"; either way
        the caller is woken when this returns.
        """
        try:
            reliable = self._reliable
            long_reordering = self._long_reordering
            duplicate = self._duplicate
            delay_requests = self._delay_requests
            rng = self._rng

            if route is None:
                # Simulate no reply and eventual timeout.  Long delays let Raft tests
                # check that the leader doesn't send RPCs synchronously; short ones
                # suit kv tests, whose clients try each server in rapid succession.
                ms = rng.randrange(LONGDELAY if self._long_delays else SHORTFAIL)
                await trio.sleep(ms / 1000)
                return

            if not reliable:
                await trio.sleep(rng.randrange(SHORTDELAY) / 1000)  # short delay
                if rng.randrange(1000) < DROP_PER_MILLE:
                    req.fate = ("request", "lost")
                    return  # drop the request, return as if timeout
            if delay_requests and rng.randrange(2):
                await trio.sleep(_long_delay(rng) / 1000)
                if self._is_server_dead(route.endname, route.servername, route.server):
                    return  # the link went down meanwhile: lost

            result = self._execute(req, route)
            if inspect.isawaitable(result):
                result = await self._await_handler(req, route, result)
            reply = self._reply_bytes(req, route, result)
            if reply is None:
                return
            if not reliable and rng.randrange(1000) < DROP_PER_MILLE:
                req.fate = ("reply", "lost")
                return  # drop the reply, return as if timeout
            if long_reordering and rng.randrange(REORDER_OUT_OF) < REORDER_BELOW:
                # delay the response for a while
                req.fate = ("reply", "network closed")  # if cleanup() cuts the delay short
                await trio.sleep(_long_delay(rng) / 1000)
            self._deliver(req, route, reply)
            if duplicate:
                self._requests.start_soon(self._deliver_again, req, route)
        finally:
            # Wakes the caller; with no reply set it sees a lost RPC.  This also covers
            # cleanup() cancelling us mid-sleep, and a handler that raised.
            self._finish(req)

    async def _deliver_again(self, req: _Request, route: _Route) -> None:
        """A duplicate of a request already answered: handled again, its reply lost.

        It comes after the caller has its answer (at least 1 ms later, so in
        virtual time the caller has run), as a copy the network kept would.
        """
        await trio.sleep((1 + self._rng.randrange(200)) / 1000)
        if self._is_server_dead(route.endname, route.servername, route.server):
            return
        copy = _Request(req.endname, req.method, req.args)
        copy.trace_id = req.trace_id
        result = self._execute(copy, route)
        if inspect.isawaitable(result):
            await self._await_handler(copy, route, result)


def _long_delay(rng: random.Random) -> int:
    """labrpc's long reordering delay in ms: 200 + rand(1 + rand(2000))."""
    return REORDER_MIN + rng.randrange(1 + rng.randrange(REORDER_SPREAD))


@asynccontextmanager
async def open_network(seed: int = 1, tracer: Any = None) -> AsyncIterator[Network]:
    """Run a :class:`Network` whose every random choice comes from ``seed``.

    On exit the network is cleaned up (pending calls return ``None``) and the
    handlers still running are cancelled.  A single exception from the body or
    from a handler propagates as itself, not wrapped in an exception group.
    """
    try:
        async with trio.open_nursery() as nursery:
            net = Network(seed, tracer)
            await nursery.start(net._serve, nursery)
            try:
                yield net
            finally:
                net.cleanup()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        sole = _sole_exception(group)
        if sole is None:
            raise
        raise sole from None


def _sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one exception inside ``group`` (however deeply nested), or ``None`` if several."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc
