"""``trioraft simulate``: schedules as data, the fault injector, the phases' checks,
reproducibility, sweeps, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given, settings

from schedules import run, schedules
from trioraft.cli import main
from trioraft.determinism import seed_scheduler
from trioraft.sim.faults import FaultInjector
from trioraft.sim.harness import open_cluster
from trioraft.sim.schedule import (
    Fault,
    Schedule,
    ScheduleError,
    draw_schedule,
    dump_schedule,
    load_schedule,
)
from trioraft.sim.simulate import check_history
from trioraft.sim.sweep import SweepOptions, parse_seeds, sweep
from trioraft.sim.watchdog import Stalled, Watchdog

REGRESSIONS = Path(__file__).resolve().parent.parent / "traces" / "regressions"

# ------------------------------------------------------------------ schedules as data


@given(schedules(duration=30.0, max_faults=20))
@settings(max_examples=200, deadline=None)
def test_a_schedule_reads_back_as_written(schedule: Schedule) -> None:
    assert load_schedule(dump_schedule(schedule)) == schedule


@pytest.mark.parametrize("duration", [60.0, 7.3, 0.5])
def test_every_drawn_schedule_is_valid(duration: float) -> None:
    """Thousands of seeds, each drawn schedule passes its own checks (a fault cut
    at the end of the chaos once rounded to 0 s and was refused)."""
    for seed in range(3000):
        for f in draw_schedule(seed, 5, duration).faults:
            assert f.length > 0 and f.at < duration, (seed, f)


def test_drawn_schedules_depend_only_on_their_arguments() -> None:
    a = draw_schedule(7, 5, 60.0)
    assert a == draw_schedule(7, 5, 60.0)
    assert a != draw_schedule(8, 5, 60.0)
    kinds = {f.kind for seed in range(20) for f in draw_schedule(seed, 5, 60.0).faults}
    assert kinds == {
        "crash",
        "isolate",
        "partition",
        "one_way",
        "unreliable",
        "long_reordering",
        "long_delays",
        "duplicate",
    }


@pytest.mark.parametrize("nodes", [2, 3, 4, 5, 6])
def test_drawn_schedules_cut_off_at_most_a_minority(nodes: int) -> None:
    for seed in range(50):
        s = draw_schedule(seed, nodes, 60.0)
        for f in s.faults:
            at = f.at
            cut = sum(
                len(g.side) if g.kind == "partition" else 1
                for g in s.faults
                if g.kind in ("crash", "isolate", "partition") and g.at <= at < g.end
            )
            assert cut <= (nodes - 1) // 2, (seed, at)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(nodes=0), "nodes: must be at least 1"),
        (lambda d: d.update(duration=-1), "duration: must be a positive"),
        (lambda d: d.pop("seed"), "seed: missing"),
        (lambda d: d.update(version=9), "version: expected 1"),
        (lambda d: d.update(colour="red"), "colour: unknown field"),
        (lambda d: d["faults"].append({"kind": "meteor", "at": 1, "for": 1}), "faults[0].kind"),
        (
            lambda d: d["faults"].append({"kind": "crash", "at": 1, "for": 1, "node": 3}),
            "faults[0].node: must be a node number 0-2",
        ),
        (
            lambda d: d["faults"].append(
                {"kind": "one_way", "at": 1, "for": 1, "from": 9, "to": 0}
            ),
            "faults[0].from: must be a node number 0-2",
        ),
        (
            lambda d: d["faults"].append({"kind": "isolate", "at": 1, "for": 1, "node": "boss"}),
            'faults[0].node: must be a node number 0-2 or "leader"',
        ),
        (
            lambda d: d["faults"].append({"kind": "crash", "at": 1, "for": 0, "node": 1}),
            "faults[0].for: must be a positive",
        ),
        (
            lambda d: d["faults"].append({"kind": "one_way", "at": 1, "for": 1, "from": 0}),
            "faults[0].to: missing",
        ),
        (
            lambda d: d["faults"].append({"kind": "partition", "at": 1, "for": 1, "side": []}),
            "faults[0].side: a partition needs",
        ),
    ],
)
def test_a_malformed_schedule_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: object, field: str
) -> None:
    data = json.loads(dump_schedule(Schedule(seed=1, nodes=3, duration=5.0)))
    change(data)  # type: ignore[operator]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    assert main(["simulate", "--schedule", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: " in err and field in err and "Traceback" not in err


def test_a_schedule_that_is_not_json_exits_2_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"version": 1,\n  "seed": }')
    assert main(["simulate", "--schedule", str(path)]) == 2
    assert f"{path}:2: not JSON" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds", "5-1"], "is empty"),
        (["--seeds", "a-b"], "expected a seed range"),
        (["--seeds", "1-2", "--trace", "x"], "cannot be combined"),
    ],
)
def test_impossible_sweeps_exit_2_with_the_reason(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["simulate", *argv]) == 2
    assert message in capsys.readouterr().err


def test_an_unwritable_trace_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--nodes", "3", "--duration", "2", "--trace", "/dev/full"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "trioraft simulate: cannot write the trace to /dev/full: No space left on device"
    ]


# ------------------------------------------------------------------ the fault injector


async def test_faults_compose_and_end_independently() -> None:
    async with open_cluster(3, seed=1) as cfg:
        injector = FaultInjector(cfg, lambda: None)
        injector.heal()
        one_way = Fault("one_way", 0, 1, source=0, target=1)
        injector.begin(one_way)
        assert not injector.link(0, 1) and injector.link(1, 0)  # 1 does not hear 0
        partition = Fault("partition", 0, 1, side=(2,))
        injector.begin(partition)
        assert not any(injector.link(2, j) or injector.link(j, 2) for j in (0, 1))
        assert not injector.can_lead(1)  # it reaches 0, but 0 does not reach it: no majority
        injector.end(partition)
        assert injector.link(2, 0) and not injector.link(0, 1)
        first = Fault("crash", 0, 1, node=1)
        second = Fault("crash", 0, 2, node=1)
        injector.begin(first)
        injector.begin(second)
        injector.end(first)
        assert cfg.rafts[1] is None  # still held down by the second crash
        injector.end(second)
        assert cfg.rafts[1] is not None and injector.up(1)
        injector.end(one_way)
        assert all(injector.link(i, j) for i in range(3) for j in range(3))


# ------------------------------------------------------------------ the phases' checks


def test_the_history_check_names_each_kind_of_loss() -> None:
    good = [{1: 10, 2: 11, 3: 12}, {1: 10, 2: 11, 3: 12}]
    submitted = {10, 11, 12}
    assert check_history(submitted, {10: 1, 12: 3}, good, 3) is None
    assert "peer 1 never applied index 3" in str(
        check_history(submitted, {}, [good[0], {1: 10, 2: 11}], 3)
    )
    assert "the logs differ at index 2" in str(
        check_history(submitted, {}, [good[0], {1: 10, 2: 12, 3: 12}], 3)
    )
    assert "which no client submitted" in str(check_history({10, 11}, {}, good, 3))
    twice = [{1: 10, 2: 11, 3: 10}] * 2
    assert "in the log twice" in str(check_history(submitted, {}, twice, 3))
    assert "acknowledged as committed at index 2" in str(
        check_history(submitted | {13}, {13: 2}, good, 3)
    )


def test_a_livelock_is_a_failure_not_a_hang() -> None:
    async def spin() -> None:
        with watchdog.guard():
            while True:  # wakes itself for ever, never letting virtual time move
                await trio.lowlevel.checkpoint()

    watchdog = Watchdog(max_steps=5_000, name="the spinner")
    seed_scheduler(1)
    with pytest.raises(Stalled, match="the spinner livelocked: 5,000 scheduler steps"):
        trio.run(spin, clock=trio.testing.MockClock(autojump_threshold=0), instruments=[watchdog])


# ------------------------------------------------------------------ runs


def test_a_run_passes_every_phase_and_reports_them() -> None:
    result = run(draw_schedule(11, 5, 20.0))
    assert result.ok, result.failure
    assert result.phase == "history" and result.heal_time is not None
    assert result.acknowledged > 50 and result.committed >= result.acknowledged
    assert {w.split()[0] for _, w in result.faults} >= {"crash", "one_way"}


@pytest.mark.parametrize("path", sorted(REGRESSIONS.glob("*.json")), ids=lambda p: p.stem)
def test_regression_schedules_pass(path: Path) -> None:
    result = run(load_schedule(path.read_text(), str(path)))
    assert result.ok, f"{path}: {result.failure}"


@given(schedules())
@settings(max_examples=25, deadline=None)
def test_any_fault_schedule_keeps_raft_safe_and_heals(schedule: Schedule) -> None:
    """One trio.run per example, in virtual time with seeded scheduling: every check
    (live validation, appliers, heal, stability, history) holds whatever the faults."""
    result = run(schedule)
    assert result.ok, f"{result.failure}\nschedule: {dump_schedule(schedule)}"


def _simulate_trace(tmp_path: Path, name: str, *args: str) -> bytes:
    path = tmp_path / name
    subprocess.run(
        [
            sys.executable,
            "-m",
            "trioraft",
            "simulate",
            "--nodes",
            "3",
            "--duration",
            "6",
            "--trace",
            str(path),
            *args,
        ],
        check=True,
        capture_output=True,
    )
    return path.read_bytes()


def test_same_seed_same_trace_and_a_saved_schedule_replays_it(tmp_path: Path) -> None:
    """Byte-identical traces from separate processes: the seed twice, then the schedule."""
    saved = tmp_path / "s.json"
    first = _simulate_trace(
        tmp_path, "a", "--seed", "9", "--unreliable", "--save-schedule", str(saved)
    )
    assert first == _simulate_trace(tmp_path, "b", "--seed", "9", "--unreliable")
    assert first == _simulate_trace(tmp_path, "c", "--schedule", str(saved))
    assert first != _simulate_trace(tmp_path, "d", "--seed", "10", "--unreliable")


# ------------------------------------------------------------------ sweeps


def test_a_sweep_in_worker_processes_sums_up(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "simulate",
                "--seeds",
                "1-4",
                "--jobs",
                "2",
                "--nodes",
                "3",
                "--duration",
                "5",
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "seeds 1-4" in out and "runs              4 of 4, 0 violation(s)" in out
    for row in ("leader changes", "commits", "failover", "heal to a leader", "runs per wall"):
        assert row in out


def test_sweeps_give_the_same_runs_in_workers_and_here() -> None:
    options = SweepOptions(nodes=3, duration=4.0)
    here = sweep(range(1, 4), options, jobs=1).runs
    there = sweep(range(1, 4), options, jobs=2).runs
    strip = [(r.seed, r.failure, r.leader_changes, r.commits, r.failovers) for r in here]
    assert strip == [(r.seed, r.failure, r.leader_changes, r.commits, r.failovers) for r in there]


def test_parse_seeds() -> None:
    assert parse_seeds("3-5") == range(3, 6) and parse_seeds("7") == range(7, 8)
    with pytest.raises(ValueError, match="empty"):
        parse_seeds("5-4")


def test_a_schedule_error_is_a_value_error() -> None:
    with pytest.raises(ScheduleError):
        Schedule(seed=-1, nodes=3, duration=1.0)


def test_a_livelocked_trio_test_fails_by_name() -> None:
    """The suite's runner (conftest) stops a test whose tasks spin in virtual time."""
    from conftest import _make_runner

    async def spin() -> None:
        while True:
            await trio.lowlevel.checkpoint()

    runner = _make_runner(False, 1, "tests/test_x.py::test_spin", 300.0)
    with pytest.raises(Stalled, match=r"tests/test_x.py::test_spin livelocked"):
        runner(spin)


async def test_isolation_cuts_both_ways_and_half_is_no_majority() -> None:
    async with open_cluster(4, seed=2) as cfg:
        injector = FaultInjector(cfg, lambda: None)
        injector.heal()
        isolate = Fault("isolate", 0, 1, node=2)
        injector.begin(isolate)
        assert not any(injector.link(2, j) or injector.link(j, 2) for j in (0, 1, 3))
        assert cfg.connected[2] is False and cfg.connected[0] is True
        injector.end(isolate)
        assert cfg.connected[2] is True
        injector.begin(Fault("partition", 0, 1, side=(0, 1)))
        assert not injector.can_lead(0) and not injector.can_lead(3)  # 2 of 4 is no majority
        for kind, flag in [("duplicate", "_duplicate"), ("long_delays", "_delay_requests"),
                           ("long_reordering", "_long_reordering")]:  # fmt: skip
            fault = Fault(kind, 0, 1)
            injector.begin(fault)
            assert getattr(cfg.net, flag) is True
            injector.end(fault)
            assert getattr(cfg.net, flag) is False
        unreliable = Fault("unreliable", 0, 1)
        injector.begin(unreliable)
        assert cfg.net._reliable is False
        injector.end(unreliable)
        assert cfg.net._reliable is True
        injector.chaos_unreliable = True
        injector.heal()
        assert cfg.net._reliable is False  # --unreliable holds for the whole chaos phase


class _FakeRaft:
    def __init__(self, term: int, leader: bool) -> None:
        self.state = (term, leader)

    def get_state(self) -> tuple[int, bool]:
        return self.state


class _FakeCluster:
    def __init__(self, *states: tuple[int, bool]) -> None:
        self.rafts = [_FakeRaft(*s) for s in states]
        self.n = len(states)


def test_the_current_leader_is_the_one_of_the_highest_term() -> None:
    from trioraft.sim.simulate import _current_leader

    class Everyone:
        def can_lead(self, i: int) -> bool:
            return i != 3

    cfg = _FakeCluster((2, True), (5, False), (5, True), (9, True))
    assert _current_leader(cfg, Everyone()) == 2  # type: ignore[arg-type]


async def test_healing_needs_a_leader_no_peer_has_passed() -> None:
    from trioraft.sim.simulate import SimulationFailure, _leader_within

    stale = _FakeCluster((3, True), (4, False), (4, False))
    with pytest.raises(SimulationFailure, match=r"no leader within 0\.5 s of healing"):
        await _leader_within(stale, 0.5)  # type: ignore[arg-type]
    fresh = _FakeCluster((3, False), (4, True), (4, False))
    assert await _leader_within(fresh, 0.5) == trio.current_time()  # type: ignore[arg-type]


def test_a_failover_ends_only_at_a_leader_that_can_lead() -> None:
    from trioraft.sim.simulate import Failover, SimulationResult, _Observer

    class OnlyNode1:
        def can_lead(self, i: int) -> bool:
            return i == 1

    observer = _Observer(SimulationResult(Schedule(seed=1, nodes=3, duration=1.0)))
    observer.injector = OnlyNode1()  # type: ignore[assignment]
    observer.pending = pending = Failover("crash 0", 0.0)

    async def elect(node: int) -> None:
        observer(node, "become_leader", (4, "leader"), {})

    trio.run(elect, 2, clock=trio.testing.MockClock())
    assert pending.end is None and observer.result.leaders == {4: 2}
    trio.run(elect, 1, clock=trio.testing.MockClock())
    assert pending.end is not None and observer.pending is None


def test_live_validation_reports_a_short_last_step_unless_cut() -> None:
    """A step whose follow-ups are missing: a violation, unless the run was cut
    (stopped early), when its last step may be incomplete."""
    from trioraft.sim.simulate import run_simulation
    from trioraft.validate import LiveValidation

    events: list[dict[str, object]] = []
    run_simulation(schedule=Schedule(seed=1, nodes=3, duration=2.0), listener=events.append)
    k = next(
        k
        for k in range(len(events) - 1, 0, -1)
        if events[k]["event"] == "commit"
        and events[k - 1]["event"] == "append"
        and events[k]["node"] == events[k - 1]["node"]
    )
    short = events[:k]  # the follower appended; its commit never written
    for cut, caught in [(False, True), (True, False)]:
        stopped: list[bool] = []
        live = LiveValidation(3, on_violation=lambda _, stopped=stopped: stopped.append(True))
        for e in short:
            live(e)
        assert live.violation is None
        live.verdict(cut=cut)
        assert (live.violation is not None) is caught and bool(stopped) is caught


def test_the_watchdog_stops_a_run_past_its_wall_limit() -> None:
    async def forever() -> None:
        with watchdog.guard():
            while True:
                await trio.sleep(1)  # virtual time moves: no livelock, only long

    watchdog = Watchdog(wall_limit=0.05, name="the long one")
    with pytest.raises(Stalled, match=r"the long one ran past its wall-clock limit of 0\.05 s"):
        trio.run(
            forever, clock=trio.testing.MockClock(autojump_threshold=0), instruments=[watchdog]
        )


def test_faults_end_during_the_chaos_and_the_client_keeps_its_pace() -> None:
    from trioraft.sim.simulate import run_simulation

    crashes: list[tuple[str, float, int]] = []

    def watch(e: dict[str, object]) -> None:
        if e["event"] in ("crash", "init") and e["node"] == 1:
            crashes.append((str(e["event"]), float(e["time"]), 1))  # type: ignore[arg-type]

    crash = Fault("crash", 1.0, 1.0, node=1)
    slow = Schedule(seed=3, nodes=3, duration=6.0, faults=(crash,), client_interval=0.5)
    result = run_simulation(schedule=slow, listener=watch)
    assert result.ok, result.failure
    t0 = next(t for e, t, _ in crashes if e == "init")  # the first start
    times = [(e, round(t - t0, 3)) for e, t, _ in crashes]
    assert ("crash", 1.0) in times and any(e == "init" and 2.0 <= t < 2.1 for e, t in times)
    fast = run(Schedule(seed=3, nodes=3, duration=6.0, faults=(crash,), client_interval=0.1))
    assert fast.submitted > 3 * result.submitted


def test_a_sweep_stops_at_its_first_failure_and_passes_its_options() -> None:
    from planted import PLANTED

    with PLANTED["double-vote"]():
        result = sweep(range(1, 201), SweepOptions(duration=20.0), jobs=1)
    first = result.failures[0]
    assert result.runs[-1] is first and len(result.runs) == first.seed


@pytest.mark.parametrize(
    ("argv", "header"),
    [
        (["--snapshot-every", "0"], "reliable network, snapshots every never entries"),
        (["--unreliable"], "unreliable network, snapshots every 10 entries"),
        (["--snapshot-every", "3", "--unreliable"], "unreliable network, snapshots every 3"),
    ],
)
def test_simulate_options_reach_runs_and_sweeps(
    capsys: pytest.CaptureFixture[str], argv: list[str], header: str
) -> None:
    base = ["simulate", "--nodes", "3", "--duration", "2", "--no-progress", *argv]
    assert main(base) == 0
    assert header in capsys.readouterr().out
    assert main([*base, "--seeds", "1-2"]) == 0
    assert header in capsys.readouterr().out
