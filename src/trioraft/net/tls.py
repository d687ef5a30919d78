"""Mutual TLS for the cluster's connections: contexts and peer identities.

Every party of a cluster holds a certificate signed by the cluster's own CA
(``trioraft certs`` makes them).  Who a party is, is written in its
certificate's subjectAltName as a DNS name:

- node ``i``: ``node-<i>.trioraft`` (:func:`node_hostname`);
- a client: ``client.trioraft`` (:data:`CLIENT_HOSTNAME`).

A peer dialling node ``k`` verifies the server against the CA and checks,
with the ordinary hostname check, that it is ``node-<k>.trioraft``::

    stream = trio.SSLStream(tcp, client_context(files), server_hostname=node_hostname(k))
    await stream.do_handshake()

The accepting side requires a certificate from every peer and learns who
connected from it::

    stream = trio.SSLStream(tcp, server_context(files), server_side=True)
    await stream.do_handshake()
    who = identity_of(stream)      # ("node", j) or ("client", None)

Every problem with the files (missing, not PEM, a key that does not match
its certificate, a certificate the CA did not sign) raises :class:`TLSError`
naming the file when a context is made, never later during a handshake.
"""

from __future__ import annotations

import datetime
import errno
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import trio
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

__all__ = [
    "CLIENT_HOSTNAME",
    "DOMAIN",
    "Identity",
    "TLSError",
    "TLSFiles",
    "client_context",
    "identity_of",
    "node_hostname",
    "own_identity",
    "server_context",
]

DOMAIN: Final = "trioraft"
"""The private DNS domain the identities live in (never resolved)."""

CLIENT_HOSTNAME: Final = f"client.{DOMAIN}"
"""The DNS name in every client certificate."""

Identity = tuple[str, int | None]
"""Who a certificate belongs to: ``("node", i)`` or ``("client", None)``."""

_NODE_NAME = re.compile(r"node-(0|[1-9][0-9]{0,8})\." + re.escape(DOMAIN))


class TLSError(Exception):
    """A TLS file is unusable, or a peer's certificate names no trioraft identity."""


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """The three PEM files a node or client needs for mutual TLS.

    ``ca`` is the cluster CA's certificate (the only authority trusted),
    ``cert`` this party's certificate, ``key`` its private key (unencrypted).
    Each must name an existing, readable file: otherwise construction raises
    (TypeError for a wrong type, FileNotFoundError, IsADirectoryError or
    PermissionError naming the field and the path).  Their contents are
    checked when a context is made (:func:`server_context`,
    :func:`client_context`).
    """

    ca: str | os.PathLike[str]
    cert: str | os.PathLike[str]
    key: str | os.PathLike[str]

    def __post_init__(self) -> None:
        for field in ("ca", "cert", "key"):
            path = getattr(self, field)
            if not isinstance(path, str | os.PathLike):
                raise TypeError(
                    f"TLSFiles.{field} must be a path (str or os.PathLike), "
                    f"got {type(path).__name__}"
                )
            text = os.fspath(path)
            if not isinstance(text, str):
                raise TypeError(f"TLSFiles.{field} must be a text path, got {text!r}")
            if text == "":
                raise ValueError(f"TLSFiles.{field} is empty: expected the path of a PEM file")
            _check_readable(field, text)


def _check_readable(field: str, path: str) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"TLSFiles.{field}: no such file", path) from None
    except IsADirectoryError:
        raise IsADirectoryError(
            errno.EISDIR, f"TLSFiles.{field}: a directory, not a file", path
        ) from None
    except PermissionError:
        raise PermissionError(errno.EACCES, f"TLSFiles.{field}: not readable", path) from None
    except OSError as exc:
        raise type(exc)(exc.errno, f"TLSFiles.{field}: cannot read: {exc.strerror}", path) from None


def node_hostname(i: int) -> str:
    """The DNS name in node ``i``'s certificate: ``node-<i>.trioraft``.

    Pass it as ``server_hostname`` when dialling node ``i``.
    """
    if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i <= 999_999_999:
        raise ValueError(f"a node id is a whole number from 0 to 999999999, got {i!r}")
    return f"node-{i}.{DOMAIN}"


def _identity_of_names(names: list[str]) -> Identity | None:
    """The one identity among a certificate's DNS names, or None if there is none.

    Raises TLSError when the names claim more than one identity.
    """
    found: set[Identity] = set()
    for name in names:
        name = name.lower()
        if name == CLIENT_HOSTNAME:
            found.add(("client", None))
            continue
        match = _NODE_NAME.fullmatch(name)
        if match is not None:
            found.add(("node", int(match.group(1))))
    if len(found) > 1:
        claimed = ", ".join(sorted(_describe(who) for who in found))
        raise TLSError(f"certificate claims more than one trioraft identity ({claimed})")
    return next(iter(found), None)


def _describe(who: Identity) -> str:
    return CLIENT_HOSTNAME if who[0] == "client" else f"node-{who[1]}.{DOMAIN}"


def identity_of(stream: trio.SSLStream[Any]) -> Identity:
    """Who is at the other end of ``stream``, from its verified certificate.

    Call it after ``await stream.do_handshake()``.  Returns ``("node", j)``
    for a certificate with the DNS name ``node-<j>.trioraft`` and
    ``("client", None)`` for ``client.trioraft``; raises :class:`TLSError`
    when the peer presented no verified certificate, or one with neither name
    (or both kinds).  Before the handshake it raises
    :class:`trio.NeedHandshakeError`.
    """
    cert: object = stream.getpeercert()
    if not isinstance(cert, dict) or not cert:
        raise TLSError("the peer presented no verified certificate")
    names = [
        value
        for kind, value in cert.get("subjectAltName", ())
        if kind == "DNS" and isinstance(value, str)
    ]
    who = _identity_of_names(names)
    if who is None:
        raise _no_identity("the peer's certificate", names)
    return who


def _no_identity(whose: str, names: list[str]) -> TLSError:
    shown = ", ".join(names) if names else "no DNS names"
    return TLSError(
        f"{whose} names no trioraft identity ({shown}); expected "
        f"node-<i>.{DOMAIN} or {CLIENT_HOSTNAME}"
    )


def own_identity(files: TLSFiles) -> Identity:
    """The identity in our own certificate (``files.cert``).

    A node checks with it that it holds the certificate of the id it was
    configured with.  Raises :class:`TLSError` naming the file when it is not
    a PEM certificate or names no trioraft identity.
    """
    path = os.fspath(files.cert)
    leaf = _read_certificates("cert", path)[0]
    try:
        names = _dns_names(leaf)
        who = _identity_of_names(names)
    except TLSError as exc:
        raise TLSError(f"certificate {path}: {exc}") from None
    if who is None:
        raise _no_identity(f"certificate {path}", names)
    return who


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    except ValueError as exc:  # a malformed extension
        raise TLSError(f"unreadable subjectAltName: {exc}") from None
    return [str(name) for name in san.value.get_values_for_type(x509.DNSName)]


def server_context(files: TLSFiles) -> ssl.SSLContext:
    """An SSL context for accepting connections (``server_side=True``).

    It presents our certificate, requires one from every peer (verified
    against ``files.ca`` only), and speaks TLS 1.2 or newer (1.3 when the
    peer can).  Who connected: :func:`identity_of` after the handshake.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.verify_mode = ssl.CERT_REQUIRED
    # No session tickets: connections are long-lived and never resumed, and
    # without them nothing is sent after the handshake that the peer must read.
    context.num_tickets = 0
    _configure(context, files)
    return context


def client_context(files: TLSFiles) -> ssl.SSLContext:
    """An SSL context for dialling a node.

    It verifies the server's certificate against ``files.ca`` only, checks
    the hostname (pass ``server_hostname=node_hostname(k)`` to
    ``trio.SSLStream`` when dialling node ``k``) and presents our
    certificate.  TLS 1.2 or newer (1.3 when the server can).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies and checks hostnames
    _configure(context, files)
    return context


def _configure(context: ssl.SSLContext, files: TLSFiles) -> None:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    ca_path = os.fspath(files.ca)
    cert_path = os.fspath(files.cert)
    key_path = os.fspath(files.key)
    ca_pem, authorities = _read_authorities(ca_path)
    chain = _read_certificates("cert", cert_path)
    key = _read_key(key_path)
    _check_key_matches(key, chain[0], key_path, cert_path)
    _check_signed_by(chain, authorities, cert_path, ca_path)
    _check_current(chain[0], cert_path)
    try:
        context.load_verify_locations(cadata=ca_pem)
    except (ssl.SSLError, ValueError) as exc:
        raise TLSError(f"CA certificate {ca_path}: cannot be loaded: {exc}") from None
    try:
        context.load_cert_chain(cert_path, key_path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise TLSError(
            f"certificate {cert_path} with key {key_path}: cannot be loaded: {exc}"
        ) from None


def _read(field: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TLSError(f"{field} file {path}: cannot read: {exc.strerror}") from None


_FIELD_NAMES: Final = {"ca": "CA certificate", "cert": "certificate"}


def _read_certificates(field: str, path: str) -> list[x509.Certificate]:
    data = _read(field, path)
    what = _FIELD_NAMES[field]
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise TLSError(f"{what} {path}: not a PEM certificate (no BEGIN CERTIFICATE line)")
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise TLSError(f"{what} {path}: not a valid PEM certificate: {exc}") from None
    return certificates


def _read_authorities(path: str) -> tuple[str, list[x509.Certificate]]:
    certificates = _read_certificates("ca", path)
    for cert in certificates:
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except (x509.ExtensionNotFound, ValueError):
            constraints = None
        if constraints is None or not constraints.ca:
            raise TLSError(
                f"CA certificate {path}: {cert.subject.rfc4514_string()!r} is not a CA "
                "certificate (no basicConstraints CA:TRUE)"
            )
    pem = "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certificates)
    return pem, certificates


def _read_key(path: str) -> PrivateKeyTypes:
    data = _read("key", path)
    if b"-----BEGIN" not in data or b"PRIVATE KEY-----" not in data:
        raise TLSError(f"key {path}: not a PEM private key (no BEGIN ... PRIVATE KEY line)")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TLSError(f"key {path}: encrypted; an unencrypted private key is needed") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise TLSError(f"key {path}: not a valid PEM private key: {exc}") from None


def _public_der(key: Any) -> bytes:
    data: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


def _check_key_matches(
    key: PrivateKeyTypes, cert: x509.Certificate, key_path: str, cert_path: str
) -> None:
    try:
        ours = _public_der(key.public_key())
        theirs = _public_der(cert.public_key())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise TLSError(f"certificate {cert_path}: unusable public key: {exc}") from None
    if ours != theirs:
        raise TLSError(f"key {key_path} does not match certificate {cert_path}")


def _check_signed_by(
    chain: list[x509.Certificate],
    authorities: list[x509.Certificate],
    cert_path: str,
    ca_path: str,
) -> None:
    """The certificate, through the chain in its file if any, was issued by a CA in ca_path."""
    current = chain[0]
    rest = list(chain[1:])
    for _ in range(len(chain)):
        if any(_issued_by(current, authority) for authority in authorities):
            return
        issuer = next((c for c in rest if _issued_by(current, c)), None)
        if issuer is None:
            break
        rest.remove(issuer)
        current = issuer
    raise TLSError(
        f"certificate {cert_path} was not signed by the CA in {ca_path} "
        f"(issuer {chain[0].issuer.rfc4514_string()!r})"
    )


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_current(cert: x509.Certificate, cert_path: str) -> None:
    now = datetime.datetime.now(datetime.UTC)
    if cert.not_valid_after_utc < now:
        raise TLSError(
            f"certificate {cert_path} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )
