"""An explicit-state model of Raft's Figure 2, its invariants and a model checker.

Standard library only, and it never imports the rest of trioraft: it is an
independent check of the implementation (``trioraft.core``).  spec/MODEL.md
describes it: each action beside the Figure 2 rule it encodes and the trace
event that drives it, the invariants, the checker's bounds.
"""

from .actions import (
    Bounds,
    Step,
    advance_commit_index,
    append_entries,
    apply,
    apply_step,
    become_leader,
    client_request,
    drop_message,
    duplicate_message,
    handle_append_entries,
    handle_append_entries_response,
    handle_request_vote,
    handle_request_vote_response,
    next_index_choices,
    receive,
    request_vote,
    restart,
    settle,
    successors,
    timeout,
)
from .checker import CheckResult, Progress, check
from .invariants import INVARIANTS, INVARIANTS_BY_NAME, Invariant, first_violation, violations
from .mutants import MUTANTS
from .state import (
    CANDIDATE,
    FOLLOWER,
    LEADER,
    NOBODY,
    AppendEntriesRequest,
    AppendEntriesResponse,
    Entry,
    Message,
    RequestVoteRequest,
    RequestVoteResponse,
    Server,
    State,
    initial_state,
)
from .story import describe, format_trace

__all__ = [
    "CANDIDATE",
    "FOLLOWER",
    "INVARIANTS",
    "INVARIANTS_BY_NAME",
    "LEADER",
    "MUTANTS",
    "NOBODY",
    "AppendEntriesRequest",
    "AppendEntriesResponse",
    "Bounds",
    "CheckResult",
    "Entry",
    "Invariant",
    "Message",
    "Progress",
    "RequestVoteRequest",
    "RequestVoteResponse",
    "Server",
    "State",
    "Step",
    "advance_commit_index",
    "append_entries",
    "apply",
    "apply_step",
    "become_leader",
    "check",
    "client_request",
    "describe",
    "drop_message",
    "duplicate_message",
    "first_violation",
    "format_trace",
    "handle_append_entries",
    "handle_append_entries_response",
    "handle_request_vote",
    "handle_request_vote_response",
    "initial_state",
    "next_index_choices",
    "receive",
    "request_vote",
    "restart",
    "settle",
    "successors",
    "timeout",
    "violations",
]
