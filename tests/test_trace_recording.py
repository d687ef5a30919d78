"""Trace recording: one ordered stream per run, messages paired by id, every state change."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from trioraft.sim.harness import open_cluster
from trioraft.trace import TraceFormatError, TraceRecorder, read_trace, read_trace_lines


async def record(seed: int, unreliable: bool) -> TraceRecorder:
    recorder = TraceRecorder(nodes=3, seed=seed)
    async with open_cluster(3, unreliable=unreliable, seed=seed, tracer=recorder) as cfg:
        leader = await cfg.check_one_leader()
        for k in range(5):
            await cfg.one(1000 + k, 3, True)
        cfg.crash1(leader)
        await cfg.one(2000, 2, True)
        cfg.start1(leader)
        cfg.connect(leader)
        await cfg.one(2001, 3, True)
    return recorder


@pytest.mark.parametrize("unreliable", [False, True])
async def test_every_receive_pairs_with_an_earlier_send_of_the_same_message(
    seed: int, unreliable: bool
) -> None:
    trace = read_trace_lines(list((await record(seed, unreliable)).text_lines()))
    sent: dict[tuple[int, str], dict[str, Any]] = {}
    receives = 0
    for event in trace.events:
        if event["event"] == "send":
            key = (event["id"], event["msg"]["type"])
            assert key not in sent, f"message {key} sent twice"
            assert event["msg"]["from"] == event["node"]
            sent[key] = event["msg"]
        elif event["event"] == "receive":
            key = (event["id"], event["msg"]["type"])
            assert key in sent, f"seq {event['seq']}: receive of a message never sent"
            assert sent[key] == event["msg"]
            assert event["msg"]["to"] == event["node"]
            receives += 1
        elif event["event"] == "drop":
            assert event["node"] == -1 and event["leg"] in ("request", "reply")
            assert any(k[0] == event["id"] for k in sent)
    assert receives > 20
    if unreliable:
        assert any(e["event"] == "drop" for e in trace.events), "an unreliable net loses some"


async def test_the_trace_holds_every_kind_of_step(seed: int) -> None:
    trace = read_trace_lines(list((await record(seed, False)).text_lines()))
    kinds = Counter(event["event"] for event in trace.events)
    for kind in (
        "init", "timeout", "become_candidate", "become_leader", "vote", "send", "receive",
        "client_request", "append", "commit", "apply", "persist", "crash", "term_update",
    ):  # fmt: skip
        assert kinds[kind] > 0, f"no {kind} event"
    assert [e["seq"] for e in trace.events] == list(range(1, len(trace.events) + 1))
    times = [e["time"] for e in trace.events]
    assert times == sorted(times)
    restarts = [e for e in trace.events if e["event"] == "init" and e["restored"]]
    assert restarts and restarts[0]["log"], "a restarted peer reports the log it restored"
    applies = [e for e in trace.events if e["event"] == "apply" and e["node"] == 0]
    assert [e["index"] for e in applies][:5] == [1, 2, 3, 4, 5]


async def test_state_is_the_state_after_the_event(seed: int) -> None:
    trace = read_trace_lines(list((await record(seed, False)).text_lines()))
    for event in trace.events:
        state = event.get("state")
        if event["event"] == "become_leader":
            assert state["role"] == "leader"
        elif event["event"] == "become_candidate":
            assert state["role"] == "candidate" and state["voted_for"] == event["node"]
        elif event["event"] == "term_update":
            assert state["term"] == event["new_term"] and state["voted_for"] is None
            assert state["role"] == "follower"  # a step-down's become_follower follows
        elif event["event"] == "become_follower":
            assert state["role"] == "follower"
        elif event["event"] == "commit":
            assert state["commit_index"] == event["index"]
        elif event["event"] == "apply":
            assert state["last_applied"] == event["index"]


def test_recorder_writes_ndjson_with_a_versioned_header(tmp_path: Path) -> None:
    path = tmp_path / "t.ndjson"
    with open(path, "wb") as sink:
        recorder = TraceRecorder(nodes=2, seed=9, sink=sink, keep=False)
        recorder.event(0, "timeout", (1, "follower", None, 0, 0, 0, 0, 0, 0))
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["format"] == "trioraft-trace" and header["version"] == 4
    assert header["nodes"] == 2 and header["seed"] == 9
    assert read_trace(str(path)).events[0]["state"]["role"] == "follower"


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("", 1, "empty"),
        ('{"format": "other"}\n', 1, "not a trioraft trace"),
        ('{"format": "trioraft-trace", "version": 99, "nodes": 3}\n', 1, "version 99"),
        ('{"format": "trioraft-trace", "version": 1, "nodes": 0}\n', 1, "nodes"),
        ('{"format": "trioraft-trace", "version": 1, "nodes": 3}\n{"seq": 1,', 2, "not valid JSON"),
        ('{"format": "trioraft-trace", "version": 1, "nodes": 3}\n[1]\n', 2, "JSON object"),
        (
            '{"format": "trioraft-trace", "version": 1, "nodes": 3}\n'
            '{"seq": 1, "node": 0, "event": "timeout"}\n'
            '{"seq": 1, "node": 0, "event": "timeout"}\n',
            3,
            "out of order",
        ),
        (
            '{"format": "trioraft-trace", "version": 1, "nodes": 3}\n'
            '{"seq": 1, "node": 5, "event": "timeout"}\n',
            2,
            "node 5",
        ),
        (
            '{"format": "trioraft-trace", "version": 1, "nodes": 3}\n'
            '{"seq": 1, "node": 0, "event": 7}\n',
            2,
            "'event' must be str",
        ),
        (
            '{"format": "trioraft-trace", "version": 1, "nodes": 3}\n'
            '{"seq": 1, "node": 0, "event": "timeout", "state": {"term": 1}}\n',
            2,
            "state",
        ),
    ],
)
def test_malformed_traces_name_the_line(text: str, line: int, problem: str) -> None:
    with pytest.raises(TraceFormatError, match=problem) as info:
        read_trace_lines(text.splitlines(keepends=True), "t.ndjson")
    assert info.value.line == line
    assert str(info.value).startswith(f"t.ndjson:{line}:")


def test_unreadable_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError, match="cannot read"):
        read_trace(str(tmp_path / "missing.ndjson"))
    binary = tmp_path / "bin.ndjson"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TraceFormatError, match="UTF-8"):
        read_trace(str(binary))


def test_blank_lines_are_skipped_and_line_numbers_kept() -> None:
    trace = read_trace_lines(
        [
            '{"format": "trioraft-trace", "version": 1, "nodes": 3}\n',
            "\n",
            "   \n",
            '{"seq": 1, "node": 0, "event": "timeout"}\n',
            b"\n",
        ]
    )
    assert trace.lines == [4] and len(trace.events) == 1
