"""One registry of the model's actions: for each, its rule, how the checker
enumerates it, how a step of it is replayed and how it is told.

Rules of operation
------------------
:data:`ACTIONS` maps an action's name (the ``action`` of a :class:`~.search.Step`)
to an :class:`Action`.  Everything that used to dispatch on action-name strings
reads this table instead: :func:`apply_step` (replaying a counterexample, and
the follow-ups :func:`~.search.settle` names), :func:`next_states` /
:func:`successors` (the checker's enumeration) and :func:`.story.describe`.
Adding an action means writing its rule in :mod:`.actions` and one entry here:

- ``take(state, step, mutant)``: call the rule with the step's arguments;
- ``on_server(state, i, bounds, mutant, add, steps)`` or
  ``on_message(state, m, ...)``: how the checker enumerates it: append every
  state the action leads to from ``state`` within ``bounds`` (``add``) and,
  when ``steps`` is a list, the :class:`~.search.Step` of each (same order),
  for acting server ``i`` (called only for servers whose role is in
  ``roles``) or in-flight message ``m`` (each distinct message once);
- ``explored(bounds)``: whether the checker explores it at all under these
  bounds (fine-grained local steps, snapshots, restarts);
- ``describe(step, before, after)``: the step as a sentence; ``told_after(after,
  i, count)``: how it is told as a follow-up of another step (``step.then``).

The enumeration is the checker's hot path: expanders append directly and
tidy the network only after an action that can change what its messages would
do (see :func:`~.search.tidy_network` and :func:`~.search.moved`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, NamedTuple

from .actions import (
    advance_commit_index,
    append_entries,
    append_entries_sent,
    apply,
    apply_snapshot,
    become_candidate,
    become_leader,
    client_request,
    commit_index_limit,
    drop_message,
    duplicate_message,
    handle_append_entries_response,
    handle_append_entries_sent,
    handle_install_snapshot_response,
    handle_install_snapshot_sent,
    handle_pre_vote_response,
    handle_pre_vote_sent,
    handle_request_vote_response,
    handle_request_vote_sent,
    handle_timeout_now_response,
    handle_timeout_now_sent,
    install_snapshot,
    install_snapshot_chunk,
    install_snapshot_sent,
    next_index_choices,
    pre_vote,
    pre_vote_sent,
    receive,
    request_vote,
    request_vote_sent,
    restart,
    take_snapshot,
    timeout,
)
from .extensions import (
    abandon_transfer,
    ack_read,
    check_quorum,
    expire_lease,
    read_index,
    serve_read,
    timeout_now,
    timeout_now_sent,
    transfer_leadership,
)
from .mutants import LEADER_OVERWRITES_LOG
from .search import Bounds, Step, moved, settle, tidy_network
from .state import (
    CANDIDATE,
    FOLLOWER,
    LEADER,
    PRE_CANDIDATE,
    ROLE_NAMES,
    AppendEntriesRequest,
    AppendEntriesResponse,
    InstallSnapshotRequest,
    InstallSnapshotResponse,
    Message,
    PreVoteRequest,
    PreVoteResponse,
    RequestVoteRequest,
    RequestVoteResponse,
    State,
    TimeoutNowRequest,
    format_log,
    format_message,
)

Add = Callable[[State], None]
Take = Callable[[State, Step, str | None], State | None]
Expander = Callable[[State, int, Bounds, str | None, Add, list[Step] | None], None]
MessageExpander = Callable[[State, Message, Bounds, str | None, Add, list[Step] | None], None]
Describe = Callable[[Step, State, State], str]
ToldAfter = Callable[[State, int, int], str]

_new = tuple.__new__

ALL_ROLES: Final = frozenset({FOLLOWER, CANDIDATE, LEADER, PRE_CANDIDATE})


def _always(bounds: Bounds) -> bool:
    return True


def _fine(bounds: Bounds) -> bool:
    return bounds.fine_grained


class Action(NamedTuple):
    """One action of the model: see the module docstring."""

    name: str
    take: Take
    describe: Describe
    on_server: Expander | None = None
    on_message: MessageExpander | None = None
    roles: frozenset[int] = ALL_ROLES
    explored: Callable[[Bounds], bool] = _always
    told_after: ToldAfter | None = None


def _told_sent(sent: tuple[State, Message] | None) -> str:
    """``": <the message>"`` for the message a send put in flight; empty if none."""
    return "" if sent is None else f": {format_message(sent[1])}"


# ----------------------------------------------------------------- elections


def _expand_timeout(
    state: State, i: int, bounds: Bounds, mutant: str | None, add: Add,
    steps: list[Step] | None,
) -> None:  # fmt: skip
    # Followers/Candidates: "if election timeout elapses ... convert to candidate"
    # (no term beyond max_term).
    s = state.servers[i]
    if s.current_term < bounds.max_term:
        lease = s.ext.lease
        # §4.2.3: a timer inside a lease first ends the lease (explored only here and
        # where a vote arrives, never alone: see _expand_receive).
        start = expire_lease(state, i) if lease else state
        t = None if start is None else timeout(start, i)
        if t is not None:
            then: tuple[str, ...] = ()
            if not bounds.fine_grained and len(state.servers) == 1:
                t, then = settle(t, i, mutant=mutant)
            add(tidy_network(t, 1 << i))
            if steps is not None:
                if lease:
                    steps.append(Step("expire_lease", i, then=("timeout", *then)))
                else:
                    steps.append(Step("timeout", i, then=then))


def _describe_timeout(step: Step, before: State, after: State) -> str:
    return f"server {step.server}" + _told_timeout(after, step.server, 1)[1:]


def _told_timeout(after: State, i: int, count: int) -> str:
    s = after.servers[i]
    if s.role == PRE_CANDIDATE:
        return f", times out, becomes pre-candidate for term {s.current_term + 1}"
    return f", times out, becomes candidate in term {s.current_term}"


def _expand_request_vote(
    state: State, i: int, bounds: Bounds, mutant: str | None, add: Add,
    steps: list[Step] | None,
) -> None:  # fmt: skip
    # Candidates: "send RequestVote RPCs to all other servers" (one at a time, to
    # any that has not granted; no send while max_msgs are in flight).
    if len(state.network) >= bounds.max_msgs:
        return
    servers = state.servers
    s = servers[i]
    votes = s.votes_granted
    term = s.current_term
    for j in range(len(servers)):
        if j != i and not votes >> j & 1:
            sent = request_vote_sent(state, i, j)
            if sent is not None:
                t = sent[0]
                if term < servers[j].current_term:
                    t = tidy_network(t, 1 << j)
                add(t)
                if steps is not None:
                    steps.append(Step("request_vote", i, j))


def _describe_request_vote(step: Step, before: State, after: State) -> str:
    i, j = step.server, step.peer
    return f"candidate {i} sends RequestVote to server {j}" + _told_sent(
        request_vote_sent(before, i, j)
    )


def _expand_become_leader(
    state: State, i: int, bounds: Bounds, mutant: str | None, add: Add,
    steps: list[Step] | None,
) -> None:  # fmt: skip
    # Candidates: "if votes received from majority of servers: become leader"
    # (fine-grained only; else a follow-up, see settle).
    if 2 * state.servers[i].votes_granted.bit_count() > len(state.servers):
        t = become_leader(state, i)
        if t is not None:
            add(tidy_network(t, 1 << i))
            if steps is not None:
                steps.append(Step("become_leader", i))


def _describe_become_leader(step: Step, before: State, after: State) -> str:
    return f"server {step.server} becomes leader of term {after.servers[step.server].current_term}"


def _told_become_leader(after: State, i: int, count: int) -> str:
    return f", becomes leader of term {after.servers[i].current_term}"


# ----------------------------------------------------------------- replication


def _expand_client_request(
    state: State, i: int, bounds: Bounds, mutant: str | None, add: Add,
    steps: list[Step] | None,
) -> None:  # fmt: skip
    # Leaders: "if command received from client: append entry to local log" (no
    # log longer than max_log; values 1..values).
    if len(state.servers[i].log) < bounds.max_log or mutant == LEADER_OVERWRITES_LOG:
        fine = bounds.fine_grained
        for value in range(1, bounds.values + 1):
            then: tuple[str, ...] = ()
            t = client_request(state, i, value, mutant=mutant)
            if t is not None and len(t.servers[i].log) <= bounds.max_log:
                if not fine:
                    t, then = settle(t, i, mutant=mutant)
                add(t)
                if steps is not None:
                    steps.append(Step("client_request", i, value=value, then=then))


def _describe_client_request(step: Step, before: State, after: State) -> str:
    s = after.servers[step.server]
    return (
        f"leader {step.server} takes client value {step.value!r} as entry {len(s.log)} "
        f"of term {s.current_term}"
    )


def _expand_append_entries(
    state: State, i: int, bounds: Bounds, mutant: str | None, add: Add,
    steps: list[Step] | None,
) -> None:  # fmt: skip
    # Leaders: AppendEntries to each follower from nextIndex, with 0 (a heartbeat)
    # up to all remaining entries; InstallSnapshot sends those inside the snapshot.
    if len(state.network) >= bounds.max_msgs:
        return
    servers = state.servers
    s = servers[i]
    next_index = s.next_index
    term = s.current_term
    snapshot = s.snapshot_index
    last = len(s.log)
    for j in range(len(servers)):
        if j == i or next_index[j] <= snapshot:
            continue
        stale = term < servers[j].current_term
        for count in range(last - next_index[j] + 2):
            sent = append_entries_sent(state, i, j, count)
            if sent is not None:
                add(tidy_network(sent[0], 1 << j) if stale else sent[0])
                if steps is not None:
                    steps.append(Step("append_entries", i, j, count))


def _describe_append_entries(step: Step, before: State, after: State) -> str:
    what = "a heartbeat" if step.entries == 0 else f"{step.entries} entr"
    what += "" if step.entries == 0 else "y" if step.entries == 1 else "ies"
    i, j = step.server, step.peer
    return f"leader {i} sends AppendEntries ({what}) to server {j}" + _told_sent(
        append_entries_sent(before, i, j, step.entries)
    )


def _expand_advance_commit_index(
    state: State, i: int, bounds: Bounds, mutant: str | None, add: Add,
    steps: list[Step] | None,
) -> None:  # fmt: skip
    # Leaders: "if there exists an N > commitIndex such that a majority of
    # matchIndex[i] >= N ...: set commitIndex = N" (fine-grained only).
    if commit_index_limit(state, i) > state.servers[i].commit_index:
        t = advance_commit_index(state, i, mutant=mutant)
        if t is not None:
            add(t)
            if steps is not None:
                steps.append(Step("advance_commit_index", i))


def _describe_advance_commit_index(step: Step, before: State, after: State) -> str:
    index = after.servers[step.server].commit_index
    return f"leader {step.server} advances commit_index to {index}"


def _told_advance_commit_index(after: State, i: int, count: int) -> str:
    return f", advances commit_index to {after.servers[i].commit_index}"


def _expand_apply(
    state: State, i: int, bounds: Bounds, mutant: str | None, add: Add,
    steps: list[Step] | None,
) -> None:  # fmt: skip
    # All Servers: "if commitIndex > lastApplied: increment lastApplied, apply
    # log[lastApplied]" (fine-grained only; never an entry inside the snapshot).
    s = state.servers[i]
    if s.snapshot_index <= s.last_applied < s.commit_index:
        t = apply(state, i)
        if t is not None:
            add(t)
            if steps is not None:
                steps.append(Step("apply", i))


def _describe_apply(step: Step, before: State, after: State) -> str:
    s = after.servers[step.server]
    entry = s.log[s.last_applied - 1]
    return f"server {step.server} applies entry {s.last_applied} (t{entry.term}={entry.value!r})"


def _told_apply(after: State, i: int, count: int) -> str:
    last = after.servers[i].last_applied
    first = last - count + 1
    return f", applies entr{'y' if count == 1 else 'ies'} {first}" + (
        f"..{last}" if count > 1 else ""
    )


# ----------------------------------------------------------------- failures


def _expand_restart(
    state: State, i: int, bounds: Bounds, mutant: str | None, add: Add,
    steps: list[Step] | None,
) -> None:  # fmt: skip
    # A crash keeps the persistent state and loses the rest (max_restarts in a run).
    if state.restarts < bounds.max_restarts:
        t = restart(state, i, mutant=mutant)
        # A restart that changes nothing but the counter is not worth a state.
        if t is not None and t.servers[i] != state.servers[i]:
            add(tidy_network(t, 1 << i))
            if steps is not None:
                steps.append(Step("restart", i))


def _describe_restart(step: Step, before: State, after: State) -> str:
    s = after.servers[step.server]
    text = (
        f"server {step.server} restarts: keeps term {s.current_term}, voted_for "
        f"{'-' if s.voted_for < 0 else s.voted_for}, log {format_log(s.log)}"
    )
    if s.snapshot_index:
        text += f", snapshot {s.snapshot_index} (restored: commit_index and last_applied)"
    return text + "; loses the rest"


def _lease_matters(state: State, m: Message) -> bool:
    """Does the receiver's lease decide what ``m`` does (a vote or pre-vote of a
    higher term, not a transfer's, at a server within its lease)?"""
    d = state.servers[m.dest]
    if not d.ext.lease or m.term <= d.current_term:
        return False
    return isinstance(m, PreVoteRequest) or (isinstance(m, RequestVoteRequest) and not m.transfer)


def _expand_receive(
    state: State, m: Message, bounds: Bounds, mutant: str | None, add: Add,
    steps: list[Step] | None, expire_first: bool = False,
) -> None:  # fmt: skip
    # Deliver m: the receiver's rule for its kind (every handler first applies
    # All Servers: a higher term makes a follower).  A request's reply goes back to
    # its sender, so the sender's messages are tidied too.
    if bounds.pre_vote and not expire_first and _lease_matters(state, m):
        # §4.2.3: the receiver's lease may have ended before this arrives; the lease
        # is explored only where it matters (here and at a timeout), never alone.
        leased = expire_lease(state, m.dest)
        assert leased is not None
        _expand_receive(leased, m, bounds, mutant, add, steps, True)
    _receive(state, m, bounds.fine_grained, mutant, add, steps, expire_first)


def _receive(
    state: State, m: Message, fine: bool, mutant: str | None, add: Add,
    steps: list[Step] | None, expire_first: bool,
) -> None:  # fmt: skip
    """Receive's expander (after any lease, see _expand_receive): the receiver's
    handler of ``m``'s kind, and what it settles in the same step."""
    dest = m.dest
    was = state.servers[dest]
    then: tuple[str, ...] = ()
    t: State | None
    if isinstance(m, AppendEntriesResponse):
        for choice in next_index_choices(state, m) or (None,):
            then = ()
            t = handle_append_entries_response(state, m, choice)
            if t is not None:
                if not fine and m.success:
                    t, then = settle(t, dest, mutant=mutant)
                add(tidy_network(t, moved(was, t.servers[dest]) << dest))
                if steps is not None:
                    steps.append(Step("receive", dest, message=m, next_index=choice, then=then))
        return  # (a reply: no lease decides it, and nothing is sent back)
    sent: tuple[State, Message] | None
    if isinstance(m, RequestVoteRequest):
        sent = handle_request_vote_sent(state, m, mutant=mutant)
        t = None if sent is None else sent[0]
    elif isinstance(m, (AppendEntriesRequest, InstallSnapshotRequest)):
        if isinstance(m, AppendEntriesRequest):
            sent = handle_append_entries_sent(state, m, mutant=mutant)
        else:
            sent = handle_install_snapshot_sent(state, m, mutant=mutant)
        t = None if sent is None else sent[0]
        if not fine and t is not None:
            r = t.servers[dest]
            if r.last_applied < r.commit_index:
                t, then = settle(t, dest, mutant=mutant)
    elif isinstance(m, (RequestVoteResponse, PreVoteResponse)):
        if isinstance(m, RequestVoteResponse):
            t = handle_request_vote_response(state, m)
        else:
            t = handle_pre_vote_response(state, m)
        if not fine and m.vote_granted and t is not None:
            t, then = settle(t, dest, mutant=mutant)
    elif isinstance(m, InstallSnapshotResponse):
        t = handle_install_snapshot_response(state, m)
        if not fine and m.last_included_index and t is not None:
            t, then = settle(t, dest, mutant=mutant)
    elif isinstance(m, PreVoteRequest):
        sent = handle_pre_vote_sent(state, m, mutant=mutant)
        t = None if sent is None else sent[0]
    elif isinstance(m, TimeoutNowRequest):
        sent = handle_timeout_now_sent(state, m)
        t = None if sent is None else sent[0]
    else:
        t = handle_timeout_now_response(state, m)
    if t is not None:
        add(tidy_network(t, 1 << m.source | moved(was, t.servers[dest]) << dest))
        if steps is not None:
            steps.append(
                Step("receive", dest, message=m, then=then, expire_lease_first=expire_first)
            )


def _take_receive(state: State, step: Step, mutant: str | None) -> State | None:
    if step.message is None:
        raise ValueError("step 'receive' needs a message")
    if step.expire_lease_first:
        leased = expire_lease(state, step.server)
        if leased is None:
            return None
        state = leased
    return receive(state, step.message, next_index=step.next_index, mutant=mutant)


def _describe_receive(step: Step, before: State, after: State) -> str:
    m = step.message
    assert m is not None
    j = m.dest
    old, new = before.servers[j], after.servers[j]
    text = f"server {j} receives {format_message(m)}"
    if step.expire_lease_first:
        text = f"server {j}'s lease has ended; it receives {format_message(m)}"
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
    elif new.role == LEADER and old.role != LEADER:
        text += ", now holds a majority of votes"
    elif new.votes_granted != old.votes_granted:
        text += f", now holds {new.votes_granted.bit_count()} votes"
    if old.role != new.role and not step.then:
        text += f" ({ROLE_NAMES[old.role]} -> {ROLE_NAMES[new.role]})"
    return text


def _expand_drop_message(
    state: State, m: Message, bounds: Bounds, mutant: str | None, add: Add,
    steps: list[Step] | None,
) -> None:  # fmt: skip
    # The network may lose any message.
    t = drop_message(state, m)
    if t is not None:
        add(t)
        if steps is not None:
            steps.append(Step("drop_message", message=m))


def _take_drop_message(state: State, step: Step, mutant: str | None) -> State | None:
    if step.message is None:
        raise ValueError("step 'drop_message' needs a message")
    return drop_message(state, step.message)


def _describe_drop_message(step: Step, before: State, after: State) -> str:
    assert step.message is not None
    return f"the network drops {format_message(step.message)}"


def _expand_duplicate_message(
    state: State, m: Message, bounds: Bounds, mutant: str | None, add: Add,
    steps: list[Step] | None,
) -> None:  # fmt: skip
    # The network may deliver a message twice (no copy while max_msgs are in flight).
    if len(state.network) < bounds.max_msgs:
        t = duplicate_message(state, m)
        if t is not None:
            add(t)
            if steps is not None:
                steps.append(Step("duplicate_message", message=m))


def _take_duplicate_message(state: State, step: Step, mutant: str | None) -> State | None:
    if step.message is None:
        raise ValueError("step 'duplicate_message' needs a message")
    return duplicate_message(state, step.message)


def _describe_duplicate_message(step: Step, before: State, after: State) -> str:
    assert step.message is not None
    return f"the network duplicates {format_message(step.message)}"


# ----------------------------------------------------------------- snapshots (Figure 13)


def _expand_take_snapshot(
    state: State, i: int, bounds: Bounds, mutant: str | None, add: Add,
    steps: list[Step] | None,
) -> None:  # fmt: skip
    # §7: the service snapshots any index it applied past its snapshot.
    s = state.servers[i]
    for index in range(s.snapshot_index + 1, s.last_applied + 1):
        t = take_snapshot(state, i, index)
        if t is not None:
            add(t)
            if steps is not None:
                steps.append(Step("take_snapshot", i, snapshot_index=index))


def _describe_take_snapshot(step: Step, before: State, after: State) -> str:
    index = step.snapshot_index
    return f"server {step.server} takes a snapshot of entries 1..{index}, compacts its log"


def _expand_install(action: str, whole: bool) -> Expander:
    def expand(
        state: State, i: int, bounds: Bounds, mutant: str | None, add: Add,
        steps: list[Step] | None,
    ) -> None:  # fmt: skip
        # Leaders (Figure 13): a follower whose nextIndex is inside the snapshot is
        # sent InstallSnapshot (the whole snapshot, or a chunk that does not
        # complete it).
        if len(state.network) >= bounds.max_msgs:
            return
        servers = state.servers
        s = servers[i]
        if not s.snapshot_index:
            return
        next_index = s.next_index
        term = s.current_term
        for j in range(len(servers)):
            if j != i and next_index[j] <= s.snapshot_index:
                sent = install_snapshot_sent(state, i, j, whole=whole)
                if sent is not None:
                    t = sent[0]
                    add(tidy_network(t, 1 << j) if term < servers[j].current_term else t)
                    if steps is not None:
                        steps.append(Step(action, i, j))

    return expand


def _describe_install_snapshot(step: Step, before: State, after: State) -> str:
    i, j = step.server, step.peer
    return f"leader {i} sends InstallSnapshot to server {j}" + _told_sent(
        install_snapshot_sent(before, i, j)
    )


def _describe_install_snapshot_chunk(step: Step, before: State, after: State) -> str:
    return f"leader {step.server} sends server {step.peer} a chunk (not the last) of its snapshot"


def _expand_apply_snapshot(
    state: State, i: int, bounds: Bounds, mutant: str | None, add: Add,
    steps: list[Step] | None,
) -> None:  # fmt: skip
    # Figure 13 receiver rule 8: reset the state machine to an installed snapshot
    # (fine-grained only).
    s = state.servers[i]
    if s.last_applied < s.snapshot_index:
        t = apply_snapshot(state, i, s.snapshot_index)
        if t is not None:
            add(t)
            if steps is not None:
                steps.append(Step("apply_snapshot", i))


def _describe_apply_snapshot(step: Step, before: State, after: State) -> str:
    last = after.servers[step.server].last_applied
    return f"server {step.server} resets its state machine to its snapshot (entries 1..{last})"


def _told_apply_snapshot(after: State, i: int, count: int) -> str:
    return f", resets its state machine to snapshot {after.servers[i].snapshot_index}"


# ----------------------------------------------------------------- the extensions

Rule = Callable[[State, int], State | None]
PeerRule = Callable[[State, int, int], State | None]


def _expand_local(name: str, rule: Rule) -> Expander:
    """The expander of an action of server ``i`` alone, with no parameter."""

    def expand(
        state: State, i: int, bounds: Bounds, mutant: str | None, add: Add,
        steps: list[Step] | None,
    ) -> None:  # fmt: skip
        t = rule(state, i)
        if t is not None:
            add(tidy_network(t, moved(state.servers[i], t.servers[i]) << i))
            if steps is not None:
                steps.append(Step(name, i))

    return expand


def _expand_to_peers(name: str, rule: PeerRule, *, settle_after: bool = False) -> Expander:
    """The expander of an action of server ``i`` about each other server ``j``."""

    def expand(
        state: State, i: int, bounds: Bounds, mutant: str | None, add: Add,
        steps: list[Step] | None,
    ) -> None:  # fmt: skip
        for j in range(len(state.servers)):
            if j == i:
                continue
            t = rule(state, i, j)
            if t is None:
                continue
            then: tuple[str, ...] = ()
            if settle_after and not bounds.fine_grained:
                t, then = settle(t, i, mutant=mutant)
            add(tidy_network(t, moved(state.servers[i], t.servers[i]) << i))
            if steps is not None:
                steps.append(Step(name, i, j, then=then))

    return expand


def _expand_pre_vote(
    state: State, i: int, bounds: Bounds, mutant: str | None, add: Add,
    steps: list[Step] | None,
) -> None:  # fmt: skip
    # Pre-candidates (§9.6): ask each server that has not granted (within max_msgs).
    if len(state.network) >= bounds.max_msgs:
        return
    votes = state.servers[i].votes_granted
    for j in range(len(state.servers)):
        if j != i and not votes >> j & 1:
            sent = pre_vote_sent(state, i, j)
            if sent is not None:
                add(tidy_network(sent[0], 1 << j))
                if steps is not None:
                    steps.append(Step("pre_vote", i, j))


def _describe_pre_vote(step: Step, before: State, after: State) -> str:
    i, j = step.server, step.peer
    return f"pre-candidate {i} asks server {j} for a pre-vote" + _told_sent(
        pre_vote_sent(before, i, j)
    )


def _describe_become_candidate(step: Step, before: State, after: State) -> str:
    term = after.servers[step.server].current_term
    return f"pre-candidate {step.server} won a majority of pre-votes, stands in term {term}"


def _told_become_candidate(after: State, i: int, count: int) -> str:
    return f", won its pre-votes and stands in term {after.servers[i].current_term}"


def _describe_expire_lease(step: Step, before: State, after: State) -> str:
    return f"server {step.server}'s lease ends: the minimum election timeout passed"


def _describe_check_quorum(step: Step, before: State, after: State) -> str:
    term = before.servers[step.server].current_term
    return f"leader {step.server} of term {term} lost its quorum (CheckQuorum) and steps down"


def _expand_transfer_leadership(
    state: State, i: int, bounds: Bounds, mutant: str | None, add: Add,
    steps: list[Step] | None,
) -> None:  # fmt: skip
    # §3.10: a leader starts a transfer, below max_term (its target stands in the
    # next term, as a Timeout would).
    if state.servers[i].current_term < bounds.max_term:
        _transfer_to_peers(state, i, bounds, mutant, add, steps)


_transfer_to_peers = _expand_to_peers("transfer_leadership", transfer_leadership)


def _describe_transfer_leadership(step: Step, before: State, after: State) -> str:
    return f"leader {step.server} starts transferring leadership to server {step.peer}"


def _expand_timeout_now(
    state: State, i: int, bounds: Bounds, mutant: str | None, add: Add,
    steps: list[Step] | None,
) -> None:  # fmt: skip
    # §3.10: the target caught up: TimeoutNow (within max_msgs).
    if len(state.network) >= bounds.max_msgs:
        return
    sent = timeout_now_sent(state, i)
    if sent is not None:
        add(sent[0])
        if steps is not None:
            steps.append(Step("timeout_now", i))


def _describe_timeout_now(step: Step, before: State, after: State) -> str:
    return f"leader {step.server} tells its caught-up target to stand" + _told_sent(
        timeout_now_sent(before, step.server)
    )


def _describe_abandon_transfer(step: Step, before: State, after: State) -> str:
    return f"leader {step.server} abandons its transfer (an election timeout passed)"


def _expand_read_index(
    state: State, i: int, bounds: Bounds, mutant: str | None, add: Add,
    steps: list[Step] | None,
) -> None:  # fmt: skip
    # §6.4: a read arrives (at most max_reads waiting at once, cluster-wide).
    if sum(len(s.ext.reads) for s in state.servers) >= bounds.max_reads:
        return
    t = read_index(state, i)
    if t is not None:
        then: tuple[str, ...] = ()
        if not bounds.fine_grained:
            t, then = settle(t, i, mutant=mutant)
        add(t)
        if steps is not None:
            steps.append(Step("read_index", i, then=then))


def _describe_read_index(step: Step, before: State, after: State) -> str:
    return f"leader {step.server} takes a read (ReadIndex): a confirmation round begins"


def _describe_ack_read(step: Step, before: State, after: State) -> str:
    return (
        f"server {step.peer}, in leader {step.server}'s term, answers a message of the read's round"
    )


def _expand_serve_read(
    state: State, i: int, bounds: Bounds, mutant: str | None, add: Add,
    steps: list[Step] | None,
) -> None:  # fmt: skip
    t = serve_read(state, i, mutant=mutant)
    if t is not None:
        add(t)
        if steps is not None:
            steps.append(Step("serve_read", i))


def _describe_serve_read(step: Step, before: State, after: State) -> str:
    s = after.servers[step.server]
    return f"leader {step.server} serves its confirmed reads at commit_index {s.commit_index}"


def _told_serve_read(after: State, i: int, count: int) -> str:
    return f", serves its reads at commit_index {after.servers[i].commit_index}"


# ----------------------------------------------------------------- the registry


def _snapshots(bounds: Bounds) -> bool:
    return bounds.snapshots


def _restarts(bounds: Bounds) -> bool:
    return bounds.max_restarts > 0


_LEADER: Final = frozenset({LEADER})
_NOT_LEADER: Final = frozenset({FOLLOWER, CANDIDATE, PRE_CANDIDATE})
_CANDIDATE: Final = frozenset({CANDIDATE})
_PRE_CANDIDATE: Final = frozenset({PRE_CANDIDATE})
_FOLLOWER: Final = frozenset({FOLLOWER})


def _never(bounds: Bounds) -> bool:
    return False


def _check_quorum(bounds: Bounds) -> bool:
    return bounds.check_quorum


def _transfer(bounds: Bounds) -> bool:
    return bounds.transfer


def _read_index(bounds: Bounds) -> bool:
    return bounds.read_index


def _fine_pre_vote(bounds: Bounds) -> bool:
    return bounds.fine_grained and bounds.pre_vote


def _fine_read_index(bounds: Bounds) -> bool:
    return bounds.fine_grained and bounds.read_index


ACTIONS: Final[dict[str, Action]] = {
    a.name: a
    for a in (
        # Per server, in the order the checker explores them (the order matters only
        # for which of several shortest counterexamples is found first).
        Action(
            "client_request",
            lambda state, step, mutant: client_request(
                state, step.server, step.value, mutant=mutant
            ),
            _describe_client_request,
            on_server=_expand_client_request,
            roles=_LEADER,
        ),
        Action(
            "append_entries",
            lambda state, step, mutant: append_entries(state, step.server, step.peer, step.entries),
            _describe_append_entries,
            on_server=_expand_append_entries,
            roles=_LEADER,
        ),
        Action(
            "install_snapshot",
            lambda state, step, mutant: install_snapshot(state, step.server, step.peer),
            _describe_install_snapshot,
            on_server=_expand_install("install_snapshot", True),
            roles=_LEADER,
            explored=_snapshots,  # (without snapshots no nextIndex is inside one)
        ),
        Action(
            "install_snapshot_chunk",
            lambda state, step, mutant: install_snapshot_chunk(state, step.server, step.peer),
            _describe_install_snapshot_chunk,
            on_server=_expand_install("install_snapshot_chunk", False),
            roles=_LEADER,
            explored=_snapshots,
        ),
        Action(
            "advance_commit_index",
            lambda state, step, mutant: advance_commit_index(state, step.server, mutant=mutant),
            _describe_advance_commit_index,
            on_server=_expand_advance_commit_index,
            roles=_LEADER,
            explored=_fine,
            told_after=_told_advance_commit_index,
        ),
        Action(
            "timeout",
            lambda state, step, mutant: timeout(state, step.server),
            _describe_timeout,
            on_server=_expand_timeout,
            roles=_NOT_LEADER,
            told_after=_told_timeout,
        ),
        Action(
            "become_leader",
            lambda state, step, mutant: become_leader(state, step.server),
            _describe_become_leader,
            on_server=_expand_become_leader,
            roles=_CANDIDATE,
            explored=_fine,
            told_after=_told_become_leader,
        ),
        Action(
            "request_vote",
            lambda state, step, mutant: request_vote(state, step.server, step.peer),
            _describe_request_vote,
            on_server=_expand_request_vote,
            roles=_CANDIDATE,
        ),
        Action(
            "apply_snapshot",
            lambda state, step, mutant: apply_snapshot(
                state, step.server, state.servers[step.server].snapshot_index
            ),
            _describe_apply_snapshot,
            on_server=_expand_apply_snapshot,
            explored=_fine,
            told_after=_told_apply_snapshot,
        ),
        Action(
            "apply",
            lambda state, step, mutant: apply(state, step.server),
            _describe_apply,
            on_server=_expand_apply,
            explored=_fine,
            told_after=_told_apply,
        ),
        Action(
            "take_snapshot",
            lambda state, step, mutant: take_snapshot(state, step.server, step.snapshot_index),
            _describe_take_snapshot,
            on_server=_expand_take_snapshot,
            explored=_snapshots,
        ),
        Action(
            "restart",
            lambda state, step, mutant: restart(state, step.server, mutant=mutant),
            _describe_restart,
            on_server=_expand_restart,
            explored=_restarts,
        ),
        # The extensions (thesis §9.6, §4.2.3, §6.2, §3.10, §6.4).
        Action(
            "pre_vote",
            lambda state, step, mutant: pre_vote(state, step.server, step.peer),
            _describe_pre_vote,
            on_server=_expand_pre_vote,
            roles=_PRE_CANDIDATE,
        ),
        Action(
            "become_candidate",
            lambda state, step, mutant: become_candidate(state, step.server),
            _describe_become_candidate,
            on_server=_expand_local("become_candidate", become_candidate),
            roles=_PRE_CANDIDATE,
            explored=_fine_pre_vote,
            told_after=_told_become_candidate,
        ),
        Action(
            "expire_lease",
            lambda state, step, mutant: expire_lease(state, step.server),
            _describe_expire_lease,
            on_server=_expand_local("expire_lease", expire_lease),
            roles=_FOLLOWER,
            explored=_never,  # taken with the timeout or the vote it decides
        ),
        Action(
            "check_quorum",
            lambda state, step, mutant: check_quorum(state, step.server),
            _describe_check_quorum,
            on_server=_expand_local("check_quorum", check_quorum),
            roles=_LEADER,
            explored=_check_quorum,
        ),
        Action(
            "transfer_leadership",
            lambda state, step, mutant: transfer_leadership(state, step.server, step.peer),
            _describe_transfer_leadership,
            on_server=_expand_transfer_leadership,
            roles=_LEADER,
            explored=_transfer,
        ),
        Action(
            "timeout_now",
            lambda state, step, mutant: timeout_now(state, step.server),
            _describe_timeout_now,
            on_server=_expand_timeout_now,
            roles=_LEADER,
            explored=_transfer,
        ),
        Action(
            "abandon_transfer",
            lambda state, step, mutant: abandon_transfer(state, step.server),
            _describe_abandon_transfer,
            on_server=_expand_local("abandon_transfer", abandon_transfer),
            roles=_LEADER,
            explored=_transfer,
        ),
        Action(
            "read_index",
            lambda state, step, mutant: read_index(state, step.server),
            _describe_read_index,
            on_server=_expand_read_index,
            roles=_LEADER,
            explored=_read_index,
        ),
        Action(
            "ack_read",
            lambda state, step, mutant: ack_read(state, step.server, step.peer),
            _describe_ack_read,
            on_server=_expand_to_peers("ack_read", ack_read, settle_after=True),
            roles=_LEADER,
            explored=_read_index,
        ),
        Action(
            "serve_read",
            lambda state, step, mutant: serve_read(state, step.server, mutant=mutant),
            _describe_serve_read,
            on_server=_expand_serve_read,
            roles=_LEADER,
            explored=_fine_read_index,
            told_after=_told_serve_read,
        ),
        # Per in-flight message.
        Action("receive", _take_receive, _describe_receive, on_message=_expand_receive),
        Action(
            "drop_message",
            _take_drop_message,
            _describe_drop_message,
            on_message=_expand_drop_message,
        ),
        Action(
            "duplicate_message",
            _take_duplicate_message,
            _describe_duplicate_message,
            on_message=_expand_duplicate_message,
        ),
    )
}
"""Action name -> :class:`Action`, in the order the checker explores them."""


# ----------------------------------------------------------------- driven by the registry


def action(name: str) -> Action:
    """The registry's entry for ``name``; a ValueError for an unknown action."""
    found = ACTIONS.get(name)
    if found is None:
        raise ValueError(f"unknown action {name!r}")
    return found


def apply_step(state: State, step: Step, mutant: str | None = None) -> State | None:
    """Take ``step`` from ``state``: the next state, or None if it is not enabled."""
    t = action(step.action).take(state, step, mutant)
    for follow_up in step.then:
        if t is None:
            return None
        t = action(follow_up).take(t, Step(follow_up, step.server), mutant)
    return t


class _Plan(NamedTuple):
    """What :func:`_expand` calls for ``bounds``: per role, the server expanders; the
    message expanders; whether those are exactly receive, drop and duplicate (then
    :func:`_expand` takes the two network faults itself, without a call each)."""

    bounds: Bounds
    by_role: tuple[tuple[Expander, ...], ...]
    per_message: tuple[MessageExpander, ...]
    faults_inline: bool


_plans: dict[Bounds, _Plan] = {}
_last: list[_Plan] = []


def _plan(bounds: Bounds) -> _Plan:
    if _last and _last[0].bounds is bounds:
        return _last[0]
    plan = _plans.get(bounds)
    if plan is None:
        explored = [a for a in ACTIONS.values() if a.explored(bounds)]
        by_role = tuple(
            tuple(a.on_server for a in explored if a.on_server is not None and role in a.roles)
            for role in (FOLLOWER, CANDIDATE, LEADER, PRE_CANDIDATE)  # indexed by role
        )
        per_message = tuple(a.on_message for a in explored if a.on_message is not None)
        inline = per_message == (_expand_receive, _expand_drop_message, _expand_duplicate_message)
        plan = _plans[bounds] = _Plan(bounds, by_role, per_message, inline)
    _last[:] = [plan]
    return plan


def _expand(
    state: State, bounds: Bounds, mutant: str | None, steps: list[Step] | None
) -> list[State]:
    """Every state one enabled action away, within ``bounds``, its network tidied
    (:func:`~.search.tidy_network`); with ``steps``, the actions too (same order):
    each server's actions by role, then each distinct in-flight message's."""
    plan = _plan(bounds)
    out: list[State] = []
    add = out.append
    by_role = plan.by_role
    servers = state.servers
    for i, s in enumerate(servers):
        for expand in by_role[s.role]:
            expand(state, i, bounds, mutant, add, steps)
    network = state.network
    if not network:
        return out
    previous: Message | None = None
    if not plan.faults_inline:
        per_message = plan.per_message
        for m in network:
            if m == previous:
                continue  # the bag is sorted: copies of a message are adjacent
            previous = m
            for expand_message in per_message:
                expand_message(state, m, bounds, mutant, add, steps)
        return out
    # Receive, then drop_message and duplicate_message inlined (what
    # _expand_drop_message and _expand_duplicate_message do, with the message's
    # place in the sorted bag known: its first copy is at k).
    room = len(network) < bounds.max_msgs
    leases = bounds.pre_vote  # (else no lease decides a delivery: see _expand_receive)
    fine = bounds.fine_grained
    rest = state[2:]  # committed, restarts (and any later field): kept as they are
    for k, m in enumerate(network):
        if m != previous:
            previous = m
            if leases:
                _expand_receive(state, m, bounds, mutant, add, steps)
            else:
                _receive(state, m, fine, mutant, add, steps, False)
            add(_new(State, (servers, network[:k] + network[k + 1 :], *rest)))
            if steps is not None:
                steps.append(Step("drop_message", message=m))
            if room:
                add(_new(State, (servers, (*network[:k], m, *network[k:]), *rest)))
                if steps is not None:
                    steps.append(Step("duplicate_message", message=m))
    return out


def next_states(state: State, bounds: Bounds, mutant: str | None = None) -> list[State]:
    """Every state one enabled action away from ``state`` within ``bounds``."""
    return _expand(state, bounds, mutant, None)


def successors(state: State, bounds: Bounds, mutant: str | None = None) -> list[tuple[Step, State]]:
    """Every enabled action within ``bounds``, with the state it leads to."""
    steps: list[Step] = []
    states = _expand(state, bounds, mutant, steps)
    return list(zip(steps, states, strict=True))
