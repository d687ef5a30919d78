"""Hypothesis strategies for fault schedules, and running one in its own trio run.

A drawn schedule is a list of fault intervals, so hypothesis shrinks a failing
one by dropping faults, shortening them and moving them earlier: the
shrunk schedule is the few faults that matter.
"""

from __future__ import annotations

from hypothesis import strategies as st

from trioraft.sim.schedule import NETWORK_FAULTS, Fault, NodeRef, Schedule
from trioraft.sim.simulate import SimulationResult, run_simulation


def node_refs(nodes: int) -> st.SearchStrategy[NodeRef]:
    return st.one_of(st.just("leader"), st.integers(0, nodes - 1))


def faults(nodes: int, duration: float) -> st.SearchStrategy[Fault]:
    at = st.floats(0, duration, allow_nan=False).map(lambda t: round(t, 2))
    length = st.floats(0.05, 5.0, allow_nan=False).map(lambda t: round(t, 2))
    ref = node_refs(nodes)
    kinds = [
        st.builds(Fault, st.just("crash"), at, length, node=ref),
        st.builds(Fault, st.just("isolate"), at, length, node=ref),
        st.builds(Fault, st.just("deaf"), at, length, node=ref),
        st.builds(Fault, st.sampled_from(NETWORK_FAULTS), at, length),
    ]
    if nodes > 1:
        kinds += [
            st.builds(
                Fault,
                st.just("partition"),
                at,
                length,
                side=st.lists(ref, min_size=1, max_size=nodes - 1).map(tuple),
            ),
            st.builds(Fault, st.just("one_way"), at, length, source=ref, target=ref),
        ]
    return st.one_of(*kinds)


SIZES = st.sampled_from([3, 5])


@st.composite
def schedules(
    draw: st.DrawFn,
    *,
    nodes: st.SearchStrategy[int] = SIZES,
    duration: float = 8.0,
    max_faults: int = 12,
    extensions: bool = False,
) -> Schedule:
    """A schedule; with ``extensions``, Pre-Vote and CheckQuorum drawn on or off too."""
    n = draw(nodes)
    flags = {}
    if extensions:
        flags = {"pre_vote": draw(st.booleans()), "check_quorum": draw(st.booleans())}
    return Schedule(
        seed=draw(st.integers(0, 2**16)),
        nodes=n,
        duration=duration,
        faults=tuple(
            sorted(
                draw(st.lists(faults(n, duration), max_size=max_faults)),
                key=lambda f: (f.at, f.kind),
            )
        ),
        unreliable=draw(st.booleans()),
        snapshot_every=draw(st.sampled_from([0, 5, 10])),
        **flags,
    )


def run(schedule: Schedule) -> SimulationResult:
    """One ``trio.run`` with a MockClock and seeded scheduling (``run_simulation``)."""
    return run_simulation(schedule=schedule)
