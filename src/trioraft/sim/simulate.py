"""``trioraft simulate``: a cluster under a fault schedule, in virtual time, checked throughout.

A run carries out a :class:`~trioraft.sim.schedule.Schedule` in phases:

1. **Chaos.**  The schedule's faults start and end on time while a client
   submits a command every ``client_interval`` seconds to whoever claims to
   lead.  The service snapshots every ``snapshot_every`` entries, so
   InstallSnapshot is exercised too.  The trace is validated against the
   Figure 2 model as it is recorded, and the run stops at the first violation.
2. **Heal.**  Every fault stops.  A leader must be elected within
   :data:`HEAL_LEADER_WITHIN` virtual seconds, and then a new command must
   reach every peer (so every acknowledged one has too).
3. **Stability.**  Healed and led, with nothing failing, the cluster must hold
   no election for :data:`STABILITY` virtual seconds while the client goes on.
4. **History.**  Every command a client was told committed (its peer applied
   it at the index ``start`` gave) is at that index at every peer, exactly
   once; every peer holds the same log; nothing is in it that no client
   submitted (:func:`check_history`).

Throughout, the tester's appliers check that every peer applies the same
command at each index, in order.  A :class:`~trioraft.sim.watchdog.Watchdog`
turns a livelock (virtual time stuck) into a failure.  Everything runs under
``trio.testing.MockClock`` with the scheduler seeded, so a schedule gives the
same run, and the same trace, byte for byte.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import trio
import trio.testing

from ..core.config import RaftConfig
from ..determinism import seed_scheduler
from ..model.validator import Violation
from ..trace.recorder import TraceRecorder
from ..validate import LiveValidation
from .faults import FaultInjector
from .harness import Cluster, TestFailure, open_cluster
from .schedule import Fault, Schedule, draw_schedule
from .watchdog import Stalled, Watchdog

HEAL_LEADER_WITHIN = 5.0
"""Virtual seconds after healing by which a leader must be elected."""

STABILITY = 5.0
"""Virtual seconds of calm after the heal in which no election may start (more than
eight of the longest election timeouts)."""

LEADER_POLL = 0.01
"""How often the heal phase looks for a leader (virtual seconds)."""


class SimulationFailure(Exception):
    """A check of the simulation failed; the message says which and in what phase."""


@dataclass
class Failover:
    """A fault took the leader away at ``start``; at ``end`` a leader that can lead
    held the highest term again: a new one elected, or the old one back when its
    fault ended."""

    fault: str
    start: float
    end: float | None = None

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start


@dataclass
class SimulationResult:
    schedule: Schedule
    elections: int = 0
    leaders: dict[int, int] = field(default_factory=dict)  # term -> its leader
    faults: list[tuple[float, str]] = field(default_factory=list)  # (when, what), resolved
    failovers: list[Failover] = field(default_factory=list)
    heal_time: float | None = None  # virtual seconds from the heal to a leader
    rpcs: int = 0
    rpc_bytes: int = 0
    committed: int = 0  # the highest index any peer applied
    submitted: int = 0
    acknowledged: int = 0
    events: int = 0
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    phase: str = "chaos"  # the phase the run reached (where it failed, if it did)
    failure: str | None = None
    violation: Violation | None = None  # the live validator's, if that is the failure
    recorder: TraceRecorder | None = None

    @property
    def seed(self) -> int:
        return self.schedule.seed

    @property
    def nodes(self) -> int:
        return self.schedule.nodes

    @property
    def duration(self) -> float:
        return self.schedule.duration

    @property
    def unreliable(self) -> bool:
        return self.schedule.unreliable

    @property
    def ok(self) -> bool:
        return self.failure is None

    def failover_times(self) -> list[float]:
        return [d for f in self.failovers if (d := f.duration) is not None]


def run_simulation(
    seed: int = 1,
    nodes: int = 5,
    duration: float = 60.0,
    *,
    unreliable: bool = False,
    pre_vote: bool = False,
    check_quorum: bool = False,
    schedule: Schedule | None = None,
    progress: Callable[[float], None] | None = None,
    trace: IO[bytes] | None = None,
    listener: Callable[[dict[str, Any]], None] | None = None,
    validate: bool = True,
) -> SimulationResult:
    """Run one simulation to completion (its own ``trio.run``, in virtual time).

    ``schedule`` is run as given; without one, the schedule drawn from
    ``seed`` for ``nodes`` peers and ``duration`` seconds of chaos (with the
    extensions ``pre_vote`` and ``check_quorum`` as asked).  The peers run the
    extensions the schedule turns on.  The trace
    goes to ``trace`` (an open binary file) as it is recorded, and each event
    record to ``listener``.  With ``validate`` (the default) the trace is
    validated as it is recorded and the run stops at the first violation.
    """
    if schedule is None:
        schedule = draw_schedule(
            seed,
            nodes,
            duration,
            unreliable=unreliable,
            pre_vote=pre_vote,
            check_quorum=check_quorum,
        )
    result = SimulationResult(schedule)
    wall0, cpu0 = time.perf_counter(), time.process_time()  # wall-clock ok: measuring ourselves
    watchdog = Watchdog(name=f"the simulation of seed {schedule.seed}")
    seed_scheduler(schedule.seed)
    try:
        trio.run(
            _simulate,
            result,
            watchdog,
            progress,
            trace,
            listener,
            validate,
            clock=trio.testing.MockClock(autojump_threshold=0),
            instruments=[watchdog],
        )
    except (TestFailure, SimulationFailure, Stalled) as failure:
        if result.failure is None:
            result.failure = f"{result.phase} phase: {failure}"
    result.wall_seconds = time.perf_counter() - wall0  # wall-clock ok
    result.cpu_seconds = time.process_time() - cpu0  # wall-clock ok
    return result


class _Observer:
    """Watches the trace as it is recorded: elections, leaders per term, failovers."""

    def __init__(self, result: SimulationResult) -> None:
        self.result = result
        self.injector: FaultInjector | None = None
        self.pending: Failover | None = None

    def __call__(
        self, me: int, name: str, state: tuple[Any, ...] | None, fields: dict[str, Any]
    ) -> None:
        if name == "become_candidate":
            self.result.elections += 1
        elif name == "become_leader" and state is not None:
            self.result.leaders[state[0]] = me
            pending, injector = self.pending, self.injector
            if pending is not None and injector is not None and injector.can_lead(me):
                self._close()

    def fault_ended(self, cfg: Cluster) -> None:
        """A fault ended: a leader it had cut off may simply lead again (a deaf or
        briefly isolated leader, with no election), which ends the failover too."""
        if self.pending is None or self.injector is None:
            return
        leader = _current_leader(cfg, self.injector)
        terms = {i: rf.get_state()[0] for i, rf in enumerate(cfg.rafts) if rf is not None}
        if leader is not None and terms[leader] == max(terms.values()):
            self._close()

    def _close(self) -> None:
        assert self.pending is not None
        self.pending.end = trio.current_time()
        self.pending = None


async def _simulate(
    result: SimulationResult,
    watchdog: Watchdog,
    progress: Callable[[float], None] | None,
    sink: IO[bytes] | None,
    listener: Callable[[dict[str, Any]], None] | None,
    validate: bool,
) -> None:
    schedule = result.schedule
    observer = _Observer(result)
    stop = trio.CancelScope()

    def violated(violation: Violation) -> None:
        result.violation = violation
        result.failure = (
            f"{result.phase} phase: the trace violates the Figure 2 model at line "
            f"{violation.line}: {violation.describe()}"
        )
        stop.cancel()  # stop at the first violation

    live = LiveValidation(schedule.nodes, on_violation=violated) if validate else None
    listeners = [f for f in (listener, live) if f is not None]
    recorder = TraceRecorder(
        nodes=schedule.nodes,
        seed=schedule.seed,
        meta={"simulate": schedule.to_json()},
        observer=observer,
        sink=sink,
        keep=False,
        listener=_fan_out(listeners),
    )
    result.recorder = recorder
    cut = True
    with watchdog.guard(), stop:
        async with open_cluster(
            schedule.nodes,
            snapshot=schedule.snapshot_every > 0,
            snapshot_interval=max(schedule.snapshot_every, 1),
            seed=schedule.seed,
            raft_config=_raft_config(schedule),
            tracer=recorder,
        ) as cfg:
            await _phases(cfg, result, observer, progress)
            cut = False
    if live is not None:
        live.verdict(cut=cut or stop.cancelled_caught)
    result.events = recorder.events


def _raft_config(schedule: Schedule) -> RaftConfig | None:
    """The peers' RaftConfig: the defaults, with the extensions the schedule turns on."""
    if not schedule.extensions:
        return None
    return RaftConfig(pre_vote=schedule.pre_vote, check_quorum=schedule.check_quorum)


def _fan_out(
    listeners: list[Callable[[dict[str, Any]], None]],
) -> Callable[[dict[str, Any]], None] | None:
    if not listeners:
        return None
    if len(listeners) == 1:
        return listeners[0]

    def both(record: dict[str, Any]) -> None:
        for f in listeners:
            f(record)

    return both


async def _phases(
    cfg: Cluster,
    result: SimulationResult,
    observer: _Observer,
    progress: Callable[[float], None] | None,
) -> None:
    schedule = result.schedule
    injector = FaultInjector(cfg, lambda: _current_leader(cfg, injector))
    injector.chaos_unreliable = schedule.unreliable
    injector.heal()  # applies the network settings
    observer.injector = injector
    client = _Client(cfg, schedule.client_interval)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.run)
        await _chaos(cfg, injector, observer, progress)

        result.phase = "heal"
        injector.chaos_unreliable = False
        injector.heal()
        healed = trio.current_time()
        result.heal_time = await _leader_within(cfg, HEAL_LEADER_WITHIN) - healed
        await _agreement(cfg, client.next_command(), "after healing")

        result.phase = "stability"
        elections = result.elections
        await trio.sleep(STABILITY)
        if result.elections != elections:
            raise SimulationFailure(
                f"{result.elections - elections} election(s) started within {STABILITY:g} s "
                "of healing, with a leader and nothing failing"
            )
        nursery.cancel_scope.cancel()

    result.phase = "history"
    final = await _agreement(cfg, client.next_command(), "at the end")
    client.collect_acks()
    result.submitted = len(client.submitted)
    result.acknowledged = len(client.acked)
    result.rpcs = cfg.rpc_total()
    result.rpc_bytes = cfg.bytes_total()
    result.committed = cfg.max_index
    problem = check_history(client.submitted, client.acked, cfg.logs, final)
    if problem is not None:
        raise SimulationFailure(problem)
    if progress is not None:
        progress(schedule.duration)


async def _chaos(
    cfg: Cluster,
    injector: FaultInjector,
    observer: _Observer,
    progress: Callable[[float], None] | None,
) -> None:
    """Start and end each fault on time, until the chaos phase is over."""
    result = observer.result
    duration = result.schedule.duration
    moments: list[tuple[float, int, int, Fault]] = []
    for k, fault in enumerate(result.schedule.faults):
        if fault.at < duration:
            moments.append((fault.at, 1, k, fault))
            if fault.end < duration:
                moments.append((fault.end, 0, k, fault))  # ends before starts at one instant
    moments.sort(key=lambda m: m[:3])
    t0 = trio.current_time()
    started: set[int] = set()
    for at, starts, k, fault in moments:
        await trio.sleep_until(t0 + at)
        if progress is not None:
            progress(at)
        if not starts:
            if k in started:
                injector.end(fault)
                observer.fault_ended(cfg)
            continue
        leader = _current_leader(cfg, injector)
        nodes = injector.begin(fault)
        started.add(k)
        what = fault.describe(nodes)
        result.faults.append((at, what))
        if leader is not None and not injector.can_lead(leader) and observer.pending is None:
            observer.pending = Failover(f"{what} (leader {leader})", trio.current_time())
            result.failovers.append(observer.pending)
    await trio.sleep_until(t0 + duration)


def _current_leader(cfg: Cluster, injector: FaultInjector) -> int | None:
    """The leader of the highest term among the peers that can lead, if any."""
    best: tuple[int, int] | None = None
    for i, rf in enumerate(cfg.rafts):
        if rf is not None and injector.can_lead(i):
            term, leader = rf.get_state()
            if leader and (best is None or term > best[0]):
                best = (term, i)
    return None if best is None else best[1]


async def _leader_within(cfg: Cluster, seconds: float) -> float:
    """Wait for a leader whose term no peer has passed; returns when it was seen."""
    deadline = trio.current_time() + seconds
    while True:
        states = [rf.get_state() for rf in cfg.rafts if rf is not None]
        top = max((term for term, _ in states), default=0)
        if any(leader and term == top for term, leader in states):
            return trio.current_time()
        if trio.current_time() >= deadline:
            terms = ", ".join(str(term) for term, _ in states)
            raise SimulationFailure(
                f"no leader within {seconds:g} s of healing every fault (terms {terms})"
            )
        await trio.sleep(LEADER_POLL)


async def _agreement(cfg: Cluster, command: int, when: str) -> int:
    """One more command committed at every peer (6.824's ``one``, retrying)."""
    try:
        return await cfg.one(command, cfg.n, True)
    except TestFailure:
        raise SimulationFailure(
            f"a command submitted {when} was not committed at every peer within 10 s"
        ) from None


class _Client:
    """Submits numbered commands to whoever claims to lead; learns which committed.

    A command is acknowledged (the client is told it committed) once the peer
    it was submitted to has applied it at the index ``start`` returned.
    """

    def __init__(self, cfg: Cluster, interval: float) -> None:
        self.cfg = cfg
        self.interval = interval
        self._numbers = itertools.count(1)
        self.submitted: set[int] = set()
        self.acked: dict[int, int] = {}  # command -> its index
        self._waiting: list[tuple[int, int, int]] = []  # (peer, index, command)
        self._next_peer = 0

    def next_command(self) -> int:
        command = next(self._numbers)
        self.submitted.add(command)
        return command

    async def run(self) -> None:
        cfg = self.cfg
        while True:
            self.collect_acks()
            for k in range(cfg.n):
                i = (self._next_peer + k) % cfg.n
                rf = cfg.rafts[i]
                if rf is None:
                    continue
                command = self.next_command()
                index, _, ok = rf.start(command)
                if ok:
                    self._next_peer = i
                    self._waiting.append((i, index, command))
                    break
                self.submitted.discard(command)  # refused: never submitted
            await trio.sleep(self.interval)

    def collect_acks(self) -> None:
        logs = self.cfg.logs
        still = []
        for peer, index, command in self._waiting:
            applied = logs[peer].get(index, _MISSING)
            if applied is _MISSING:
                still.append((peer, index, command))
            elif applied == command:
                self.acked[command] = index
        self._waiting = still


_MISSING = object()


def check_history(
    submitted: set[int], acked: dict[int, int], logs: list[dict[int, Any]], upto: int
) -> str | None:
    """The client-history checks over the peers' applied logs up to ``upto``; None if all hold.

    Every peer holds every index up to ``upto`` and the same command at each;
    every command in it was submitted and appears once; every acknowledged
    command is at the index it was acknowledged at.
    """
    first = logs[0]
    seen: dict[Any, int] = {}
    for index in range(1, upto + 1):
        values = [log.get(index, _MISSING) for log in logs]
        for peer, value in enumerate(values):
            if value is _MISSING:
                return f"peer {peer} never applied index {index} (committed up to {upto})"
            if value != values[0]:
                return (
                    f"the logs differ at index {index}: peer 0 applied {values[0]!r}, "
                    f"peer {peer} applied {value!r}"
                )
        value = first[index]
        if value not in submitted:
            return f"index {index} holds {value!r}, which no client submitted"
        if value in seen:
            return f"command {value!r} is in the log twice, at indexes {seen[value]} and {index}"
        seen[value] = index
    for command, index in sorted(acked.items(), key=lambda kv: kv[1]):
        if seen.get(command) != index:
            return (
                f"command {command!r} was acknowledged as committed at index {index}, "
                f"but index {index} holds {first.get(index)!r}"
            )
    return None


# ------------------------------------------------------------------ the summary


def format_summary(result: SimulationResult) -> str:
    """The human summary ``trioraft simulate`` prints for one run."""
    s = result.schedule
    lines = [
        f"trioraft simulate: seed {s.seed}, {s.nodes} nodes, {s.duration:g} s of faults "
        f"then heal, {'unreliable' if s.unreliable else 'reliable'} network, "
        f"snapshots every {s.snapshot_every or 'never'} entries"
        + extensions_note(s.pre_vote, s.check_quorum),
        f"  wall time        {result.wall_seconds:.2f} s ({result.cpu_seconds:.2f} s CPU), "
        f"{s.duration / max(result.wall_seconds, 1e-9):.0f} simulated s per wall s",
        f"  faults           {len(result.faults)} started: " + _fault_counts(result),
        f"  elections        {result.elections} started, {len(result.leaders)} won",
        f"  commands         {result.submitted} submitted, {result.acknowledged} acknowledged, "
        f"{result.committed} committed",
        f"  RPCs sent        {result.rpcs} ({result.rpc_bytes} bytes)",
        f"  trace            {result.events} events"
        + (", validated as recorded" if result.violation is None else ""),
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
    if result.heal_time is not None:
        lines.append(
            f"  heal             a leader {result.heal_time:.3f} s after every fault ended"
        )
    lines.append("  leader per term:")
    terms = sorted(result.leaders)
    for chunk_start in range(0, len(terms), 8):
        chunk = terms[chunk_start : chunk_start + 8]
        lines.append("    " + "  ".join(f"t{t}:n{result.leaders[t]}" for t in chunk))
    if result.failure is None:
        lines.append(
            "  result: OK (trace valid; healed, led and stable; every acknowledged command "
            "committed once, in one order, at every peer)"
        )
    else:
        lines.append(f"  result: FAILED {result.failure}")
    return "\n".join(lines)


def extensions_note(pre_vote: bool, check_quorum: bool) -> str:
    """``", with Pre-Vote and CheckQuorum"`` (what a summary line adds), or ``""``."""
    on = [name for name, flag in (("Pre-Vote", pre_vote), ("CheckQuorum", check_quorum)) if flag]
    return f", with {' and '.join(on)}" if on else ""


def _fault_counts(result: SimulationResult) -> str:
    counts: dict[str, int] = {}
    for _, what in result.faults:
        kind = what.split(" ", 1)[0]
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "none"
