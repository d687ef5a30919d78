"""The ``trioraft`` command line.

Exit status: 0 success, 1 a property was violated (the output says which),
2 bad usage, unreadable input or an output that cannot be written, 3 a
``check`` search stopped at a limit (``--max-states``, ``--max-memory``) before
it explored every state.  No Python traceback reaches the user for bad input:
argument errors print the usage and the reason, and an output that cannot be
written is named in one line (a reader that went away, as with ``| head``,
ends the command quietly).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any, TextIO, TypeVar, cast

from .certs import add_certs_arguments, run_certs
from .kv.cli import (
    add_kv_arguments,
    add_serve_arguments,
    add_status_arguments,
    run_kv,
    run_serve,
    run_status,
)
from .model import check_cli
from .sim.cli import add_simulate_arguments, run_simulate

EXIT_OK = 0
EXIT_VIOLATION = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = check_cli.EXIT_INCOMPLETE

EXIT_STATUSES = (
    "exit status: 0 success, 1 a property was violated, 2 bad usage, unreadable input or "
    "an unwritable output, 3 a check stopped at a limit before exploring every state"
)

_T = TypeVar("_T")


def version() -> str:
    """The installed distribution's version (the package's ``__version__`` if any
    when it is not installed)."""
    try:
        return metadata.version("trioraft")
    except metadata.PackageNotFoundError:
        import trioraft

        return str(getattr(trioraft, "__version__", "unknown"))


def _whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


_positive_int = _whole_number(1)
_seed = _whole_number(0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive, finite number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trioraft",
        description=(
            "Raft for trio: simulate a cluster in virtual time, validate its execution "
            "traces against the Figure 2 model, model-check the model."
        ),
        epilog=EXIT_STATUSES,
    )
    parser.add_argument("--version", action="version", version=f"trioraft {version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    simulate = commands.add_parser(
        "simulate",
        help="run a simulated cluster under a fault schedule in virtual time, checked",
        description=(
            "Run a simulated Raft cluster in virtual time under a fault schedule drawn from "
            "the seed (or replayed with --schedule): crashes and restarts, isolations, "
            "partitions, one-way links, unreliable, delaying, reordering and duplicating "
            "network periods, while a client submits commands and the service snapshots. "
            "The trace is validated against the Figure 2 model as it is recorded (the run "
            "stops at the first violation); then every fault heals, a leader must be "
            "elected within 5 s, no election may follow while nothing fails, and every "
            "acknowledged command must be committed once, in one order, at every peer. "
            "--seeds A-B runs a sweep. Exit 1 if a run failed, 2 for bad arguments."
        ),
    )
    add_simulate_arguments(simulate, _whole_number, _positive_float)
    check = commands.add_parser(
        "check",
        help="explore the Figure 2 model exhaustively and check its invariants",
        description=(
            "Explore every state of the Figure 2 model within the bounds, breadth first, "
            "checking the invariants in each. On a violation, print the shortest "
            "counterexample as a story and exit 1. --mutant plants a known Raft bug."
        ),
        epilog=check_cli.EXIT_STATUSES,
    )
    check_cli.add_arguments(check)

    validate = commands.add_parser(
        "validate",
        help="replay recorded execution traces through the Figure 2 model",
        description=(
            "Replay each execution trace (NDJSON, spec/TRACE.md) event by event through the "
            "Figure 2 model (spec/MODEL.md): every step must be an action the model allows, "
            "leave the node in the state the model computes, and keep every invariant. "
            "Prints PATH: OK, or the first violation as PATH:LINE: event SEQ at node N: "
            "RULE: expected X, logged Y. Exit status 0 if all are valid, 1 if one violates "
            "the model, 2 if one is unreadable or malformed. With --cluster the files are "
            "the per-node traces of one multi-process run (trioraft serve --trace): they "
            "are merged into one history, ordered by their messages rather than by clocks."
        ),
    )
    validate.add_argument("traces", nargs="+", metavar="TRACE", help="trace files to check")
    validate.add_argument(
        "--cluster",
        action="store_true",
        help="validate the files together, as the nodes' traces of one run",
    )
    validate.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    _add_service_commands(commands)
    return parser


def _add_service_commands(commands: Any) -> None:
    """The deployment's commands: certificates, a key-value node, its client."""
    certs = commands.add_parser(
        "certs",
        help="make a CA and certificates for a cluster (mutual TLS)",
        description=(
            "Write ca.pem (and ca.key), node-<i>.pem/.key for every node and client.pem/.key "
            "into DIR, all signed by a new CA; keys are readable by their owner only."
        ),
    )
    add_certs_arguments(certs)
    serve = commands.add_parser(
        "serve",
        help="run one node of a replicated key-value service",
        description=(
            "Run node --id of the cluster --cluster (host:port of every node, in id order; "
            "peers and clients use the same address), keeping its state in --data, with "
            "mutual TLS (--certs DIR) or, asked for by name, without (--insecure). Stops on "
            "SIGINT or SIGTERM."
        ),
    )
    add_serve_arguments(serve)
    kv = commands.add_parser(
        "kv",
        help="one request to the key-value service (or a batch from stdin)",
        description=(
            "put KEY VALUE, get KEY (prints the value; exit 1 if absent), del KEY, or batch: "
            "requests on stdin, one per line, each answered on a line of its own in order "
            "once acknowledged (OK, the value, NOT_FOUND). Follows the leader and retries "
            "through leader changes; a request is applied at most once."
        ),
    )
    add_kv_arguments(kv)
    status = commands.add_parser(
        "status",
        help="each node's term, role, leader, commit index and last applied index",
    )
    add_status_arguments(status)


PROGRESS_MIN_BYTES = 2_000_000
"""Files at least this large show a progress bar while they are validated (on a TTY)."""


def _validate(args: argparse.Namespace) -> int:
    from .trace.reader import TraceFormatError
    from .validate import ByteProgress, TraceVerdict, validate_file

    if args.cluster:
        return _validate_cluster(args)
    status = EXIT_OK
    for path in args.traces:

        def run(report: ByteProgress | None, path: str = path) -> TraceVerdict:
            return validate_file(path, report)

        try:
            verdict = _with_file_progress([path], not args.no_progress, run)
        except TraceFormatError as exc:
            print(f"trioraft validate: {exc}", file=sys.stderr)
            status = EXIT_USAGE
            continue
        print(verdict.describe(), flush=True)
        if not verdict.ok:
            status = max(status, EXIT_VIOLATION)
    return status


def _validate_cluster(args: argparse.Namespace) -> int:
    from .trace.reader import TraceFormatError
    from .validate import validate_cluster

    try:
        verdict = _with_file_progress(
            args.traces,
            not args.no_progress,
            lambda report: validate_cluster(args.traces, progress=report),
        )
    except TraceFormatError as exc:
        print(f"trioraft validate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(verdict.describe(), flush=True)
    return EXIT_OK if verdict.ok else EXIT_VIOLATION


def _with_file_progress(paths: list[str], allowed: bool, run: Callable[[Any], _T]) -> _T:
    """``run(progress)``, with a rich progress bar on stderr for large files on a TTY."""
    size = 0
    for path in paths:
        with contextlib.suppress(OSError):
            size += os.path.getsize(path)
    if not (allowed and sys.stderr.isatty() and size >= PROGRESS_MIN_BYTES):
        return run(None)
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(f"validating {', '.join(os.path.basename(p) for p in paths)}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("validate", total=size)
        return run(lambda done, total: bar.update(task, completed=done, total=total))


class OutputError(Exception):
    """Writing to ``name`` failed with ``error`` (not an OSError, so that the
    commands' own handlers of OSError leave it alone)."""

    def __init__(self, name: str, error: OSError) -> None:
        super().__init__(f"cannot write {name}: {error.strerror or error}")
        self.name = name
        self.error = error


class _GuardedOutput:
    """A text stream whose write errors become :class:`OutputError` naming it."""

    def __init__(self, stream: TextIO, name: str) -> None:
        self._stream = stream
        self._name = name

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise OutputError(self._name, exc) from exc

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise OutputError(self._name, exc) from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _output_error(exc: BaseException) -> OutputError | None:
    """The OutputError that ``exc`` is or (in an exception group, from trio) holds."""
    if isinstance(exc, OutputError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _output_error(inner)
            if found is not None:
                return found
    return None


def _discard_output(stream: TextIO) -> None:
    """Point ``stream``'s file descriptor at /dev/null, so that what is left in its
    buffer cannot fail again when the interpreter flushes it at exit."""
    with contextlib.suppress(OSError, ValueError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno())
        os.close(null)


def main(argv: Sequence[str] | None = None) -> int:
    stdout = sys.stdout
    sys.stdout = cast(TextIO, _GuardedOutput(stdout, "standard output"))
    try:
        status = _run(build_parser(), argv)
        sys.stdout.flush()
        return status
    except KeyboardInterrupt:
        print("trioraft: interrupted", file=sys.stderr)
        return 130
    except (OutputError, BaseExceptionGroup) as exc:
        error = _output_error(exc)
        if error is None:
            raise
        _discard_output(stdout)
        if error.error.errno == errno.EPIPE:
            return EXIT_OK  # the reader went away (e.g. `| head`); nothing more to say
        print(f"trioraft: {error}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        sys.stdout = stdout


def _run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)  # bad usage: prints the usage and exits 2
    if args.command == "simulate":
        return run_simulate(args)
    if args.command == "check":
        return check_cli.run(args)
    if args.command == "validate":
        return _validate(args)
    if args.command == "certs":
        return run_certs(args)
    if args.command == "serve":
        return run_serve(args)
    if args.command == "kv":
        return run_kv(args)
    if args.command == "status":
        return run_status(args)
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
