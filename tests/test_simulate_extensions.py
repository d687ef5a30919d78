"""``trioraft simulate`` and the Raft extensions: the ``deaf`` fault, the schedule's
``pre_vote`` and ``check_quorum`` switches, drawing with them, and the options.

Runs with an extension on record the extensions' trace events (version 4); the
validator replays them (issue 12): every such run is in
:func:`test_runs_with_the_extensions_validate_and_pass`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings

from schedules import run, schedules
from trioraft.cli import main
from trioraft.sim.faults import FaultInjector
from trioraft.sim.harness import Cluster, open_cluster
from trioraft.sim.schedule import (
    Fault,
    Schedule,
    ScheduleError,
    draw_schedule,
    dump_schedule,
    load_schedule,
)
from trioraft.sim.simulate import SimulationResult, format_summary, run_simulation
from trioraft.sim.sweep import SweepOptions, SweepResult, format_sweep

REGRESSIONS = Path(__file__).resolve().parent.parent / "traces" / "regressions"

# ------------------------------------------------------------------ the deaf fault


def _deaf_ends(cfg: Cluster, i: int) -> tuple[list[bool], list[bool], list[bool]]:
    """For node i: whether each end of i's (to another) is enabled, whether it loses
    replies, and whether each other's end to i is enabled."""
    net = cfg.net
    others = [j for j in range(cfg.n) if j != i]
    out = [net._enabled.get(cfg.endnames[i][j], False) for j in others]
    lost = [cfg.endnames[i][j] in net._deaf for j in others]
    into = [net._enabled.get(cfg.endnames[j][i], False) for j in others]
    return out, lost, into


async def test_a_deaf_node_is_heard_but_hears_nothing() -> None:
    async with open_cluster(3, seed=1) as cfg:
        injector = FaultInjector(cfg, lambda: 0)
        injector.heal()
        deaf = Fault("deaf", 0, 1, node="leader")
        assert injector.begin(deaf) == (0,)
        # Its requests arrive, their replies are lost, requests to it are lost.
        assert _deaf_ends(cfg, 0) == ([True, True], [True, True], [False, False])
        assert all(injector.arrives(0, j) and not injector.link(0, j) for j in (1, 2))
        assert not any(injector.arrives(j, 0) or injector.link(j, 0) for j in (1, 2))
        assert not injector.can_lead(0)
        assert injector.can_lead(1) and injector.can_lead(2)  # 1 and 2: 2 of 3
        assert injector.link(1, 2) and injector.link(2, 1)
        assert cfg.connected[0] is True  # still attached: what it sends arrives
        injector.end(deaf)
        assert _deaf_ends(cfg, 0) == ([True, True], [False, False], [True, True])
        assert all(injector.link(i, j) for i in range(3) for j in range(3))
        assert injector.can_lead(0)


async def test_deafness_composes_with_isolation_crashes_and_heal() -> None:
    async with open_cluster(3, seed=2) as cfg:
        injector = FaultInjector(cfg, lambda: None)
        injector.heal()
        first, second = Fault("deaf", 0, 1, node=1), Fault("deaf", 0, 2, node=1)
        injector.begin(first)
        injector.begin(second)
        injector.end(first)
        assert _deaf_ends(cfg, 1)[1] == [True, True]  # still held by the second
        isolate = Fault("isolate", 0, 1, node=1)
        injector.begin(isolate)
        assert _deaf_ends(cfg, 1) == ([False, False], [True, True], [False, False])
        assert cfg.connected[1] is False  # a deaf node that is also isolated is isolated
        injector.end(isolate)
        assert _deaf_ends(cfg, 1) == ([True, True], [True, True], [False, False])
        crash = Fault("crash", 0, 1, node=1)
        injector.begin(crash)
        assert cfg.rafts[1] is None and not injector.arrives(1, 0)
        old = list(cfg.endnames[1])
        injector.end(crash)
        assert cfg.rafts[1] is not None and cfg.endnames[1] != old
        # The restarted node's fresh ends are deaf too.
        assert _deaf_ends(cfg, 1) == ([True, True], [True, True], [False, False])
        assert not injector.can_lead(1) and injector.can_lead(0)
        injector.begin(Fault("deaf", 0, 1, node=0))
        assert not any(injector.can_lead(i) for i in range(3))  # 2 alone: no majority
        injector.heal()
        assert not injector.deaf
        for i in range(3):
            assert _deaf_ends(cfg, i) == ([True, True], [False, False], [True, True])
        assert all(injector.can_lead(i) for i in range(3))


def test_a_run_with_deaf_nodes_validates_and_passes() -> None:
    """Without the extensions, a deaf leader's heartbeats hold its followers: they act
    on its requests (the trace shows them received), its replies are lost."""
    faults = (
        Fault("deaf", 1.0, 1.5, node="leader"),
        Fault("deaf", 3.0, 2.0, node=2),
        Fault("isolate", 3.5, 1.0, node=2),
        Fault("crash", 4.0, 0.5, node=2),
        Fault("deaf", 4.2, 1.0, node=0),
    )
    events: list[dict[str, object]] = []
    schedule = Schedule(seed=4, nodes=5, duration=8.0, faults=faults)
    result = run_simulation(schedule=schedule, listener=events.append)
    assert result.ok, result.failure
    assert [w.split()[0] for _, w in result.faults] == ["deaf", "deaf", "isolate", "crash", "deaf"]
    assert result.failovers and result.failovers[0].fault.startswith("deaf ")
    senders = {
        e["id"]: e["msg"]["from"]  # type: ignore[index]
        for e in events
        if e["event"] == "receive"
    }
    lost = [e for e in events if e["event"] == "drop" and e["reason"] == "one-way link"]
    assert lost and all(e["leg"] == "reply" for e in lost)
    deaf = {int(w.split()[1]) for _, w in result.faults if w.startswith("deaf ")}
    assert {senders[e["id"]] for e in lost} <= deaf  # their requests arrived, replies lost


@given(schedules(duration=6.0, max_faults=8))
@settings(max_examples=10, deadline=None)
def test_any_schedule_with_deaf_nodes_keeps_raft_safe_and_heals(schedule: Schedule) -> None:
    deaf = tuple(
        Fault("deaf", f.at, f.length, node="leader" if f.node is None else f.node)
        for f in schedule.faults[:3]
    )
    schedule = Schedule(
        seed=schedule.seed,
        nodes=schedule.nodes,
        duration=schedule.duration,
        faults=(*schedule.faults, *deaf),
        unreliable=schedule.unreliable,
        snapshot_every=schedule.snapshot_every,
    )
    result = run(schedule)
    assert result.ok, f"{result.failure}\nschedule: {dump_schedule(schedule)}"


# ------------------------------------------------------------------ schedules as data


@given(schedules(duration=30.0, max_faults=20, extensions=True))
@settings(max_examples=200, deadline=None)
def test_a_schedule_with_extensions_reads_back_as_written(schedule: Schedule) -> None:
    assert load_schedule(dump_schedule(schedule)) == schedule


def test_the_extensions_are_written_only_when_on() -> None:
    deaf = Fault("deaf", 1.0, 2.0, node="leader")
    plain = dump_schedule(Schedule(seed=1, nodes=3, duration=5.0, faults=(deaf,)))
    assert "pre_vote" not in plain and "check_quorum" not in plain
    assert '{"kind": "deaf", "at": 1.0, "for": 2.0, "node": "leader"}' in plain
    one = Schedule(seed=1, nodes=3, duration=5.0, faults=(deaf,), check_quorum=True)
    text = dump_schedule(one)
    assert '"snapshot_every": 10, "check_quorum": true, "faults": [' in text
    assert "pre_vote" not in text
    assert load_schedule(text) == one and load_schedule(text).extensions == ("check_quorum",)
    both = json.loads(dump_schedule(Schedule(seed=1, nodes=3, duration=5.0, pre_vote=True,
                                             check_quorum=True)))  # fmt: skip
    assert both["pre_vote"] is True and both["check_quorum"] is True


@pytest.mark.parametrize("path", sorted(REGRESSIONS.glob("*.json")), ids=lambda p: p.stem)
def test_saved_schedules_are_written_byte_for_byte_as_before(path: Path) -> None:
    text = path.read_text()
    assert dump_schedule(load_schedule(text, str(path))) == text


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            lambda d: d["faults"].append({"kind": "deaf", "at": 1, "for": 1}),
            "faults[0].node: missing",
        ),
        (
            lambda d: d["faults"].append({"kind": "deaf", "at": 1, "for": 1, "node": 3}),
            "faults[0].node: must be a node number 0-2",
        ),
        (
            lambda d: d["faults"].append({"kind": "deaf", "at": 1, "for": 1, "node": 1, "to": 2}),
            "faults[0].to: unknown field for a 'deaf' fault",
        ),
        (lambda d: d.update(pre_vote="yes"), "pre_vote: must be true or false, got 'yes'"),
        (lambda d: d.update(check_quorum=1), "check_quorum: must be true or false, got 1"),
        (lambda d: d.update(pre_vote=None), "pre_vote: must be true or false"),
    ],
)
def test_a_malformed_schedule_with_extensions_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: object, field: str
) -> None:
    data = json.loads(dump_schedule(Schedule(seed=1, nodes=3, duration=5.0)))
    change(data)  # type: ignore[operator]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    assert main(["simulate", "--schedule", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: " in err and field in err and "Traceback" not in err


def test_a_schedule_refuses_an_extension_that_is_not_a_bool() -> None:
    with pytest.raises(ScheduleError, match="pre_vote: must be true or false"):
        Schedule(seed=1, nodes=3, duration=1.0, pre_vote=1)  # type: ignore[arg-type]


# ------------------------------------------------------------------ drawing

DRAWN_BEFORE_DEAF = "384c5df5b6ced1137f5fa6f8563c4ffd02dd4b7bfbecd90dc9b3896e843673ff"
"""sha256 of the dumps of ``draw_schedule(seed, nodes, duration)`` for nodes 1, 2, 3, 5,
7, durations 0.5, 7.3, 60 and seeds 0-199, recorded from the code before the ``deaf``
fault and the extensions' switches existed."""

SEED_3_BEFORE_DEAF = """\
{"version": 1, "seed": 3, "nodes": 5, "duration": 10.0, "unreliable": false, \
"client_interval": 0.2, "snapshot_every": 10, "faults": [
    {"kind": "partition", "at": 0.687, "for": 4.446, "side": [3, 1]},
    {"kind": "one_way", "at": 1.625, "for": 2.439, "from": 2, "to": 4},
    {"kind": "one_way", "at": 2.225, "for": 4.143, "from": "leader", "to": 4},
    {"kind": "long_delays", "at": 3.404, "for": 0.932},
    {"kind": "one_way", "at": 4.085, "for": 1.659, "from": "leader", "to": 3},
    {"kind": "long_reordering", "at": 6.547, "for": 1.09},
    {"kind": "partition", "at": 7.633, "for": 1.516, "side": [4]},
    {"kind": "crash", "at": 9.487, "for": 0.513, "node": 2}
  ]}
"""


def test_without_the_extensions_every_seed_draws_what_it_drew_before() -> None:
    """Seeds name schedules (in tests, CI sweeps and bug reports): the switches off,
    drawing is unchanged."""
    digest = hashlib.sha256()
    for nodes in (1, 2, 3, 5, 7):
        for duration in (0.5, 7.3, 60.0):
            for seed in range(200):
                s = draw_schedule(seed, nodes, duration, pre_vote=False, check_quorum=False)
                digest.update(dump_schedule(s).encode())
    assert digest.hexdigest() == DRAWN_BEFORE_DEAF
    assert dump_schedule(draw_schedule(3, 5, 10.0)) == SEED_3_BEFORE_DEAF
    with_deaf = draw_schedule(3, 5, 10.0, pre_vote=True)
    assert with_deaf.faults[:3] == draw_schedule(3, 5, 10.0).faults[:3]
    assert with_deaf.faults != draw_schedule(3, 5, 10.0).faults  # the weights differ


@pytest.mark.parametrize("flags", [{"pre_vote": True}, {"check_quorum": True},
                                   {"pre_vote": True, "check_quorum": True}])  # fmt: skip
def test_with_an_extension_deaf_nodes_are_drawn(flags: dict[str, bool]) -> None:
    drawn = [draw_schedule(seed, 5, 60.0, **flags) for seed in range(20)]
    assert all(s.pre_vote == flags.get("pre_vote", False) for s in drawn)
    assert all(s.check_quorum == flags.get("check_quorum", False) for s in drawn)
    deaf = [f for s in drawn for f in s.faults if f.kind == "deaf"]
    kinds = {f.kind for s in drawn for f in s.faults}
    assert {"crash", "isolate", "partition", "one_way", "deaf"} <= kinds
    assert len(deaf) > 20 and 0.4 < sum(f.node == "leader" for f in deaf) / len(deaf) < 0.8
    assert draw_schedule(7, 5, 60.0, **flags) == draw_schedule(7, 5, 60.0, **flags)
    assert not any(
        f.kind == "deaf" for seed in range(50) for f in draw_schedule(seed, 5, 60.0).faults
    )


@pytest.mark.parametrize("nodes", [1, 2, 3, 4, 5, 6])
def test_drawn_deaf_nodes_count_in_the_minority(nodes: int) -> None:
    for seed in range(50):
        s = draw_schedule(seed, nodes, 60.0, check_quorum=True)
        for f in s.faults:
            cut = sum(g.cut_off for g in s.faults if g.at <= f.at < g.end)
            assert cut <= (nodes - 1) // 2, (seed, f.at)
        if nodes < 3:
            assert not any(f.kind == "deaf" for f in s.faults)


# ------------------------------------------------------------------ options and summaries


def test_summaries_say_which_extensions_are_on() -> None:
    def head(**flags: bool) -> str:
        s = Schedule(seed=1, nodes=3, duration=2.0, **flags)
        return format_summary(SimulationResult(s)).splitlines()[0]

    assert head().endswith("snapshots every 10 entries")
    assert head(pre_vote=True).endswith("entries, with Pre-Vote")
    assert head(check_quorum=True).endswith("entries, with CheckQuorum")
    assert head(pre_vote=True, check_quorum=True).endswith(", with Pre-Vote and CheckQuorum")

    def sweep_head(**flags: bool) -> str:
        return format_sweep(SweepResult(SweepOptions(**flags), range(1, 3)), 2).splitlines()[0]

    assert sweep_head().endswith("snapshots every 10 entries, 2 job(s)")
    assert sweep_head(check_quorum=True).endswith("entries, with CheckQuorum, 2 job(s)")


def test_sweep_options_draw_with_their_extensions() -> None:
    o = SweepOptions(nodes=3, duration=10.0, pre_vote=True, check_quorum=True)
    assert o.schedule(5) == draw_schedule(5, 3, 10.0, pre_vote=True, check_quorum=True)
    assert SweepOptions(nodes=3, duration=10.0).schedule(5) == draw_schedule(5, 3, 10.0)


@pytest.mark.parametrize(
    ("argv", "saved"),
    [
        ([], {}),
        (["--pre-vote"], {"pre_vote": True}),
        (["--check-quorum"], {"check_quorum": True}),
        (["--pre-vote", "--check-quorum"], {"pre_vote": True, "check_quorum": True}),
        (["--extensions"], {"pre_vote": True, "check_quorum": True}),
    ],
)
def test_the_options_reach_the_schedule(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv: list[str], saved: dict[str, bool]
) -> None:
    """(The run itself is stubbed: runs with the extensions wait for the validator.)"""
    import trioraft.sim.cli as cli

    ran: list[Schedule] = []
    monkeypatch.setattr(cli, "_one_run", lambda args, schedule: ran.append(schedule) or 0)
    path = tmp_path / "s.json"
    base = ["simulate", "--seed", "5", "--nodes", "3", "--duration", "10"]
    assert main([*base, *argv, "--save-schedule", str(path)]) == 0
    data = json.loads(path.read_text())
    assert {k: data[k] for k in ("pre_vote", "check_quorum") if k in data} == saved
    assert ran == [draw_schedule(5, 3, 10.0, **saved)]
    # Replaying the saved schedule runs its extensions; naming them again is fine.
    assert main(["simulate", "--schedule", str(path), *argv]) == 0
    assert ran[-1] == ran[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--pre-vote"], "--pre-vote: the schedule {path} runs without it"),
        (["--check-quorum"], "--check-quorum: the schedule {path} runs without it"),
        (["--extensions"], "--extensions: the schedule {path} runs without it"),
    ],
)
def test_an_extension_a_replayed_schedule_lacks_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    path = tmp_path / "s.json"
    path.write_text(dump_schedule(Schedule(seed=1, nodes=3, duration=2.0)))
    assert main(["simulate", "--schedule", str(path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trioraft simulate: ") and message.format(path=path) in err
    assert 'set "' in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["--pre-vote=yes"], ["--extensions", "maybe"]])
def test_a_value_given_to_an_extension_switch_exits_2(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["simulate", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "error: " in err and ("--pre-vote" in err or "maybe" in err)


# ------------------------------------------------------------------ runs with the extensions


def test_runs_with_the_extensions_validate_and_pass(capsys: pytest.CaptureFixture[str]) -> None:
    """Every run with Pre-Vote or CheckQuorum on: drawn schedules, a deaf leader,
    the command line and a sweep; each run's trace validates."""
    for seed in range(1, 4):
        for flags in ({"pre_vote": True}, {"check_quorum": True},
                      {"pre_vote": True, "check_quorum": True}):  # fmt: skip
            schedule = draw_schedule(seed, 5, 20.0, **flags)
            result = run(schedule)
            assert result.ok, f"{result.failure}\nschedule: {dump_schedule(schedule)}"

    # A deaf leader: without CheckQuorum it holds its followers until the fault
    # ends; with it, it steps down and the others elect a leader meanwhile.
    deaf = (Fault("deaf", 1.0, 4.0, node="leader"),)
    for flags in ({}, {"pre_vote": True}, {"check_quorum": True},
                  {"pre_vote": True, "check_quorum": True}):  # fmt: skip
        result = run(Schedule(seed=4, nodes=5, duration=8.0, faults=deaf, **flags))
        assert result.ok, result.failure
        failover = result.failovers[0]
        assert failover.fault.startswith("deaf ")
        if flags.get("check_quorum"):
            assert failover.end is not None and failover.end - failover.start < 3.0, failover
        else:  # the old leader leads again when the fault ends, with no election:
            # that ends the failover (not a later fault's election)
            assert failover.end is not None and failover.end - failover.start >= 4.0, failover

    @given(schedules(duration=6.0, max_faults=8, extensions=True))
    @settings(max_examples=10, deadline=None)
    def any_schedule(schedule: Schedule) -> None:
        result = run(schedule)
        assert result.ok, f"{result.failure}\nschedule: {dump_schedule(schedule)}"

    any_schedule()

    base = ["simulate", "--nodes", "3", "--duration", "4", "--no-progress"]
    assert main([*base, "--extensions"]) == 0
    assert "entries, with Pre-Vote and CheckQuorum" in capsys.readouterr().out
    assert main([*base, "--pre-vote", "--seeds", "1-2"]) == 0
    out = capsys.readouterr().out
    assert "entries, with Pre-Vote, 1 job(s)" in out and "2 of 2, 0 violation(s)" in out
