"""A cluster CA and its certificates, and the ``trioraft certs`` command.

``make_certs(DIR, N)`` writes, all signed by a new CA:

- ``ca.pem`` / ``ca.key``: the CA's certificate and private key (keep the key
  safe: it is needed only to issue more certificates);
- ``node-<i>.pem`` / ``node-<i>.key`` for i in 0..N-1: node i's certificate,
  DNS name ``node-<i>.trioraft``;
- ``client.pem`` / ``client.key``: the clients' certificate, DNS name
  ``client.trioraft``.

The profile: ECDSA P-256 keys, SHA-256 signatures, random serial numbers,
valid from an hour ago (for clocks a little behind) for ``days`` days. The
CA: basicConstraints CA:TRUE with path length 0, keyUsage keyCertSign and
cRLSign. The others: basicConstraints CA:FALSE, keyUsage digitalSignature,
extendedKeyUsage serverAuth and clientAuth (every party both accepts and
dials). Private keys are unencrypted PKCS#8 PEM, mode 0600.
"""

from __future__ import annotations

import argparse
import datetime
import errno
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .net.tls import CLIENT_HOSTNAME, node_hostname

__all__ = ["add_certs_arguments", "make_certs", "run_certs"]

DEFAULT_DAYS: Final = 3650
MAX_DAYS: Final = 36500
MAX_NODES: Final = 10_000
_BACKDATE: Final = datetime.timedelta(hours=1)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "trioraft"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _validity(days: int) -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    return now - _BACKDATE, now + datetime.timedelta(days=days)


def _make_ca(
    days: int,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _new_key()
    name = _name("trioraft CA")
    start, end = _validity(days)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    dns_name: str,
    days: int,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _new_key()
    start, end = _validity(days)
    end = min(end, ca_cert.not_valid_after_utc)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _check_count(name: str, value: object, maximum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be a whole number, got {type(value).__name__}")
    if not 1 <= value <= maximum:
        raise ValueError(f"{name} must be from 1 to {maximum}, got {value}")
    return value


def make_certs(
    directory: str | os.PathLike[str],
    nodes: int,
    *,
    days: int = DEFAULT_DAYS,
    overwrite: bool = False,
) -> list[Path]:
    """Write a new CA and certificates for ``nodes`` nodes and a client to ``directory``.

    Creates the directory (mode 0700) if it is missing.  Writes ``ca.pem``,
    ``ca.key``, ``node-<i>.pem``/``node-<i>.key`` for i in 0..nodes-1 and
    ``client.pem``/``client.key``; private keys get mode 0600, certificates
    0644.  Returns the paths written, in that order.

    Raises FileExistsError naming the first of these files that already
    exists, unless ``overwrite`` (then each is replaced atomically); nothing is
    written in that case.  ValueError/TypeError for bad ``nodes`` or ``days``.
    """
    nodes = _check_count("nodes", nodes, MAX_NODES)
    days = _check_count("days", days, MAX_DAYS)
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(root))

    names = ["ca"] + [f"node-{i}" for i in range(nodes)] + ["client"]
    targets = [root / f"{name}{suffix}" for name in names for suffix in (".pem", ".key")]
    if not overwrite:
        for target in targets:
            if target.exists() or target.is_symlink():
                raise FileExistsError(errno.EEXIST, "already exists", str(target))

    ca_key, ca_cert = _make_ca(days)
    contents: list[bytes] = [_cert_pem(ca_cert), _key_pem(ca_key)]
    for i in range(nodes):
        key, cert = _issue(ca_key, ca_cert, f"trioraft node {i}", node_hostname(i), days)
        contents += [_cert_pem(cert), _key_pem(key)]
    key, cert = _issue(ca_key, ca_cert, "trioraft client", CLIENT_HOSTNAME, days)
    contents += [_cert_pem(cert), _key_pem(key)]

    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    for target, data in zip(targets, contents, strict=True):
        mode = 0o600 if target.suffix == ".key" else 0o644
        _write(target, data, mode, overwrite)
    return targets


def _write(target: Path, data: bytes, mode: int, overwrite: bool) -> None:
    """Write ``data`` to ``target`` with ``mode``; never over an existing file unless overwrite.

    With overwrite, the file is written beside the target and renamed over
    it, so an old key file's permissions never carry over to a new key.
    """
    path = target.with_name(f".{target.name}.tmp") if overwrite else target
    if overwrite:
        path.unlink(missing_ok=True)  # left by an interrupted run
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
    try:
        os.fchmod(fd, mode)  # whatever the umask
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(data)
            f.flush()
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    if overwrite:
        os.replace(path, target)


def _whole_number(minimum: int, maximum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be from {minimum} to {maximum}, got {value}")
        return value

    return parse


def add_certs_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``trioraft certs`` arguments: DIR, --nodes N, --days D, --force."""
    parser.add_argument(
        "directory",
        metavar="DIR",
        help="where to write the files (created if missing)",
    )
    parser.add_argument(
        "--nodes",
        type=_whole_number(1, MAX_NODES),
        required=True,
        metavar="N",
        help="make certificates for nodes 0..N-1",
    )
    parser.add_argument(
        "--days",
        type=_whole_number(1, MAX_DAYS),
        default=DEFAULT_DAYS,
        metavar="D",
        help=f"how long the certificates are valid (default {DEFAULT_DAYS} days)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace existing files (a new CA: the old certificates stop working together)",
    )


def run_certs(args: argparse.Namespace) -> int:
    """Run ``trioraft certs``: 0 when the files were written, 2 for bad input or existing files."""
    try:
        written = make_certs(args.directory, args.nodes, days=args.days, overwrite=args.force)
    except FileExistsError as exc:
        print(
            f"trioraft certs: {exc.filename} already exists; use --force to replace "
            "the CA and every certificate",
            file=sys.stderr,
        )
        return 2
    except (ValueError, TypeError) as exc:
        print(f"trioraft certs: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = exc.filename if exc.filename is not None else args.directory
        print(f"trioraft certs: cannot write {where}: {exc.strerror}", file=sys.stderr)
        return 2
    described = {
        "ca.pem": "the CA certificate: give it to every node and client",
        "ca.key": "the CA private key: keep it safe, only for issuing more certificates",
        "client.pem": f"the client certificate ({CLIENT_HOSTNAME})",
        "client.key": "the client private key",
    }
    plural = "s" if args.nodes != 1 else ""
    print(
        f"trioraft certs: wrote a new CA, {args.nodes} node certificate{plural} and a "
        f"client certificate, valid for {args.days} days:"
    )
    for path in written:
        if path.name in described:
            note = described[path.name]
        elif path.suffix == ".pem":
            note = f"node {path.stem.removeprefix('node-')}'s certificate ({path.stem}.trioraft)"
        else:
            note = f"node {path.stem.removeprefix('node-')}'s private key"
        print(f"  {path}  {note}")
    return 0
