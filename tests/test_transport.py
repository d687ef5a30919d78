"""The TCP transport on 127.0.0.1: links, calls, identities, bad frames.

These run on the real clock (each test calls ``trio.run`` itself): they use
real sockets and TLS handshakes.  Every wait is bounded with ``fail_after``.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

from trioraft.net.frames import (
    FrameDecoder,
    FrameError,
    Hello,
    Request,
    Response,
    encode_frame,
    encode_value,
)
from trioraft.net.tls import TLSFiles, node_hostname
from trioraft.net.transport import (
    HandshakeError,
    NetConfig,
    connect_client,
    open_transport,
)
from trioraft.rpc import Handler

CLIENT = "client.trioraft"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_files(ca: trustme.CA, directory: Path, name: str) -> TLSFiles:
    directory.mkdir(exist_ok=True)
    cert = ca.issue_cert(name)
    paths = directory / f"{name}.pem", directory / f"{name}.key", directory / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(paths[0]))
    cert.private_key_pem.write_to_path(str(paths[1]))
    ca.cert_pem.write_to_path(str(paths[2]))
    return TLSFiles(ca=paths[2], cert=paths[0], key=paths[1])


def echo_handlers(me: int, seen: list[tuple[int, object]]) -> dict[str, Handler]:
    def echo(args: Any) -> Any:
        seen.append((me, args))
        return {"from": me, "got": args}

    async def slow(args: Any) -> Any:
        await trio.sleep(0.05)
        return {"slow from": me}

    return {"Test.Echo": Handler(echo), "Test.Slow": Handler(slow)}


def run(main: Callable[[], Any]) -> None:
    trio.run(main)  # the real clock: real sockets


def configs(ca: trustme.CA, tmp_path: Path, n: int) -> list[NetConfig]:
    return [
        NetConfig(tls=tls_files(ca, tmp_path / f"n{i}", node_hostname(i)), rpc_timeout=2.0)
        for i in range(n)
    ]


def test_nodes_call_each_other_over_one_tls_link_each_way(ca: trustme.CA, tmp_path: Path) -> None:
    addresses = [("127.0.0.1", free_port()) for _ in range(3)]
    cfgs = configs(ca, tmp_path, 3)
    seen: list[tuple[int, object]] = []

    async def main() -> None:
        async with (
            open_transport(0, addresses, cfgs[0], echo_handlers(0, seen), {}) as t0,
            open_transport(1, addresses, cfgs[1], echo_handlers(1, seen), {}) as t1,
            open_transport(2, addresses, cfgs[2], echo_handlers(2, seen), {}) as t2,
        ):
            transports = [t0, t1, t2]
            with trio.fail_after(10):
                while any(len(t.links) < 2 for t in transports):
                    await trio.sleep(0.01)
            for i, t in enumerate(transports):
                for j in range(3):
                    if i != j:
                        reply = await t.end(j).call("Test.Echo", [i, j])
                        assert reply == {"from": j, "got": [i, j]}
                assert await t.end((i + 1) % 3).call("Test.Slow", None) == {
                    "slow from": (i + 1) % 3
                }
            # one connection per pair, both directions on it
            assert t0.links[1] is not None and t1.links[0] is not None
            assert t0.links[1].stream is not t1.links[0].stream
            assert {(i, tuple(args)) for i, args in seen} == {  # type: ignore[arg-type]
                (j, (i, j)) for i in range(3) for j in range(3) if i != j
            }

    run(main)


def test_a_call_without_a_link_or_to_an_unknown_method_is_lost(
    ca: trustme.CA, tmp_path: Path
) -> None:
    addresses = [("127.0.0.1", free_port()) for _ in range(2)]
    cfgs = configs(ca, tmp_path, 2)

    async def main() -> None:
        async with open_transport(0, addresses, cfgs[0], echo_handlers(0, []), {}) as t0:
            with trio.fail_after(1):
                assert await t0.end(1).call("Test.Echo", 1) is None  # node 1 is down
            async with open_transport(1, addresses, cfgs[1], echo_handlers(1, []), {}):
                with trio.fail_after(10):
                    while 1 not in t0.links:
                        await trio.sleep(0.01)
                with trio.fail_after(3):
                    assert await t0.end(1).call("Nope.Nothing", 1) is None

    run(main)


def test_a_dialler_reconnects_after_its_peer_restarts(ca: trustme.CA, tmp_path: Path) -> None:
    addresses = [("127.0.0.1", free_port()) for _ in range(2)]
    cfgs = configs(ca, tmp_path, 2)

    async def main() -> None:
        async with open_transport(0, addresses, cfgs[0], echo_handlers(0, []), {}) as t0:
            for round_ in range(2):
                async with open_transport(1, addresses, cfgs[1], echo_handlers(1, []), {}):
                    with trio.fail_after(10):
                        while True:
                            reply = await t0.end(1).call("Test.Echo", round_)
                            if reply is not None:
                                break
                            await trio.sleep(0.02)
                    assert reply == {"from": 1, "got": round_}

    run(main)


def test_clients_call_client_handlers_and_nothing_else(ca: trustme.CA, tmp_path: Path) -> None:
    addresses = [("127.0.0.1", free_port())]
    node = configs(ca, tmp_path, 1)[0]
    client = NetConfig(tls=tls_files(ca, tmp_path / "c", CLIENT))

    def get(args: Any) -> Any:
        return {"value": args["key"] * 2}

    async def main() -> None:
        handlers = {"KV.Get": Handler(get)}
        async with (
            open_transport(0, addresses, node, echo_handlers(0, []), handlers),
            connect_client(addresses[0], 0, 1, client) as conn,
        ):
            assert await conn.call("KV.Get", {"key": "ab"}, Any, 2) == {"value": "abab"}
            assert await conn.call("Test.Echo", 1, Any, 2) is None, "node methods refused"

    run(main)


def test_strangers_are_refused_and_the_cluster_does_not_notice(
    ca: trustme.CA, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    addresses = [("127.0.0.1", free_port()) for _ in range(2)]
    cfgs = configs(ca, tmp_path, 2)
    other_ca = trustme.CA()
    client_files = tls_files(ca, tmp_path / "c", CLIENT)
    stranger_files = tls_files(other_ca, tmp_path / "x", node_hostname(0))

    async def main() -> None:
        async with (
            open_transport(0, addresses, cfgs[0], echo_handlers(0, []), {}) as t0,
            open_transport(1, addresses, cfgs[1], echo_handlers(1, []), {}),
        ):
            with trio.fail_after(10):
                while 1 not in t0.links:
                    await trio.sleep(0.01)
            link = t0.links[1]
            # a certificate from another CA posing as node 0
            with pytest.raises((trio.BrokenResourceError, HandshakeError, OSError)):
                async with connect_client(addresses[1], 1, 2, NetConfig(tls=stranger_files)) as c:
                    await c.call("Test.Echo", 1, Any, 1)
            # a client certificate posing as a node: claims node 0 in its Hello
            async with await _raw_tls(addresses[1], client_files, 1) as stream:
                await stream.send_all(encode_frame(Hello("node", 0, 2)))
                assert await _closed_by_peer(stream)
            # no certificate at all
            async with await trio.open_tcp_stream(*addresses[1]) as plain:
                await plain.send_all(encode_frame(Hello("node", 0, 2)))
                assert await _closed_by_peer(plain)
            assert t0.links[1] is link, "node 0's link to node 1 never noticed"
            assert await t0.end(1).call("Test.Echo", "still") == {"from": 1, "got": "still"}

    with caplog.at_level(logging.WARNING, logger="trioraft.net"):
        run(main)
    refusals = [r.getMessage() for r in caplog.records if "refused a connection" in r.getMessage()]
    assert len(refusals) >= 3, refusals
    assert any("certificate says a client but it claims to be node 0" in r for r in refusals)


def test_garbage_closes_only_its_own_connection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    addresses = [("127.0.0.1", free_port()) for _ in range(2)]
    plain = NetConfig(tls=None, insecure=True)

    async def main() -> None:
        async with (
            open_transport(0, addresses, plain, echo_handlers(0, []), {}) as t0,
            open_transport(1, addresses, plain, echo_handlers(1, []), {}),
        ):
            with trio.fail_after(10):
                while 1 not in t0.links:
                    await trio.sleep(0.01)
            for garbage in [
                b"\xff\xff\xff\xff",  # a frame of 4 GiB
                b"\x00\x00\x00\x03abc",  # not msgpack
                encode_frame(Hello("client", None, 2)) + b"\x00\x00\x00\x02\x91\x07",
            ]:
                async with await trio.open_tcp_stream(*addresses[1]) as stream:
                    await stream.send_all(garbage)
                    assert await _closed_by_peer(stream)
            assert await t0.end(1).call("Test.Echo", "ok") == {"from": 1, "got": "ok"}

    with caplog.at_level(logging.INFO, logger="trioraft.net"):
        run(main)


def test_insecure_must_be_asked_for_by_name() -> None:
    with pytest.raises(ValueError, match="insecure=True"):
        NetConfig(tls=None)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096), st.integers(min_value=1, max_value=64))
def test_the_frame_decoder_never_crashes_hangs_or_over_allocates(data: bytes, chunk: int) -> None:
    """Any bytes, fed in any chunks: messages or FrameError, nothing else; a
    length above the limit is refused before anything is allocated for it."""
    decoder = FrameDecoder(max_frame=1024)
    try:
        for start in range(0, len(data), chunk):
            for message in decoder.feed(data[start : start + chunk]):
                assert isinstance(message, (Hello, Request, Response))
            assert len(decoder._buffer) <= 1024 + 4 + chunk
    except FrameError:
        pass


@given(
    st.lists(
        st.one_of(
            st.builds(
                Hello, st.sampled_from(["node", "client"]), st.integers(0, 9), st.integers(1, 9)
            ),
            st.builds(
                Request,
                st.integers(0, 2**40),
                st.text(max_size=20),
                st.builds(encode_value, st.lists(st.integers(-(2**63), 2**63), max_size=5)),
                st.none() | st.integers(0, 2**52),
            ),
            st.builds(
                Response,
                st.integers(0, 2**40),
                st.builds(encode_value, st.text(max_size=10)),
                st.none() | st.text(max_size=10),
            ),
        ),
        max_size=10,
    ),
    st.integers(min_value=1, max_value=50),
)
def test_frames_round_trip_through_any_chunking(messages: list[Any], chunk: int) -> None:
    data = b"".join(encode_frame(m) for m in messages)
    decoder = FrameDecoder()
    out = []
    for start in range(0, len(data), chunk):
        out += decoder.feed(data[start : start + chunk])
    assert [msgspec.msgpack.encode(m) for m in out] == [msgspec.msgpack.encode(m) for m in messages]


async def _raw_tls(address: tuple[str, int], files: TLSFiles, node: int) -> trio.SSLStream[Any]:
    from trioraft.net.tls import client_context

    tcp = await trio.open_tcp_stream(*address)
    stream = trio.SSLStream(tcp, client_context(files), server_hostname=node_hostname(node))
    with trio.fail_after(5):
        await stream.do_handshake()
    return stream


async def _closed_by_peer(stream: trio.abc.Stream) -> bool:
    """Whether the other end closes the connection (within 5 s) without a reply."""
    with trio.fail_after(5):
        try:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return True
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return True
