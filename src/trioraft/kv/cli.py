"""``trioraft serve``, ``trioraft kv`` and ``trioraft status``: the key-value service.

Exit status: 0 success; 1 the request failed (``kv get`` of an absent key,
no leader reachable in time); 2 bad usage or unreadable input, naming what.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import trio

from ..net.tls import TLSError, TLSFiles
from ..net.transport import NetConfig, parse_address
from ..node import NodeConfig, open_node
from ..storage.base import StorageError
from .client import KVClient, Unavailable
from .machine import DELETE, GET, PUT, KVMachine
from .service import NOT_FOUND, OK, KVReply, KVService

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input: printed as ``trioraft <command>: <reason>``, exit status 2."""


# ---------------------------------------------------------------- arguments


def _cluster(text: str) -> list[str]:
    addresses = [a.strip() for a in text.split(",") if a.strip()]
    if not addresses:
        raise argparse.ArgumentTypeError("expected host:port,host:port,...")
    for k, address in enumerate(addresses):
        try:
            parse_address(address, f"node {k}'s address")
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return addresses


def _add_security(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--certs", metavar="DIR", help="the directory `trioraft certs` wrote (mutual TLS)"
    )
    group.add_argument(
        "--insecure", action="store_true", help="plaintext, no authentication (tests only)"
    )


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id", type=int, required=True, help="this node's index in --cluster")
    parser.add_argument("--cluster", type=_cluster, required=True, metavar="A0,A1,...")
    parser.add_argument("--data", required=True, metavar="DIR", help="its data directory")
    _add_security(parser)
    parser.add_argument("--trace", metavar="PATH", help="write this node's execution trace")
    parser.add_argument("--listen", metavar="HOST:PORT", help="bind here instead of --cluster's")
    parser.add_argument(
        "--snapshot-bytes",
        type=int,
        default=64 * 2**20,
        help="compact the log past this many bytes (default 64 MiB)",
    )
    parser.add_argument(
        "--no-fsync",
        action="store_true",
        help="do not fsync (benchmarks only: a power failure loses acknowledged writes)",
    )
    parser.add_argument("--quiet", action="store_true", help="log warnings and errors only")


def add_kv_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cluster", type=_cluster, required=True, metavar="A0,A1,...")
    _add_security(parser)
    parser.add_argument("--timeout", type=float, default=30.0, help="give up after (seconds)")
    parser.add_argument("--window", type=int, default=256, help="batch: requests per call")
    parser.add_argument(
        "request",
        nargs="+",
        metavar="REQUEST",
        help="put KEY VALUE | get KEY | del KEY | batch (requests on stdin)",
    )


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cluster", type=_cluster, required=True, metavar="A0,A1,...")
    _add_security(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON list")
    parser.add_argument("--timeout", type=float, default=3.0, help="per node (seconds)")


def _tls(args: argparse.Namespace, own: str) -> TLSFiles | None:
    if args.insecure:
        return None
    directory = Path(args.certs)
    if not directory.is_dir():
        raise UsageError(f"--certs {args.certs}: not a directory")
    try:
        return TLSFiles(
            ca=directory / "ca.pem", cert=directory / f"{own}.pem", key=directory / f"{own}.key"
        )
    except (OSError, ValueError, TypeError) as error:
        raise UsageError(f"--certs {args.certs}: {error}") from None


def _net(args: argparse.Namespace) -> NetConfig:
    return NetConfig(tls=_tls(args, "client"), insecure=args.insecure)


# ---------------------------------------------------------------- serve


def run_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    return _guarded("serve", lambda: _serve(args))


def _serve(args: argparse.Namespace) -> int:
    if not 0 <= args.id < len(args.cluster):
        raise UsageError(f"--id {args.id} is not an index into the {len(args.cluster)} nodes")
    if args.trace and os.path.exists(args.trace):
        raise UsageError(f"--trace {args.trace} exists: give each incarnation a file of its own")
    config = NodeConfig(
        id=args.id,
        cluster=args.cluster,
        data_dir=args.data,
        tls=_tls(args, f"node-{args.id}"),
        insecure=args.insecure,
        snapshot_log_bytes=args.snapshot_bytes,
        listen=args.listen,
        trace=args.trace,
        fsync=not args.no_fsync,
    )
    machine = KVMachine()
    service = KVService(machine)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with open_node(config, machine, client_handlers=service.handlers()) as node:
                service.node = node
                async for signum in signals:
                    logging.getLogger("trioraft").info(
                        "node %d: %s: stopping", args.id, signal.Signals(signum).name
                    )
                    break

    trio.run(main)
    return EXIT_OK


# ---------------------------------------------------------------- kv


def run_kv(args: argparse.Namespace, stdin: IO[str] | None = None) -> int:
    return _guarded("kv", lambda: _kv(args, stdin or sys.stdin))


def _kv(args: argparse.Namespace, stdin: IO[str]) -> int:
    words = args.request
    verb = words[0]
    if verb == "batch":
        if len(words) != 1:
            raise UsageError("batch takes its requests on stdin, one per line")
        requests = parse_requests(stdin, "<stdin>")
    elif verb == "put" and len(words) >= 3:
        requests = [(PUT, words[1], " ".join(words[2:]))]
    elif verb in ("get", "del") and len(words) == 2:
        requests = [(GET if verb == "get" else DELETE, words[1], None)]
    else:
        raise UsageError(
            f"not a request: {' '.join(words)!r} (put KEY VALUE, get KEY, del KEY, batch)"
        )
    net = _net(args)
    results: list[KVReply] = []

    async def main() -> None:
        async with KVClient(args.cluster, net, timeout=args.timeout, window=args.window) as kv:
            if verb == "batch":
                # one line per request, in order, each only once acknowledged
                for start in range(0, len(requests), args.window):
                    replies = await kv.batch(requests[start : start + args.window])
                    for reply in replies:
                        print(_line(reply), flush=False)
                    sys.stdout.flush()
                    results.extend(replies)
            else:
                results.extend(await kv.batch(requests))

    trio.run(main)
    if verb == "batch":
        return EXIT_OK
    reply = results[0]
    if verb == "get":
        if reply.status == NOT_FOUND:
            print(f"trioraft kv: {words[1]}: not found", file=sys.stderr)
            return EXIT_FAILED
        print(reply.value)
    else:
        print(_line(reply))
    return EXIT_OK if reply.status in (OK, NOT_FOUND) else EXIT_FAILED


def parse_requests(lines: IO[str], source: str) -> list[tuple[str, str, str | None]]:
    """``put KEY VALUE`` / ``get KEY`` / ``del KEY`` lines; UsageError naming the line."""
    requests: list[tuple[str, str, str | None]] = []
    for number, line in enumerate(lines, 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "put" and len(words) >= 3:
            value = line.split(None, 2)[2].rstrip("\n")
            requests.append((PUT, words[1], value))
        elif words[0] in ("get", "del") and len(words) == 2:
            requests.append((GET if words[0] == "get" else DELETE, words[1], None))
        else:
            raise UsageError(
                f"{source}:{number}: not a request: {line.strip()!r} "
                "(put KEY VALUE, get KEY, del KEY)"
            )
    return requests


def _line(reply: KVReply) -> str:
    if reply.status == OK:
        return reply.value if reply.value is not None else "OK"
    if reply.status == NOT_FOUND:
        return "NOT_FOUND"
    return f"ERROR {reply.error or reply.status}"


# ---------------------------------------------------------------- status


def run_status(args: argparse.Namespace) -> int:
    return _guarded("status", lambda: _status(args))


def _status(args: argparse.Namespace) -> int:
    net = _net(args)
    rows: list[dict[str, Any]] = []

    async def main() -> None:
        async with KVClient(args.cluster, net, rpc_timeout=args.timeout) as kv:
            for node, address in enumerate(args.cluster):
                with trio.move_on_after(args.timeout):
                    status = await kv.status(node)
                    if status is not None:
                        rows.append({"address": address, "reachable": True, **_fields(status)})
                        continue
                rows.append({"id": node, "address": address, "reachable": False})

    trio.run(main)
    if args.json:
        print(json.dumps(rows))
    else:
        heading = ("id", "address", "term", "role", "leader", "commit", "applied")
        print("{:>3}  {:<22} {:>5}  {:<9} {:>6}  {:>7}  {:>7}".format(*heading))
        for row in rows:
            if not row["reachable"]:
                print(f"{row['id']:>3}  {row['address']:<22} unreachable")
                continue
            leader = "-" if row["leader"] is None else row["leader"]
            print(
                f"{row['id']:>3}  {row['address']:<22} {row['term']:>5}  {row['role']:<9} "
                f"{leader:>6}  {row['commit_index']:>7}  {row['last_applied']:>7}"
            )
    return EXIT_OK if any(r["reachable"] for r in rows) else EXIT_FAILED


def _fields(status: Any) -> dict[str, Any]:
    return {name: getattr(status, name) for name in status.__struct_fields__}


# ---------------------------------------------------------------- errors


def _guarded(command: str, run: Callable[[], int]) -> int:
    """Run a command; bad input and an unreachable cluster become a one-line message."""
    try:
        return run()
    except UsageError as error:
        print(f"trioraft {command}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (TLSError, StorageError, OSError, ValueError) as error:
        print(f"trioraft {command}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Unavailable as error:
        print(f"trioraft {command}: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED


__all__: Sequence[str] = [
    "add_kv_arguments",
    "add_serve_arguments",
    "add_status_arguments",
    "parse_requests",
    "run_kv",
    "run_serve",
    "run_status",
]
