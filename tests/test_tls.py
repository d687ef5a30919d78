"""Mutual TLS: contexts, peer identities, and the certificates ``trioraft certs`` makes.

The handshakes run over real TCP on 127.0.0.1, so those tests are plain sync
tests that call ``trio.run`` themselves (on the real clock), every wait
bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trioraft.certs import add_certs_arguments, make_certs, run_certs
from trioraft.net.tls import (
    CLIENT_HOSTNAME,
    Identity,
    TLSError,
    TLSFiles,
    client_context,
    identity_of,
    node_hostname,
    own_identity,
    server_context,
)

TIMEOUT = 10.0
GREETING = b"welcome "

# ---------------------------------------------------------------------------
# helpers


def tls_files(tmp_path: Path, ca: trustme.CA, name: str, *identities: str) -> TLSFiles:
    """Write a certificate for ``identities`` issued by ``ca`` (and the CA) under tmp_path."""
    leaf = ca.issue_cert(*identities)
    return _write_files(tmp_path, ca, name, leaf)


def _write_files(tmp_path: Path, ca: trustme.CA, name: str, leaf: trustme.LeafCert) -> TLSFiles:
    directory = tmp_path / name
    directory.mkdir(exist_ok=True)
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(directory / "key.pem"))
    return TLSFiles(
        ca=directory / "ca.pem", cert=directory / "cert.pem", key=str(directory / "key.pem")
    )


@dataclass
class Outcome:
    """What one side of a connection saw."""

    identity: Identity | None = None  # server: who connected
    received: bytes = b""  # client: what the server sent after the handshake
    error: BaseException | None = None
    version: str | None = None


async def _exchange(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str
) -> tuple[Outcome, Outcome]:
    """One connection over TCP on 127.0.0.1; the server greets whoever it identified."""
    server = Outcome()
    client = Outcome()
    with trio.fail_after(TIMEOUT):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        assert len(listeners) == 1
        listener = listeners[0]
        port = listener.socket.getsockname()[1]
        async with listener:

            async def serve() -> None:
                tcp = await listener.accept()
                stream = trio.SSLStream(tcp, server_ctx, server_side=True)
                try:
                    await stream.do_handshake()
                    server.version = stream.version()
                    server.identity = identity_of(stream)
                    await stream.send_all(GREETING + repr(server.identity).encode())
                except (trio.BrokenResourceError, TLSError) as exc:
                    server.error = exc
                finally:
                    await stream.aclose()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve)
                tcp = await trio.open_tcp_stream("127.0.0.1", port)
                stream = trio.SSLStream(tcp, client_ctx, server_hostname=server_hostname)
                try:
                    await stream.do_handshake()
                    client.version = stream.version()
                    # With TLS 1.3 the client's handshake ends before the server
                    # has checked the client's certificate: a refusal shows at
                    # the first read.
                    while len(client.received) < 100:
                        data = await stream.receive_some()
                        if not data:
                            break
                        client.received += data
                except trio.BrokenResourceError as exc:
                    client.error = exc
                finally:
                    await stream.aclose()
    return server, client


def exchange(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str
) -> tuple[Outcome, Outcome]:
    result: tuple[Outcome, Outcome] = trio.run(_exchange, server_ctx, client_ctx, server_hostname)
    return result


def assert_refused(outcome: Outcome) -> ssl.SSLError:
    """The side saw the handshake fail: a BrokenResourceError caused by an ssl.SSLError."""
    assert isinstance(outcome.error, trio.BrokenResourceError), outcome
    assert isinstance(outcome.error.__cause__, ssl.SSLError), outcome.error.__cause__
    assert outcome.identity is None
    assert outcome.received == b""
    return outcome.error.__cause__


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def other_ca() -> trustme.CA:
    return trustme.CA()


# ---------------------------------------------------------------------------
# identities over real connections


def test_node_accepts_nodes_and_clients_and_knows_who(tmp_path: Path, ca: trustme.CA) -> None:
    node0 = tls_files(tmp_path, ca, "node0", node_hostname(0))
    node2 = tls_files(tmp_path, ca, "node2", node_hostname(2))
    node13 = tls_files(tmp_path, ca, "node13", "node-13.trioraft")
    client = tls_files(tmp_path, ca, "client", CLIENT_HOSTNAME)
    accepting = server_context(node0)
    for dialler, expected in [
        (node2, ("node", 2)),
        (node13, ("node", 13)),
        (client, ("client", None)),
    ]:
        server, outcome = exchange(accepting, client_context(dialler), node_hostname(0))
        assert server.error is None and outcome.error is None, (server, outcome)
        assert server.identity == expected
        assert outcome.received == GREETING + repr(expected).encode()
        assert server.version == outcome.version == "TLSv1.3"


def test_dialler_refuses_a_server_holding_another_nodes_certificate(
    tmp_path: Path, ca: trustme.CA
) -> None:
    node1 = tls_files(tmp_path, ca, "node1", node_hostname(1))
    node2 = tls_files(tmp_path, ca, "node2", node_hostname(2))
    client = tls_files(tmp_path, ca, "client", CLIENT_HOSTNAME)
    # A client or node dialling node 2 reaches a server that is node 1.
    for dialler in (node2, client):
        server, outcome = exchange(server_context(node1), client_context(dialler), node_hostname(2))
        cause = assert_refused(outcome)
        assert isinstance(cause, ssl.SSLCertVerificationError)
        assert "node-2.trioraft" in str(cause.verify_message)
        assert_refused(server)
    # The same server is accepted by whoever dials node 1.
    server, outcome = exchange(server_context(node1), client_context(node2), node_hostname(1))
    assert server.identity == ("node", 2) and outcome.error is None


def test_dialler_refuses_a_server_presenting_a_client_certificate(
    tmp_path: Path, ca: trustme.CA
) -> None:
    client = tls_files(tmp_path, ca, "client", CLIENT_HOSTNAME)
    node0 = tls_files(tmp_path, ca, "node0", node_hostname(0))
    server, outcome = exchange(server_context(client), client_context(node0), node_hostname(0))
    assert isinstance(assert_refused(outcome), ssl.SSLCertVerificationError)
    assert_refused(server)


def test_node_refuses_a_peer_presenting_no_certificate(tmp_path: Path, ca: trustme.CA) -> None:
    node0 = tls_files(tmp_path, ca, "node0", node_hostname(0))
    anonymous = ssl.create_default_context(cafile=os.fspath(node0.ca))  # trusts the CA, no cert
    server, outcome = exchange(server_context(node0), anonymous, node_hostname(0))
    assert_refused(server)
    assert_refused(outcome)


def test_node_refuses_a_certificate_from_another_ca(
    tmp_path: Path, ca: trustme.CA, other_ca: trustme.CA
) -> None:
    node0 = tls_files(tmp_path, ca, "node0", node_hostname(0))
    # A peer that trusts our CA but holds node 1's certificate from another CA.
    stranger = ssl.create_default_context(cafile=os.fspath(node0.ca))
    other_ca.issue_cert(node_hostname(1)).configure_cert(stranger)
    server, outcome = exchange(server_context(node0), stranger, node_hostname(0))
    assert_refused(server)
    assert_refused(outcome)


def test_dialler_refuses_a_server_certified_by_another_ca(
    tmp_path: Path, ca: trustme.CA, other_ca: trustme.CA
) -> None:
    node1 = tls_files(tmp_path, ca, "node1", node_hostname(1))
    impostor = tls_files(tmp_path, other_ca, "impostor", node_hostname(0))
    server, outcome = exchange(server_context(impostor), client_context(node1), node_hostname(0))
    cause = assert_refused(outcome)
    assert isinstance(cause, ssl.SSLCertVerificationError)
    assert_refused(server)


def test_a_certificate_with_no_trioraft_identity_is_refused_after_the_handshake(
    tmp_path: Path, ca: trustme.CA
) -> None:
    node0 = tls_files(tmp_path, ca, "node0", node_hostname(0))
    for number, names in enumerate(
        [
            ("peer.example.com",),
            ("node-01.trioraft",),  # not the name node 1 is dialled by
            ("node-1.trioraft.example.com",),
            ("*.trioraft",),
            ("127.0.0.1",),
            (node_hostname(1), CLIENT_HOSTNAME),  # two identities at once
        ]
    ):
        nameless = tls_files(tmp_path, ca, f"nameless{number}", *names)
        server, outcome = exchange(
            server_context(node0), client_context(nameless), "node-0.trioraft"
        )
        assert isinstance(server.error, TLSError), (names, server)
        assert server.identity is None
        assert GREETING not in outcome.received
        with pytest.raises(TLSError, match=r"cert\.pem"):
            own_identity(nameless)


def test_identity_of_needs_the_handshake(tmp_path: Path, ca: trustme.CA) -> None:
    node0 = tls_files(tmp_path, ca, "node0", node_hostname(0))
    left, _right = trio.testing.memory_stream_pair()
    stream = trio.SSLStream(left, client_context(node0), server_hostname=node_hostname(0))
    with pytest.raises(trio.NeedHandshakeError):
        identity_of(stream)


# ---------------------------------------------------------------------------
# contexts, files and identities without connections


def test_contexts_verify_peers(tmp_path: Path, ca: trustme.CA) -> None:
    node0 = tls_files(tmp_path, ca, "node0", node_hostname(0))
    accepting = server_context(node0)
    dialling = client_context(node0)
    for context in (accepting, dialling):
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
        assert len(context.get_ca_certs()) == 1  # the cluster CA and nothing else
    assert dialling.check_hostname is True
    assert accepting.num_tickets == 0


def test_own_identity_and_node_hostname(tmp_path: Path, ca: trustme.CA) -> None:
    assert node_hostname(0) == "node-0.trioraft"
    assert node_hostname(42) == "node-42.trioraft"
    for bad in (-1, True, "1", 1.0, 10**10):
        with pytest.raises(ValueError):
            node_hostname(bad)  # type: ignore[arg-type]
    assert own_identity(tls_files(tmp_path, ca, "n7", "node-7.trioraft")) == ("node", 7)
    assert own_identity(tls_files(tmp_path, ca, "N7", "NODE-7.TRIORAFT")) == ("node", 7)
    assert own_identity(tls_files(tmp_path, ca, "c", CLIENT_HOSTNAME)) == ("client", None)
    # Other names beside the identity do no harm.
    also = tls_files(tmp_path, ca, "also", "db.example.com", "node-3.trioraft", "127.0.0.1")
    assert own_identity(also) == ("node", 3)


def test_tls_files_must_exist_and_be_paths(tmp_path: Path, ca: trustme.CA) -> None:
    good = tls_files(tmp_path, ca, "node0", node_hostname(0))
    missing = tmp_path / "nowhere" / "node-0.key"
    with pytest.raises(FileNotFoundError) as raised:
        TLSFiles(ca=good.ca, cert=good.cert, key=missing)
    assert "TLSFiles.key" in str(raised.value) and str(missing) in str(raised.value)
    with pytest.raises(FileNotFoundError, match=r"TLSFiles\.ca"):
        TLSFiles(ca=tmp_path / "ca.pem", cert=good.cert, key=good.key)
    with pytest.raises(IsADirectoryError, match=r"TLSFiles\.cert"):
        TLSFiles(ca=good.ca, cert=tmp_path, key=good.key)
    with pytest.raises(TypeError, match=r"TLSFiles\.cert"):
        TLSFiles(ca=good.ca, cert=None, key=good.key)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"TLSFiles\.ca"):
        TLSFiles(ca=b"ca.pem", cert=good.cert, key=good.key)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"TLSFiles\.key"):
        TLSFiles(ca=good.ca, cert=good.cert, key="")


def _both_contexts_fail(files: TLSFiles, *needles: str) -> None:
    for make in (server_context, client_context):
        with pytest.raises(TLSError) as raised:
            make(files)
        for needle in needles:
            assert needle in str(raised.value), (make.__name__, str(raised.value))


def test_a_key_that_does_not_match_the_certificate(tmp_path: Path, ca: trustme.CA) -> None:
    node0 = tls_files(tmp_path, ca, "node0", node_hostname(0))
    node1 = tls_files(tmp_path, ca, "node1", node_hostname(1))
    mismatched = TLSFiles(ca=node0.ca, cert=node0.cert, key=node1.key)
    _both_contexts_fail(mismatched, os.fspath(node1.key), os.fspath(node0.cert), "does not match")


def test_files_that_are_not_pem(tmp_path: Path, ca: trustme.CA) -> None:
    node0 = tls_files(tmp_path, ca, "node0", node_hostname(0))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    truncated = tmp_path / "truncated.pem"
    truncated.write_text(Path(node0.cert).read_text()[:200])
    _both_contexts_fail(TLSFiles(ca=junk, cert=node0.cert, key=node0.key), str(junk), "CA")
    _both_contexts_fail(TLSFiles(ca=node0.ca, cert=junk, key=node0.key), str(junk))
    _both_contexts_fail(TLSFiles(ca=node0.ca, cert=truncated, key=node0.key), str(truncated))
    _both_contexts_fail(TLSFiles(ca=node0.ca, cert=node0.cert, key=junk), str(junk), "key")
    # The key where the certificate should be, and the other way round.
    _both_contexts_fail(TLSFiles(ca=node0.ca, cert=node0.key, key=node0.cert), str(node0.key))
    with pytest.raises(TLSError, match=r"junk\.pem"):
        own_identity(TLSFiles(ca=node0.ca, cert=junk, key=node0.key))


def test_a_certificate_the_ca_did_not_sign(
    tmp_path: Path, ca: trustme.CA, other_ca: trustme.CA
) -> None:
    node0 = tls_files(tmp_path, ca, "node0", node_hostname(0))
    foreign = tls_files(tmp_path, other_ca, "foreign", node_hostname(0))
    _both_contexts_fail(
        TLSFiles(ca=node0.ca, cert=foreign.cert, key=foreign.key),
        os.fspath(foreign.cert),
        os.fspath(node0.ca),
        "not signed",
    )
    # A leaf certificate given as the CA.
    _both_contexts_fail(
        TLSFiles(ca=node0.cert, cert=node0.cert, key=node0.key), os.fspath(node0.cert), "not a CA"
    )


def test_an_encrypted_key_and_an_expired_certificate(tmp_path: Path, ca: trustme.CA) -> None:
    node0 = tls_files(tmp_path, ca, "node0", node_hostname(0))
    key = serialization.load_pem_private_key(Path(node0.key).read_bytes(), password=None)
    locked = tmp_path / "locked.key"
    locked.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    _both_contexts_fail(TLSFiles(ca=node0.ca, cert=node0.cert, key=locked), str(locked), "encrypt")

    now = datetime.datetime.now(datetime.UTC)
    old = ca.issue_cert(
        node_hostname(0),
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )
    expired = _write_files(tmp_path, ca, "expired", old)
    _both_contexts_fail(expired, os.fspath(expired.cert), "expired")


# ---------------------------------------------------------------------------
# make_certs and `trioraft certs`


def _load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _dns_names(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName)


def _common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _files(directory: Path, name: str) -> TLSFiles:
    return TLSFiles(
        ca=directory / "ca.pem", cert=directory / f"{name}.pem", key=directory / f"{name}.key"
    )


def test_make_certs_writes_a_ca_and_certificates_with_the_right_names(tmp_path: Path) -> None:
    directory = tmp_path / "deep" / "certs"  # created, parents too
    written = make_certs(directory, 3, days=30)
    names = ["ca", "node-0", "node-1", "node-2", "client"]
    assert written == [directory / f"{n}{suffix}" for n in names for suffix in (".pem", ".key")]
    assert sorted(p.name for p in directory.iterdir()) == sorted(p.name for p in written)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700

    ca = _load_cert(directory / "ca.pem")
    now = datetime.datetime.now(datetime.UTC)
    assert ca.subject == ca.issuer
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and not usage.digital_signature
    ca.verify_directly_issued_by(ca)

    serials = {ca.serial_number}
    for name, dns, common_name in [
        ("node-0", "node-0.trioraft", "trioraft node 0"),
        ("node-1", "node-1.trioraft", "trioraft node 1"),
        ("node-2", "node-2.trioraft", "trioraft node 2"),
        ("client", "client.trioraft", "trioraft client"),
    ]:
        cert = _load_cert(directory / f"{name}.pem")
        cert.verify_directly_issued_by(ca)
        assert _dns_names(cert) == [dns]
        assert _common_name(cert) == common_name
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
        public = cert.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        assert isinstance(public.curve, ec.SECP256R1)
        assert cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
        assert datetime.timedelta(days=29) < cert.not_valid_after_utc - now
        assert cert.not_valid_after_utc - now <= datetime.timedelta(days=30)
        serials.add(cert.serial_number)
        key = serialization.load_pem_private_key(
            (directory / f"{name}.key").read_bytes(), password=None
        )
        assert key.public_key() == public
    assert len(serials) == 5

    for path in written:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o600 if path.suffix == ".key" else 0o644), (path, oct(mode))

    assert own_identity(_files(directory, "node-2")) == ("node", 2)
    assert own_identity(_files(directory, "client")) == ("client", None)


def test_certificates_from_make_certs_complete_handshakes(tmp_path: Path) -> None:
    make_certs(tmp_path, 2)
    node0 = _files(tmp_path, "node-0")
    node1 = _files(tmp_path, "node-1")
    client = _files(tmp_path, "client")
    server, outcome = exchange(server_context(node0), client_context(node1), node_hostname(0))
    assert server.identity == ("node", 1) and outcome.error is None
    assert outcome.received == GREETING + repr(("node", 1)).encode()
    server, outcome = exchange(server_context(node1), client_context(node0), node_hostname(1))
    assert server.identity == ("node", 0) and outcome.error is None
    server, outcome = exchange(server_context(node1), client_context(client), node_hostname(1))
    assert server.identity == ("client", None) and outcome.error is None
    # node 0's certificate does not pass for node 1.
    server, outcome = exchange(server_context(node0), client_context(client), node_hostname(1))
    assert isinstance(assert_refused(outcome), ssl.SSLCertVerificationError)


def test_certificates_of_two_make_certs_runs_do_not_mix(tmp_path: Path) -> None:
    make_certs(tmp_path / "a", 1)
    make_certs(tmp_path / "b", 1)
    ours = _files(tmp_path / "a", "node-0")
    theirs = _files(tmp_path / "b", "client")
    with pytest.raises(TLSError, match="not signed"):
        client_context(TLSFiles(ca=ours.ca, cert=theirs.cert, key=theirs.key))
    server, outcome = exchange(server_context(ours), client_context(theirs), node_hostname(0))
    assert_refused(outcome)
    assert_refused(server)


def test_make_certs_refuses_to_overwrite(tmp_path: Path) -> None:
    first = tmp_path / "first"
    make_certs(first, 1)
    before = {p.name: p.read_bytes() for p in first.iterdir()}
    with pytest.raises(FileExistsError) as raised:
        make_certs(first, 2)
    assert raised.value.filename == str(first / "ca.pem")
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before  # nothing written

    # Any one of the files is enough to refuse.
    other = tmp_path / "other"
    other.mkdir()
    (other / "client.key").write_text("mine\n")
    with pytest.raises(FileExistsError) as raised:
        make_certs(other, 1)
    assert raised.value.filename == str(other / "client.key")
    assert sorted(p.name for p in other.iterdir()) == ["client.key"]

    # overwrite=True replaces every file, with a new CA and the right modes.
    (first / "node-0.key").chmod(0o644)
    written = make_certs(first, 1, overwrite=True)
    assert (first / "ca.pem").read_bytes() != before["ca.pem"]
    assert stat.S_IMODE((first / "node-0.key").stat().st_mode) == 0o600
    assert sorted(p.name for p in first.iterdir()) == sorted(before)
    assert own_identity(_files(first, "node-0")) == ("node", 0)
    assert len(written) == 6
    server_context(_files(first, "node-0"))


def test_make_certs_bad_arguments(tmp_path: Path) -> None:
    for nodes in (0, -1):
        with pytest.raises(ValueError, match="nodes"):
            make_certs(tmp_path, nodes)
    with pytest.raises(TypeError, match="nodes"):
        make_certs(tmp_path, True)
    with pytest.raises(ValueError, match="days"):
        make_certs(tmp_path, 1, days=0)
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(NotADirectoryError):
        make_certs(a_file, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def _certs_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trioraft certs")
    add_certs_arguments(parser)
    return parser


def test_run_certs_exit_statuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = _certs_parser()
    directory = tmp_path / "certs"

    args = parser.parse_args([str(directory), "--nodes", "2"])
    assert args.days == 3650 and args.force is False
    assert run_certs(args) == 0
    out, err = capsys.readouterr()
    assert err == ""
    for name in ("ca.pem", "ca.key", "node-0.pem", "node-1.key", "client.pem", "client.key"):
        assert str(directory / name) in out
        assert (directory / name).is_file()
    assert not (directory / "node-2.pem").exists()

    # Again, without --force: refused, nothing changed.
    ca_before = (directory / "ca.pem").read_bytes()
    assert run_certs(parser.parse_args([str(directory), "--nodes", "2"])) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("trioraft certs: ")
    assert str(directory / "ca.pem") in err and "--force" in err
    assert "Traceback" not in err
    assert (directory / "ca.pem").read_bytes() == ca_before

    # With --force: replaced.
    args = parser.parse_args([str(directory), "--nodes", "1", "--days", "7", "--force"])
    assert run_certs(args) == 0
    capsys.readouterr()
    assert (directory / "ca.pem").read_bytes() != ca_before

    # --nodes 0: the parser refuses it (usage, status 2), and so does run_certs.
    with pytest.raises(SystemExit) as exited:
        parser.parse_args([str(tmp_path / "zero"), "--nodes", "0"])
    assert exited.value.code == 2
    assert "--nodes" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args([str(tmp_path / "none")])  # --nodes is required
    capsys.readouterr()
    args = argparse.Namespace(directory=str(tmp_path / "zero"), nodes=0, days=3650, force=False)
    assert run_certs(args) == 2
    out, err = capsys.readouterr()
    assert err.startswith("trioraft certs: ") and "nodes" in err
    assert not (tmp_path / "zero").exists()

    # A file where the directory should be.
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert run_certs(parser.parse_args([str(a_file), "--nodes", "1"])) == 2
    err = capsys.readouterr().err
    assert err.startswith("trioraft certs: ") and str(a_file) in err


def test_run_certs_parser_defaults() -> None:
    parser = _certs_parser()
    args: Any = parser.parse_args(["d", "--nodes", "5", "--days", "1"])
    assert (args.directory, args.nodes, args.days, args.force) == ("d", 5, 1, False)
    with pytest.raises(SystemExit):
        parser.parse_args(["d", "--nodes", "x"])
    with pytest.raises(SystemExit):
        parser.parse_args(["d", "--nodes", "1", "--days", "0"])
