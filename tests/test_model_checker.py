"""The Figure 2 model checker: mutants are caught with shortest counterexamples,
the correct model passes the same bounds, symmetry keeps verdicts.

Bounds are small so the whole file runs in a few seconds; the bench
(bench/bench_checker.py) explores the big configuration.
"""

from __future__ import annotations

import argparse
import ast
import os
import shlex
import sys
from dataclasses import astuple, fields
from itertools import pairwise
from pathlib import Path

import pytest

from trioraft.cli import main
from trioraft.model import actions as a
from trioraft.model.check_cli import add_arguments, command_line, found_with, resolve, run
from trioraft.model.checker import MAX_MEMORY, MAX_STATES, Fingerprinter, check, resident_memory
from trioraft.model.invariants import INVARIANTS, INVARIANTS_BY_NAME, Invariant, violations
from trioraft.model.mutants import MUTANT_BY_NAME, MUTANTS, NEEDS_SNAPSHOTS, MutantBounds
from trioraft.model.registry import apply_step, successors
from trioraft.model.search import Bounds, Step, settle, tidy_network
from trioraft.model.state import (
    LEADER,
    AppendEntriesRequest,
    RequestVoteRequest,
    RequestVoteResponse,
    State,
    initial_state,
)
from trioraft.model.story import format_trace

MODEL_DIR = Path(__file__).resolve().parent.parent / "src" / "trioraft" / "model"

# mutant -> the length of its shortest counterexample from the first boot, at the
# bounds it carries (mutants.MUTANT_BY_NAME[mutant].bounds, with its symmetry); the
# counterexample violates the invariant it names as caught_by.
CAUGHT = {
    "commit-old-term-by-counting": 28,
    "vote-without-log-check": 12,
    "forget-voted-for-on-restart": 9,
    "append-without-prev-check": 21,
    "leader-overwrites-log": 13,
    "follower-commits-past-new-entries": 15,
    "install-snapshot-discards-log": 19,
    "pre-vote-persists-term": 3,
    "vote-despite-lease": 13,
    "read-without-round": 19,
    "transfer-accepts-requests": 7,
}

# Mutants whose own bounds make spaces of seconds, not tenths: the correct model is
# checked on them from a scripted state (the Figure 8 test below, the snapshot one
# in test_model_snapshots.py), and their described command line is run again only
# with TRIORAFT_SLOW_MODEL_TESTS.
BIG = {"commit-old-term-by-counting", "install-snapshot-discards-log"}
SLOW = pytest.mark.skipif(
    not os.environ.get("TRIORAFT_SLOW_MODEL_TESTS"),
    reason="tens of seconds; set TRIORAFT_SLOW_MODEL_TESTS=1",
)


def _replays(result_trace: tuple[tuple[Step | None, State], ...], mutant: str | None) -> None:
    """Every step of a counterexample is enabled and leads to the next state shown."""
    for (_, before), (step, after) in pairwise(result_trace):
        assert step is not None
        replayed = apply_step(before, step, mutant)
        assert replayed is not None, f"{step} is not enabled"
        assert tidy_network(replayed) == after


# --------------------------------------------------------------------- mutants


def test_every_mutant_has_a_test() -> None:
    assert set(CAUGHT) == set(MUTANTS) == set(MUTANT_BY_NAME)


@pytest.mark.parametrize("mutant", sorted(MUTANT_BY_NAME))
def test_every_mutant_carries_bounds_the_checker_takes(mutant: str) -> None:
    carried = MUTANT_BY_NAME[mutant]
    assert carried.name == mutant and carried.caught_by in INVARIANTS_BY_NAME
    assert MUTANTS[mutant] == carried.description
    assert carried.description.startswith(carried.breaks)
    assert [f.name for f in fields(MutantBounds)] == list(Bounds._fields)
    bounds, symmetry = found_with(carried)
    assert tuple(bounds) == astuple(carried.bounds) and symmetry == carried.symmetry
    assert bounds.snapshots == (mutant in NEEDS_SNAPSHOTS)


@pytest.mark.parametrize("mutant", sorted(set(CAUGHT) - BIG))
def test_mutant_is_caught_and_the_correct_model_passes_the_same_bounds(mutant: str) -> None:
    bounds, symmetry = found_with(MUTANT_BY_NAME[mutant])
    invariant, length = MUTANT_BY_NAME[mutant].caught_by, CAUGHT[mutant]
    result = check(bounds, mutant=mutant, symmetry=symmetry)
    assert result.violation is not None
    assert result.violation[0] == invariant
    last = result.trace[-1][1]
    assert invariant in [name for name, _ in violations(last)]
    # Breadth-first: the counterexample is as long as the depth it was found at,
    # and no state before the last violates anything.
    assert len(result.trace) - 1 == result.depth == length
    assert all(not violations(state) for _, state in result.trace[:-1])
    _replays(result.trace, mutant)

    correct = check(bounds, symmetry=symmetry)
    assert correct.ok and correct.complete


def figure_8_prefix() -> State:
    """The paper's Figure 8 (a)-(b) on 3 servers: server 0 led term 1 and holds an
    uncommitted entry of term 1; server 1 leads term 2 with its own entry at the
    same index; server 2 voted for 1 and holds nothing."""
    state = initial_state(3)
    for candidate, voter in ((0, 1), (1, 2)):
        state = _step(a.timeout(state, candidate))
        state = _step(a.request_vote(state, candidate, voter))
        (request,) = [m for m in state.network if isinstance(m, RequestVoteRequest)]
        state = _step(a.handle_request_vote(state, request))
        (reply,) = [m for m in state.network if isinstance(m, RequestVoteResponse)]
        state = _step(a.handle_request_vote_response(state, reply))
        state, taken = settle(state, candidate)
        assert taken == ("become_leader",)
        state = _step(a.client_request(state, candidate, 1))
    assert not state.network
    return state


def _step(state: State | None) -> State:
    assert state is not None, "a scripted step was not enabled"
    return state


def test_figure_8_committing_an_old_term_by_counting_is_caught() -> None:
    """§5.4.2: a leader must not commit an entry of an older term by counting
    replicas; with the mutant, a later leader lacks a committed entry."""
    start = figure_8_prefix()
    bounds, _ = found_with(MUTANT_BY_NAME["commit-old-term-by-counting"])
    result = check(bounds, mutant="commit-old-term-by-counting", initial=start)
    assert result.violation is not None
    assert result.violation[0] == "LeaderCompleteness"
    assert len(result.trace) - 1 == result.depth == 18
    _replays(result.trace, "commit-old-term-by-counting")
    # The story: server 0 becomes leader of term 3 and commits its term-1 entry
    # once server 2 holds it; server 1 then wins term 4 without it.
    story = format_trace(result.trace)
    assert "leader of term 3" in story
    assert "advances commit_index to 1" in story
    assert (
        "committed in term 3, is missing from the log of leader 1 of term 4"
        in (result.violation[1])
    )
    assert check(bounds, initial=start).ok


@SLOW
def test_figure_8_from_the_first_boot() -> None:
    """The mutant is found from the first boot at its own bounds (through the
    command line, below); the correct model passes them."""
    bounds, symmetry = found_with(MUTANT_BY_NAME["commit-old-term-by-counting"])
    result = check(bounds, mutant="commit-old-term-by-counting", symmetry=symmetry)
    _replays(result.trace, "commit-old-term-by-counting")
    assert check(bounds, symmetry=symmetry).ok


# --------------------------------------------------------------------- the search


def test_correct_model_passes_small_bounds() -> None:
    for bounds in (Bounds(1, 3, 3, 2, 1), Bounds(2, 2, 2, 2, 1), Bounds(3, 2, 1, 1, 1)):
        result = check(bounds, symmetry=bounds.servers == 3)
        assert result.ok and result.complete, (bounds, result.violation)


def test_counterexample_is_shortest_for_a_known_scenario() -> None:
    """Electing the first leader of three takes four steps: a timeout, one
    RequestVote sent and granted, the vote counted (becoming leader at once)."""
    no_leader = Invariant(
        "NoLeader",
        lambda s: "a leader" if any(x.role == LEADER for x in s.servers) else None,
        "nobody is leader",
    )
    bounds = Bounds(3, 1, 0, 2, 0)
    result = check(bounds, invariants=(no_leader,))
    assert result.violation is not None
    assert len(result.trace) - 1 == result.depth == 4
    actions = [step.action for step, _ in result.trace[1:] if step is not None]
    assert actions == ["timeout", "request_vote", "receive", "receive"]
    # Fine-grained, becoming leader is a step of its own.
    fine = check(bounds._replace(fine_grained=True), invariants=(no_leader,))
    assert fine.violation is not None and fine.depth == 5


def test_symmetry_reduces_the_count_and_keeps_the_verdict() -> None:
    bounds = Bounds(3, 2, 1, 1, 0)
    plain = check(bounds)
    reduced = check(bounds, symmetry=True)
    assert plain.ok and reduced.ok
    assert reduced.states * 5 < plain.states  # at most 3! = 6 renamings per state
    for mutant in ("vote-without-log-check", "leader-overwrites-log"):
        plain = check(Bounds(3, 2, 1, 1, 0), mutant=mutant)
        reduced = check(Bounds(3, 2, 1, 1, 0), mutant=mutant, symmetry=True)
        assert plain.violation is not None and reduced.violation is not None
        assert plain.violation[0] == reduced.violation[0]
        assert plain.depth == reduced.depth
        _replays(reduced.trace, mutant)


def test_symmetric_fingerprints_ignore_server_names() -> None:
    state = figure_8_prefix()
    # Rename servers 0 and 2 by hand through the actions: the mirror-image run.
    mirror = initial_state(3)
    for candidate, voter in ((2, 1), (1, 0)):
        mirror = _step(a.timeout(mirror, candidate))
        mirror = _step(a.request_vote(mirror, candidate, voter))
        (request,) = mirror.network
        assert isinstance(request, RequestVoteRequest)
        mirror = _step(a.handle_request_vote(mirror, request))
        (reply,) = mirror.network
        assert isinstance(reply, RequestVoteResponse)
        mirror = _step(a.handle_request_vote_response(mirror, reply))
        mirror, _ = settle(mirror, candidate)
        mirror = _step(a.client_request(mirror, candidate, 1))
    assert mirror != state
    assert Fingerprinter(True)(mirror) == Fingerprinter(True)(state)
    assert Fingerprinter(False)(mirror) != Fingerprinter(False)(state)


def test_fine_grained_interleaving_gives_the_same_verdicts() -> None:
    bounds = Bounds(3, 2, 1, 1, 0, fine_grained=True)
    result = check(bounds, mutant="leader-overwrites-log", symmetry=True)
    assert result.violation is not None and result.violation[0] == "LeaderAppendOnly"
    _replays(result.trace, "leader-overwrites-log")
    assert check(bounds, symmetry=True).ok
    coarse = check(bounds._replace(fine_grained=False), symmetry=True)
    assert coarse.states < check(bounds, symmetry=True).states


def test_max_states_stops_at_that_many_states() -> None:
    result = check(Bounds(3, 2, 1, 2, 0), max_states=1000)
    assert result.ok and not result.complete and result.states == 1000
    assert result.stopped_by == MAX_STATES
    assert check(Bounds(3, 2, 1, 2, 0), max_states=1).states == 1


def test_max_memory_stops_the_search() -> None:
    result = check(Bounds(3, 2, 1, 2, 0), max_memory=1)
    assert result.ok and not result.complete and result.stopped_by == MAX_MEMORY
    assert 0 < resident_memory() < 1 << 40
    whole = check(Bounds(2, 2, 1, 1, 0), max_states=10**6, max_memory=1 << 40)
    assert whole.complete and whole.stopped_by is None


def test_bounds_are_respected() -> None:
    bounds = Bounds(3, 1, 1, 2, 0)
    seen = {initial_state(3)}
    frontier = list(seen)
    while frontier:
        state = frontier.pop()
        assert len(state.network) <= bounds.max_msgs
        for s in state.servers:
            assert s.current_term <= bounds.max_term and len(s.log) <= bounds.max_log
        for _, child in successors(state, bounds):
            if child not in seen:
                seen.add(child)
                frontier.append(child)
    assert len(seen) == check(bounds).states


def test_append_entries_may_carry_any_number_of_entries() -> None:
    state = figure_8_prefix()
    leader = state.servers[1]
    assert leader.next_index[2] == 1 and len(leader.log) == 1
    sent = [
        step.entries
        for step, _ in successors(state, Bounds(3, 2, 1, 4, 0))
        if step.action == "append_entries" and step.server == 1 and step.peer == 2
    ]
    assert sent == [0, 1]
    with_one = _step(a.append_entries(state, 1, 2, 1))
    (m,) = [m for m in with_one.network if isinstance(m, AppendEntriesRequest)]
    assert m.prev_log_index == 0 and len(m.entries) == 1
    assert a.append_entries(state, 1, 2, 2) is None  # only one entry to send


# --------------------------------------------------------------------- independence


def test_the_model_imports_only_the_standard_library_and_itself() -> None:
    stdlib = set(sys.stdlib_module_names)
    for path in MODEL_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: must stay inside trioraft.model
                    assert node.level == 1, f"{path.name} imports from outside the model"
                    continue
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in stdlib | {"__future__"}, f"{path.name}: {name}"


# --------------------------------------------------------------------- command line


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="trioraft check")
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_list_mutants(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(_args("--list-mutants")) == 0
    assert capsys.readouterr().out.split() == list(MUTANTS)


def test_cli_passes_the_correct_model(capsys: pytest.CaptureFixture[str]) -> None:
    code = run(
        _args(
            "--servers",
            "3",
            "--max-term",
            "1",
            "--max-log",
            "1",
            "--max-msgs",
            "2",
            "--max-restarts",
            "0",
            "--quiet",
        )
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "no invariant violated" in out and "distinct states" in out


def test_cli_prints_the_shortest_counterexample_as_a_story(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = run(_args("--mutant", "forget-voted-for-on-restart"))
    captured = capsys.readouterr()
    assert code == 1
    out = captured.out
    assert out.startswith(
        "checking 3 servers, max term 1, max log 0, max msgs 1, max restarts 1, values 1, "
        "symmetry\nmutant forget-voted-for-on-restart: Restart loses voted_for"
    )
    assert "VIOLATION of ElectionSafety" in out
    assert "shortest counterexample, 9 steps:" in out
    assert "1. server 0 times out, becomes candidate in term 1" in out
    assert "restarts: keeps term 1, voted_for -" in out
    assert "9. server" in out and "10. " not in out


def _checking_line(bounds: Bounds, symmetry: bool) -> str:
    switches = [name for name in ("snapshots", "fine_grained") if getattr(bounds, name)]
    return ", ".join(
        [
            f"checking {bounds.servers} servers",
            f"max term {bounds.max_term}",
            f"max log {bounds.max_log}",
            f"max msgs {bounds.max_msgs}",
            f"max restarts {bounds.max_restarts}",
            f"values {bounds.values}",
            *[name.replace("_", "-") for name in switches],
            *(["Pre-Vote"] if bounds.pre_vote else []),
            *(["CheckQuorum"] if bounds.check_quorum else []),
            *(["leadership transfer"] if bounds.transfer else []),
            *([f"ReadIndex (at most {bounds.max_reads} waiting)"] if bounds.read_index else []),
            *(["symmetry"] if symmetry else []),
        ]
    )


@pytest.mark.parametrize("mutant", sorted(MUTANT_BY_NAME))
def test_cli_finds_every_mutant_alone_at_its_own_bounds(
    mutant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`trioraft check --mutant NAME`, no bounds given: exit 1, the invariant the
    mutant names, the counterexample's length, and the bounds it used."""
    assert main(["check", "--mutant", mutant, "--quiet"]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == _checking_line(*found_with(MUTANT_BY_NAME[mutant]))
    assert lines[2].startswith(f"VIOLATION of {MUTANT_BY_NAME[mutant].caught_by}: ")
    steps = CAUGHT[mutant]
    assert f"\nshortest counterexample, {steps} steps:\n" in out
    assert f"\n{steps}. " in out and f"\n{steps + 1}. " not in out


def test_cli_options_given_win_over_the_mutants_own() -> None:
    own, _ = found_with(MUTANT_BY_NAME["vote-without-log-check"])
    bounds, symmetry = resolve(
        _args("--mutant", "vote-without-log-check", "--max-msgs", "3", "--no-symmetry")
    )
    assert bounds == own._replace(max_msgs=3) and not symmetry
    assert resolve(_args("--max-msgs", "3", "--symmetry")) == (Bounds(max_msgs=3), True)
    assert resolve(_args()) == (Bounds(), False)
    snapshots, _ = resolve(_args("--mutant", "install-snapshot-discards-log"))
    assert snapshots.snapshots and snapshots.max_log == 2


def test_cli_prints_the_bounds_it_uses(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--mutant", "leader-overwrites-log", "--max-term", "1", "--fine-grained", "--quiet"]
    assert run(_args(*argv)) == 0  # one term: no leader to overwrite another's entry
    out = capsys.readouterr().out
    assert out.startswith(
        "checking 3 servers, max term 1, max log 1, max msgs 1, max restarts 0, values 1, "
        "fine-grained, symmetry\nmutant leader-overwrites-log: "
    )
    assert "no invariant violated" in out


def _described(capsys: pytest.CaptureFixture[str]) -> dict[str, list[str]]:
    """Mutant -> the command line `trioraft check --describe-mutants` says finds it."""
    assert main(["check", "--describe-mutants"]) == 0
    lines = capsys.readouterr().out.splitlines()
    commands: dict[str, list[str]] = {}
    for text, found in zip(lines[::2], lines[1::2], strict=True):
        name, _, description = text.partition(": ")
        assert description == MUTANTS[name]
        assert found.startswith("  found by: trioraft check --mutant ")
        commands[name] = shlex.split(found.removeprefix("  found by: "))
    return commands


def test_cli_describe_mutants_gives_each_mutant_the_command_line_that_finds_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    commands = _described(capsys)
    assert list(commands) == list(MUTANTS)
    for name, words in commands.items():
        assert " ".join(words) == command_line(MUTANT_BY_NAME[name])
        assert words[:4] == ["trioraft", "check", "--mutant", name]
        # every bound spelt out, and the same check as the mutant's name alone
        assert resolve(_args(*words[2:])) == resolve(_args("--mutant", name))
        bounds = resolve(_args(*words[2:]))[0]
        for option in ("servers", "max_term", "max_log", "max_msgs", "max_restarts", "values"):
            flag = "--" + option.replace("_", "-")
            assert words[words.index(flag) + 1] == str(getattr(bounds, option))


@pytest.mark.parametrize(
    "mutant", [pytest.param(m, marks=[SLOW] if m in BIG else []) for m in sorted(MUTANTS)]
)
def test_cli_the_described_command_line_finds_the_mutant(
    mutant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    words = _described(capsys)[mutant]
    assert main([*words[1:], "--quiet"]) == 1
    assert f"VIOLATION of {MUTANT_BY_NAME[mutant].caught_by}: " in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--mutant", "no-such-bug"], "unknown mutant 'no-such-bug'"),
        (["--servers", "0"], "--servers must be between 1 and 9"),
        (["--values", "0"], "--values must be at least 1"),
        (
            ["--mutant", "install-snapshot-discards-log", "--no-snapshots"],
            "mutant 'install-snapshot-discards-log' breaks a snapshot rule: it needs "
            "--snapshots (drop --no-snapshots)",
        ),
    ],
)
def test_cli_bad_usage_exits_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(_args(*argv)) == 2
    assert message in capsys.readouterr().err


def test_cli_rejects_negative_bounds_at_parse_time(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _args("--max-term", "-1")
    assert exit_info.value.code == 2
    assert "must not be negative" in capsys.readouterr().err


def test_every_invariant_is_registered_once() -> None:
    names = [inv.name for inv in INVARIANTS]
    assert len(names) == len(set(names))
    assert names[:5] == [
        "ElectionSafety",
        "LeaderAppendOnly",
        "LogMatching",
        "LeaderCompleteness",
        "StateMachineSafety",
    ]
