"""Steps told as sentences, and counterexamples as numbered stories."""

from __future__ import annotations

from collections.abc import Sequence

from .registry import ACTIONS
from .search import Step
from .state import State, format_message, format_server


def describe(step: Step, before: State, after: State) -> str:
    """What ``step`` did, as a sentence: "server 0 times out, becomes candidate in term 1",
    then its follow-ups (each action's own wording: see :mod:`.registry`)."""
    entry = ACTIONS.get(step.action)
    text = f"{step.action} {step}" if entry is None else entry.describe(step, before, after)
    for follow_up in dict.fromkeys(step.then):
        told = ACTIONS[follow_up].told_after
        if told is not None:
            text += told(after, step.server, step.then.count(follow_up))
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
