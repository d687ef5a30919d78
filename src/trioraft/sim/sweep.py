"""Sweeps: ``trioraft simulate --seeds A-B --jobs J`` runs many seeds and sums them up.

Seeds run in worker processes (``jobs`` of them; with one job, in this
process), each a whole simulation with live validation but no trace file.  On
the first failure the sweep stops handing out seeds, runs the failing seed
again here with its trace written, and saves the trace and the schedule under
``traces/failures/``: runs are deterministic, so the second run is the first
one, byte for byte.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from .schedule import Schedule, draw_schedule, dump_schedule
from .simulate import extensions_note, run_simulation

FAILURES_DIR = Path("traces") / "failures"


@dataclass(frozen=True)
class SweepOptions:
    """What every seed of a sweep shares."""

    nodes: int = 5
    duration: float = 60.0
    unreliable: bool = False
    snapshot_every: int = 10
    pre_vote: bool = False
    check_quorum: bool = False

    def schedule(self, seed: int) -> Schedule:
        return draw_schedule(
            seed,
            self.nodes,
            self.duration,
            unreliable=self.unreliable,
            snapshot_every=self.snapshot_every,
            pre_vote=self.pre_vote,
            check_quorum=self.check_quorum,
        )


@dataclass(frozen=True)
class SeedSummary:
    """One seed's run, as small as a worker can send back."""

    seed: int
    failure: str | None
    leader_changes: int
    elections: int
    commits: int
    failovers: tuple[float, ...]
    heal_time: float | None
    cpu_seconds: float


def run_seed(seed: int, options: SweepOptions) -> SeedSummary:
    """Run one seed (in a worker process, or here)."""
    r = run_simulation(schedule=options.schedule(seed))
    return SeedSummary(
        seed=seed,
        failure=r.failure,
        leader_changes=len(r.leaders),
        elections=r.elections,
        commits=r.committed,
        failovers=tuple(r.failover_times()),
        heal_time=r.heal_time,
        cpu_seconds=r.cpu_seconds,
    )


@dataclass
class SweepResult:
    options: SweepOptions
    seeds: range
    runs: list[SeedSummary] = field(default_factory=list)
    wall_seconds: float = 0.0
    saved: tuple[Path, Path] | None = None  # the first failure's trace and schedule

    @property
    def failures(self) -> list[SeedSummary]:
        return [r for r in self.runs if r.failure is not None]


def sweep(
    seeds: range,
    options: SweepOptions,
    *,
    jobs: int = 1,
    on_result: Callable[[SeedSummary], None] | None = None,
    stop_at_failure: bool = True,
) -> SweepResult:
    """Run every seed in ``seeds`` (until the first failure, with ``stop_at_failure``)."""
    result = SweepResult(options, seeds)
    start = time.perf_counter()  # wall-clock ok: reporting the sweep's own speed
    for summary in _runs(seeds, options, jobs, lambda: stop_at_failure and bool(result.failures)):
        result.runs.append(summary)
        if on_result is not None:
            on_result(summary)
    result.runs.sort(key=lambda r: r.seed)
    result.wall_seconds = time.perf_counter() - start  # wall-clock ok
    return result


def _runs(
    seeds: range, options: SweepOptions, jobs: int, stop: Callable[[], bool]
) -> Iterator[SeedSummary]:
    if jobs <= 1:
        for seed in seeds:
            if stop():
                return
            yield run_seed(seed, options)
        return
    context = multiprocessing.get_context(
        "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    )
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        pending: set[Future[SeedSummary]] = set()
        upcoming = iter(seeds)
        while True:
            while len(pending) < 2 * jobs and not stop():
                next_seed = next(upcoming, None)
                if next_seed is None:
                    break
                pending.add(pool.submit(run_seed, next_seed, options))
            if not pending:
                return
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: f.result().seed):
                yield future.result()


def save_failure(
    seed: int, options: SweepOptions, directory: Path = FAILURES_DIR
) -> tuple[Path, Path]:
    """Run ``seed`` again with its trace written; save the trace and the schedule."""
    directory.mkdir(parents=True, exist_ok=True)
    schedule = options.schedule(seed)
    schedule_path = directory / f"seed-{seed}.schedule.json"
    trace_path = directory / f"seed-{seed}.ndjson"
    schedule_path.write_text(dump_schedule(schedule))
    with open(trace_path, "wb") as trace:
        run_simulation(schedule=schedule, trace=trace)
    return trace_path, schedule_path


def parse_seeds(text: str) -> range:
    """``A-B`` (inclusive) or a single seed ``A``; raises ValueError with the reason."""
    first, dash, last = text.partition("-")
    try:
        a = int(first)
        b = int(last) if dash else a
    except ValueError:
        raise ValueError(f"expected a seed range like 1-200, got {text!r}") from None
    if a < 0:
        raise ValueError(f"seeds must be >= 0, got {text!r}")
    if b < a:
        raise ValueError(f"the range {text!r} is empty (its end is before its start)")
    return range(a, b + 1)


def format_sweep(result: SweepResult, jobs: int) -> str:
    """The summary table a sweep prints."""
    o = result.options
    runs = result.runs
    seeds = result.seeds
    failovers = sorted(t for r in runs for t in r.failovers)
    heals = sorted(r.heal_time for r in runs if r.heal_time is not None)
    lines = [
        f"trioraft simulate: seeds {seeds.start}-{seeds.stop - 1}, {o.nodes} nodes, "
        f"{o.duration:g} s of faults each, {'unreliable' if o.unreliable else 'reliable'} "
        f"network, snapshots every {o.snapshot_every or 'never'} entries"
        f"{extensions_note(o.pre_vote, o.check_quorum)}, {jobs} job(s)",
        f"  {'runs':<18}{len(runs)} of {len(seeds)}, {len(result.failures)} violation(s)",
        f"  {'wall time':<18}{result.wall_seconds:.1f} s, "
        f"{60 * len(runs) / max(result.wall_seconds, 1e-9):.0f} runs per wall minute",
        f"  {'leader changes':<18}{_spread([r.leader_changes for r in runs])}",
        f"  {'elections started':<18}{_spread([r.elections for r in runs])}",
        f"  {'commits':<18}{_spread([r.commits for r in runs])}",
        f"  {'failover':<18}"
        + (
            f"p50 {_pct(failovers, 50):.3f} s, p90 {_pct(failovers, 90):.3f} s, "
            f"p99 {_pct(failovers, 99):.3f} s, max {failovers[-1]:.3f} s "
            f"over {len(failovers)} leader faults"
            if failovers
            else "no leader fault"
        ),
        f"  {'heal to a leader':<18}"
        + (
            f"median {statistics.median(heals):.3f} s, max {heals[-1]:.3f} s"
            if heals
            else "no run healed"
        ),
    ]
    return "\n".join(lines)


def _spread(values: list[int]) -> str:
    if not values:
        return "-"
    return (
        f"total {sum(values):,}, per run median {statistics.median(values):g}, "
        f"min {min(values)}, max {max(values)}"
    )


def _pct(values: list[float], p: float) -> float:
    k = min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))
    return values[k]
