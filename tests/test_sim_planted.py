"""A checker that never fails proves nothing: the randomized simulator finds planted
bugs (tests/planted.py), hypothesis shrinks them to a few faults, and the regression
corpus under traces/regressions/ holds a schedule that finds each."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, find, settings
from hypothesis import strategies as st

from planted import PLANTED
from schedules import run, schedules
from trioraft.cli import main
from trioraft.sim.schedule import load_schedule
from trioraft.sim.sweep import SweepOptions, sweep

REGRESSIONS = Path(__file__).resolve().parent.parent / "traces" / "regressions"

FOUND_BY_SWEEPS = ["double-vote", "commit-old-term", "skip-after-snapshot"]
"""Found by the first few seeds of the default schedule; the other planted bugs take
tens of seeds (bench/bench_planted.py) and have core tests of their own."""


def test_the_stability_phase_finds_followers_that_heartbeats_do_not_calm() -> None:
    with PLANTED["heartbeats-never-reset"]():
        result = sweep(range(1, 201), SweepOptions(duration=20.0), jobs=1)
    assert result.failures
    assert str(result.failures[0].failure).startswith("stability phase: ")


@pytest.mark.parametrize("name", FOUND_BY_SWEEPS)
def test_a_sweep_finds_the_planted_bug(name: str) -> None:
    with PLANTED[name]():
        result = sweep(range(1, 201), SweepOptions(duration=20.0), jobs=1)
    assert result.failures, f"{name}: 200 seeds and no failure"
    assert len(result.runs) <= 200


def test_a_failing_sweep_saves_the_run_and_prints_its_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with PLANTED["double-vote"]():
        status = main(["simulate", "--seeds", "1-200", "--duration", "20", "--no-progress"])
        out = capsys.readouterr().out
        assert status == 1 and "1 violation(s)" in out
        found = re.search(r"first failure: seed (\d+): chaos phase: the trace violates", out)
        assert found is not None, out
        seed = found.group(1)
        schedule = tmp_path / "traces" / "failures" / f"seed-{seed}.schedule.json"
        trace = tmp_path / "traces" / "failures" / f"seed-{seed}.ndjson"
        assert f"replay: trioraft simulate --schedule {schedule.relative_to(tmp_path)}" in out
        assert schedule.exists() and trace.exists()
        # The replay fails the same way, and its trace is the saved one.
        assert main(["simulate", "--schedule", str(schedule), "--trace", "again.ndjson"]) == 1
        assert "RequestVote receiver" in capsys.readouterr().out
    assert (tmp_path / "again.ndjson").read_bytes() == trace.read_bytes()
    assert main(["validate", str(trace)]) == 1
    assert "RequestVote receiver" in capsys.readouterr().out


@pytest.mark.parametrize("name", FOUND_BY_SWEEPS)
def test_hypothesis_shrinks_the_planted_bug_to_a_few_faults(name: str) -> None:
    with PLANTED[name]():
        smallest = find(
            schedules(nodes=st.just(5), duration=10.0),
            lambda s: not run(s).ok,
            settings=settings(
                max_examples=300,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            ),
        )
        assert not run(smallest).ok
    assert len(smallest.faults) <= 5, smallest


@pytest.mark.parametrize("path", sorted(REGRESSIONS.glob("*.json")), ids=lambda p: p.stem)
def test_each_regression_schedule_finds_its_bug(path: Path) -> None:
    """Each file is named after the planted bug it was found with; on the correct
    implementation the same schedule passes (tests/test_simulate.py)."""
    schedule = load_schedule(path.read_text(), str(path))
    with PLANTED[path.stem]():
        result = run(schedule)
    assert not result.ok, f"{path.name} no longer finds {path.stem}"
