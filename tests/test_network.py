"""The simulated network: labrpc's own tests (src/labrpc/test_test.go), ported, and more.

The first ten tests are TestBasic ... TestKilled with labrpc's constants and
assertions (Go's int server names become strings; Go's ``Call`` returning
``false`` is our ``call`` returning ``None``).  The rest check the parts of
labrpc's semantics its own tests leave out: long delays, long reordering, a
killed server's late reply, garbled bytes, cleanup, and seeded determinism.

Every async test runs in virtual time (see conftest.py), so the 20 s handler
and the 7 s delays cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import pytest
import trio
import trio.testing

from trioraft import codec
from trioraft.determinism import seed_scheduler
from trioraft.rpc import ClientEnd, Handler, RpcServer
from trioraft.sim import Network, SimClientEnd, open_network

# Virtual time is exact; on the real clock (--real-clock) scheduling takes time.
EPSILON = 1e-9


class JunkArgs(msgspec.Struct):
    x: int = 0


class JunkReply(msgspec.Struct):
    x: str = ""


@dataclass
class PlainArgs:
    x: int = 0


@dataclass
class PlainReply:
    x: str = ""


class JunkServer:
    """labrpc's JunkServer, handler for handler."""

    def __init__(self) -> None:
        self.log1: list[str] = []
        self.log2: list[int] = []
        self.seen: list[object] = []

    def handler1(self, args: str) -> int:
        self.log1.append(args)
        try:
            return int(args)
        except ValueError:
            return 0  # strconv.Atoi's error is ignored: the reply stays 0

    def handler2(self, args: int) -> str:
        self.log2.append(args)
        return f"handler2-{args}"

    async def handler3(self, args: int) -> int:
        await trio.sleep(20)
        return -args

    def handler4(self, args: JunkArgs) -> JunkReply:
        self.seen.append(args)
        return JunkReply("pointer")

    def handler5(self, args: PlainArgs) -> PlainReply:
        self.seen.append(args)
        return PlainReply("no pointer")

    def handler6(self, args: str) -> int:
        return len(args)

    def handler7(self, args: int) -> str:
        return "y" * args

    def rpc_handlers(self) -> dict[str, Handler]:
        return {
            "JunkServer.Handler1": Handler(self.handler1, arg_type=str, reply_type=int),
            "JunkServer.Handler2": Handler(self.handler2, arg_type=int, reply_type=str),
            "JunkServer.Handler3": Handler(self.handler3, arg_type=int, reply_type=int),
            "JunkServer.Handler4": Handler(self.handler4, arg_type=JunkArgs, reply_type=JunkReply),
            "JunkServer.Handler5": Handler(
                self.handler5, arg_type=PlainArgs, reply_type=PlainReply
            ),
            "JunkServer.Handler6": Handler(self.handler6, arg_type=str, reply_type=int),
            "JunkServer.Handler7": Handler(self.handler7, arg_type=int, reply_type=str),
        }


def connected_end(
    net: Network, endname: str = "end1-99", servername: str = "server99"
) -> tuple[SimClientEnd, JunkServer]:
    """A JunkServer added as ``servername`` and an enabled end connected to it."""
    js = JunkServer()
    net.add_server(servername, js)
    end = net.make_end(endname)
    net.connect(endname, servername)
    net.enable(endname, True)
    return end, js


# -- labrpc's test_test.go ------------------------------------------------------------


@pytest.mark.real_clock_ok
async def test_basic(seed: int) -> None:
    async with open_network(seed=seed) as net:
        end, js = connected_end(net)
        assert isinstance(end, ClientEnd)
        assert isinstance(js, RpcServer)

        assert await end.call("JunkServer.Handler2", 111) == "handler2-111"
        assert await end.call("JunkServer.Handler1", "9099") == 9099
        assert js.log1 == ["9099"]
        assert js.log2 == [111]


@pytest.mark.real_clock_ok
async def test_types(seed: int) -> None:
    # Go: args must match the handler's type, pointer or not.  Here: a msgspec
    # Struct and a dataclass both cross the network, as values, not objects.
    async with open_network(seed=seed) as net:
        end, js = connected_end(net)

        args = JunkArgs()
        reply = await end.call("JunkServer.Handler4", args)
        assert isinstance(reply, JunkReply)
        assert reply.x == "pointer"

        plain = PlainArgs()
        reply = await end.call("JunkServer.Handler5", plain)
        assert isinstance(reply, PlainReply)
        assert reply.x == "no pointer"

        assert js.seen == [args, plain]
        assert js.seen[0] is not args and js.seen[1] is not plain


@pytest.mark.real_clock_ok
async def test_disconnect(seed: int) -> None:
    # does net.enable(endname, False) really disconnect a client?
    async with open_network(seed=seed) as net:
        js = JunkServer()
        net.add_server("server99", js)
        end = net.make_end("end1-99")
        net.connect("end1-99", "server99")

        assert await end.call("JunkServer.Handler2", 111) is None
        assert js.log2 == []
        assert net.get_count("server99") == 0

        net.enable("end1-99", True)
        assert await end.call("JunkServer.Handler1", "9099") == 9099


@pytest.mark.real_clock_ok
async def test_counts(seed: int) -> None:
    async with open_network(seed=seed) as net:
        end, _ = connected_end(net, servername="99")
        for i in range(17):
            assert await end.call("JunkServer.Handler2", i) == f"handler2-{i}"
        assert net.get_count("99") == 17
        assert net.get_total_count() == 17


@pytest.mark.real_clock_ok
async def test_bytes(seed: int) -> None:
    # labrpc's bounds hold for our msgpack encoding too, and we keep them:
    # - 17 requests of a 284-char string: the payload alone is 17*284 = 4828
    #   (the lower bound); msgpack adds a 3-byte str16 header and the int reply
    #   284 takes 3 bytes, so 17*(287+3) = 4930; labrpc's upper bound 6000
    #   allows ~69 bytes of overhead per call.
    # - 17 requests of the int 107 (1 byte) with 107-char replies (2-byte str8
    #   header): payload 17*107 = 1819, ours 17*110 = 1870, within [1800, 2500].
    # The exact-size assertions say the count is request bytes + reply bytes.
    async with open_network(seed=seed) as net:
        end, _ = connected_end(net, servername="99")

        args = "x" * 71
        args = args + args
        args = args + args
        for _ in range(17):
            assert await end.call("JunkServer.Handler6", args) == len(args)
        n = net.get_total_bytes()
        assert 4828 <= n <= 6000, f"wrong get_total_bytes() {n}, expected about 5000"
        assert n == 17 * (len(codec.encode(args)) + len(codec.encode(len(args))))

        for _ in range(17):
            reply = await end.call("JunkServer.Handler7", 107)
            assert isinstance(reply, str) and len(reply) == 107
        nn = net.get_total_bytes() - n
        assert 1800 <= nn <= 2500, f"wrong get_total_bytes() {nn}, expected about 2000"
        assert nn == 17 * (len(codec.encode(107)) + len(codec.encode("y" * 107)))


@pytest.mark.real_clock_ok
async def test_concurrent_many(seed: int) -> None:
    # RPCs from concurrent client ends
    nclients, nrpcs = 20, 10
    completed: list[int] = []
    async with open_network(seed=seed) as net:
        net.add_server("1000", JunkServer())

        async def client(i: int) -> None:
            n = 0
            end = net.make_end(str(i))
            net.connect(str(i), "1000")
            net.enable(str(i), True)
            for j in range(nrpcs):
                arg = i * 100 + j
                assert await end.call("JunkServer.Handler2", arg) == f"handler2-{arg}"
                n += 1
            completed.append(n)

        async with trio.open_nursery() as nursery:
            for i in range(nclients):
                nursery.start_soon(client, i)

        total = sum(completed)
        assert total == nclients * nrpcs
        assert net.get_count("1000") == total


@pytest.mark.real_clock_ok
async def test_unreliable(seed: int) -> None:
    nclients = 300
    successes: list[int] = []
    async with open_network(seed=seed) as net:
        net.set_reliable(False)
        net.add_server("1000", JunkServer())

        async def client(i: int) -> None:
            end = net.make_end(str(i))
            net.connect(str(i), "1000")
            net.enable(str(i), True)
            arg = i * 100
            reply = await end.call("JunkServer.Handler2", arg)
            if reply is not None:
                assert reply == f"handler2-{arg}"
                successes.append(i)

        async with trio.open_nursery() as nursery:
            for i in range(nclients):
                nursery.start_soon(client, i)

        total = len(successes)
        assert 0 < total < nclients, f"{total} of {nclients} RPCs succeeded despite unreliable"
        assert net.get_total_count() == nclients
        # Requests lost before dispatch are not counted by the server.
        assert total <= net.get_count("1000") < nclients


@pytest.mark.real_clock_ok
async def test_concurrent_one(seed: int) -> None:
    # concurrent RPCs from a single client end
    nrpcs = 20
    completed: list[int] = []
    async with open_network(seed=seed) as net:
        end, js = connected_end(net, endname="c", servername="1000")

        async def one(i: int) -> None:
            arg = 100 + i
            assert await end.call("JunkServer.Handler2", arg) == f"handler2-{arg}"
            completed.append(1)

        async with trio.open_nursery() as nursery:
            for i in range(nrpcs):
                nursery.start_soon(one, i)

        assert len(completed) == nrpcs
        assert sorted(js.log2) == [100 + i for i in range(nrpcs)]
        assert net.get_count("1000") == nrpcs


@pytest.mark.real_clock_ok
async def test_regression1(seed: int) -> None:
    # regression: an RPC that's delayed during enabled=False should not delay
    # subsequent RPCs (e.g. after enabled=True).
    nrpcs = 20
    late: list[object] = []
    async with open_network(seed=seed) as net:
        js = JunkServer()
        net.add_server("1000", js)
        end = net.make_end("c")
        net.connect("c", "1000")

        async with trio.open_nursery() as nursery:
            # start some RPCs while the client end is disabled; they'll be delayed.
            net.enable("c", False)

            async def disabled_call(i: int) -> None:
                late.append(await end.call("JunkServer.Handler2", 100 + i))

            for i in range(nrpcs):
                nursery.start_soon(disabled_call, i)

            await trio.sleep(0.1)

            # now enable the client end and check that an RPC completes quickly.
            t0 = trio.current_time()
            net.enable("c", True)
            assert await end.call("JunkServer.Handler2", 99) == "handler2-99"
            dur = trio.current_time() - t0
            assert dur <= 0.03, f"RPC took too long ({dur}) after enable"

        assert late == [None] * nrpcs  # these calls ought to fail
        assert js.log2 == [99], f"wrong RPCs delivered {js.log2}, expected only 99"
        assert net.get_count("1000") == 1


@pytest.mark.real_clock_ok
async def test_killed(seed: int, real_clock: bool) -> None:
    # if an RPC is stuck in a server, and the server is killed with
    # delete_server(), does the RPC get un-stuck?
    results: list[object] = []
    done = trio.Event()
    async with open_network(seed=seed) as net, trio.open_nursery() as nursery:
        end, _ = connected_end(net)

        async def caller() -> None:
            results.append(await end.call("JunkServer.Handler3", 99))
            done.set()

        nursery.start_soon(caller)
        await trio.sleep(1.0)
        with trio.move_on_after(0.1):
            await done.wait()
        assert not done.is_set(), "Handler3 should not have returned yet"

        net.delete_server("server99")
        t0 = trio.current_time()
        await done.wait()
        elapsed = trio.current_time() - t0
        assert results == [None], "Handler3 returned successfully despite delete_server()"
        slack = 0.02 if real_clock else EPSILON
        assert elapsed <= 0.1 + slack, f"Handler3 returned {elapsed}s after delete_server()"


# -- the rest of labrpc's semantics ---------------------------------------------------


class SlowServer:
    """A service whose handler takes ``args`` ms, and one that kills its own server."""

    def __init__(self, net: Network, name: str) -> None:
        self.net = net
        self.name = name
        self.finished: list[int] = []

    async def slow(self, ms: int) -> int:
        await trio.sleep(ms / 1000)
        self.finished.append(ms)
        return ms

    def suicide(self, args: int) -> int:
        self.net.delete_server(self.name)
        self.finished.append(args)
        return args

    def rpc_handlers(self) -> dict[str, Handler]:
        return {
            "Slow.Slow": Handler(self.slow, arg_type=int, reply_type=int),
            "Slow.Suicide": Handler(self.suicide, arg_type=int, reply_type=int),
        }


@pytest.mark.virtual_time_only
async def test_deleted_servers_reply_is_never_delivered(seed: int) -> None:
    async with open_network(seed=seed) as net, trio.open_nursery() as nursery:
        svc = SlowServer(net, "s")
        net.add_server("s", svc)
        end = net.make_end("e")
        net.connect("e", "s")
        net.enable("e", True)
        assert await end.call("Slow.Slow", 50) == 50

        # Deleted while the handler runs, before the first 100 ms check: the
        # handler finishes, the re-check after it suppresses the reply.
        results: list[object] = []
        bytes_before = net.get_total_bytes()

        async def call_slow() -> None:
            results.append(await end.call("Slow.Slow", 50))

        t0 = trio.current_time()
        nursery.start_soon(call_slow)
        await trio.sleep(0.01)
        net.delete_server("s")
        while not results:
            await trio.sleep(0.001)
        assert results == [None]
        assert svc.finished == [50, 50]  # the side effects happened
        assert trio.current_time() - t0 == pytest.approx(0.05)  # at the handler's end
        assert net.get_total_bytes() - bytes_before == len(codec.encode(50))  # request only

        # A sync handler that kills its own server: the same re-check.
        net.add_server("s", svc)
        assert await end.call("Slow.Suicide", 7) is None
        assert svc.finished[-1] == 7
        assert await end.call("Slow.Slow", 1) is None  # it stays dead
        assert net.get_count("s") == 0

        # A new incarnation under the same name: the old one's reply is lost,
        # the new one answers.
        net.add_server("s", svc)
        results.clear()
        nursery.start_soon(call_slow)
        await trio.sleep(0.01)
        net.add_server("s", svc)
        assert await end.call("Slow.Slow", 5) == 5
        while not results:
            await trio.sleep(0.001)
        assert results == [None]

        # The end disabled mid-call: no reply either.
        results.clear()
        nursery.start_soon(call_slow)
        await trio.sleep(0.01)
        net.enable("e", False)
        while not results:
            await trio.sleep(0.001)
        assert results == [None]


@pytest.mark.virtual_time_only
@pytest.mark.parametrize("offset", [0.01, 0.05, 0.09])
async def test_death_is_noticed_at_the_next_100ms_check(seed: int, offset: float) -> None:
    """test_killed deletes the server exactly on a check; labrpc checks every
    100 ms from the handler's start, so whatever the phase the call fails at
    the next multiple of 100 ms."""
    results: list[object] = []
    async with open_network(seed=seed) as net, trio.open_nursery() as nursery:
        end, _ = connected_end(net)

        async def caller() -> None:
            results.append(await end.call("JunkServer.Handler3", 99))

        t0 = trio.current_time()
        nursery.start_soon(caller)
        await trio.sleep(1.0 + offset)
        net.delete_server("server99")
        while not results:
            await trio.sleep(0.001)
        assert results == [None]
        assert trio.current_time() - t0 == pytest.approx(1.1, abs=0.001)


@pytest.mark.virtual_time_only
async def test_long_delays(seed: int) -> None:
    """A call on a disabled end, an unconnected end or to a missing server fails
    after 0-6999 ms with long delays on and 0-99 ms with them off (the default)."""

    async def fail_times(net: Network, ends: list[SimClientEnd]) -> list[float]:
        times: list[float] = []

        async def timed(end: SimClientEnd) -> None:
            t0 = trio.current_time()
            assert await end.call("JunkServer.Handler2", 1) is None
            times.append(trio.current_time() - t0)

        async with trio.open_nursery() as nursery:
            for _ in range(40):
                for end in ends:
                    nursery.start_soon(timed, end)
        return times

    async with open_network(seed=seed) as net:
        js = JunkServer()
        net.add_server("s", js)
        disabled = net.make_end("disabled")
        net.connect("disabled", "s")
        unconnected = net.make_end("unconnected")
        net.enable("unconnected", True)
        nowhere = net.make_end("nowhere")
        net.connect("nowhere", "missing")
        net.enable("nowhere", True)
        ends = [disabled, unconnected, nowhere]

        short = await fail_times(net, ends)
        assert len(short) == 120
        assert max(short) < 0.1

        net.set_long_delays(True)
        long = await fail_times(net, ends)
        assert max(long) < 7.0
        assert max(long) > 1.0  # 120 uniform draws in [0, 7): surely one above 1 s
        assert sum(long) / len(long) > 1.0

        net.set_long_delays(False)
        assert max(await fail_times(net, ends)) < 0.1

        assert js.log2 == []
        assert net.get_count("s") == 0
        assert net.get_total_count() == 360  # failed calls are counted too
        assert net.get_total_bytes() == 360 * len(codec.encode(1))


@pytest.mark.virtual_time_only
async def test_long_reordering(seed: int) -> None:
    """With long reordering 2/3 of replies arrive after 200-2200 ms, their
    bytes counted only at delivery; concurrent calls come back out of order."""
    async with open_network(seed=seed) as net, trio.open_nursery() as nursery:
        end, _ = connected_end(net)
        net.set_long_reordering(True)

        durations: list[float] = []
        for i in range(150):
            t0 = trio.current_time()
            assert await end.call("JunkServer.Handler2", i) == f"handler2-{i}"
            durations.append(trio.current_time() - t0)
        delayed = [d for d in durations if d > 0]
        # 200 + rand(1 + rand(2000)) ms: 200..2199 ms (up to float rounding)
        assert all(0.2 - 1e-6 < d < 2.2 for d in delayed), delayed
        assert 70 <= len(delayed) <= 130  # about 100 = 2/3 of 150

        # Bytes: a delayed reply counts only when it is delivered.
        request, reply = len(codec.encode(7)), len(codec.encode("handler2-7"))
        checked = False
        while not checked:
            results: list[object] = []

            async def call(results: list[object] = results) -> None:
                results.append(await end.call("JunkServer.Handler2", 7))

            before = net.get_total_bytes()
            nursery.start_soon(call)
            await trio.sleep(0.1)
            if not results:
                assert net.get_total_bytes() - before == request
                checked = True
            while not results:
                await trio.sleep(0.01)
            assert results == ["handler2-7"]
            assert net.get_total_bytes() - before == request + reply

        # Reordering: replies to concurrent calls overtake each other.
        order: list[int] = []

        async def numbered(i: int) -> None:
            assert await end.call("JunkServer.Handler2", i) == f"handler2-{i}"
            order.append(i)

        async with trio.open_nursery() as inner:
            for i in range(20):
                inner.start_soon(numbered, i)
                await trio.sleep(0.001)
        assert sorted(order) == list(range(20))
        assert order != sorted(order)


class TypedServer:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def incr(self, args: int) -> int:
        self.calls.append(args)
        return args + 1

    def bad_reply(self, args: int) -> str:
        self.calls.append(args)
        return "not an int"

    def unencodable(self, args: int) -> object:
        return object()

    def mutate(self, args: list[int]) -> list[int]:
        args.append(99)
        self.kept = args
        return args

    def rpc_handlers(self) -> dict[str, Handler]:
        return {
            "Typed.Incr": Handler(self.incr, arg_type=int, reply_type=int),
            "Typed.BadReply": Handler(self.bad_reply, arg_type=int, reply_type=int),
            "Typed.Unencodable": Handler(self.unencodable, arg_type=int),
            "Typed.Mutate": Handler(self.mutate, arg_type=list[int], reply_type=list[int]),
        }


async def test_garbled_bytes_are_a_lost_rpc(seed: int) -> None:
    async with open_network(seed=seed) as net:
        svc = TypedServer()
        net.add_server("s", svc)
        end = net.make_end("e")
        net.connect("e", "s")
        net.enable("e", True)

        # Arguments that do not decode as arg_type: dispatched, lost, handler not run.
        assert await end.call("Typed.Incr", "seven") is None
        assert svc.calls == []
        assert net.get_count("s") == 1
        # A reply that does not decode as reply_type: the handler ran, the reply is lost.
        assert await end.call("Typed.BadReply", 1) is None
        assert svc.calls == [1]
        # The server keeps working.
        assert await end.call("Typed.Incr", 7) == 8
        assert net.get_count("s") == 3


async def test_programming_errors_raise_in_the_caller(seed: int) -> None:
    async with open_network(seed=seed) as net:
        svc = TypedServer()
        net.add_server("s", svc)
        end = net.make_end("e")
        net.connect("e", "s")
        net.enable("e", True)

        with pytest.raises(TypeError, match="cannot encode object"):
            await end.call("Typed.Incr", object())
        assert net.get_total_count() == 0  # never sent

        with pytest.raises(ValueError, match=r"'Typed.Nope'.*'s'.*Typed\.Incr"):
            await end.call("Typed.Nope", 1)

        with pytest.raises(TypeError, match=r"Typed\.Unencodable"):
            await end.call("Typed.Unencodable", 1)

        assert await end.call("Typed.Incr", 1) == 2  # nothing broke


async def test_caller_and_callee_share_no_objects(seed: int) -> None:
    async with open_network(seed=seed) as net:
        svc = TypedServer()
        net.add_server("s", svc)
        end = net.make_end("e")
        net.connect("e", "s")
        net.enable("e", True)

        args = [1, 2]
        reply = await end.call("Typed.Mutate", args)
        assert args == [1, 2]
        assert reply == [1, 2, 99]
        assert reply is not svc.kept


@pytest.mark.virtual_time_only
async def test_cleanup_fails_pending_and_future_calls(seed: int) -> None:
    results: dict[str, object] = {}
    async with open_network(seed=seed) as net, trio.open_nursery() as nursery:
        end, _ = connected_end(net)
        disabled = net.make_end("disabled")
        net.connect("disabled", "server99")
        net.set_long_delays(True)

        all_failed = trio.Event()

        async def call(name: str, end: SimClientEnd, method: str) -> None:
            results[name] = await end.call(method, 5)
            if len(results) == 6:
                all_failed.set()

        nursery.start_soon(call, "stuck", end, "JunkServer.Handler3")  # 20 s handler
        for i in range(5):
            nursery.start_soon(call, f"disabled{i}", disabled, "JunkServer.Handler2")
        await trio.sleep(0.001)
        assert results == {}

        t0 = trio.current_time()
        net.cleanup()
        with trio.fail_after(1):
            await all_failed.wait()
        assert trio.current_time() == t0  # promptly
        assert set(results.values()) == {None}

        count = net.get_total_count()
        assert await end.call("JunkServer.Handler2", 1) is None
        assert trio.current_time() == t0
        assert net.get_total_count() == count  # never sent
        net.cleanup()  # idempotent


async def test_names() -> None:
    async with open_network() as net:
        net.make_end("e")
        with pytest.raises(ValueError, match="already exists"):
            net.make_end("e")
        assert net.get_count("never-added") == 0
        net.delete_server("never-added")  # a no-op
        net.add_server("s", JunkServer())
        net.delete_server("s")
        assert net.get_count("s") == 0


async def test_errors_in_the_body_are_not_wrapped() -> None:
    with pytest.raises(KeyError):
        async with open_network():
            raise KeyError("x")


class FaultyServer:
    def broken(self, args: int) -> int:
        raise RuntimeError(f"sync handler bug {args}")

    async def broken_later(self, args: int) -> int:
        await trio.sleep(0.01)
        raise RuntimeError(f"async handler bug {args}")

    def rpc_handlers(self) -> dict[str, Handler]:
        return {
            "Faulty.Broken": Handler(self.broken, arg_type=int),
            "Faulty.BrokenLater": Handler(self.broken_later, arg_type=int),
        }


@pytest.mark.parametrize("method", ["Faulty.Broken", "Faulty.BrokenLater"])
async def test_a_failing_handler_brings_the_network_down(seed: int, method: str) -> None:
    # labrpc: a panicking handler crashes the test process.  Here the
    # exception leaves open_network's block, as itself.
    with pytest.raises(RuntimeError, match="handler bug 3"):
        async with open_network(seed=seed) as net:
            net.add_server("s", FaultyServer())
            end = net.make_end("e")
            net.connect("e", "s")
            net.enable("e", True)
            await end.call(method, 3)
            await trio.sleep(1)
            pytest.fail("the network kept running")


def _unreliable_run(seed: int) -> list[tuple[float, int, object]]:
    """One fresh trio run of an unreliable, reordering workload: (time, arg, reply)."""

    async def main() -> list[tuple[float, int, object]]:
        events: list[tuple[float, int, object]] = []
        async with open_network(seed=seed) as net:
            net.set_reliable(False)
            net.set_long_reordering(True)
            net.add_server("s", JunkServer())

            async def client(i: int) -> None:
                end = net.make_end(f"c{i}")
                net.connect(f"c{i}", "s")
                net.enable(f"c{i}", True)
                for j in range(5):
                    reply = await end.call("JunkServer.Handler2", i * 10 + j)
                    events.append((trio.current_time(), i * 10 + j, reply))

            async with trio.open_nursery() as nursery:
                for i in range(20):
                    nursery.start_soon(client, i)
        return events

    seed_scheduler(seed)
    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_same_seed_same_run() -> None:
    first = _unreliable_run(7)
    assert len(first) == 100
    replies = [reply for _, _, reply in first]
    assert None in replies and any(r is not None for r in replies)
    assert _unreliable_run(7) == first
    assert _unreliable_run(8) != first


@pytest.mark.virtual_time_only
async def test_duplicate_delivers_every_request_again_and_drops_its_reply(seed: int) -> None:
    async with open_network(seed=seed) as net:
        end, js = connected_end(net)
        net.set_duplicate(True)
        assert await end.call("JunkServer.Handler2", 7) == "handler2-7"  # one reply
        assert js.log2 == [7]
        await trio.sleep(0.25)  # the copy comes 1-200 ms after the reply
        assert js.log2 == [7, 7]
        net.set_duplicate(False)
        await end.call("JunkServer.Handler2", 8)
        await trio.sleep(0.25)
        assert js.log2 == [7, 7, 8]


@pytest.mark.virtual_time_only
async def test_delayed_requests_arrive_late_and_out_of_order(seed: int) -> None:
    async with open_network(seed=seed) as net:
        end, js = connected_end(net)
        net.set_delay_requests(True)
        took: list[float] = []

        async def call(k: int) -> None:
            t0 = trio.current_time()
            await end.call("JunkServer.Handler2", k)
            took.append(trio.current_time() - t0)

        async with trio.open_nursery() as nursery:
            for k in range(40):
                nursery.start_soon(call, k)
        assert sum(1 for t in took if t >= 0.2) >= 10  # about half held back 200-2200 ms
        assert sum(1 for t in took if t == 0) >= 10
        assert js.log2 != sorted(js.log2)  # late ones overtaken by later ones


@pytest.mark.real_clock_ok
async def test_replies_lost_delivers_requests_but_never_their_replies(seed: int) -> None:
    # A one-way link (set_replies_lost): the caller can send but not hear.
    async with open_network(seed=seed) as net:
        end, js = connected_end(net)
        net.set_replies_lost("end1-99", True)
        assert await end.call("JunkServer.Handler2", 5) is None
        assert js.log2 == [5], "the request arrived"
        net.set_replies_lost("end1-99", False)
        assert await end.call("JunkServer.Handler2", 6) == "handler2-6"
        assert js.log2 == [5, 6]
