"""Each bug of ``planted.PLANTED`` is caught by a check that passes without it.

Two levels of check:

- a core test (an existing one, or one of ``test_core_regressions``) run on
  the pure RaftNode: deterministic, and aimed at the exact situation the bug
  spoils;
- where a ported 6.824 test reaches that situation, the test itself in virtual
  time, its trace validated against the Figure 2 model afterwards (the check
  the suite runs on every cluster).  A bug is caught when the tester fails or
  the trace does not validate.  ``stale-match-index`` and ``snapshot-overlap``
  have no such check: no 6.824 test re-elects a leader of five servers with a
  stale matchIndex that matters, or sends an AppendEntries that crosses a
  follower's snapshot (they were counted never to); the core tests are their
  check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

import test_core_election as election
import test_core_regressions as regressions
import test_core_replication as replication
import test_core_snapshot as snapshot
import test_raft_2c as lab2c
import test_raft_2d as lab2d
from planted import PLANTED
from trioraft.core.node import RaftNode
from trioraft.determinism import seed_scheduler
from trioraft.sim.harness import TestFailure, default_tracer
from trioraft.trace import TraceRecorder
from trioraft.validate import validate_recorded

CORE_CHECKS: dict[str, Callable[[], None]] = {
    "double-vote": election.test_one_vote_per_term_first_come_first_served,
    "commit-old-term": (
        replication.test_figure_8_an_old_terms_entry_is_not_committed_by_counting_replicas
    ),
    "skip-after-snapshot": snapshot.test_applying_never_goes_backwards_across_a_snapshot,
    "stale-match-index": regressions.test_a_reelected_leader_does_not_commit_on_stale_match_indexes,
    "heartbeats-never-reset": election.test_every_heartbeat_of_the_current_leader_resets_the_timer,
    "snapshot-overlap": lambda: (
        regressions.test_a_stale_append_across_the_snapshot_is_applied_from_the_snapshot_on(
            log_end=regressions.SNAP, prev=2, end=7
        )
    ),
}

LabTest = Callable[[int], Awaitable[None]]

CLUSTER_CHECKS: dict[str, tuple[LabTest, tuple[int, ...]]] = {
    # (6.824 test, seeds to try: the bug must be caught on at least one)
    "double-vote": (lab2c.test_unreliable_agree_2c, (2, 4, 5, 6)),
    "commit-old-term": (lab2c.test_figure8_2c, (1,)),
    "skip-after-snapshot": (lab2d.test_snapshot_install_2d, (1,)),
}


def run_lab_test(test: LabTest, seed: int) -> str | None:
    """Run a ported 6.824 test in virtual time, seeded as the suite seeds it, and
    validate the traces of the clusters it opened: what went wrong, or None."""
    recorders: list[TraceRecorder] = []

    def tracer(nodes: int, cluster_seed: int) -> TraceRecorder:
        recorders.append(TraceRecorder(nodes=nodes, seed=cluster_seed))
        return recorders[-1]

    token = default_tracer.set(tracer)
    failure = None
    try:
        seed_scheduler(seed)
        trio.run(test, seed, clock=trio.testing.MockClock(autojump_threshold=0))
    except TestFailure as exc:
        failure = f"tester: {exc}"
    finally:
        default_tracer.reset(token)
    for recorder in recorders:
        problem = validate_recorded(recorder)
        if problem is not None:
            return f"{failure}; trace: {problem}" if failure else f"trace: {problem}"
    return failure


def test_every_planted_bug_has_a_core_check() -> None:
    assert set(CORE_CHECKS) == set(PLANTED)
    assert set(CLUSTER_CHECKS) <= set(PLANTED)


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_a_core_check_catches_the_planted_bug(name: str) -> None:
    check = CORE_CHECKS[name]
    check()
    with PLANTED[name](), pytest.raises(AssertionError):
        check()
    check()  # gone again on exit


@pytest.mark.no_trace  # traces are recorded and validated here, planted bug or not
@pytest.mark.parametrize("name", sorted(CLUSTER_CHECKS))
def test_a_6824_test_or_its_trace_catches_the_planted_bug(name: str) -> None:
    test, seeds = CLUSTER_CHECKS[name]
    assert run_lab_test(test, seeds[0]) is None, "passes without the bug"
    caught = []
    with PLANTED[name]():
        for seed in seeds:
            problem = run_lab_test(test, seed)
            if problem is not None:
                caught.append((seed, problem))
                break
    assert caught, f"{test.__name__} passed with {name} planted, seeds {seeds}"


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_a_planted_bug_is_removed_on_exit_even_after_an_error(name: str) -> None:
    before = dict(vars(RaftNode))
    with contextlib.suppress(RuntimeError), PLANTED[name]():
        assert dict(vars(RaftNode)) != before, "something was patched"
        raise RuntimeError("the test failed inside the block")
    assert dict(vars(RaftNode)) == before
    with PLANTED[name](), PLANTED[name]():  # planted twice over, removed twice
        pass
    assert dict(vars(RaftNode)) == before


def test_a_planted_bug_reaches_nodes_created_before_it() -> None:
    from corekit import make_node
    from trioraft.core.messages import RequestVoteArgs

    b = make_node(1)
    assert b.answer(RequestVoteArgs(1, 0, 0, 0)).vote_granted
    with PLANTED["double-vote"]():
        assert b.answer(RequestVoteArgs(1, 2, 0, 0)).vote_granted, "a second vote in term 1"
    assert not b.answer(RequestVoteArgs(1, 0, 0, 0)).vote_granted, "votedFor is 2 now"
