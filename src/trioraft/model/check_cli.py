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
from dataclasses import asdict
from typing import TextIO

from .checker import MAX_MEMORY, MAX_STATES, CheckResult, Progress, check
from .invariants import INVARIANTS_BY_NAME
from .mutants import MUTANT_BY_NAME, MUTANTS, NEEDS_SNAPSHOTS, Mutant
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


_DEFAULTS = Bounds()
"""The bounds of a check without a mutant, where the command line does not give them."""

_BOUND_HELP = {
    "servers": ("N", "servers"),
    "max_term": ("T", "no election beyond term T"),
    "max_log": ("L", "no client request beyond L log entries"),
    "max_msgs": ("M", "no send while M messages are in flight, copies included"),
    "max_restarts": ("R", "at most R server restarts in a run; each multiplies the states ~5x"),
    "values": ("V", "client requests carry a value in 1..V"),
    "max_reads": ("K", "with --read-index: at most K reads waiting at once"),
}
_SWITCH_HELP = {
    "snapshots": "let servers take snapshots and leaders send InstallSnapshot (Figure 13)",
    "fine_grained": "make BecomeLeader, AdvanceCommitIndex and Apply separate interleaved actions",
    "symmetry": "count states equal up to renaming the servers once (fewer states, same verdict)",
    "pre_vote": "every server runs Pre-Vote with vote withholding (thesis §9.6, §4.2.3)",
    "check_quorum": "leaders step down when they lose their quorum (CheckQuorum, §6.2)",
    "transfer": "leaders may transfer leadership with TimeoutNow (§3.10)",
    "read_index": "leaders serve linearizable reads with ReadIndex (§6.4)",
}
"""The on/off options (each also as --no-...): the Bounds' two and --symmetry."""


def _flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``trioraft check``'s options to ``parser``.

    The bounds and switches default to None, "not given": :func:`resolve` fills
    them from the mutant's own bounds (with ``--mutant``) or from ``Bounds()``.
    """
    for option, (metavar, text) in _BOUND_HELP.items():
        parser.add_argument(
            _flag(option),
            type=_count,
            metavar=metavar,
            help=f"{text} (default {getattr(_DEFAULTS, option)}, or the mutant's)",
        )
    for option, text in _SWITCH_HELP.items():
        parser.add_argument(
            _flag(option),
            action=argparse.BooleanOptionalAction,
            help=f"{text} (default off, or as the mutant's)",
        )
    parser.add_argument(
        "--mutant",
        metavar="NAME",
        help=(
            "plant a known Raft bug (see --list-mutants); the bounds and switches not "
            "given are the mutant's own, those it is found with (see --describe-mutants)"
        ),
    )
    parser.add_argument(
        "--list-mutants", action="store_true", help="print the mutants' names, one per line"
    )
    parser.add_argument(
        "--describe-mutants",
        action="store_true",
        help="print each mutant, what it breaks, and the command line that finds it",
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


class UsageError(ValueError):
    """Options that do not make a check; the message names the option."""


def resolve(args: argparse.Namespace) -> tuple[Bounds, bool]:
    """The bounds and symmetry of the check ``args`` describes: each option given
    on the command line, else the mutant's own (``--mutant``), else the default."""
    mutant = MUTANT_BY_NAME.get(args.mutant) if args.mutant is not None else None
    if args.mutant is not None and mutant is None:
        raise UsageError(
            f"unknown mutant {args.mutant!r}; `trioraft check --list-mutants` names them: "
            + ", ".join(MUTANTS)
        )
    fallback = _DEFAULTS if mutant is None else found_with(mutant)[0]
    bounds = Bounds(
        servers=_number(args, "servers", fallback.servers),
        max_term=_number(args, "max_term", fallback.max_term),
        max_log=_number(args, "max_log", fallback.max_log),
        max_msgs=_number(args, "max_msgs", fallback.max_msgs),
        max_restarts=_number(args, "max_restarts", fallback.max_restarts),
        values=_number(args, "values", fallback.values),
        fine_grained=_switch(args, "fine_grained", fallback.fine_grained),
        snapshots=_switch(args, "snapshots", fallback.snapshots),
        pre_vote=_switch(args, "pre_vote", fallback.pre_vote),
        check_quorum=_switch(args, "check_quorum", fallback.check_quorum),
        transfer=_switch(args, "transfer", fallback.transfer),
        read_index=_switch(args, "read_index", fallback.read_index),
        max_reads=_number(args, "max_reads", fallback.max_reads),
    )
    if not 1 <= bounds.servers <= 9:
        raise UsageError(f"--servers must be between 1 and 9, got {bounds.servers}")
    if bounds.values < 1:
        raise UsageError(f"--values must be at least 1, got {bounds.values}")
    if args.mutant in NEEDS_SNAPSHOTS and not bounds.snapshots:
        raise UsageError(
            f"mutant {args.mutant!r} breaks a snapshot rule: it needs --snapshots "
            "(drop --no-snapshots)"
        )
    return bounds, _switch(args, "symmetry", mutant is not None and mutant.symmetry)


def found_with(mutant: Mutant) -> tuple[Bounds, bool]:
    """The bounds and symmetry under which the checker finds ``mutant``: its own."""
    return Bounds(**asdict(mutant.bounds)), mutant.symmetry


def _number(args: argparse.Namespace, option: str, fallback: int) -> int:
    """``args``'s ``option`` if the command line gave it (None: not given), else ``fallback``."""
    value = getattr(args, option, None)
    if value is None:
        return fallback
    if not isinstance(value, int) or value < 0:
        raise UsageError(f"{_flag(option)} must be a whole number, not negative; got {value!r}")
    return value


def _switch(args: argparse.Namespace, option: str, fallback: bool) -> bool:
    """``args``'s on/off ``option`` if the command line gave it, else ``fallback``."""
    value = getattr(args, option, None)
    return fallback if value is None else bool(value)


def command_line(mutant: Mutant) -> str:
    """The ``trioraft check`` command line that finds ``mutant``, every bound spelt out."""
    bounds, symmetry = found_with(mutant)
    words = ["trioraft", "check", "--mutant", mutant.name]
    for option in _BOUND_HELP:
        words += [_flag(option), str(getattr(bounds, option))]
    switches = {**bounds._asdict(), "symmetry": symmetry}
    words += [_flag(option) for option in _SWITCH_HELP if switches[option]]
    return " ".join(words)


def run(args: argparse.Namespace) -> int:
    """Run the check ``args`` describes; print the verdict; return the exit status."""
    if getattr(args, "list_mutants", False):
        for name in MUTANTS:
            print(name)
        return EXIT_OK
    if getattr(args, "describe_mutants", False):
        for mutant in MUTANT_BY_NAME.values():
            print(f"{mutant.name}: {mutant.description}")
            print(f"  found by: {command_line(mutant)}")
        return EXIT_OK
    try:
        bounds, symmetry = resolve(args)
    except UsageError as error:
        return _usage_error(str(error))
    print(describe_bounds(bounds, args.mutant, symmetry))
    sys.stdout.flush()
    progress = None if getattr(args, "quiet", False) else _progress_printer(sys.stderr)
    result = check(
        bounds,
        mutant=args.mutant,
        symmetry=symmetry,
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
    if bounds.pre_vote:
        text += ", Pre-Vote"
    if bounds.check_quorum:
        text += ", CheckQuorum"
    if bounds.transfer:
        text += ", leadership transfer"
    if bounds.read_index:
        text += f", ReadIndex (at most {bounds.max_reads} waiting)"
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
