"""Trace validation: real runs replay through the Figure 2 model; broken traces do not.

Broken traces are real recorded traces with one thing edited, the way a bug
would have recorded them, and each must be rejected naming the rule broken.
Short traces are replayed in ``verify`` mode, which also evaluates the whole
invariant registry after every step and asserts the incremental evaluation
agrees with it.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from trioraft.cli import main
from trioraft.core.config import RaftConfig
from trioraft.model import INVARIANTS, Entry, initial_state
from trioraft.model.incremental import Watch, common_prefix
from trioraft.model.validator import (
    FOLLOW_UPS,
    REPLIES,
    Result,
    TraceError,
    Validator,
    validate,
)
from trioraft.sim.harness import SNAPSHOT_INTERVAL, open_cluster
from trioraft.sim.simulate import run_simulation
from trioraft.trace import TraceRecorder
from trioraft.validate import validate_recorded

Events = list[dict[str, Any]]


def simulated(seed: int, nodes: int, duration: float, unreliable: bool) -> tuple[dict, Events]:
    events: Events = []
    result = run_simulation(seed, nodes, duration, unreliable=unreliable, listener=events.append)
    assert result.failure is None and result.recorder is not None
    return result.recorder.header, events


_SPLIT_VOTES: tuple[dict, Events] | None = None


def split_votes() -> tuple[dict, Events]:
    """A run with contested elections (losing candidates, refused second votes)."""
    global _SPLIT_VOTES
    if _SPLIT_VOTES is None:
        _SPLIT_VOTES = simulated(4, 3, 20, True)
    header, events = _SPLIT_VOTES
    return header, copy.deepcopy(events)


def check(header: dict, events: Events, mode: str = "incremental") -> Result:
    return validate(header, events, lines=[k + 2 for k in range(len(events))], mode=mode)


def assert_valid(header: dict, events: Events, mode: str = "verify") -> Result:
    result = check(header, events, mode)
    assert result.violation is None, result.violation.describe()
    assert result.events == len(events)
    assert result.candidates == 1  # the model state never needs to be a set
    return result


def rejected(header: dict, events: Events, rule: str) -> str:
    """The violation's text, after checking it names ``rule`` in both modes."""
    found = []
    for mode in ("incremental", "full"):
        violation = check(header, events, mode).violation
        assert violation is not None, "the broken trace was accepted"
        found.append(violation)
    assert found[0] == found[1]
    assert found[0].rule == rule, found[0].describe()
    return found[0].describe()


# ------------------------------------------------------------------ real runs


@pytest.mark.parametrize(
    ("nodes", "unreliable", "duration"), [(3, False, 8), (3, True, 8), (5, False, 4), (5, True, 4)]
)
def test_simulated_runs_validate(nodes: int, unreliable: bool, duration: float) -> None:
    header, events = simulated(7, nodes, duration, unreliable)
    kinds = {e["event"] for e in events}
    assert {"crash", "init", "timeout", "become_leader", "commit", "apply"} <= kinds
    result = assert_valid(header, events)
    assert 0 < result.steps < result.events


async def record(
    seed: int, *, unreliable: bool = False, snapshot: bool = False, chunk: int | None = None
) -> TraceRecorder:
    """A harness run with crashes, restarts and disconnects (and snapshots)."""
    recorder = TraceRecorder(nodes=3, seed=seed)
    config = RaftConfig(snapshot_chunk_bytes=chunk) if chunk else None
    async with open_cluster(
        3, unreliable=unreliable, snapshot=snapshot, seed=seed, tracer=recorder, raft_config=config
    ) as cfg:
        await cfg.one(1, 3, True)
        leader = await cfg.check_one_leader()
        for r in range(4):
            victim = (leader + 1 + r % 2) % 3
            if r % 2:
                cfg.crash1(victim)
            else:
                cfg.disconnect(victim)
            for k in range(SNAPSHOT_INTERVAL + 3 if snapshot else 4):
                await cfg.one(100 * r + k + 2, 2, True)
            if r % 2:
                cfg.start1(victim)
            cfg.connect(victim)
            await cfg.one(100 * r + 99, 3, True)
            leader = await cfg.check_one_leader()
    return recorder


def replay(recorder: TraceRecorder, mode: str = "verify") -> tuple[Result, set[str]]:
    header, events = recorder.records[0], recorder.records[1:]
    kinds = {e["event"] for e in events}
    kinds |= {e["msg"]["type"] for e in events if e["event"] == "send"}
    kinds |= {"done=false" for e in events if e.get("msg", {}).get("done") is False}
    return assert_valid(header, events, mode), kinds


@pytest.mark.parametrize("unreliable", [False, True])
async def test_harness_runs_with_crashes_validate(seed: int, unreliable: bool) -> None:
    _, kinds = replay(await record(seed, unreliable=unreliable))
    assert {"crash", "init", "drop" if unreliable else "persist"} <= kinds


@pytest.mark.parametrize(("unreliable", "chunk"), [(False, None), (True, None), (True, 48)])
async def test_snapshot_runs_validate(seed: int, unreliable: bool, chunk: int | None) -> None:
    _, kinds = replay(await record(seed, unreliable=unreliable, snapshot=True, chunk=chunk))
    assert {"snapshot", "InstallSnapshot", "install_snapshot", "apply_snapshot"} <= kinds
    if chunk:
        assert "done=false" in kinds  # snapshots went in several chunks


async def test_the_suite_fixture_validates_recorded_runs(seed: int) -> None:
    recorder = await record(seed)
    assert validate_recorded(recorder) is None
    at = next(k for k, r in enumerate(recorder.records) if r.get("event") == "crash")
    recorder.records[at]["state"]["term"] = 99
    problem = validate_recorded(recorder)
    assert problem is not None
    assert problem.startswith(f"<recorded trace>:{at + 1}: event {at} at node ")
    assert problem.endswith(": Crash: expected term 1, logged term 99") or "Crash" in problem


def test_streaming_equals_whole_trace() -> None:
    header, events = simulated(2, 3, 5, False)
    streaming = Validator(header)
    for k, event in enumerate(events):
        assert streaming.feed(event, k + 2) is None
    assert streaming.finish() == check(header, events)


# ------------------------------------------------------------------ broken traces


def index_of(events: Events, start: int = 0, **want: Any) -> int:
    """The first event from ``start`` whose fields (and state fields) match ``want``."""
    for k in range(start, len(events)):
        e = events[k]
        if all(
            (e.get("state") or {}).get(key[6:]) == value
            if key.startswith("state_")
            else e.get(key) == value
            for key, value in want.items()
        ):
            return k
    raise LookupError(f"no event with {want}")


def test_two_leaders_in_one_term() -> None:
    header, events = split_votes()
    candidates: dict[int, set[int]] = {}
    for e in events:
        if e["event"] == "become_candidate":
            candidates.setdefault(e["state"]["term"], set()).add(e["node"])
    # A contested term whose loser is still a candidate when it next does
    # anything after the winner took office: just before that, it claims
    # leadership too (a lone step: persist, then become_leader).
    found = None
    won = -1
    while found is None:
        won = index_of(events, won + 1, event="become_leader")
        term, winner = events[won]["state"]["term"], events[won]["node"]
        for loser in sorted(candidates[term] - {winner}):
            k = index_of(events, won + 1, node=loser)
            if events[k]["state"]["term"] == term and events[k]["state"]["role"] == "candidate":
                found = loser, k
                break
    loser, at = found
    persist = {key: copy.deepcopy(events[at][key]) for key in ("node", "time", "state")}
    persist.update(event="persist", seq=events[at]["seq"] - 0.6)
    claim = copy.deepcopy(persist)
    claim.update(event="become_leader", seq=events[at]["seq"] - 0.3)
    claim["state"]["role"] = "leader"
    events[at:at] = [persist, claim]
    text = rejected(header, events, "ElectionSafety")
    assert f"server {winner} leads term {term}" in text
    assert f"server {loser} becomes a second leader of term {term}" in text


def test_one_vote_for_two_candidates_in_a_term() -> None:
    header, events = split_votes()
    at = next(
        k
        for k, e in enumerate(events)
        if e["event"] == "vote"
        and not e["granted"]
        and e["state"]["voted_for"] not in (None, e["candidate"])
    )
    first = events[at]["state"]["voted_for"]
    events[at]["granted"] = True
    reply = index_of(events, at, event="send")
    events[reply]["msg"]["vote_granted"] = True
    text = rejected(header, events, "RequestVote receiver")
    assert f"expected vote refused to {events[at]['candidate']} (it voted for {first}" in text
    assert f"logged vote granted to {events[at]['candidate']}" in text


def test_a_commit_without_a_majority() -> None:
    header, events = simulated(1, 5, 5, False)
    proposed = index_of(events, event="client_request")
    leader, index = events[proposed]["node"], events[proposed]["index"]
    # The leader counts the entry committed at its first acknowledgement (2 of 5).
    ack = proposed
    while not (
        events[ack]["event"] == "receive"
        and events[ack]["node"] == leader
        and events[ack]["msg"]["type"] == "AppendEntriesReply"
        and events[ack]["msg"]["success"]
    ):
        ack += 1
    forged = {**copy.deepcopy(events[ack]), "event": "commit", "index": index}
    forged["seq"] = events[ack]["seq"] + 0.5
    for key in ("id", "msg"):
        del forged[key]
    forged["state"]["commit_index"] = index
    events.insert(ack + 1, forged)
    text = rejected(header, events, "AdvanceCommitIndex")
    assert "(replicated on a majority)" in text and f"logged commit of index {index}" in text


def test_apply_out_of_order() -> None:
    header, events = simulated(1, 3, 5, False)
    at = next(
        k
        for k in range(len(events) - 1)
        if events[k]["event"] == events[k + 1]["event"] == "apply"
        and events[k]["node"] == events[k + 1]["node"]
    )
    first, second = events[at], events[at + 1]
    first["seq"], second["seq"] = second["seq"], first["seq"]
    events[at], events[at + 1] = second, first
    text = rejected(header, events, "Apply")
    assert f"expected index {first['index']} (lastApplied + 1)" in text
    assert f"logged apply of index {second['index']}" in text


def test_receipt_of_a_message_never_sent() -> None:
    header, events = simulated(1, 3, 5, False)
    receive = index_of(events, 100, event="receive")
    while events[receive]["msg"]["type"] != "AppendEntries":
        receive = index_of(events, receive + 1, event="receive")
    message_id = events[receive]["id"]
    sent = next(k for k, e in enumerate(events) if e["event"] == "send" and e["id"] == message_id)
    del events[sent]
    text = rejected(header, events, "Receive")
    assert f"receipt of a message never sent (AppendEntries id {message_id})" in text


def test_a_committed_entry_overwritten() -> None:
    header, events = simulated(1, 3, 5, False)
    at = next(
        k
        for k, e in enumerate(events)
        if e["event"] == "append" and events[k - 1]["state"]["commit_index"] >= 3
    )
    committed = events[at - 1]["state"]["commit_index"]
    events[at]["index"] = committed - 1
    events[at]["count"] += events[at]["state"]["last_index"] - committed + 1
    text = rejected(header, events, "AppendEntries receiver rule 3")
    assert "a committed entry overwritten" in text


def test_a_reply_sent_before_it_was_saved() -> None:
    header, events = simulated(1, 3, 5, False)
    vote = index_of(events, event="vote", granted=True)
    assert events[vote + 1]["event"] == "persist"
    del events[vote + 1]
    rejected(header, events, "Persistence: saved before replying")


def test_a_restart_that_forgets_its_log() -> None:
    header, events = simulated(1, 3, 5, False)
    at = next(k for k, e in enumerate(events) if e["event"] == "init" and e["log"])
    events[at]["log"] = events[at]["log"][:-1]
    events[at]["state"]["last_index"] -= 1
    rejected(header, events, "Restart: persistent state")


def test_a_logged_state_that_differs_from_the_model() -> None:
    header, events = simulated(1, 3, 5, False)
    at = index_of(events, event="commit")
    events[at]["state"]["last_applied"] += 1
    text = rejected(header, events, "Leaders: nextIndex and matchIndex")
    assert "expected last_applied" in text


def test_a_malformed_event_raises_trace_error() -> None:
    header, events = simulated(1, 3, 2, False)
    at = index_of(events, event="receive")
    del events[at]["msg"]
    with pytest.raises(TraceError) as info:
        check(header, events)
    assert info.value.line == at + 2 and "missing field 'msg'" in info.value.problem


# ------------------------------------------------------------------ incremental invariants


def test_incremental_invariants_defer_to_the_registry() -> None:
    """Each violation the incremental check suspects is the registry's verdict."""
    state = initial_state(3)
    watch = Watch(state, INVARIANTS)
    s0 = state.servers[0]
    forked = state._replace(
        servers=(
            s0._replace(current_term=2, log=(Entry(1, "a"), Entry(2, "b"))),
            s0._replace(current_term=2, log=(Entry(1, "x"), Entry(2, "b"))),
            s0,
        )
    )
    assert watch.check(state, forked) == (
        "LogMatching",
        "servers 0 and 1 both have term 2 at index 2 but their logs differ up to it: "
        "[1:t1='a' 2:t2='b'] and [1:t1='x' 2:t2='b']",
    )
    twice = state._replace(
        servers=(s0._replace(current_term=1, led_terms=(1,)), s0._replace(led_terms=(1,)), s0)
    )
    found = Watch(state, INVARIANTS).check(state, twice)
    assert found is not None and found[0] == "ElectionSafety"


def test_common_prefix() -> None:
    a = tuple(Entry(1, str(k)) for k in range(10))
    assert common_prefix(a, a) == 10
    assert common_prefix(a, a[:4]) == 4
    assert common_prefix(a, (*a[:6], Entry(2, "z"))) == 6
    assert common_prefix((), a) == 0


# ------------------------------------------------------------------ the command line


def write(path: Path, header: dict, events: Events) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in [header, *events]))
    return path


def test_cli_validate_accepts_a_good_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header, events = simulated(1, 3, 3, False)
    path = write(tmp_path / "good.ndjson", header, events)
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: OK ({len(events)} events, ")


def test_cli_validate_names_the_violation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header, events = simulated(1, 3, 3, False)
    good = write(tmp_path / "good.ndjson", header, events)
    at = index_of(events, event="apply")
    events[at]["index"] += 1
    bad = write(tmp_path / "bad.ndjson", header, events)
    assert main(["validate", str(good), str(bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{good}: OK")
    seq, node = events[at]["seq"], events[at]["node"]
    assert out[1].startswith(f"{bad}:{at + 2}: event {seq} at node {node}: Apply: expected index ")


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda lines: lines.insert(5, "{not json"), ":6: not valid JSON"),
        (lambda lines: lines.__setitem__(0, '{"format": "other"}'), ":1: not a trioraft trace"),
        (lambda lines: lines.__setitem__(2, lines[2].replace('"seq"', '"sqe"')), ":3: field"),
        (lambda lines: lines.__setitem__(3, lines[3].replace('"restored"', '"r"')), ":4: event"),
    ],
)
def test_cli_validate_exits_2_on_a_malformed_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: Any, problem: str
) -> None:
    header, events = simulated(1, 3, 2, False)
    lines = [json.dumps(r) for r in [header, *events]]
    assert json.loads(lines[3])["event"] == "init"
    edit(lines)
    path = tmp_path / "broken.ndjson"
    path.write_text("\n".join(lines) + "\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}{problem}" in err and "Traceback" not in err


def test_cli_validate_exits_2_on_bytes_that_are_not_utf8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header, events = simulated(1, 3, 2, False)
    lines = [json.dumps(r).encode() for r in [header, *events]]
    assert b'"init"' in lines[3]
    lines[3] = lines[3].replace(b'"init"', b'"in\xfft"')
    path = tmp_path / "latin.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:4: not UTF-8 text" in err and "Traceback" not in err


def test_cli_validate_exits_2_on_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(tmp_path / "nothing.ndjson")]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize("to_file", [False, True])
def test_simulate_validates_its_own_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], to_file: bool
) -> None:
    """simulate validates as it records; the file it writes validates the same."""
    path = tmp_path / "run.ndjson"
    argv = ["simulate", "--nodes", "3", "--duration", "5"]
    if to_file:
        argv += ["--trace", str(path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    events = re.search(r"trace +(\d+) events, validated as recorded", out)
    assert events is not None and "result: OK" in out
    if to_file:
        assert main(["validate", str(path)]) == 0
        assert f"{events.group(1)} events" in capsys.readouterr().out


def test_wrong_fast_backup_hints() -> None:
    """A rejection's conflict_index/conflict_term must be what the follower's log says."""
    header, events = split_votes()
    at = next(
        k
        for k, e in enumerate(events)
        if e["event"] == "send"
        and e["msg"]["type"] == "AppendEntriesReply"
        and not e["msg"]["success"]
        and e["msg"]["conflict_index"]
    )
    events[at]["msg"]["conflict_index"] += 1
    text = rejected(header, events, "AppendEntries receiver: fast-backup hints")
    assert "conflict_index" in text


async def test_snapshot_rules_reject_broken_traces(seed: int) -> None:
    """An installed snapshot that is not the one sent; a snapshot the service never
    applied; a leader that sends a snapshot term it does not hold."""
    recorder = await record(seed, snapshot=True)
    header, events = recorder.records[0], recorder.records[1:]

    broken = copy.deepcopy(events)
    at = index_of(broken, event="install_snapshot")
    broken[at]["index"] -= 1
    assert "install_snapshot" in rejected(header, broken, "InstallSnapshot receiver")

    broken = copy.deepcopy(events)
    at = index_of(broken, event="snapshot")
    broken[at]["index"] = broken[at]["state"]["last_applied"] + 1
    rejected(header, broken, "Snapshot")

    broken = copy.deepcopy(events)
    at = next(
        k
        for k, e in enumerate(broken)
        if e["event"] == "send" and e["msg"]["type"] == "InstallSnapshot"
    )
    broken[at]["msg"]["last_included_term"] += 1
    rejected(header, broken, "Leaders: InstallSnapshot")


async def test_chunked_snapshot_rules_reject_broken_traces(seed: int) -> None:
    """Chunks must build one snapshot in order; a leader sends only a snapshot it
    holds; the snapshot applied is the one installed; messages arrive as sent."""
    recorder = await record(seed, unreliable=True, snapshot=True, chunk=48)
    header, events = recorder.records[0], recorder.records[1:]

    def first(kind: str, event: str = "send") -> int:
        return next(
            k for k, e in enumerate(events) if e["event"] == event and e["msg"]["type"] == kind
        )

    broken = copy.deepcopy(events)
    at = first("InstallSnapshotReply")
    broken[at]["msg"]["received"] += 1
    assert "received" in rejected(header, broken, "InstallSnapshot receiver rules 2-5")

    broken = copy.deepcopy(events)
    at = first("InstallSnapshot")
    broken[at]["msg"]["last_included_index"] -= 1
    assert "a snapshot it holds" in rejected(header, broken, "Leaders: InstallSnapshot")

    broken = copy.deepcopy(events)
    at = first("InstallSnapshot", "receive")
    broken[at]["msg"]["data_digest"] = "0" * 16
    rejected(header, broken, "Receive")

    broken = copy.deepcopy(events)
    at = first("InstallSnapshotReply", "receive")
    broken[at]["msg"]["received"] += 1000
    assert "received" in rejected(header, broken, "Receive")

    broken = copy.deepcopy(events)
    at = index_of(broken, event="apply_snapshot")
    broken[at]["index"] -= 1
    assert "the snapshot it holds" in rejected(header, broken, "Apply snapshot")


async def test_snapshot_bytes_are_followed_from_leader_to_service(seed: int) -> None:
    """The trace names each snapshot's size and digest: an installed snapshot must be
    the leader's, the one applied the installed one, and chunks end where it ends."""
    recorder = await record(seed, unreliable=True, snapshot=True, chunk=48)
    header, events = recorder.records[0], recorder.records[1:]

    broken = copy.deepcopy(events)
    at = index_of(broken, event="install_snapshot")
    broken[at]["snapshot_digest"] = "f" * 16
    assert "leader" in rejected(header, broken, "InstallSnapshot receiver")

    broken = copy.deepcopy(events)
    at = index_of(broken, event="apply_snapshot")
    broken[at]["snapshot_size"] += 1
    rejected(header, broken, "Apply snapshot")

    broken = copy.deepcopy(events)
    at = next(
        k
        for k, e in enumerate(broken)
        if e["event"] == "send" and e["msg"]["type"] == "InstallSnapshot" and not e["msg"]["done"]
    )
    broken[at]["msg"]["done"] = True
    assert "done on the last" in rejected(header, broken, "Leaders: InstallSnapshot chunks")


async def _noop_run(seed: int) -> tuple[dict, Events]:
    recorder = TraceRecorder(nodes=3, seed=seed)
    config = RaftConfig(noop_on_election=True)
    async with open_cluster(3, seed=seed, tracer=recorder, raft_config=config) as cfg:
        leader = await cfg.check_one_leader()
        await cfg.one("x", 3, True)
        cfg.disconnect(leader)
        await cfg.one("y", 2, True)  # a second leader, a second no-op
        cfg.connect(leader)
        await cfg.one("z", 3, True)
    return recorder.records[0], recorder.records[1:]


async def test_noops_validate_only_right_after_become_leader(seed: int) -> None:
    header, events = await _noop_run(seed)
    assert_valid(header, events)
    noops = [k for k, e in enumerate(events) if e["event"] == "noop"]
    assert len(noops) >= 2 and all(events[k - 1]["event"] == "become_leader" for k in noops)
    # A no-op appended after something else happened is not the §8 no-op.
    late = copy.deepcopy(events)
    k = noops[0]
    between = copy.deepcopy(late[k - 1])
    between.update(event="persist", seq=late[k]["seq"] - 0.5)
    late.insert(k, between)
    assert "right after become_leader" in rejected(header, late, "NoOp")
    # A client cannot submit a no-op.
    forged = copy.deepcopy(events)
    at = index_of(forged, event="client_request")
    forged[at]["digest"] = "noop"
    rejected(header, forged, "NoOp")


def _deferred(events: Events, receive: int) -> Events:
    """The reply of the request received at ``receive`` sent later, outside the
    receive's step (as when a storage syncs in a worker thread): right before the
    requester receives it, after whatever happened in between."""
    events = copy.deepcopy(events)
    message_id = events[receive]["id"]
    reply = index_of(events, receive, event="send", id=message_id)
    moved = events.pop(reply)
    arrival = index_of(events, reply, event="receive", id=message_id)
    assert arrival > reply, "something happened between the reply and its receipt"
    moved["seq"] = events[arrival]["seq"] - 0.5
    before = events[arrival - 1]
    if before["node"] == moved["node"]:
        moved["state"] = copy.deepcopy(before["state"])  # the state when it leaves
    events.insert(arrival, moved)
    return events


def _saving_receive_with_a_gap(events: Events) -> int:
    """The receive of a request whose step saved something (a vote, entries), whose
    reply was not received right after it was sent (so it can be released later)."""
    for k, e in enumerate(events):
        if e["event"] != "receive" or e["msg"]["type"] not in ("RequestVote", "AppendEntries"):
            continue
        step = k + 1
        while events[step]["node"] == e["node"] and events[step]["event"] != "send":
            step += 1
        reply = step
        saved = any(events[j]["event"] == "persist" for j in range(k, reply))
        if not saved or events[reply].get("id") != e["id"]:
            continue
        try:
            arrival = index_of(events, reply, event="receive", id=e["id"])
        except LookupError:
            continue  # the reply was lost
        if arrival > reply + 1:
            return k
    raise LookupError("no saving receive whose reply took a while")


def test_a_reply_released_after_a_later_sync_validates_once_saved() -> None:
    header, events = simulated(2, 3, 10, True)  # unreliable: replies take a while
    receive = _saving_receive_with_a_gap(events)
    deferred = _deferred(events, receive)
    assert_valid(header, deferred)
    # ... but not before the vote it carries was saved.
    unsaved = copy.deepcopy(deferred)
    del unsaved[index_of(unsaved, receive, event="persist", node=events[receive]["node"])]
    rejected(header, unsaved, "Persistence: saved before replying")


def test_a_reply_nobody_asked_for_is_rejected() -> None:
    header, events = simulated(2, 3, 10, True)  # unreliable: replies take a while
    receive = _saving_receive_with_a_gap(events)
    deferred = _deferred(events, receive)
    twice = index_of(deferred, receive, event="send", id=events[receive]["id"])
    copied = copy.deepcopy(deferred[twice])
    deferred.insert(twice + 1, copied)  # the same reply released twice
    rejected(header, deferred, "Trace order")


# ------------------------------------------------------------------ every event's state


def continues(events: Events, k: int) -> bool:
    """Event k + 1 is a follow-up of event k's step (grouped as the validator does)."""
    if k + 1 >= len(events):
        return False
    e, f = events[k], events[k + 1]
    if f["node"] != e["node"]:
        return False
    return f["msg"]["type"] in REPLIES if f["event"] == "send" else f["event"] in FOLLOW_UPS


def middle(events: Events, start: int = 0, **want: Any) -> int:
    """The first event from ``start`` matching ``want`` (as in :func:`index_of`) that
    is not the last event of its step (whose state is compared only with the model's
    at the end of the step)."""
    k = index_of(events, start, **want)
    while not continues(events, k):
        k = index_of(events, k + 1, **want)
    return k


def steps_of(events: Events) -> list[tuple[int, int]]:
    """Each step's (first, last + 1) event positions."""
    spans, first = [], 0
    for k in range(len(events)):
        if not continues(events, k):
            spans.append((first, k + 1))
            first = k + 1
    return spans


def test_a_trace_with_many_events_per_step_validates() -> None:
    """Every event of a real run logs what the model says at that point of its step."""
    header, events = split_votes()
    shapes = {tuple(e["event"] for e in events[a:b]) for a, b in steps_of(events)}
    assert ("receive", "term_update", "vote", "persist", "send") in shapes
    assert ("receive", "append", "commit", "persist", "send") in shapes
    assert max(map(len, shapes)) >= 6
    inside = {events[k]["event"] for k in range(len(events)) if continues(events, k)}
    assert {
        "receive", "timeout", "persist", "send", "term_update", "become_follower",
        "become_candidate", "vote", "append", "commit", "client_request",
    } <= inside  # fmt: skip
    assert_valid(header, events, mode="incremental")
    first = next(b for a, b in steps_of(events) if b >= 1500)
    assert_valid(header, events[:first])  # verify mode: the registry agrees (slow: a part)


def _up(field: str, by: int) -> Any:
    return lambda e: e["state"].update({field: e["state"][field] + by})


def _to(field: str, value: Any) -> Any:
    return lambda e: e["state"].update({field: value})


@pytest.mark.parametrize(
    ("want", "edit", "rule", "text"),
    [
        (
            {"event": "receive", "state_role": "follower"},
            _to("role", "leader"),
            "event state: receive changes nothing",
            "expected role follower (as before the event), logged role leader",
        ),
        (
            {"event": "receive"},
            _up("term", -1),
            "event state: receive changes nothing",
            "(as before the event), logged term",
        ),
        ({"event": "timeout"}, _up("term", 1), "event state: timeout changes nothing", "term"),
        ({"event": "persist"}, _up("last_index", -1), "event state: persist changes nothing", ""),
        ({"event": "send"}, _up("term", 1), "event state: send changes nothing", "term"),
        ({"event": "term_update"}, _up("term", -1), "event state: term_update", "term"),
        (
            {"event": "term_update", "state_voted_for": None},
            lambda e: e["state"].update(voted_for=e["node"]),
            "event state: term_update",
            "expected voted_for null",
        ),
        ({"event": "term_update"}, _up("commit_index", 1), "event state: term_update", "commit"),
        (
            {"event": "become_follower"},
            _to("role", "candidate"),
            "event state: become_follower",
            "expected role follower, logged role candidate",
        ),
        (
            {"event": "become_candidate"},
            _to("voted_for", None),
            "event state: become_candidate",
            "logged voted_for null",
        ),
        ({"event": "become_candidate"}, _up("term", -1), "event state: become_candidate", "term"),
        (
            {"event": "vote", "granted": True},
            _to("voted_for", None),
            "event state: vote",
            "logged voted_for null",
        ),
        ({"event": "vote"}, _up("term", 1), "event state: vote", "(as before the event)"),
        ({"event": "append"}, _up("last_index", -1), "event state: append", "last_index"),
        ({"event": "append"}, _up("last_term", 1), "event state: append", "last_term"),
        (
            {"event": "append"},
            _up("commit_index", 1),
            "event state: append",
            "commit_index",  # committed before the commit event
        ),
        ({"event": "commit"}, _up("commit_index", -1), "event state: commit", "commit_index"),
        ({"event": "commit"}, _up("last_applied", 1), "event state: commit", "last_applied"),
        (
            {"event": "client_request"},
            _up("last_index", -1),
            "event state: client_request",
            "last_index",
        ),
    ],
)
def test_an_event_in_the_middle_of_a_step_that_lies_is_rejected(
    want: dict[str, Any], edit: Any, rule: str, text: str
) -> None:
    header, events = split_votes()
    at = middle(events, **want)
    edit(events[at])
    found = rejected(header, events, rule)  # (validation stops at the first violation)
    assert found.startswith(f"event {events[at]['seq']} at node {events[at]['node']}: ")
    assert text in found


async def test_a_new_leaders_middle_events_that_lie_are_rejected(seed: int) -> None:
    header, events = await _noop_run(seed)
    elected = middle(events, event="become_leader")
    assert events[elected + 1]["event"] == "noop" and continues(events, elected + 1)
    for at, edit, rule in [
        (elected, _to("role", "candidate"), "event state: become_leader"),
        (elected, _up("last_index", 1), "event state: become_leader"),  # the no-op's, early
        (elected + 1, _up("last_index", 1), "event state: noop"),
        (elected + 1, _up("last_term", -1), "event state: noop"),
    ]:
        broken = copy.deepcopy(events)
        edit(broken[at])
        rejected(header, broken, rule)


async def test_snapshot_events_that_lie_are_rejected(seed: int) -> None:
    recorder = await record(seed, snapshot=True)
    header, events = recorder.records[0], recorder.records[1:]
    taken = middle(events, event="snapshot")
    installed = middle(events, event="install_snapshot")
    for at, edit, rule in [
        (taken, _up("snapshot_term", 1), "event state: snapshot"),
        (taken, _up("last_applied", -1), "event state: snapshot"),
        (installed, _up("commit_index", -1), "event state: install_snapshot"),
        (installed, _up("snapshot_index", 1), "event state: install_snapshot"),
        (installed, _to("role", "candidate"), "event state: install_snapshot"),
    ]:
        broken = copy.deepcopy(events)
        edit(broken[at])
        rejected(header, broken, rule)


def cut_at(header: dict, events: Events, k: int) -> Result:
    """The trace's first ``k`` events, as a file cut there by a crash is validated."""
    validator = Validator(header)
    for line, event in enumerate(events[:k], start=2):
        if validator.feed(event, line) is not None:
            break
    return validator.finish(cut=True)


def test_a_trace_cut_at_any_event_is_valid_up_to_the_cut() -> None:
    header, events = simulated(7, 3, 3, True)
    kinds = {e["event"] for k, e in enumerate(events) if continues(events, k)}
    assert {"receive", "term_update", "vote", "append", "commit", "become_candidate"} <= kinds
    incomplete = 0
    for k in range(1, len(events) + 1):
        result = cut_at(header, events, k)
        assert result.violation is None, f"cut after event {k}: {result.violation.describe()}"
        assert result.events == k
        incomplete += result.cut is not None
    assert incomplete > 20  # many cuts leave a step's follow-ups unwritten: noted, not wrong
    # ... but what was written must still be true, the last event included.
    at = middle(events, event="receive", state_role="follower")
    assert cut_at(header, events, at + 1).cut is not None
    broken = copy.deepcopy(events[: at + 1])
    broken[at]["state"]["role"] = "leader"
    violation = cut_at(header, broken, at + 1).violation
    assert violation is not None and violation.rule == "event state: receive changes nothing"


async def test_a_snapshot_trace_cut_inside_any_snapshot_step_is_valid(seed: int) -> None:
    recorder = await record(seed, unreliable=True, snapshot=True, chunk=48)
    header, events = recorder.records[0], recorder.records[1:]
    snapshots = {"snapshot", "install_snapshot", "apply_snapshot"}
    cuts = [
        k + 1
        for a, b in steps_of(events)
        if any(e["event"] in snapshots for e in events[a:b])
        for k in range(a, b)
    ]
    assert len(cuts) > 10
    for k in cuts:
        result = cut_at(header, events, k)
        assert result.violation is None, f"cut after event {k}: {result.violation.describe()}"


def test_version_2_traces_keep_their_own_term_update() -> None:
    """Before version 3 a node's term_update kept the role it had (become_follower set
    it); such traces still validate under their version, and are lies under version 3."""
    header, events = split_votes()
    old = copy.deepcopy(events)
    before: dict[int, str] = {}
    changed = 0
    for e in old:
        state = e.get("state")
        if state is None:
            continue
        if e["event"] == "term_update" and before.get(e["node"], "follower") != "follower":
            state["role"] = before[e["node"]]
            changed += 1
        before[e["node"]] = state["role"]
    assert changed > 0  # the run has leaders or candidates stepping down
    assert_valid({**header, "version": 2}, old, mode="incremental")
    rejected({**header, "version": 3}, old, "event state: term_update")
