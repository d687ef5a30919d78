"""Every async test runs under trio, in virtual time unless --real-clock is given.

Virtual time: ``trio.testing.MockClock(autojump_threshold=0)`` jumps the clock
forward whenever every task is blocked, so a test that sleeps 30 simulated
seconds costs only its computation.  The scheduler is made deterministic and
seeded (see ``trioraft.determinism``) from ``--seed`` and the test's name, so
a failure can be replayed exactly.

``--real-clock`` runs the same tests against trio's system clock: a Raft that
only works when computing takes no time is wrong, and this catches it.

``--storage disk`` gives every cluster's servers a DiskStorage directory under
the test's temporary directory instead of a Persister (on the real clock its
fsyncs run in worker threads; in virtual time inline).
"""

from __future__ import annotations

import inspect
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from trioraft.determinism import seed_scheduler
from trioraft.sim.harness import default_storage_dir, default_tracer
from trioraft.sim.watchdog import Watchdog
from trioraft.trace import TraceRecorder
from trioraft.validate import validate_recorded

FAILURES = Path(__file__).resolve().parent.parent / "trace-failures"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("trioraft")
    group.addoption(
        "--real-clock",
        action="store_true",
        default=False,
        help="run trio tests on the real clock instead of virtual time (slow)",
    )
    group.addoption(
        "--no-trace",
        action="store_true",
        default=False,
        help="do not record and validate the execution trace of every test",
    )
    group.addoption(
        "--storage",
        choices=("memory", "disk"),
        default="memory",
        help="where the harness's servers keep their state: 6.824 Persisters (memory, "
        "the default) or DiskStorage directories (disk)",
    )
    group.addoption(
        "--wall-limit",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="fail a trio test that runs longer than this on the wall clock (default 300)",
    )
    group.addoption(
        "--seed",
        type=int,
        default=1,
        help="base seed for the scheduler, networks and peers (default 1)",
    )


def _test_seed(config: pytest.Config, nodeid: str) -> int:
    return (config.getoption("--seed") * 1_000_003 + zlib.crc32(nodeid.encode())) % 2**32


def _make_runner(real_clock: bool, seed: int, name: str, wall_limit: float) -> Callable[..., Any]:
    """pytest-trio's run function for one test: seeded, in virtual time, watched.

    The watchdog fails the test, by name, when it livelocks (scheduler steps
    go on while virtual time stands still) or runs past ``wall_limit`` wall
    seconds: a failure, never a hang.
    """

    def run(fn: Callable[[], Any], *, clock: Any = None, instruments: Any = ()) -> Any:
        seed_scheduler(seed)
        if clock is None and not real_clock:
            clock = trio.testing.MockClock(autojump_threshold=0)
        watchdog = Watchdog(wall_limit=wall_limit, name=name)

        async def watched() -> Any:
            with watchdog.guard():
                return await fn()

        return trio.run(watched, clock=clock, instruments=(*instruments, watchdog))

    return run


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    real_clock = config.getoption("--real-clock")
    for item in items:
        if real_clock and item.get_closest_marker("virtual_time_only"):
            item.add_marker(pytest.mark.skip(reason="asserts exact simulated times"))
        if config.getoption("--storage") != "memory" and item.get_closest_marker("persister_only"):
            item.add_marker(pytest.mark.skip(reason="inspects the harness's Persisters"))
        fn = getattr(item, "obj", None)
        if fn is not None and inspect.iscoroutinefunction(fn):
            seed = _test_seed(config, item.nodeid)
            limit = config.getoption("--wall-limit")
            runner = _make_runner(real_clock, seed, item.nodeid, limit)
            item.add_marker(pytest.mark.trio(run=runner))


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """A per-test seed derived from --seed and the test id (stable across runs)."""
    return _test_seed(request.config, request.node.nodeid)


@pytest.fixture
def real_clock(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--real-clock"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "no_trace: do not record and validate this test's runs")
    config.addinivalue_line(
        "markers", "virtual_time_only: asserts exact simulated times; skipped with --real-clock"
    )
    config.addinivalue_line(
        "markers", "persister_only: inspects the harness's Persisters; skipped with --storage disk"
    )


@pytest.fixture(autouse=True)
def harness_storage(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """With ``--storage disk``, every cluster a test opens gets a fresh directory."""
    if request.config.getoption("--storage") == "memory":
        yield
        return
    token = default_storage_dir.set(lambda: str(tmp_path_factory.mktemp("cluster")))
    try:
        yield
    finally:
        default_storage_dir.reset(token)


@pytest.fixture(autouse=True)
def validated_trace(request: pytest.FixtureRequest) -> Iterator[list[TraceRecorder]]:
    """Record every cluster a test opens, and validate each trace at teardown.

    A trace that fails validation is kept under ``trace-failures/`` and its
    path printed, so it can be replayed with ``trioraft validate``.
    """
    recorders: list[TraceRecorder] = []
    if request.config.getoption("--no-trace") or request.node.get_closest_marker("no_trace"):
        yield recorders
        return

    def factory(nodes: int, seed: int) -> TraceRecorder:
        recorder = TraceRecorder(nodes=nodes, seed=seed, meta={"test": request.node.nodeid})
        recorders.append(recorder)
        return recorder

    token = default_tracer.set(factory)
    try:
        yield recorders
    finally:
        default_tracer.reset(token)
    for number, recorder in enumerate(recorders):
        problem = validate_recorded(recorder)
        if problem is not None:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
            path = FAILURES / f"{name}-{number}.ndjson"
            path.parent.mkdir(exist_ok=True)
            recorder.dump(str(path))
            pytest.fail(f"trace validation failed: {problem}\n  trace kept at {path}", False)
