"""Trace validation of the extensions (trace version 4, issue 12): real runs with
Pre-Vote, CheckQuorum, leadership transfer and ReadIndex replay through the
model; hand-broken traces are rejected under the extensions' rules.

Each broken trace is a real recorded trace with one thing edited, the way a
bug would have recorded it (see tests/test_validator.py).
"""

from __future__ import annotations

import copy
from typing import Any

import trio

from trioraft import NotLeader
from trioraft.core.config import RaftConfig
from trioraft.model.validator import Result, validate
from trioraft.sim.harness import open_cluster
from trioraft.trace import TraceRecorder

Events = list[dict[str, Any]]

NEW_EVENTS = {
    "become_pre_candidate",
    "pre_vote",
    "quorum_lost",
    "transfer_leadership",
    "timeout_now",
    "read_index",
    "read_served",
    "read_failed",
}


def check(header: dict[str, Any], events: Events, mode: str = "incremental") -> Result:
    return validate(header, events, lines=[k + 2 for k in range(len(events))], mode=mode)


def assert_valid(header: dict[str, Any], events: Events) -> None:
    result = check(header, events, "verify")
    assert result.violation is None, result.violation.describe()
    assert result.events == len(events)


def rejected(header: dict[str, Any], events: Events, rule: str) -> str:
    """The violation's text, after checking it names ``rule`` in both modes."""
    found = []
    for mode in ("incremental", "full"):
        violation = check(header, events, mode).violation
        assert violation is not None, "the broken trace was accepted"
        found.append(violation)
    assert found[0] == found[1]
    assert found[0].rule == rule, found[0].describe()
    return found[0].describe()


def index_of(events: Events, start: int = 0, **fields: Any) -> int:
    """The first event at or after ``start`` with these fields (``msg_type``: its message's)."""
    kind = fields.pop("msg_type", None)
    for k in range(start, len(events)):
        e = events[k]
        if all(e.get(f) == v for f, v in fields.items()) and (
            kind is None or e.get("msg", {}).get("type") == kind
        ):
            return k
    raise AssertionError(f"no event with {fields} {kind or ''}")


_RUN: tuple[dict[str, Any], Events] | None = None


async def extensions_run(seed: int) -> tuple[dict[str, Any], Events]:
    """3 servers with Pre-Vote and CheckQuorum: an election, a served read, a
    transfer, a transfer to a cut-off peer abandoned, then a partitioned leader whose
    read fails when CheckQuorum makes it step down."""
    global _RUN
    if _RUN is not None:
        return _RUN[0], copy.deepcopy(_RUN[1])
    recorder = TraceRecorder(nodes=3, seed=seed)
    config = RaftConfig(pre_vote=True, check_quorum=True, noop_on_election=True)
    async with open_cluster(3, seed=seed, tracer=recorder, raft_config=config) as cfg:
        leader = await cfg.check_one_leader()
        await cfg.one(101, 3, True)
        raft = cfg.rafts[leader]
        assert raft is not None
        assert await raft.read_index() >= 1
        target = (leader + 1) % 3
        assert raft.transfer_leadership(target)
        new = cfg.rafts[target]
        assert new is not None
        with trio.fail_after(10):
            while not new.get_state()[1]:
                await trio.sleep(0.005)
        await cfg.one(102, 3, True)
        # A transfer to a cut-off peer, abandoned after an election timeout.
        away = (target + 1) % 3
        cfg.disconnect(away)
        assert new.transfer_leadership(away)
        await trio.sleep(RaftConfig().election_timeout_max + 0.05)
        cfg.connect(away)
        await cfg.one(103, 3, True)
        # A partitioned leader: its read never gets an index.
        leader = await cfg.check_one_leader()
        old = cfg.rafts[leader]
        assert old is not None
        cfg.disconnect(leader)
        outcome: list[object] = []

        async def read() -> None:
            try:
                outcome.append(await old.read_index())
            except NotLeader as error:
                outcome.append(error)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            with trio.fail_after(10):
                while not outcome:
                    await trio.sleep(0.01)
        assert isinstance(outcome[0], NotLeader)
        cfg.connect(leader)
        await cfg.one(104, 3, True)
    _RUN = recorder.records[0], recorder.records[1:]
    return _RUN[0], copy.deepcopy(_RUN[1])


async def test_a_run_with_every_extension_validates(seed: int) -> None:
    header, events = await extensions_run(seed)
    kinds = {e["event"] for e in events}
    kinds |= {e["msg"]["type"] for e in events if e["event"] == "send"}
    assert NEW_EVENTS | {"transfer_abandoned", "PreVote", "TimeoutNow", "TimeoutNowReply"} <= kinds
    assert any(e.get("msg", {}).get("leadership_transfer") for e in events)
    assert_valid(header, events)


async def test_a_pre_vote_that_raised_the_term_is_rejected(seed: int) -> None:
    header, events = await extensions_run(seed)
    # A voter whose pre-vote raised its own term (a pre-vote that persists the term).
    at = index_of(events, event="pre_vote", granted=True)
    events[at]["state"]["term"] += 1
    text = rejected(header, events, "event state: pre_vote changes nothing")
    assert "term" in text
    # A pre-candidate that raised its term when it became one.
    header, events = await extensions_run(seed)
    at = index_of(events, event="become_pre_candidate")
    events[at]["state"]["term"] += 1
    assert "term" in rejected(header, events, "Timeout")


async def test_a_vote_withheld_without_a_lease_is_rejected(seed: int) -> None:
    """§4.2.3: only a leader, or a follower that heard its leader in its term, withholds.
    The first election's voters have heard no leader yet."""
    header, events = await extensions_run(seed)
    at = index_of(events, event="vote", granted=True)
    events[at].update(granted=False, withheld=True)
    text = rejected(header, events, "Vote withholding (thesis §4.2.3)")
    assert "without a lease" in text


async def test_a_transfer_election_without_timeout_now_is_rejected(seed: int) -> None:
    """A candidate whose RequestVote says it stands on a leadership transfer, though
    no TimeoutNow started its election: voters in their lease would not withhold."""
    header, events = await extensions_run(seed)
    at = index_of(events, event="send", msg_type="RequestVote")
    assert not events[at]["msg"].get("leadership_transfer")
    events[at]["msg"]["leadership_transfer"] = True
    assert "(leadership transfer)" in rejected(header, events, "Send (request_vote)")


async def test_a_read_served_without_a_confirming_round_is_rejected(seed: int) -> None:
    header, events = await extensions_run(seed)
    rule = "ReadIndex (thesis §6.4): a read index served without a confirming round"
    # Served at once, before any follower answered a message sent after it began.
    at = index_of(events, event="read_index")
    served = copy.deepcopy(events[at])
    served.update(event="read_served", index=served["state"]["commit_index"])
    events.insert(at + 1, served)
    assert "confirmed by" in rejected(header, events, rule)
    # The partitioned leader serves its read after sending heartbeats nobody got.
    header, events = await extensions_run(seed)
    at = index_of(events, event="read_failed")
    node = events[at]["node"]
    began = max(
        k for k in range(at) if events[k]["event"] == "read_index" and events[k]["node"] == node
    )
    send = index_of(events, began + 1, event="send", node=node, msg_type="AppendEntries")
    assert send < at
    served = copy.deepcopy(events[send])
    for field in ("id", "msg"):
        del served[field]
    served.update(
        event="read_served", read=events[began]["read"], index=served["state"]["commit_index"]
    )
    events.insert(send + 1, served)
    assert "confirmed by" in rejected(header, events, rule)


async def test_a_command_taken_during_a_transfer_is_rejected(seed: int) -> None:
    header, events = await extensions_run(seed)
    at = index_of(events, event="transfer_leadership")
    state = dict(events[at]["state"])
    state.update(last_index=state["last_index"] + 1, last_term=state["term"])
    forged = {
        **events[at],
        "event": "client_request",
        "index": state["last_index"],
        "term": state["term"],
        "digest": "0123456789abcdef",
        "state": state,
    }
    del forged["target"]
    events.insert(at + 1, forged)
    assert "transferring" in rejected(header, events, "Leadership transfer (thesis §3.10)")


async def test_quorum_lost_without_check_quorum_is_rejected(seed: int) -> None:
    header, events = await extensions_run(seed)
    for e in events:
        if e["event"] == "init":
            e.pop("check_quorum", None)
    assert "without CheckQuorum" in rejected(header, events, "CheckQuorum (thesis §6.2)")


async def test_pre_vote_events_need_pre_vote_on(seed: int) -> None:
    """A node that says (by its init) it runs no Pre-Vote times out into a candidate."""
    header, events = await extensions_run(seed)
    for e in events:
        if e["event"] == "init":
            e.pop("pre_vote", None)
    rejected(header, events, "Timeout: become pre-candidate (thesis §9.6)")
