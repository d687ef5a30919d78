"""``trioraft simulate``: a cluster under random crashes and disconnects, in virtual time.

A fault schedule (drawn from the seed) crashes, restarts, disconnects and
reconnects peers while a client submits commands to whoever leads.  At most a
minority is down at any moment, so the cluster should always recover; the
simulation measures how fast.  At the end every peer is healed and one last
command must reach all of them.  The tester's appliers (``harness``) check
throughout that every peer applies the same command at each index, in order.

Everything runs under ``trio.testing.MockClock`` with the scheduler seeded
(``trioraft.determinism``), so a seed reproduces a run exactly.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import trio
import trio.testing

from ..determinism import seed_scheduler
from ..trace.recorder import TraceRecorder
from .harness import Cluster, TestFailure, open_cluster

FAULT_GAP = (0.5, 2.5)
"""Seconds between two faults (uniform)."""

CLIENT_INTERVAL = 0.05
"""The client submits a command this often (to whoever claims to lead)."""


@dataclass
class Failover:
    """A fault took the leader away at ``start``; a new one was elected at ``end``."""

    fault: str
    start: float
    end: float | None = None

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start


@dataclass
class SimulationResult:
    seed: int
    nodes: int
    duration: float
    unreliable: bool
    elections: int = 0
    leaders: dict[int, int] = field(default_factory=dict)
    faults: list[tuple[float, str]] = field(default_factory=list)
    failovers: list[Failover] = field(default_factory=list)
    rpcs: int = 0
    rpc_bytes: int = 0
    committed: int = 0
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    failure: str | None = None
    recorder: TraceRecorder | None = None

    def failover_times(self) -> list[float]:
        return [f.duration for f in self.failovers if f.duration is not None]


class _Observer:
    """Watches the trace as it is recorded: counts elections, records leaders per term."""

    def __init__(self, result: SimulationResult, cfg_ref: list[Cluster]) -> None:
        self.result = result
        self.cfg_ref = cfg_ref
        self.pending: Failover | None = None

    def __call__(
        self, me: int, name: str, state: tuple[Any, ...] | None, fields: dict[str, Any]
    ) -> None:
        if name == "become_candidate":
            self.result.elections += 1
        elif name == "become_leader" and state is not None:
            self.result.leaders[state[0]] = me
            cfg = self.cfg_ref[0] if self.cfg_ref else None
            if self.pending is not None and cfg is not None and cfg.connected[me]:
                self.pending.end = trio.current_time()
                self.pending = None


def run_simulation(
    seed: int,
    nodes: int,
    duration: float,
    *,
    unreliable: bool = False,
    progress: Callable[[float], None] | None = None,
    trace: IO[bytes] | None = None,
    listener: Callable[[dict[str, Any]], None] | None = None,
) -> SimulationResult:
    """Run one simulation to completion (its own ``trio.run``, in virtual time).

    Its trace is written to ``trace`` (an open binary file) as it is recorded,
    and each event record is handed to ``listener`` (e.g. a live validator).
    """
    if nodes < 1:
        raise ValueError("--nodes must be at least 1")
    if duration <= 0:
        raise ValueError("--duration must be positive")
    result = SimulationResult(seed=seed, nodes=nodes, duration=duration, unreliable=unreliable)
    wall0, cpu0 = time.perf_counter(), time.process_time()  # wall-clock ok: measuring ourselves
    seed_scheduler(seed)
    try:
        trio.run(
            _simulate,
            result,
            progress,
            trace,
            listener,
            clock=trio.testing.MockClock(autojump_threshold=0),
        )
    except TestFailure as failure:
        result.failure = str(failure)
    result.wall_seconds = time.perf_counter() - wall0  # wall-clock ok
    result.cpu_seconds = time.process_time() - cpu0  # wall-clock ok
    return result


async def _simulate(
    result: SimulationResult,
    progress: Callable[[float], None] | None,
    sink: IO[bytes] | None,
    listener: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    cfg_ref: list[Cluster] = []
    observer = _Observer(result, cfg_ref)
    recorder = TraceRecorder(
        nodes=result.nodes,
        seed=result.seed,
        meta={"simulate": {"duration": result.duration, "unreliable": result.unreliable}},
        observer=observer,
        sink=sink,
        keep=False,
        listener=listener,
    )
    result.recorder = recorder
    async with open_cluster(
        result.nodes, unreliable=result.unreliable, seed=result.seed, tracer=recorder
    ) as cfg:
        cfg_ref.append(cfg)
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_client, cfg)
            await _faults(cfg, observer, t0 + result.duration, progress)
            nursery.cancel_scope.cancel()
        # Heal: everyone back, reliable network, and one command must reach all.
        cfg.setunreliable(False)
        for i in range(cfg.n):
            if cfg.rafts[i] is None:
                cfg.start1(i)
            cfg.connect(i)
        await cfg.one(cfg.rng.getrandbits(32), cfg.n, True)
        result.rpcs = cfg.rpc_total()
        result.rpc_bytes = cfg.bytes_total()
        result.committed = cfg.max_index
        if progress is not None:
            progress(result.duration)


async def _client(cfg: Cluster) -> None:
    while True:
        for rf in cfg.rafts:
            if rf is not None:
                _, _, ok = rf.start(cfg.rng.getrandbits(32))
                if ok:
                    break
        await trio.sleep(CLIENT_INTERVAL)


def _current_leader(cfg: Cluster) -> int | None:
    best: tuple[int, int] | None = None
    for i, rf in enumerate(cfg.rafts):
        if rf is not None and cfg.connected[i]:
            term, leader = rf.get_state()
            if leader and (best is None or term > best[0]):
                best = (term, i)
    return None if best is None else best[1]


async def _faults(
    cfg: Cluster,
    observer: _Observer,
    until: float,
    progress: Callable[[float], None] | None,
) -> None:
    rng = cfg.rng
    result = observer.result
    max_down = (cfg.n - 1) // 2
    crashed: set[int] = set()
    disconnected: set[int] = set()
    start = trio.current_time()
    while True:
        gap = rng.uniform(*FAULT_GAP)
        if trio.current_time() + gap >= until:
            await trio.sleep_until(until)
            return
        await trio.sleep(gap)
        now = trio.current_time()
        if progress is not None:
            progress(now - start)
        down = crashed | disconnected
        if len(down) < max_down and rng.random() < 0.7:
            leader = _current_leader(cfg)
            up = [i for i in range(cfg.n) if i not in down]
            target = leader if leader is not None and rng.random() < 0.6 else rng.choice(up)
            if rng.random() < 0.5:
                cfg.crash1(target)
                crashed.add(target)
                fault = f"crash {target}"
            else:
                cfg.disconnect(target)
                disconnected.add(target)
                fault = f"disconnect {target}"
            if target == leader:
                fault += " (leader)"
                if observer.pending is None:
                    observer.pending = Failover(fault, now)
                    result.failovers.append(observer.pending)
            result.faults.append((now - start, fault))
        elif down:
            target = rng.choice(sorted(down))
            if target in crashed:
                cfg.start1(target)
                crashed.discard(target)
                fault = f"restart {target}"
            else:
                fault = f"reconnect {target}"
            disconnected.discard(target)
            cfg.connect(target)
            result.faults.append((now - start, fault))


def format_summary(result: SimulationResult) -> str:
    """The human summary ``trioraft simulate`` prints."""
    lines = [
        f"trioraft simulate: seed {result.seed}, {result.nodes} nodes, "
        f"{result.duration:g} s virtual, "
        f"{'unreliable' if result.unreliable else 'reliable'} network",
        f"  wall time        {result.wall_seconds:.2f} s ({result.cpu_seconds:.2f} s CPU), "
        f"{result.duration / max(result.wall_seconds, 1e-9):.0f} simulated s per wall s",
        f"  faults injected  {len(result.faults)}",
        f"  elections        {result.elections} started, {len(result.leaders)} won",
        f"  commands         {result.committed} committed",
        f"  RPCs sent        {result.rpcs} ({result.rpc_bytes} bytes)",
    ]
    times = result.failover_times()
    unfinished = sum(1 for f in result.failovers if f.end is None)
    if times:
        lines.append(
            "  leaderless after a leader fault: "
            f"min {min(times):.3f} s, median {statistics.median(times):.3f} s, "
            f"max {max(times):.3f} s over {len(times)} faults"
            + (f" ({unfinished} not recovered before the next fault)" if unfinished else "")
        )
    else:
        lines.append("  leaderless after a leader fault: no leader fault in this run")
    lines.append("  leader per term:")
    terms = sorted(result.leaders)
    for chunk_start in range(0, len(terms), 8):
        chunk = terms[chunk_start : chunk_start + 8]
        lines.append("    " + "  ".join(f"t{t}:n{result.leaders[t]}" for t in chunk))
    if result.failure is None:
        lines.append(
            "  result: OK (every peer applied the same commands in order; final agreement)"
        )
    else:
        lines.append(f"  result: FAILED: {result.failure}")
    return "\n".join(lines)
