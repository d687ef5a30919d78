"""``trioraft check``: explore the Figure 2 model exhaustively within bounds.

Exit status: 0 no invariant violated in the whole space, 1 a violation (the
shortest counterexample is printed as a numbered story), 2 bad usage, 3 the
search stopped at a limit (``--max-states``, ``--max-memory``) before it
explored every state: no violation so far, but no verdict either.

``--max-memory`` defaults to half the machine's physical memory (or of the
cgroup's limit, if lower): a big search then ends with exit 3 and its figures
instead of swapping the machine to a halt or being killed for memory, and
leaves room for the rest of the machine's work.  ``--max-memory none`` lifts it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import TextIO

from .checker import MAX_MEMORY, MAX_STATES, CheckResult, Progress, check
from .invariants import INVARIANTS_BY_NAME
from .mutants import MUTANTS, NEEDS_SNAPSHOTS
from .search import Bounds
from .story import format_trace

EXIT_OK = 0
EXIT_VIOLATION = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3

EXIT_STATUSES = (
    "exit status: 0 no invariant violated in the whole space, 1 a violation, 2 bad usage "
    "or an unwritable output, 3 the search stopped at --max-states or --max-memory before "
    "it explored every state (no verdict)"
)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def memory_size(text: str) -> int | None:
    """A --max-memory value: bytes, or with K, M, G, T (powers of 1024); ``none``
    (None) for no limit."""
    if text.strip().lower() == "none":
        return None
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"expected a size such as 2G, 512M or 1000000 (bytes), or none; got {text!r}"
        )
    size = int(float(match[1]) * _UNITS[match[2].upper()])
    if size < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte, got {text!r}")
    return size


def format_size(size: int) -> str:
    """``size`` bytes in the largest unit in which it is at least 1 (2G, 11.8G)."""
    for unit in "TGMK":
        if size >= _UNITS[unit]:
            return f"{size / _UNITS[unit]:.1f}".removesuffix(".0") + unit
    return str(size)


def default_max_memory() -> int | None:
    """Half the physical memory, or of the cgroup's memory limit where that is lower
    (None where neither is known)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    try:
        with open("/sys/fs/cgroup/memory.max") as limit:
            total = min(total, int(limit.read()))
    except (OSError, ValueError):  # no cgroup v2 limit ("max", or no such file)
        pass
    return total // 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``trioraft check``'s options to ``parser``."""
    parser.add_argument("--servers", type=_count, default=3, help="servers (default 3)")
    parser.add_argument(
        "--max-term",
        type=_count,
        default=2,
        metavar="T",
        help="no election beyond term T (default 2)",
    )
    parser.add_argument(
        "--max-log",
        type=_count,
        default=1,
        metavar="L",
        help="no client request beyond L log entries (default 1)",
    )
    parser.add_argument(
        "--max-msgs",
        type=_count,
        default=4,
        metavar="M",
        help="no send while M messages are in flight, copies included (default 4)",
    )
    parser.add_argument(
        "--max-restarts",
        type=_count,
        default=0,
        metavar="R",
        help="at most R server restarts in a run (default 0; each one multiplies the states ~5x)",
    )
    parser.add_argument(
        "--values",
        type=_count,
        default=1,
        metavar="V",
        help="client requests carry a value in 1..V (default 1)",
    )
    parser.add_argument(
        "--snapshots",
        action="store_true",
        help="let servers take snapshots and leaders send InstallSnapshot (Figure 13)",
    )
    parser.add_argument(
        "--symmetry",
        action="store_true",
        help="count states equal up to renaming the servers once (fewer states, same verdict)",
    )
    parser.add_argument(
        "--fine-grained",
        action="store_true",
        help="make BecomeLeader, AdvanceCommitIndex and Apply separate interleaved actions",
    )
    parser.add_argument(
        "--mutant", metavar="NAME", help="plant a known Raft bug (see --list-mutants)"
    )
    parser.add_argument(
        "--list-mutants", action="store_true", help="print the mutants' names, one per line"
    )
    parser.add_argument(
        "--describe-mutants", action="store_true", help="print each mutant and what it breaks"
    )
    parser.add_argument(
        "--max-states",
        type=_count,
        metavar="N",
        help="stop after N distinct states (exit 3: incomplete)",
    )
    default_memory = default_max_memory()
    parser.add_argument(
        "--max-memory",
        type=memory_size,
        default=default_memory,
        metavar="SIZE",
        help=(
            "stop once this process's resident memory reaches SIZE (exit 3: incomplete): "
            "bytes, or with K, M, G, T (powers of 1024), e.g. 512M, 2G; none for no limit "
            "(default: half the machine's memory, "
            f"{'unknown' if default_memory is None else format_size(default_memory)} here)"
        ),
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _usage_error(message: str) -> int:
    print(f"trioraft check: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def run(args: argparse.Namespace) -> int:
    """Run the check ``args`` describes; print the verdict; return the exit status."""
    if getattr(args, "list_mutants", False):
        for name in MUTANTS:
            print(name)
        return EXIT_OK
    if getattr(args, "describe_mutants", False):
        for name, text in MUTANTS.items():
            print(f"{name}: {text}")
        return EXIT_OK
    if args.mutant is not None and args.mutant not in MUTANTS:
        return _usage_error(
            f"unknown mutant {args.mutant!r}; `trioraft check --list-mutants` names them: "
            + ", ".join(MUTANTS)
        )
    for option in ("servers", "max_term", "max_log", "max_msgs", "max_restarts", "values"):
        value = getattr(args, option)
        if not isinstance(value, int) or value < 0:
            flag = "--" + option.replace("_", "-")
            return _usage_error(f"{flag} must be a whole number, not negative; got {value!r}")
    if not 1 <= args.servers <= 9:
        return _usage_error(f"--servers must be between 1 and 9, got {args.servers}")
    if args.values < 1:
        return _usage_error(f"--values must be at least 1, got {args.values}")
    snapshots = bool(getattr(args, "snapshots", False))
    if args.mutant in NEEDS_SNAPSHOTS and not snapshots:
        return _usage_error(f"mutant {args.mutant!r} breaks a snapshot rule: add --snapshots")
    bounds = Bounds(
        servers=args.servers,
        max_term=args.max_term,
        max_log=args.max_log,
        max_msgs=args.max_msgs,
        max_restarts=args.max_restarts,
        values=args.values,
        fine_grained=getattr(args, "fine_grained", False),
        snapshots=snapshots,
    )
    print(describe_bounds(bounds, args.mutant, args.symmetry))
    sys.stdout.flush()
    progress = None if getattr(args, "quiet", False) else _progress_printer(sys.stderr)
    result = check(
        bounds,
        mutant=args.mutant,
        symmetry=args.symmetry,
        progress=progress,
        max_states=getattr(args, "max_states", None),
        max_memory=getattr(args, "max_memory", None),
    )
    print(format_result(result, _limit(result, args)))
    if not result.ok:
        return EXIT_VIOLATION
    return EXIT_OK if result.complete else EXIT_INCOMPLETE


def _limit(result: CheckResult, args: argparse.Namespace) -> str:
    """The option whose limit stopped the search."""
    if result.stopped_by == MAX_STATES:
        return f"--max-states {args.max_states}"
    if result.stopped_by == MAX_MEMORY:
        return f"--max-memory {format_size(args.max_memory)}"
    return "a limit"


def describe_bounds(bounds: Bounds, mutant: str | None, symmetry: bool) -> str:
    text = (
        f"checking {bounds.servers} servers, max term {bounds.max_term}, max log "
        f"{bounds.max_log}, max msgs {bounds.max_msgs}, max restarts {bounds.max_restarts}, "
        f"values {bounds.values}"
    )
    if bounds.snapshots:
        text += ", snapshots"
    if bounds.fine_grained:
        text += ", fine-grained"
    if symmetry:
        text += ", symmetry"
    if mutant is not None:
        text += f"\nmutant {mutant}: {MUTANTS[mutant]}"
    return text


def _progress_printer(stream: TextIO) -> ProgressPrinter:
    return ProgressPrinter(stream)


class ProgressPrinter:
    """Prints one progress line per report: states, depth, states per second."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, p: Progress) -> None:
        print(
            f"  {p.states:,} states, depth {p.depth}, {p.frontier:,} queued, "
            f"{p.states_per_second:,.0f} states/s, {p.seconds:.0f} s",
            file=self.stream,
            flush=True,
        )


def format_result(result: CheckResult, limit: str = "a limit") -> str:
    """The verdict, the figures, and for a violation the shortest counterexample;
    ``limit`` says what stopped an incomplete search."""
    figures = (
        f"{result.states:,} distinct states, {result.transitions:,} transitions, depth "
        f"{result.depth}, {result.seconds:.1f} s, {result.states_per_second:,.0f} states/s"
    )
    if result.violation is None:
        if result.complete:
            return f"no invariant violated: {figures}"
        return (
            f"INCOMPLETE: stopped at {limit} before exploring every state; no invariant "
            f"violated so far: {figures}"
        )
    name, problem = result.violation
    steps = len(result.trace) - 1
    summary = INVARIANTS_BY_NAME[name].summary if name in INVARIANTS_BY_NAME else ""
    return "\n".join(
        [
            f"VIOLATION of {name}: {problem}",
            f"  ({name}: {summary})",
            f"  {figures}",
            f"shortest counterexample, {steps} step{'s' if steps != 1 else ''}:",
            format_trace(result.trace),
        ]
    )
