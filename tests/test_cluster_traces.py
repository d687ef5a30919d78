"""Cluster traces: the per-node files of one run validate as one history.

A cluster whose nodes run as separate processes (``trioraft serve``) writes one
trace file per node incarnation (spec/TRACE.md, "Cluster traces").  These
file sets are made from real recorded runs: the harness records one stream,
and :func:`split` cuts it the way separate processes would have written it
(a header naming the node, ``seq`` per file, no ``drop`` events, each file's
clock offset differently, and at each crash either the ``crash`` event kept,
a clean stop, or the file cut there, a ``kill -9``, the node's next
incarnation in a new file).  Broken sets are those files with one thing
edited, and each must be rejected naming the rule and the original file and
line.
"""

from __future__ import annotations

import copy
import functools
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from trioraft.cli import main
from trioraft.determinism import seed_scheduler
from trioraft.model.cluster import NodeFile, message_key, order_incarnations
from trioraft.model.cluster import validate_cluster as merge_and_validate
from trioraft.sim.harness import SNAPSHOT_INTERVAL, open_cluster
from trioraft.sim.simulate import run_simulation
from trioraft.trace import TraceFormatError, TraceRecorder
from trioraft.validate import ClusterVerdict, validate_cluster, validate_file

Events = list[dict[str, Any]]
EPOCH = 1_700_000_000.0  # meta["started"] is a unix time
HEADER_FIELDS = ("format", "version", "nodes", "seed", "state_fields")


# ------------------------------------------------------------------ recorded runs


async def _scenario(cfg: Any, snapshot: bool) -> None:
    """Crashes of every kind: a follower that campaigned alone while cut off, the
    leader, a connected follower; disconnects; (snapshots)."""
    batch = SNAPSHOT_INTERVAL + 3 if snapshot else 4
    await cfg.one(1, 3, True)
    leader = await cfg.check_one_leader()
    # A follower cut off times out again and again (its vote requests are lost),
    # then is crashed and restarted.
    lonely = (leader + 1) % 3
    cfg.disconnect(lonely)
    for k in range(batch):
        await cfg.one(10 + k, 2, True)
    await trio.sleep(2)
    cfg.crash1(lonely)
    await cfg.one(20, 2, True)
    cfg.start1(lonely)
    cfg.connect(lonely)
    await cfg.one(21, 3, True)
    # The leader crashes.
    leader = await cfg.check_one_leader()
    cfg.crash1(leader)
    for k in range(batch):
        await cfg.one(30 + k, 2, True)
    cfg.start1(leader)
    cfg.connect(leader)
    await cfg.one(40, 3, True)
    # A connected follower crashes.
    leader = await cfg.check_one_leader()
    follower = (leader + 2) % 3
    cfg.crash1(follower)
    for k in range(batch):
        await cfg.one(50 + k, 2, True)
    cfg.start1(follower)
    cfg.connect(follower)
    await cfg.one(60, 3, True)


@functools.cache
def _recorded(seed: int, unreliable: bool, snapshot: bool) -> tuple[dict[str, Any], ...]:
    async def run() -> TraceRecorder:
        recorder = TraceRecorder(nodes=3, seed=seed)
        async with open_cluster(
            3, unreliable=unreliable, snapshot=snapshot, seed=seed, tracer=recorder
        ) as cfg:
            await _scenario(cfg, snapshot)
        return recorder

    seed_scheduler(seed)
    recorder = trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    return tuple(recorder.records)


def recorded(seed: int, *, unreliable: bool = False, snapshot: bool = False) -> Events:
    """A harness run's records (header first), recorded once per test session."""
    return copy.deepcopy(list(_recorded(seed, unreliable, snapshot)))


# ------------------------------------------------------------------ per-node files


@dataclass
class NodeTrace:
    """One incarnation of one node, as its own process would have written it."""

    node: int
    incarnation: int
    header: dict[str, Any]
    events: Events = field(default_factory=list)
    origin: list[int] = field(default_factory=list)  # each event's seq in the recorded run
    name: str = ""
    tail: str = ""  # written after the last line (a torn line)

    def at(self, original_seq: int) -> int:
        """The index of the event that had ``original_seq`` in the recorded run."""
        return self.origin.index(original_seq)

    def line_of(self, index: int) -> int:
        return index + 2  # the header is line 1


def never(node: int, crash: int) -> bool:
    return False


def always(node: int, crash: int) -> bool:
    return True


def split(
    records: Events,
    *,
    kill9: Callable[[int, int], bool] = never,
    until: int | None = None,
    seed: int = 0,
) -> list[NodeTrace]:
    """The run's events as separate processes write them: one file per node
    incarnation (a node's events only, ``seq`` from 1, its own clock offset at
    random), no ``drop`` events.  At the ``k``-th crash of the run, at node ``i``,
    ``kill9(i, k)`` says the node was killed with ``kill -9``: its file ends
    without the ``crash`` event; else it keeps it (a clean stop).  ``until``: the
    run as it was up to that seq (every process killed there)."""
    rng = random.Random(seed)
    header, events = records[0], records[1:]
    traces: list[NodeTrace] = []
    current: dict[int, NodeTrace] = {}
    incarnations = [0] * header["nodes"]
    crashes = 0
    for e in copy.deepcopy(events):
        if until is not None and e["seq"] > until:
            break
        i = e["node"]
        if i < 0:
            continue  # nothing records a loss over TCP
        if e["event"] == "init":
            mine = {key: header[key] for key in HEADER_FIELDS}
            mine["node"] = i
            mine["meta"] = {"started": EPOCH + e["time"], "pid": 4000 + len(traces)}
            trace = current[i] = NodeTrace(i, incarnations[i], mine)
            trace.name = f"node{i}.{incarnations[i]}.ndjson"
            incarnations[i] += 1
            traces.append(trace)
        trace = current[i]
        if e["event"] == "crash":
            crashes += 1
            del current[i]
            if kill9(i, crashes):
                continue
        trace.events.append(e)
        trace.origin.append(e["seq"])
    for trace in traces:
        offset = rng.uniform(-1e4, 1e4)  # clocks are not comparable across files
        for seq, e in enumerate(trace.events, start=1):
            e["seq"] = seq
            if e["time"] is not None:
                e["time"] += offset
    return traces


def write(directory: Path, traces: Sequence[NodeTrace], order_seed: int | None = None) -> list[str]:
    """The traces as files; their paths in order, or shuffled by ``order_seed``."""
    paths = []
    for trace in traces:
        path = directory / trace.name
        with open(path, "w") as file:
            for record in (trace.header, *trace.events):
                file.write(json.dumps(record) + "\n")
            file.write(trace.tail)
        paths.append(str(path))
    if order_seed is not None:
        random.Random(order_seed).shuffle(paths)
    return paths


def valid(
    directory: Path, traces: Sequence[NodeTrace], order_seed: int | None = None
) -> ClusterVerdict:
    verdict = validate_cluster(write(directory, traces, order_seed))
    assert verdict.ok, verdict.describe()
    return verdict


def rejected(directory: Path, traces: Sequence[NodeTrace], rule: str) -> ClusterVerdict:
    verdict = validate_cluster(write(directory, traces))
    assert not verdict.ok, "the broken files were accepted"
    violation = verdict.result.violation
    assert violation is not None and violation.rule == rule, verdict.describe()
    return verdict


def names(verdict: ClusterVerdict, trace: NodeTrace, index: int) -> None:
    """The verdict names the original file, line and seq of ``trace.events[index]``."""
    result = verdict.result
    v = result.violation
    assert v is not None and result.source is not None
    assert Path(result.source).name == trace.name, verdict.describe()
    assert (v.line, v.seq, v.node) == (trace.line_of(index), index + 1, trace.node)
    assert verdict.describe().startswith(
        f"{result.source}:{v.line}: event {v.seq} at node {trace.node}: {v.rule}: expected "
    )


def subdir(directory: Path, name: str) -> Path:
    path = directory / name
    path.mkdir()
    return path


def incarnation(traces: Sequence[NodeTrace], node: int, k: int) -> NodeTrace:
    return next(t for t in traces if t.node == node and t.incarnation == k)


def first(events: Events, start: int = 0, **want: Any) -> int:
    """The index of the first event from ``start`` whose fields match ``want``."""
    for k in range(start, len(events)):
        if all(events[k].get(key) == value for key, value in want.items()):
            return k
    raise LookupError(f"no event with {want}")


# ------------------------------------------------------------------ real runs


@pytest.mark.parametrize(
    ("seed", "unreliable", "snapshot"),
    [(1, False, False), (2, True, False), (3, False, True), (4, True, True), (5, True, False)],
)
@pytest.mark.parametrize("kill", ["clean", "kill -9", "mixed"])
def test_split_runs_validate_as_one_history(
    tmp_path: Path, seed: int, unreliable: bool, snapshot: bool, kill: str
) -> None:
    records = recorded(seed, unreliable=unreliable, snapshot=snapshot)
    kill9 = {"clean": never, "kill -9": always, "mixed": lambda i, k: k % 2 == 1}[kill]
    traces = split(records, kill9=kill9, seed=seed)
    assert len(traces) == 6  # three first incarnations, three restarts
    kinds = {e["event"] for t in traces for e in t.events}
    assert {"init", "timeout", "become_leader", "commit", "apply"} <= kinds
    if snapshot:
        assert {"snapshot", "install_snapshot", "apply_snapshot"} <= kinds
    verdict = valid(tmp_path, traces)
    assert verdict.result.events == sum(len(t.events) for t in traces)
    assert 0 < verdict.result.steps < verdict.result.events
    assert verdict.describe().startswith(
        f"cluster of 6 files (3 nodes): OK ({verdict.result.events} events, "
    )
    # Whichever order the files are given in.
    for order_seed in (1, 2):
        assert valid(tmp_path, traces, order_seed).result == verdict.result


def in_memory(traces: Sequence[NodeTrace]) -> tuple[list[NodeFile], set[int], set[int]]:
    """The traces as the model's merge takes them (what validate_cluster makes of
    files): each file's events (copies: the merge renumbers them in place), the
    messages sent and received."""
    sent: set[int] = set()
    received: set[int] = set()
    files = []
    for t in traces:
        events = copy.deepcopy(t.events)
        for e in events:
            if e["event"] in ("send", "receive"):
                key = message_key(e["id"], e["msg"]["type"])
                (sent if e["event"] == "send" else received).add(key)
        files.append(
            NodeFile(
                source=t.name,
                node=t.node,
                started=t.header["meta"]["started"],
                events=lambda events=events: ((k + 2, e) for k, e in enumerate(events)),
                crashed=events[-1]["event"] == "crash",
                last_line=len(events) + 1,
                torn=False,
            )
        )
    return files, sent, received


def test_the_merge_replays_in_verify_mode() -> None:
    """The whole invariant registry after every step of the merged history, beside
    the incremental evaluation (which must agree)."""
    traces = split(recorded(2, unreliable=True), kill9=lambda i, k: k % 2 == 0)
    files, sent, received = in_memory(reversed(traces))
    result = merge_and_validate(
        3, order_incarnations(3, files), sent=sent, received=received, mode="verify"
    )
    assert result.ok, result.violation
    assert result.events == sum(len(t.events) for t in traces)


def test_the_merged_history_keeps_each_file_and_each_message_in_order() -> None:
    """seq is renumbered along the merge: 1, 2, 3, ...; each file's events keep
    their order; every receive comes after its send."""
    traces = split(recorded(3, unreliable=True, snapshot=True), kill9=always)
    files, sent, received = in_memory(traces)
    result = merge_and_validate(3, order_incarnations(3, files), sent=sent, received=received)
    assert result.ok, result.violation
    read = [[e for _, e in f.events()] for f in files]
    merged = sorted((e for events in read for e in events), key=lambda e: e["seq"])
    assert [e["seq"] for e in merged] == list(range(1, len(merged) + 1))
    for events in read:
        assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    when_sent: dict[int, int] = {}
    receives = 0
    for e in merged:
        if e["event"] in ("send", "receive"):
            key = message_key(e["id"], e["msg"]["type"])
            if e["event"] == "send":
                when_sent.setdefault(key, e["seq"])
            else:
                assert when_sent[key] < e["seq"]
                receives += 1
    assert receives > 100


def test_a_real_clock_run_on_disk_validates_split(tmp_path: Path) -> None:
    """On the real clock a DiskStorage syncs in a worker thread: persists are
    staged, then synced, and replies leave after the sync, in a later step."""

    async def run() -> TraceRecorder:
        recorder = TraceRecorder(nodes=3, seed=9)
        storage = tmp_path / "storage"
        storage.mkdir()
        async with open_cluster(3, seed=9, tracer=recorder, storage_dir=storage) as cfg:
            await cfg.one(1, 3, True)
            leader = await cfg.check_one_leader()
            victim = (leader + 1) % 3
            for k in range(5):
                await cfg.one(10 + k, 3, True)
            cfg.crash1(victim)
            for k in range(5):
                await cfg.one(20 + k, 2, True)
            cfg.start1(victim)
            cfg.connect(victim)
            await cfg.one(30, 3, True)
        return recorder

    records = trio.run(run).records  # the real clock, on purpose
    staged = [e for e in records[1:] if e["event"] == "persist" and e.get("staged")]
    assert staged and any(e["event"] == "synced" for e in records[1:])
    out = tmp_path / "files"
    out.mkdir()
    valid(out, split(records, kill9=always))
    valid(out, split(records, kill9=never))


# ------------------------------------------------------------------ kill -9: cut files


def _a_timeout(records: Events, *, late: bool) -> int:
    """The seq of a timeout in the recorded run (one from its second half if ``late``)."""
    events = records[1:]
    timeouts = [e["seq"] for e in events if e["event"] == "timeout"]
    assert len(timeouts) >= 2
    return timeouts[-1] if late else timeouts[0]


def test_a_file_cut_mid_step_is_a_note_not_a_violation(tmp_path: Path) -> None:
    """Every process killed just after a node wrote `timeout`, before its
    `become_candidate` and `persist`: the file ends inside a step."""
    records = recorded(1)
    cut_at = _a_timeout(records, late=True)
    traces = split(records, kill9=always, until=cut_at)
    (trace,) = [t for t in traces if t.origin and t.origin[-1] == cut_at]
    verdict = valid(tmp_path, traces)
    line = trace.line_of(len(trace.events) - 1)
    (note,) = verdict.notes
    assert note.startswith(
        f"{tmp_path / trace.name}: last step cut short by a crash at line {line}"
    )
    assert "expected term" in note
    assert verdict.describe().splitlines()[1] == f"  {note}"


def test_the_same_mismatch_in_the_middle_of_a_file_is_a_violation(tmp_path: Path) -> None:
    records = recorded(1)
    traces = split(records, kill9=always)
    at = _a_timeout(records, late=True)
    (trace,) = [t for t in traces if at in t.origin]
    k = trace.at(at)
    assert [e["event"] for e in trace.events[k + 1 : k + 3]] == ["become_candidate", "persist"]
    del trace.events[k + 1 : k + 3]
    for seq, e in enumerate(trace.events, start=1):
        e["seq"] = seq
    verdict = rejected(tmp_path, traces, "Timeout")
    names(verdict, trace, k)
    assert "expected term" in verdict.describe()


def test_a_torn_last_line_is_a_note(tmp_path: Path) -> None:
    records = recorded(1)
    traces = split(records, kill9=always)
    trace = incarnation(traces, 0, 1)
    nxt = json.dumps({**trace.events[-1], "seq": len(trace.events) + 1})
    trace.tail = nxt[: len(nxt) // 2]  # the process died in the middle of a write
    verdict = valid(tmp_path, traces)
    line = len(trace.events) + 2
    assert verdict.notes == (
        f"{tmp_path / trace.name}: last line {line} torn by a crash (left out)",
    )
    # A line that is not JSON anywhere else is a malformed file.
    trace.tail = ""
    paths = write(tmp_path, traces)
    lines = Path(tmp_path / trace.name).read_text().splitlines(keepends=True)
    lines[4] = lines[4][:20] + "\n"
    Path(tmp_path / trace.name).write_text("".join(lines))
    with pytest.raises(TraceFormatError) as info:
        validate_cluster(paths)
    assert info.value.source == str(tmp_path / trace.name) and info.value.line == 5
    assert "not valid JSON" in info.value.problem


def test_a_single_trace_cut_by_a_crash_validates_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`trioraft validate` of one trace cut in the middle of a step (or of a line)."""
    records = recorded(1)
    cut_at = _a_timeout(records, late=True)
    lines = [json.dumps(r) + "\n" for r in records[: cut_at + 1]]
    path = tmp_path / "cut.ndjson"
    path.write_text("".join(lines))
    verdict = validate_file(str(path))
    assert verdict.ok, verdict.describe()
    assert verdict.describe().startswith(f"{path}: OK ({cut_at} events, ")
    assert f"; last step cut short by a crash at line {cut_at + 1} (expected term" in (
        verdict.describe()
    )
    assert main(["validate", str(path)]) == 0
    assert "last step cut short by a crash" in capsys.readouterr().out
    # Torn in the middle of the next line too.
    path.write_text("".join(lines) + json.dumps(records[cut_at + 1])[:30])
    verdict = validate_file(str(path))
    assert verdict.ok and verdict.torn_line == cut_at + 2
    assert f"cut short by a crash at line {cut_at + 2}" in verdict.describe()
    # A whole trace, then a line torn by the crash.
    whole = [json.dumps(r) + "\n" for r in records]
    path.write_text("".join(whole) + '{"seq": 99999, "time": 1.5, "no')
    verdict = validate_file(str(path))
    assert verdict.ok and verdict.describe().endswith(
        f"; last line {len(records) + 1} torn by a crash (left out)"
    )
    # Only the last step may be cut: the same step in the middle is a violation.
    middle = [json.dumps(r) + "\n" for r in records]
    del middle[cut_at + 1 : cut_at + 3]  # its become_candidate and persist
    path.write_text("".join(middle))
    verdict = validate_file(str(path))
    assert not verdict.ok
    assert verdict.describe().startswith(f"{path}:{cut_at + 1}: event {cut_at} at node ")
    assert main(["validate", str(path)]) == 1


def test_in_memory_validation_stays_strict_about_the_last_step() -> None:
    """Only a file may be cut short; a run validated as it is recorded may not."""
    from trioraft.model.validator import validate

    records = recorded(1)
    cut_at = _a_timeout(records, late=True)
    events = records[1 : cut_at + 1]
    result = validate(records[0], events, lines=list(range(2, cut_at + 2)))
    assert result.violation is not None and result.violation.rule == "Timeout"


# ------------------------------------------------------------------ broken file sets


def test_a_receive_of_an_id_never_sent(tmp_path: Path) -> None:
    traces = split(recorded(2, unreliable=True), kill9=always)
    trace = incarnation(traces, 2, 0)
    k = first(trace.events, 40, event="receive")
    kind = trace.events[k]["msg"]["type"]
    trace.events[k]["id"] = 987_654_321
    verdict = rejected(tmp_path, traces, "Receive")
    names(verdict, trace, k)
    assert verdict.describe().endswith(
        f"expected receipt of a message that was sent, logged receipt of a message never "
        f"sent ({kind} id 987654321)"
    )


def test_a_reply_altered_in_flight(tmp_path: Path) -> None:
    traces = split(recorded(2, unreliable=True), kill9=always)
    trace, k = next(
        (t, k)
        for t in traces
        for k, e in enumerate(t.events)
        if e["event"] == "receive" and e["msg"]["type"] == "AppendEntriesReply"
    )
    trace.events[k]["msg"]["conflict_index"] += 7
    verdict = rejected(tmp_path, traces, "Receive")
    names(verdict, trace, k)
    assert "expected the AppendEntriesReply as sent: conflict_index " in verdict.describe()


def test_a_cycle_of_receives_waiting_on_sends(tmp_path: Path) -> None:
    """A reply received before its request was sent: no order of the files has
    every receive after its send."""
    traces = split(recorded(2), kill9=always)
    trace = incarnation(traces, 0, 0)
    send = next(
        k
        for k, e in enumerate(trace.events)
        if k > 20 and e["event"] == "send" and e["msg"]["type"] == "AppendEntries"
    )
    message_id = trace.events[send]["id"]
    back = first(trace.events, send, event="receive", id=message_id)
    assert trace.events[back + 1]["node"] == 0
    moved = trace.events.pop(back)
    moved["state"] = copy.deepcopy(trace.events[send - 1]["state"])
    trace.events.insert(send, moved)
    for seq, e in enumerate(trace.events, start=1):
        e["seq"] = seq
    verdict = rejected(tmp_path, traces, "Receive")
    names(verdict, trace, send)
    assert f"(AppendEntriesReply id {message_id}: its send comes only after" in verdict.describe()


def test_two_leaders_in_one_term_across_two_files(tmp_path: Path) -> None:
    """A candidate that lost an election claims leadership too, in its own file."""
    events: Events = []
    simulation = run_simulation(4, 3, 20, unreliable=True, listener=events.append)
    assert simulation.failure is None and simulation.recorder is not None
    records = [simulation.recorder.header, *events]
    candidates: dict[int, set[int]] = {}
    for e in events:
        if e["event"] == "become_candidate":
            candidates.setdefault(e["state"]["term"], set()).add(e["node"])
    found = None
    for won in (k for k, e in enumerate(events) if e["event"] == "become_leader"):
        term, winner = events[won]["state"]["term"], events[won]["node"]
        for loser in sorted(candidates[term] - {winner}):
            later = [e for e in events[won + 1 :] if e["node"] == loser]
            if (
                later
                and later[0]["state"]["term"] == term
                and later[0]["state"]["role"] == "candidate"
            ):
                found = winner, loser, term, later[0]["seq"]
                break
        if found:
            break
    assert found is not None, "a contested election"
    winner, loser, term, at_seq = found
    traces = split(records, kill9=always)
    trace = next(t for t in traces if t.node == loser and at_seq in t.origin)
    k = trace.at(at_seq)
    claim = {**copy.deepcopy(trace.events[k]), "event": "persist"}
    for key in ("id", "msg"):
        claim.pop(key, None)
    leader = copy.deepcopy(claim)
    leader.update(event="become_leader")
    leader["state"]["role"] = "leader"
    trace.events[k:k] = [claim, leader]
    for seq, e in enumerate(trace.events, start=1):
        e["seq"] = seq
    verdict = rejected(tmp_path, traces, "ElectionSafety")
    # Whichever of the two is second in the merged history is named, in its file.
    result = verdict.result
    v = result.violation
    assert v is not None and result.source is not None
    named = next(t for t in traces if str(tmp_path / t.name) == result.source)
    assert named.node in (winner, loser) and named.node == v.node
    assert named.events[v.line - 2]["event"] == "become_leader"
    assert named.events[v.line - 2]["seq"] == v.seq
    assert f"becomes a second leader of term {term}" in verdict.describe()


# ------------------------------------------------------------------ kill -9: restarts


def _lonely(traces: Sequence[NodeTrace]) -> NodeTrace:
    """The first file that ends with the node campaigning alone (its vote requests
    lost): the follower cut off, then crashed, of the scenario."""
    for t in traces:
        if t.events and t.events[-1]["state"]["role"] == "candidate" and t.incarnation == 0:
            return t
    raise LookupError("no lonely candidate")


def _staged_tail(trace: NodeTrace, *steps: list[dict[str, Any]]) -> None:
    """Append steps to the end of a file (the process then killed)."""
    for step in steps:
        for e in step:
            e["seq"] = len(trace.events) + 1
            trace.events.append(e)


def _like(e: dict[str, Any], event: str, **fields: Any) -> dict[str, Any]:
    made = {key: copy.deepcopy(e[key]) for key in ("seq", "time", "node", "state")}
    made["event"] = event
    made.update(fields)
    return made


def _campaign(trace: NodeTrace) -> list[dict[str, Any]]:
    """One more election started, its persist staged (never synced): term + 1 and a
    vote for itself."""
    last = trace.events[-1]
    timeout = _like(last, "timeout")
    candidate = _like(last, "become_candidate")
    candidate["state"].update(term=last["state"]["term"] + 1, role="candidate")
    candidate["state"]["voted_for"] = trace.node
    persist = _like(candidate, "persist", staged=True)
    return [timeout, candidate, persist]


def _rewind_after_sync(trace: NodeTrace) -> None:
    """Turn the file's last persist into a staged one, never synced: drop what
    followed it (its vote requests, which nobody received)."""
    last = max(k for k, e in enumerate(trace.events) if e["event"] == "persist")
    assert all(
        e["event"] == "send" and e["msg"]["type"] == "RequestVote" for e in trace.events[last + 1 :]
    )
    del trace.events[last + 1 :]
    trace.events[last]["staged"] = True


def test_a_restart_may_lose_what_was_staged_not_synced(tmp_path: Path) -> None:
    """A node killed after staging a new term and vote restarts with the synced
    ones: valid after a kill -9, not after a clean stop (which keeps the write)."""
    records = recorded(2)
    traces = split(records, kill9=always)
    trace = _lonely(traces)
    restart = incarnation(traces, trace.node, 1)
    synced = trace.events[-1]["state"]
    assert (restart.events[0]["state"]["term"], restart.events[0]["state"]["voted_for"]) == (
        synced["term"],
        synced["voted_for"],
    )
    _staged_tail(trace, _campaign(trace))
    valid(tmp_path, traces)
    # A clean stop completes the staged write: the restart must have it.
    trace.events.append(_like(trace.events[-1], "crash", seq=len(trace.events) + 1))
    verdict = validate_cluster(write(tmp_path, traces))
    assert not verdict.ok
    v = verdict.result.violation
    assert v is not None and v.rule == "Restart" and "term" in v.expected
    names(verdict, restart, 0)


def test_a_restart_may_keep_what_was_staged(tmp_path: Path) -> None:
    """Its last persist staged and never synced, and the restart has it all."""
    traces = split(recorded(2), kill9=always)
    trace = _lonely(traces)
    _rewind_after_sync(trace)
    valid(tmp_path, traces)


def test_a_restart_must_keep_its_synced_vote(tmp_path: Path) -> None:
    traces = split(recorded(2), kill9=always)
    trace = _lonely(traces)
    restart = incarnation(traces, trace.node, 1)
    init = restart.events[0]
    assert init["state"]["voted_for"] is not None
    init["state"]["voted_for"] = None
    verdict = rejected(tmp_path, traces, "Restart: persistent state")
    names(verdict, restart, 0)
    assert "as synced" in verdict.describe() and "logged term" in verdict.describe()


def _killed_leader(traces: Sequence[NodeTrace]) -> NodeTrace:
    """The file of the leader the scenario crashes (killed while leader)."""
    for t in traces:
        if (
            t.events
            and t.events[-1]["state"]["role"] == "leader"
            and any(u.node == t.node and u.incarnation == t.incarnation + 1 for u in traces)
        ):
            return t
    raise LookupError("no killed leader")


def test_a_restart_must_keep_its_synced_entries(tmp_path: Path) -> None:
    traces = split(recorded(2), kill9=always)
    leader = _killed_leader(traces)
    restart = incarnation(traces, leader.node, leader.incarnation + 1)
    init = restart.events[0]
    assert init["log"]
    del init["log"][-1]
    init["state"]["last_index"] -= 1
    init["state"]["last_term"] = init["log"][-1][0] if init["log"] else 0
    verdict = rejected(tmp_path, traces, "Restart: persistent state")
    names(verdict, restart, 0)
    assert "of its synced log kept" in verdict.describe()


def test_a_leader_may_lose_an_entry_staged_not_synced(tmp_path: Path) -> None:
    traces = split(recorded(2), kill9=always)
    leader = _killed_leader(traces)
    last = leader.events[-1]
    index = last["state"]["last_index"] + 1
    term = last["state"]["term"]
    request = _like(last, "client_request", index=index, term=term, digest="00c0ffee00c0ffee")
    request["state"].update(last_index=index, last_term=term)
    _staged_tail(leader, [request, _like(request, "persist", staged=True)])
    valid(tmp_path, traces)
    # ... unless it was synced.
    leader.events.append(_like(leader.events[-1], "synced", seq=len(leader.events) + 1))
    restart = incarnation(traces, leader.node, leader.incarnation + 1)
    verdict = rejected(tmp_path, traces, "Restart: persistent state")
    names(verdict, restart, 0)
    assert (
        f"expected entry {index} t{term}='00c0ffee00c0ffee' as synced, logged entry {index} none"
        in (verdict.describe())
    )


def _up_to_restart(trace: NodeTrace, traces: Sequence[NodeTrace]) -> int:
    """The seq, in the recorded run, of the init of ``trace``'s node's next incarnation."""
    return incarnation(traces, trace.node, trace.incarnation + 1).origin[0]


@pytest.mark.parametrize(
    ("kept", "ok"),
    [
        ("synced", True),  # both staged entries lost
        ("first", True),  # a torn tail: the first staged entry written, not the second
        ("both", True),  # every staged write made it
        ("second only", False),  # the second entry at the first's index: never persisted there
        ("a vote never cast", False),
    ],
)
def test_what_a_restart_after_kill_9_may_read_back(tmp_path: Path, kept: str, ok: bool) -> None:
    """The run up to the restart of a leader killed after staging two entries, its
    init edited to read back a given part of them."""
    records = recorded(2)
    whole = split(records, kill9=always)
    until = _up_to_restart(_killed_leader(whole), whole)
    traces = split(records, kill9=always, until=until)
    leader = _killed_leader(traces)
    last = leader.events[-1]
    index = last["state"]["last_index"]
    term = last["state"]["term"]
    digests = ["00c0ffee00c0ffe1", "00c0ffee00c0ffe2"]
    steps = []
    for k, digest in enumerate(digests, start=1):
        request = _like(last, "client_request", index=index + k, term=term, digest=digest)
        request["state"].update(last_index=index + k, last_term=term)
        steps.append([request, _like(request, "persist", staged=True)])
    _staged_tail(leader, *steps)
    restart = incarnation(traces, leader.node, leader.incarnation + 1)
    assert len(restart.events) == 1
    init = restart.events[0]
    added = {
        "synced": [],
        "first": [[term, digests[0]]],
        "both": [[term, digests[0]], [term, digests[1]]],
        "second only": [[term, digests[1]]],
        "a vote never cast": [],
    }[kept]
    init["log"] += added
    if added:
        init["state"].update(last_index=init["state"]["last_index"] + len(added), last_term=term)
    if kept == "a vote never cast":
        init["state"]["voted_for"] = (leader.node + 1) % 3
    if ok:
        valid(tmp_path, traces)
    else:
        names(rejected(tmp_path, traces, "Restart: persistent state"), restart, 0)


# ------------------------------------------------------------------ sets that cannot be read


def _files(tmp_path: Path) -> tuple[list[NodeTrace], list[str]]:
    traces = split(recorded(1), kill9=always)
    return traces, write(tmp_path, traces)


def _unreadable(paths: Sequence[str], where: str, problem: str) -> None:
    with pytest.raises(TraceFormatError) as info:
        validate_cluster(paths)
    assert str(info.value).startswith(where), str(info.value)
    assert problem in info.value.problem, str(info.value)


def test_a_single_trace_is_not_a_node_file(tmp_path: Path) -> None:
    records = recorded(1)
    path = tmp_path / "whole.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    _unreadable([str(path)], f"{path}:1: ", "the header has no 'node'")


def test_files_that_are_not_one_consistent_set(tmp_path: Path) -> None:
    traces, paths = _files(tmp_path)
    _unreadable([*paths, paths[0]], f"{paths[0]}:0: ", "given twice")
    _unreadable([], "<cluster>:0: ", "no trace files given")
    # The same incarnation twice, under another name.
    copy_path = tmp_path / "copy.ndjson"
    copy_path.write_text(Path(paths[0]).read_text())
    _unreadable([*paths, str(copy_path)], f"{copy_path}:", "is sent in an earlier file too")
    header_only = tmp_path / "again.ndjson"
    header_only.write_text(json.dumps(traces[0].header) + "\n")
    _unreadable([*paths, str(header_only)], "", "(one incarnation given twice?)")
    # Another cluster size.
    other = tmp_path / "five.ndjson"
    other.write_text(json.dumps({**traces[1].header, "nodes": 5}) + "\n")
    _unreadable([*paths, str(other)], f"{other}:1: ", "a cluster of 5 nodes")
    # An event of another node.
    stray = copy.deepcopy(traces)
    stray[1].events[5]["node"] = (stray[1].node + 1) % 3
    stray_paths = write(subdir(tmp_path, "stray"), stray)
    _unreadable(stray_paths, f"{stray_paths[1]}:7: ", "an event of node")
    # Incarnations that cannot be ordered.
    untimed = copy.deepcopy(traces)
    del untimed[-1].header["meta"]
    untimed_paths = write(subdir(tmp_path, "untimed"), untimed)
    _unreadable(untimed_paths, f"{untimed_paths[-1]}:1: ", "cannot be ordered")


def test_a_node_without_a_file_is_a_note(tmp_path: Path) -> None:
    """A node that never ran: the others' messages to it are simply never received."""
    records = recorded(1)
    traces = split(records, kill9=always, until=3)  # the three inits
    assert len(traces) == 3
    verdict = valid(tmp_path, traces[:2])
    assert verdict.notes == ("node 2: no trace file (it never ran, or its files were not given)",)


def test_a_log_read_back_after_kill_9_entry_by_entry() -> None:
    """The log part of the rule, on its own: each entry read back is the synced
    log's or a later persisted log's at that index, and the log is cut back no
    further than a later persist cut it (storage makes a truncation durable
    before it writes over it)."""
    from trioraft.model import INVARIANTS, Entry
    from trioraft.model.replay_durability import Durable as _Durable
    from trioraft.model.validator import _Broken, _Replay

    a, b, c, x, y, z = (Entry(1, "a"), Entry(1, "b"), Entry(1, "c"),
                        Entry(2, "x"), Entry(2, "y"), Entry(2, "z"))  # fmt: skip
    synced = _Durable(1, 0, (a, b, c), 0, 0)
    appended = _Durable(1, 0, (a, b, c, z), 0, 0)
    truncated = _Durable(2, 1, (a, x, y), 0, 0)  # a conflict cut it at 2, then x, y
    replay = _Replay(3, INVARIANTS, "incremental")
    for log in [(a, b, c), (a, x), (a,), (a, x, y), (a, b), (a, b, y)]:
        replay._check_kept(log, [synced, truncated])
    for log in [(a, b, c), (a, b, c, z)]:
        replay._check_kept(log, [synced, appended])
    for log, candidates in [
        ((), [synced, truncated]),  # entry 1 was never dropped
        ((a, b), [synced, appended]),  # entry 3 was never dropped
        ((a, z), [synced, truncated]),  # z was never persisted at 2
        ((a, b, c, y), [synced, appended]),
        ((a, b, c, z), [synced, truncated]),
    ]:
        with pytest.raises(_Broken) as info:
            replay._check_kept(log, candidates)
        assert info.value.rule == "Restart: persistent state"
