"""``trioraft simulate``: its arguments, one run, a sweep of seeds, a replayed schedule.

Exit status: 0 every run passed; 1 a run failed (the output says how and, for
a sweep, the command that replays it); 2 bad arguments, an unreadable
schedule, or a trace that cannot be written (one line naming the file).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def add_simulate_arguments(
    simulate: argparse.ArgumentParser,
    whole_number: Callable[[int], Callable[[str], int]],
    positive_float: Callable[[str], float],
) -> None:
    simulate.add_argument("--seed", type=whole_number(0), default=1, help="random seed (default 1)")
    simulate.add_argument(
        "--seeds",
        metavar="A-B",
        help="run every seed from A to B (a sweep) and print a summary table",
    )
    simulate.add_argument(
        "--jobs",
        type=whole_number(1),
        default=1,
        metavar="J",
        help="worker processes for a sweep (default 1)",
    )
    simulate.add_argument("--nodes", type=whole_number(1), default=5, help="peers (default 5)")
    simulate.add_argument(
        "--duration",
        type=positive_float,
        default=60.0,
        metavar="SECONDS",
        help="virtual seconds of faults before healing (default 60)",
    )
    simulate.add_argument(
        "--unreliable",
        action="store_true",
        help="the whole fault phase on labrpc's unreliable network (delays, 10%% loss)",
    )
    simulate.add_argument(
        "--pre-vote",
        action="store_true",
        help="the peers run Pre-Vote (RaftConfig.pre_vote), and the drawn schedule "
        "has deaf nodes too",
    )
    simulate.add_argument(
        "--check-quorum",
        action="store_true",
        help="the peers run CheckQuorum (RaftConfig.check_quorum), and the drawn "
        "schedule has deaf nodes too",
    )
    simulate.add_argument(
        "--extensions",
        action="store_true",
        help="both: --pre-vote --check-quorum",
    )
    simulate.add_argument(
        "--snapshot-every",
        type=whole_number(0),
        default=10,
        metavar="N",
        help="the service snapshots every N applied entries (0: never; default 10)",
    )
    simulate.add_argument(
        "--schedule",
        metavar="PATH",
        help="replay the fault schedule saved in PATH (its seed, nodes and faults)",
    )
    simulate.add_argument(
        "--save-schedule",
        metavar="PATH",
        help="also write the run's fault schedule (JSON) to PATH",
    )
    simulate.add_argument(
        "--trace",
        metavar="PATH",
        help="write the run's execution trace (NDJSON, spec/TRACE.md) to PATH",
    )
    simulate.add_argument("--no-progress", action="store_true", help="never show a progress bar")


def run_simulate(args: argparse.Namespace) -> int:
    from .schedule import ScheduleError

    try:
        if args.seeds is not None:
            return _sweep(args)
        schedule = _schedule(args)
    except (ScheduleError, ValueError) as exc:
        print(f"trioraft simulate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.save_schedule:
        from .schedule import dump_schedule

        problem = _write_text(args.save_schedule, dump_schedule(schedule))
        if problem:
            print(f"trioraft simulate: {problem}", file=sys.stderr)
            return EXIT_USAGE
    return _one_run(args, schedule)


def _extensions(args: argparse.Namespace) -> dict[str, bool]:
    """``pre_vote`` and ``check_quorum`` as the options ask (``--extensions``: both)."""
    both = bool(getattr(args, "extensions", False))
    return {
        "pre_vote": both or bool(getattr(args, "pre_vote", False)),
        "check_quorum": both or bool(getattr(args, "check_quorum", False)),
    }


def _schedule(args: argparse.Namespace) -> Any:
    from .schedule import ScheduleError, draw_schedule, load_schedule

    extensions = _extensions(args)
    if args.schedule:
        try:
            with open(args.schedule, encoding="utf-8") as file:
                text = file.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ScheduleError(
                f"cannot read the schedule {args.schedule}: {_reason(exc)}"
            ) from None
        schedule = load_schedule(text, args.schedule)
        for flag, wanted in extensions.items():
            if wanted and not getattr(schedule, flag):
                option = "--" + flag.replace("_", "-")
                if not getattr(args, flag, False):
                    option = "--extensions"
                raise ScheduleError(
                    f"{option}: the schedule {args.schedule} runs without it, and a replay "
                    f'runs as saved (set "{flag}": true in the file to turn it on)'
                )
        return schedule
    return draw_schedule(
        args.seed,
        args.nodes,
        args.duration,
        unreliable=args.unreliable,
        snapshot_every=args.snapshot_every,
        **extensions,
    )


def _one_run(args: argparse.Namespace, schedule: Any) -> int:
    from .simulate import format_summary, run_simulation

    with _trace_file(args.trace) as sink:
        if sink is None and args.trace:
            return EXIT_USAGE
        with _progress_bar(args, schedule.duration, "simulating") as progress:
            result = run_simulation(schedule=schedule, progress=progress, trace=sink)
    if sink is not None and sink.error is not None:
        return EXIT_USAGE
    print(format_summary(result))
    return EXIT_OK if result.ok else EXIT_FAILED


def _sweep(args: argparse.Namespace) -> int:
    from .sweep import SweepOptions, format_sweep, parse_seeds, save_failure, sweep

    if args.schedule or args.save_schedule or args.trace:
        raise ValueError(
            "--seeds runs many schedules: it cannot be combined with --schedule, "
            "--save-schedule or --trace (a failure's are saved under traces/failures/)"
        )
    seeds = parse_seeds(args.seeds)
    options = SweepOptions(
        args.nodes, args.duration, args.unreliable, args.snapshot_every, **_extensions(args)
    )
    with _progress_bar(args, len(seeds), "seeds", threshold=2) as progress:
        done = [0]

        def count(_: Any) -> None:
            done[0] += 1
            if progress is not None:
                progress(done[0])

        result = sweep(seeds, options, jobs=args.jobs, on_result=count)
    print(format_sweep(result, args.jobs))
    if not result.failures:
        return EXIT_OK
    first = result.failures[0]
    print(f"  first failure: seed {first.seed}: {first.failure}")
    trace_path, schedule_path = save_failure(first.seed, options)
    print(f"  saved: {trace_path} and {schedule_path}")
    print(f"  replay: trioraft simulate --schedule {schedule_path} --trace replay.ndjson")
    return EXIT_FAILED


# ------------------------------------------------------------------ output


class _GuardedSink:
    """A trace file whose write errors (a full disk) are kept, not raised mid-run."""

    def __init__(self, path: str, file: IO[bytes]) -> None:
        self.path = path
        self.file = file
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        if self.error is None:
            try:
                return self.file.write(data)
            except OSError as exc:
                self.error = exc
        return 0

    def close(self) -> None:
        try:
            self.file.close()
        except OSError as exc:
            self.error = self.error or exc


@contextmanager
def _trace_file(path: str | None) -> Iterator[Any]:
    """The trace file (a :class:`_GuardedSink`), or None; reports a write error on exit."""
    if not path:
        yield None
        return
    try:
        file = open(path, "wb")  # noqa: SIM115 - closed below
    except OSError as exc:
        print(
            f"trioraft simulate: cannot write the trace to {path}: {_reason(exc)}", file=sys.stderr
        )
        yield None
        return
    sink = _GuardedSink(path, file)
    try:
        yield sink
    finally:
        sink.close()
        if sink.error is not None:
            print(
                f"trioraft simulate: cannot write the trace to {path}: {_reason(sink.error)}",
                file=sys.stderr,
            )


def _write_text(path: str, text: str) -> str | None:
    try:
        with open(path, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError as exc:
        return f"cannot write the schedule to {path}: {_reason(exc)}"
    return None


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)


@contextmanager
def _progress_bar(
    args: argparse.Namespace, total: float, unit: str, threshold: float = 30
) -> Iterator[Callable[[float], None] | None]:
    """A rich progress bar on stderr (a TTY, and a run long enough to want one)."""
    if args.no_progress or not sys.stderr.isatty() or total < threshold:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    label = "virtual s" if unit == "simulating" else unit
    with Progress(
        TextColumn(unit),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} " + label),
        TimeElapsedColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(unit, total=total)
        yield lambda done: bar.update(task, completed=done)
