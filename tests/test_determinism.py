"""Same seed, same run: the (time, peer, event) sequence of a simulated cluster repeats exactly."""

from __future__ import annotations

from typing import Any

import trio
import trio._core._run as trio_run
import trio.testing

from trioraft.determinism import seed_scheduler
from trioraft.sim.harness import open_cluster
from trioraft.trace import TraceRecorder


def record_run(seed: int) -> list[tuple[float, int, str, int]]:
    events: list[tuple[float, int, str, int]] = []

    def observe(me: int, name: str, state: Any, fields: dict[str, Any]) -> None:
        events.append((trio.current_time(), me, name, state[0] if state else -1))

    async def scenario() -> None:
        recorder = TraceRecorder(nodes=5, seed=seed, observer=observe, keep=False)
        async with open_cluster(5, unreliable=True, seed=seed, tracer=recorder) as cfg:
            leader = await cfg.check_one_leader()
            for k in range(5):
                await cfg.one(100 + k, 4, True)
            cfg.disconnect(leader)
            await cfg.one(200, 3, True)
            cfg.crash1((leader + 1) % 5)
            await cfg.one(201, 3, True)
            cfg.connect(leader)
            cfg.start1((leader + 1) % 5)
            cfg.connect((leader + 1) % 5)
            await cfg.one(202, 5, True)

    seed_scheduler(seed)
    trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))
    return events


def test_the_scheduler_knobs_exist_in_this_trio() -> None:
    seed_scheduler(7)
    assert trio_run._ALLOW_DETERMINISTIC_SCHEDULING is True
    first = trio_run._r.random()
    seed_scheduler(7)
    assert trio_run._r.random() == first


def test_same_seed_same_events() -> None:
    first = record_run(11)
    second = record_run(11)
    assert len(first) > 100, "the scenario should produce plenty of events"
    assert first == second


def test_another_seed_gives_another_run() -> None:
    assert record_run(11) != record_run(12)
