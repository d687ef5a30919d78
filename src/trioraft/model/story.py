"""Steps told as sentences, and counterexamples as numbered stories."""

from __future__ import annotations

from collections.abc import Sequence

from .actions import append_entries, install_snapshot, request_vote
from .search import Step
from .state import (
    CANDIDATE,
    LEADER,
    ROLE_NAMES,
    AppendEntriesRequest,
    AppendEntriesResponse,
    InstallSnapshotRequest,
    InstallSnapshotResponse,
    RequestVoteRequest,
    State,
    format_log,
    format_message,
    format_server,
)


def describe(step: Step, before: State, after: State) -> str:
    """What ``step`` did, as a sentence: "server 0 times out, becomes candidate in term 1"."""
    i = step.server
    action = step.action
    if action == "timeout":
        s = after.servers[i]
        text = f"server {i} times out, becomes candidate in term {s.current_term}"
    elif action == "request_vote":
        text = f"candidate {i} sends RequestVote to server {step.peer}"
        text += _message_sent(before, request_vote(before, i, step.peer))
    elif action == "become_leader":
        text = f"server {i} becomes leader of term {after.servers[i].current_term}"
    elif action == "client_request":
        s = after.servers[i]
        text = (
            f"leader {i} takes client value {step.value!r} as entry {len(s.log)} "
            f"of term {s.current_term}"
        )
    elif action == "append_entries":
        what = "a heartbeat" if step.entries == 0 else f"{step.entries} entr"
        what += "" if step.entries == 0 else "y" if step.entries == 1 else "ies"
        text = f"leader {i} sends AppendEntries ({what}) to server {step.peer}"
        text += _message_sent(before, append_entries(before, i, step.peer, step.entries))
    elif action == "advance_commit_index":
        text = f"leader {i} advances commit_index to {after.servers[i].commit_index}"
    elif action == "apply":
        s = after.servers[i]
        entry = s.log[s.last_applied - 1]
        text = f"server {i} applies entry {s.last_applied} (t{entry.term}={entry.value!r})"
    elif action == "restart":
        s = after.servers[i]
        text = (
            f"server {i} restarts: keeps term {s.current_term}, voted_for "
            f"{'-' if s.voted_for < 0 else s.voted_for}, log {format_log(s.log)}"
        )
        if s.snapshot_index:
            text += f", snapshot {s.snapshot_index} (restored: commit_index and last_applied)"
        text += "; loses the rest"
    elif action == "take_snapshot":
        text = f"server {i} takes a snapshot of entries 1..{step.snapshot_index}, compacts its log"
    elif action == "install_snapshot":
        text = f"leader {i} sends InstallSnapshot to server {step.peer}"
        text += _message_sent(before, install_snapshot(before, i, step.peer))
    elif action == "install_snapshot_chunk":
        text = f"leader {i} sends server {step.peer} a chunk (not the last) of its snapshot"
    elif action == "apply_snapshot":
        last = after.servers[i].last_applied
        text = f"server {i} resets its state machine to its snapshot (entries 1..{last})"
    elif action == "drop_message" and step.message is not None:
        text = f"the network drops {format_message(step.message)}"
    elif action == "duplicate_message" and step.message is not None:
        text = f"the network duplicates {format_message(step.message)}"
    elif action == "receive" and step.message is not None:
        text = _describe_receive(step, before, after)
    else:
        text = f"{action} {step}"
    for follow_up in step.then:
        if follow_up == "become_leader":
            text += f", becomes leader of term {after.servers[i].current_term}"
        elif follow_up == "advance_commit_index":
            text += f", advances commit_index to {after.servers[i].commit_index}"
        elif follow_up == "apply_snapshot":
            text += f", resets its state machine to snapshot {after.servers[i].snapshot_index}"
    applied = step.then.count("apply")
    if applied:
        last = after.servers[i].last_applied
        first = last - applied + 1
        text += f", applies entr{'y' if applied == 1 else 'ies'} {first}"
        text += f"..{last}" if applied > 1 else ""
    return text


def _message_sent(before: State, after: State | None) -> str:
    """``": <the message>"`` for the message ``after``'s network holds one more copy
    of than ``before``'s; empty if there is none."""
    if after is not None:
        for m in after.network:
            if after.network.count(m) > before.network.count(m):
                return f": {format_message(m)}"
    return ""


def _describe_receive(step: Step, before: State, after: State) -> str:
    m = step.message
    assert m is not None
    j = m.dest
    old, new = before.servers[j], after.servers[j]
    text = f"server {j} receives {format_message(m)}"
    if new.current_term > old.current_term:
        text += f", moves to term {new.current_term} as follower"
    if isinstance(m, RequestVoteRequest):
        if new.voted_for == m.source and new.current_term == m.term:
            text += ", grants its vote" if old.voted_for != m.source else ", grants its vote again"
        else:
            text += ", refuses"
    elif isinstance(m, AppendEntriesRequest):
        if new.log != old.log:
            text += f", log now {format_log(new.log)}"
        if new.commit_index != old.commit_index:
            text += f", commit_index {new.commit_index}"
        if old.role == CANDIDATE and new.role != CANDIDATE:
            text += ", stops being a candidate"
    elif isinstance(m, InstallSnapshotRequest):
        if new.snapshot_index != old.snapshot_index:
            text += f", installs it: log now {format_log(new.log)}"
            text += f", commit_index {new.commit_index}"
        elif not m.last_included_index and new.current_term == m.term:
            text += ", keeps it (the snapshot is not complete yet)"
        elif new.current_term == m.term:
            text += f", already holds it (commit_index {new.commit_index})"
        else:
            text += ", refuses"
    elif isinstance(m, AppendEntriesResponse | InstallSnapshotResponse):
        if new.role == LEADER and old.role == LEADER:
            k = m.source
            if new.next_index[k] != old.next_index[k]:
                text += f", next_index[{k}] = {new.next_index[k]}"
            if new.match_index[k] != old.match_index[k]:
                text += f", match_index[{k}] = {new.match_index[k]}"
    elif "become_leader" in step.then:
        text += ", now holds a majority of votes"
    elif new.votes_granted != old.votes_granted:
        text += f", now holds {new.votes_granted.bit_count()} votes"
    if old.role != new.role and not step.then:
        text += f" ({ROLE_NAMES[old.role]} -> {ROLE_NAMES[new.role]})"
    return text


def format_trace(trace: Sequence[tuple[Step | None, State]]) -> str:
    """A counterexample as numbered steps, each followed by the state after it."""
    lines: list[str] = []
    previous: State | None = None
    for number, (step, state) in enumerate(trace):
        if step is None or previous is None:
            lines.append(f"{number}. initial state")
        else:
            lines.append(f"{number}. {describe(step, previous, state)}")
        lines.extend(_state_lines(state, previous))
        previous = state
    return "\n".join(lines)


def _state_lines(state: State, previous: State | None) -> list[str]:
    lines = []
    for i, s in enumerate(state.servers):
        changed = previous is None or previous.servers[i] != s
        lines.append(("   * " if changed else "     ") + format_server(i, s))
    if state.network:
        lines.append("     network: " + "; ".join(format_message(m) for m in state.network))
    else:
        lines.append("     network: empty")
    if state.committed:
        known = " ".join(f"{i}:t{t}={v!r}(in t{c})" for i, t, v, c in state.committed)
        lines.append("     committed: " + known)
    return lines
