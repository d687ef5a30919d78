"""Trace validation: replay an implementation's recorded run through the Figure 2 model.

Rules of operation
------------------
The input is plain data, exactly as ``spec/TRACE.md`` describes it: the
header dict and the event dicts, in ``seq`` order (the glue in
``trioraft.validate`` reads files; this module imports nothing of trioraft
outside :mod:`trioraft.model`).  The output is a :class:`Result`: how many
events and steps were replayed and the first :class:`Violation`, if any.

- **Steps.**  Events of one synchronous trio step are contiguous.  A step
  starts at a *starter* (``init``, ``crash``, ``timeout``, ``receive``,
  ``client_request``, ``snapshot``, ``apply``, ``apply_snapshot``, ``drop``, a
  ``send`` of a request, a lone ``persist``) and takes the *follow-ups* of the
  same node that come after it (``term_update``, ``become_*``, ``vote``,
  ``append``, ``commit``, ``install_snapshot``, ``persist``, a ``send`` of a
  reply).
- **One model action per starter**, the follow-ups checked against it (or, for
  ``become_leader`` and a leader's ``commit``, taken as the next action).  The
  model state is always a single state: every choice Figure 2 leaves open is
  named by the trace (how many entries, which commit index, which value) or
  fixed by a later event (a leader's nextIndex after a rejection is read off
  its next AppendEntries), so no set of candidate states is ever needed.
- **After every step**, the node's logged ``state`` must equal the model's
  server (term, role, voted_for, commit_index, last_applied, last_index,
  last_term, and the snapshot the trace said it took), and every invariant of
  the registry (:data:`~.invariants.INVARIANTS`) must hold (evaluated on what
  the step changed by :class:`~.incremental.Watch`, worded by the registry).
- **Every other event's state** is checked where it happens (``_check_event``):
  the fields the event changes (:data:`EVENT_CHANGES`) must be the model's at
  that point of the step, the rest as the node's previous event logged them;
  ``receive``, ``send``, ``persist``, ``synced`` and ``timeout`` change nothing
  (:data:`UNCHANGING`).  Rules ``event state: <event>``.
- **Streaming**: :class:`Validator` takes one event at a time and holds one
  step, so any length of trace validates in bounded memory; :func:`validate`
  runs it over a sequence.
- **Messages** are paired by ``id``: a ``send`` records the model's message
  (which must equal the trace's), a ``receive`` delivers that message (a
  receive of an id never sent, or of an altered message, is a violation).
  The implementation builds a request before it records the ``send`` (a
  ``send`` may come a few steps later), so a request is checked against the
  sender's state when it was last a candidate or leader of the message's term
  if it no longer is, and against its commitIndex of any time in that term.
- **Durability** (Figure 2: "updated on stable storage before responding"): a
  ``persist`` saves the node's term, vote, log and snapshot; a crash loses the
  rest; a reply must be sent only from saved state and a request only with
  saved terms and entries; a restarted node must report the saved state.
  After a kill without a ``crash`` event (:meth:`Validator.kill`: a node of a
  cluster killed with ``kill -9``, its trace file just ends), what it reads
  back may be less than its last persist, never less than its last ``synced``
  (``_Replay.restore_killed``), and the model's server is what it read.
- **Cut traces**: a file may end in the middle of a step (the process was
  killed): ``finish(cut=True)`` / ``run_step(..., cut=True)`` let the last
  step's final state differ from the model's (its follow-ups were never
  written); the result's ``cut`` says so.  Any other departure, and any
  mismatch of an earlier step, is still a violation.
- :mod:`.cluster` merges the per-node files of a cluster into one history
  and drives a :class:`Validator` with it step by step.
- **Snapshots** (Figure 13) use the model's snapshot actions: a ``snapshot``
  is :func:`~.actions.take_snapshot`; a crash restores the saved snapshot
  (:func:`~.actions.restart`, after checking it holds only entries known
  committed); the send of an ``InstallSnapshot`` chunk must be of a snapshot
  the leader held since it started, and one :func:`~.actions.install_snapshot`
  allows.  At the follower, chunks must build one snapshot in order (Figure 13
  rules 2-5, mirrored per follower: the reply's ``received`` is checked); a
  received chunk is the whole snapshot if it completes it (``done``, and
  ``received`` >= offset + length), else a chunk that does not
  (:func:`~.actions.install_snapshot_chunk`: only its term counts); either is
  handled by
  :func:`~.actions.handle_install_snapshot`, its reply by
  :func:`~.actions.handle_install_snapshot_response`; ``apply_snapshot`` is
  :func:`~.actions.apply_snapshot`.
- **The extensions** (version 4; :mod:`.replay_extensions`): each node runs what
  its ``init`` says (Pre-Vote, CheckQuorum; transfer and ReadIndex always).  A
  ``timeout`` with ``become_pre_candidate`` is :func:`~.actions.timeout` with
  Pre-Vote; PreVote and TimeoutNow are sent, handled and answered by their
  actions (``become_candidate`` after a majority of pre-votes is
  :func:`~.actions.become_candidate`); ``quorum_lost``, ``transfer_leadership``,
  ``transfer_abandoned``, ``read_index`` and ``read_served`` are the actions of
  :mod:`.extensions`.  The model's abstract conditions are resolved by the
  trace: a lease ends (:func:`~.extensions.expire_lease`) when the node's timer
  fires, it grants a pre-vote, or it decides a vote of a higher term without
  withholding (§4.2.3: the implementation's lease had ended); a ``vote`` with
  ``withheld`` requires the model to withhold.  A follower confirms a leader's
  waiting reads (:func:`~.extensions.ack_read`) when it handles, in the leader's
  term, an AppendEntries or InstallSnapshot the leader sent after they began; a
  ``read_served`` the model's :func:`~.extensions.serve_read` does not allow is
  "a read index served without a confirming round".  A ``read_failed`` only
  follows a step-down.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from .actions import (
    _withholds_vote,
    advance_commit_index,
    append_entries_sent,
    apply,
    apply_snapshot,
    become_candidate,
    become_leader,
    client_request,
    commit_index_limit,
    drop_message,
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
    install_snapshot_sent,
    pre_vote_sent,
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
    timeout_now_sent,
    transfer_leadership,
)
from .incremental import Watch
from .invariants import INVARIANTS, Invariant, first_violation
from .replay_chunks import Assembly, SnapshotId, SnapshotSent, chunk_fields, show_id, snapshot_id
from .replay_durability import FRESH, Disk, Durable, as_synced, check_kept, durable_of, durable_part
from .replay_extensions import Reads, find, options_of
from .state import (
    CANDIDATE,
    CHECK_QUORUM,
    FOLLOWER,
    LEADER,
    MESSAGE_NAMES,
    NOBODY,
    PRE_CANDIDATE,
    ROLE_NAMES,
    AppendEntriesRequest,
    AppendEntriesResponse,
    InstallSnapshotRequest,
    InstallSnapshotResponse,
    Log,
    Message,
    PreVoteRequest,
    PreVoteResponse,
    RequestVoteRequest,
    RequestVoteResponse,
    Server,
    State,
    TimeoutNowRequest,
    TimeoutNowResponse,
    Value,
    format_message,
    initial_state,
    install_snapshot_request,
    snapshot_term,
    term_at,
)
from .trace_values import (
    Entries,
    append_entries_of,
    last_term,
    logged_state,
    logged_vote,
    pre_vote_of,
    request_vote_of,
    role_name,
    show,
    show_vote,
    timeout_now_of,
    tuple_getter,
    vote,
)

Event = Mapping[str, Any]
Progress = Callable[[int, int], None]
"""``progress(events_done, events_total)``, called every :data:`PROGRESS_EVERY` events."""

PROGRESS_EVERY = 4096

STARTERS = frozenset(
    {
        "init",
        "crash",
        "timeout",
        "receive",
        "client_request",
        "snapshot",
        "apply",
        "apply_snapshot",
        "drop",
        # version 4: the extensions' own steps (a leader's timer, API calls)
        "quorum_lost",
        "transfer_leadership",
        "transfer_abandoned",
        "read_index",
    }
)
FOLLOW_UPS = frozenset(
    {
        "term_update",
        "become_follower",
        "become_candidate",
        "become_leader",
        "vote",
        "append",
        "commit",
        "install_snapshot",
        "persist",
        "synced",
        "noop",
        # version 4
        "become_pre_candidate",
        "pre_vote",
        "timeout_now",
        "read_served",
        "read_failed",
    }
)
NOOP = "noop"
"""The digest a trace gives a leader's no-op entry (spec/TRACE.md)."""
REQUESTS = frozenset({"RequestVote", "AppendEntries", "InstallSnapshot", "PreVote", "TimeoutNow"})
REPLIES = frozenset(
    {
        "RequestVoteReply",
        "AppendEntriesReply",
        "InstallSnapshotReply",
        "PreVoteReply",
        "TimeoutNowReply",
    }
)
KNOWN_EVENTS = STARTERS | FOLLOW_UPS | {"send"}

_new = tuple.__new__

STATE_FIELDS = (
    "term",
    "role",
    "voted_for",
    "commit_index",
    "last_applied",
    "last_index",
    "last_term",
    "snapshot_index",
    "snapshot_term",
)
"""The fields of an event's ``state`` (spec/TRACE.md)."""

UNCHANGING = frozenset(
    {
        "receive",
        "send",
        "persist",
        "synced",
        "timeout",
        # version 4: each says what it decided or started, and changes no state field
        "pre_vote",
        "quorum_lost",
        "transfer_leadership",
        "transfer_abandoned",
        "timeout_now",
        "read_index",
        "read_served",
        "read_failed",
    }
)
"""Events whose logged state is the node's state before them: nothing changes at
a ``receive`` (logged before the message is handled), a ``send``, a ``persist`` or
``synced``, or a ``timeout`` (logged before ``become_candidate``).  Version 4: a
``pre_vote`` changes nothing (thesis §9.6), a ``quorum_lost`` is logged before
its ``become_follower``, a ``timeout_now`` before its ``become_candidate``, and a
transfer's or a read's events change no field of the state."""

EVENT_CHANGES: Mapping[str, tuple[str, ...]] = {
    "term_update": ("term", "role", "voted_for"),
    "become_follower": ("role",),
    "become_candidate": ("term", "role", "voted_for"),
    "become_pre_candidate": ("role",),  # thesis §9.6: term and vote unchanged
    "become_leader": ("role",),
    "vote": ("voted_for",),
    "append": ("last_index", "last_term"),
    "client_request": ("last_index", "last_term"),
    "noop": ("last_index", "last_term"),
    "commit": ("commit_index",),
    "apply": ("last_applied",),
    "apply_snapshot": ("last_applied",),
    "snapshot": ("snapshot_index", "snapshot_term"),
    "install_snapshot": (
        "commit_index",
        "last_index",
        "last_term",
        "snapshot_index",
        "snapshot_term",
    ),
    "init": STATE_FIELDS,
}
"""The state fields each other event may change (to the model's values at that
point of the step); the rest are as the node's previous event left them.  A
``crash``'s state is compared with the model's whole server when it happens."""


class Violation(NamedTuple):
    """The first event the model does not allow: where, which rule, and how."""

    seq: int
    line: int | None
    node: int
    event: str
    rule: str
    expected: str
    logged: str

    def describe(self) -> str:
        """``event SEQ at node N: RULE: expected X, logged Y``."""
        return (
            f"event {self.seq} at node {self.node}: {self.rule}: "
            f"expected {self.expected}, logged {self.logged}"
        )


class Result(NamedTuple):
    """What a validation found: the events and steps replayed, the first violation."""

    events: int
    steps: int
    violation: Violation | None
    candidates: int = 1
    """The most candidate model states held at once (always 1: see the module doc)."""
    cut: Violation | None = None
    """The trace's last step, cut short by a crash (``finish(cut=True)``): how its
    final logged state differs from the model's (not a violation: its follow-ups
    were never written)."""

    @property
    def ok(self) -> bool:
        return self.violation is None


class TraceError(ValueError):
    """An event the validator cannot read (a missing or ill-typed field)."""

    def __init__(self, seq: int, line: int | None, problem: str) -> None:
        super().__init__(f"line {line}: {problem}" if line is not None else problem)
        self.seq = seq
        self.line = line
        self.problem = problem


class _Broken(Exception):
    """A rule the current event breaks (turned into a :class:`Violation`)."""

    def __init__(self, rule: str, expected: str, logged: str) -> None:
        super().__init__(rule)
        self.rule = rule
        self.expected = expected
        self.logged = logged


# ----------------------------------------------------------------- per-event state


_EXPECTED: Mapping[str, Callable[[Server], tuple[Any, ...]]] = {
    # a higher term makes a follower that has voted for nobody yet (a vote may follow)
    "term_update": lambda s: (s.current_term, ROLE_NAMES[s.role], None),
    "become_follower": lambda s: (ROLE_NAMES[s.role],),
    "become_candidate": lambda s: (s.current_term, ROLE_NAMES[s.role], logged_vote(s)),
    "become_pre_candidate": lambda s: (ROLE_NAMES[s.role],),
    "become_leader": lambda s: (ROLE_NAMES[s.role],),
    "vote": lambda s: (logged_vote(s),),
    "append": lambda s: (len(s.log), s.log[-1].term if s.log else 0),
    "client_request": lambda s: (len(s.log), s.log[-1].term if s.log else 0),
    "noop": lambda s: (len(s.log), s.log[-1].term if s.log else 0),
    "commit": lambda s: (s.commit_index,),
    "apply": lambda s: (s.last_applied,),
    "apply_snapshot": lambda s: (s.last_applied,),
    "snapshot": lambda s: (s.snapshot_index, snapshot_term(s)),
    "install_snapshot": lambda s: (
        s.commit_index,
        len(s.log),
        last_term(s),
        s.snapshot_index,
        snapshot_term(s),
    ),
    "init": logged_state,
}
"""The model's values, at the event, of the fields :data:`EVENT_CHANGES` names."""


_EVENT_CHECKS: Mapping[
    str,
    tuple[
        Callable[[Any], tuple[Any, ...]],
        Callable[[Any], tuple[Any, ...]],
        Callable[[Server], tuple[Any, ...]],
    ],
] = {
    name: (
        tuple_getter([f for f in STATE_FIELDS if f not in changes]),
        tuple_getter(changes),
        _EXPECTED[name],
    )
    for name, changes in EVENT_CHANGES.items()
}
"""Per event of :data:`EVENT_CHANGES`: the fields it keeps, the fields it sets, and
the model's values of the latter."""

_LEGACY_EVENT_CHECKS = {
    **_EVENT_CHECKS,
    "term_update": (
        tuple_getter([f for f in STATE_FIELDS if f not in ("term", "voted_for")]),
        tuple_getter(("term", "voted_for")),
        lambda s: (s.current_term, None),
    ),
}
"""Traces of versions 1 and 2 logged ``term_update`` with the node's role before it
(``become_follower`` then set it): there it sets the term and clears the vote only."""


def _event_lie(
    rule: str, state: Mapping[str, Any], before: Mapping[str, Any] | None, changes: Sequence[str]
) -> _Broken:
    """An event's logged state changes a field it does not change: which."""
    for field in STATE_FIELDS:
        if field in changes:
            continue
        was = before.get(field) if before is not None else None
        now = state.get(field)
        if was != now:
            return _Broken(
                rule, f"{field} {show(was)} (as before the event)", f"{field} {show(now)}"
            )
    extra = sorted(set(state) ^ set(before or {}))  # fields no trace state has
    return _Broken(rule, f"the state as before the event (fields {extra})", "other fields")


# ----------------------------------------------------------------- public entry point


def validate(
    header: Mapping[str, Any],
    events: Sequence[Event],
    *,
    lines: Sequence[int] | None = None,
    progress: Progress | None = None,
    invariants: tuple[Invariant, ...] = INVARIANTS,
    mode: str = "incremental",
) -> Result:
    """Replay ``events`` (a trace's events after its ``header``) through the model.

    ``lines`` gives each event's line in its file (for the violation's
    location).  ``invariants`` are checked after every step: ``mode``
    "incremental" checks what the step changed (:class:`~.incremental.Watch`),
    "full" evaluates every invariant on the whole state (slow on long traces),
    "verify" does both and asserts they agree.  Raises :class:`TraceError` for
    an event that lacks a field the replay needs; any other departure from the
    model is the result's violation.
    """
    validator = Validator(header, invariants=invariants, mode=mode)
    total = len(events)
    feed = validator.feed
    for k, event in enumerate(events):
        if feed(event, lines[k] if lines is not None else None) is not None:
            break
        if progress is not None and k % PROGRESS_EVERY == 0 and k:
            progress(k, total)
    result = validator.finish()
    if progress is not None:
        progress(total, total)
    return result


class Validator:
    """The streaming form of :func:`validate`: ``feed`` events one by one (each is
    replayed once its step is complete), then ``finish``.  Holds one step of
    events at a time, so a trace of any length validates in bounded memory."""

    def __init__(
        self,
        header: Mapping[str, Any],
        *,
        invariants: tuple[Invariant, ...] = INVARIANTS,
        mode: str = "incremental",
    ) -> None:
        if mode not in ("incremental", "full", "verify"):
            raise ValueError(f"mode must be incremental, full or verify, not {mode!r}")
        nodes = header.get("nodes")
        if not isinstance(nodes, int) or isinstance(nodes, bool) or nodes < 1:
            raise TraceError(0, 1, f"header field 'nodes' must be a positive integer: {nodes!r}")
        self._replay = _Replay(nodes, invariants, mode)
        if header.get("version") in (1, 2):
            self._replay.event_checks = _LEGACY_EVENT_CHECKS
        self._step: list[Event] = []
        self._lines: list[int | None] = []
        self._done = 0  # events of the steps replayed so far
        self.steps = 0
        self.violation: Violation | None = None
        self.cut: Violation | None = None  # the last step, cut short (see finish)

    @property
    def events(self) -> int:
        """Events fed so far (up to the violating one, once there is a violation)."""
        return self._done + len(self._step)

    def feed(self, event: Event, line: int | None = None) -> Violation | None:
        """Take the next event; the violation, as soon as one is found (then sticky)."""
        if self.violation is not None:
            return self.violation
        step = self._step
        if step:
            try:
                node = step[0]["node"]
                same = event["node"] == node and (
                    event["msg"]["type"] in REPLIES
                    if event["event"] == "send"
                    else event["event"] in FOLLOW_UPS
                )
            except (KeyError, TypeError) as exc:
                raise _malformed(event, line, exc) from None
            if not same:
                self._run()
                if self.violation is not None:
                    return self.violation
        step.append(event)
        self._lines.append(line)
        return None

    def finish(self, *, cut: bool = False) -> Result:
        """Replay the last step; the result of the whole trace.

        ``cut``: the trace may end in the middle of a step (a file of a process
        killed with ``kill -9``): if the last step's final logged state differs
        from the model's, its follow-ups were never written, so the result's
        ``cut`` says so instead of a violation.  Any other departure still is one.
        """
        if self._step and self.violation is None:
            self._replay.cut_ok = cut
            try:
                self._run()
            finally:
                self._replay.cut_ok = False
        return Result(self.events, self.steps, self.violation, 1, self.cut)

    def run_step(
        self, events: list[Event], lines: list[int | None], *, cut: bool = False
    ) -> Violation | None:
        """Replay one whole step at once (the events of one starter and its
        follow-ups, as :meth:`feed` would group them), after any step still held;
        the violation, if any.  ``cut``: this is the last step of a trace cut short
        by a crash (see :meth:`finish`).  The lists become the validator's."""
        if self.violation is None and self._step:
            self._run()
        if self.violation is not None:
            return self.violation
        self._step, self._lines = events, lines
        self._replay.cut_ok = cut
        try:
            self._run()
        finally:
            self._replay.cut_ok = False
        return self.violation

    def kill(self, node: int) -> Violation | None:
        """Node ``node`` was killed without a ``crash`` event (``kill -9``: its trace
        file just ends).  Unlike a recorded crash, what it restarts with need not be
        its last persist: its next ``init`` may restore anything from what it made
        durable (its last ``synced``) to what it persisted since (see
        ``_Replay.restore_killed``)."""
        if self.violation is None and self._step:
            self._run()
        if self.violation is None:
            self._replay.kill(node)
        return self.violation

    def drop(self, message_id: int, *, reply: bool) -> None:
        """The message sent under ``message_id`` (its reply's, if ``reply``) is
        never received: it leaves the network (what a ``drop`` event does, without
        a step).  Call it after the step that sent it."""
        if self.violation is None and self._step:
            self._run()
        self._replay.lose(message_id, reply)

    def _run(self) -> None:
        step, lines = self._step, self._lines
        replay = self._replay
        replay.at = 0
        try:
            replay.run_step(step, 0, len(step))
            if replay.cut is not None:
                broken, replay.cut = replay.cut, None
                event = step[-1]
                self.cut = Violation(
                    event["seq"],
                    lines[-1],
                    event["node"],
                    event["event"],
                    broken.rule,
                    broken.expected,
                    broken.logged,
                )
        except _Broken as broken:
            replay.cut = None
            at = replay.at
            event = step[at]
            self.violation = Violation(
                event["seq"],
                lines[at],
                event["node"],
                event["event"],
                broken.rule,
                broken.expected,
                broken.logged,
            )
            self.steps += 1
            del step[at + 1 :]
            return
        except TraceError as exc:
            raise TraceError(exc.seq, lines[replay.at], exc.problem) from None
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            raise _malformed(step[replay.at], lines[replay.at], exc) from None
        self.steps += 1
        self._done += len(step)
        step.clear()
        lines.clear()


def _malformed(event: Any, line: int | None, exc: Exception) -> TraceError:
    seq = event.get("seq", 0) if isinstance(event, Mapping) else 0
    what = f"missing field {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
    return TraceError(seq, line, f"event {seq} is malformed: {what}")


# ----------------------------------------------------------------- conversions


# ----------------------------------------------------------------- the replay


class _Node:
    """What the replay knows of one node, besides its server in the model state."""

    __slots__ = (
        "campaign",
        "chunks",
        "disk",
        "held",
        "last_state",
        "reads",
        "reign",
        "started",
        "transferring",
        "up",
    )

    def __init__(self) -> None:
        self.started = False  # it has run (its first init is behind)
        self.up = False  # running: between an init and a crash (or kill)
        self.disk = Disk()  # what it saved, made durable, may read back
        # The snapshots it held since it last started (it may send only those),
        # index -> (size, digest) when the trace says.
        self.held: dict[int, SnapshotId | None] = {}
        self.chunks = Assembly()  # the snapshot it is receiving, chunk by chunk
        # The logged state of its last event (of its last step, between steps): what
        # an event that changes nothing must log again.
        self.last_state: Mapping[str, Any] | None = None
        self.campaign: Server | None = None  # its last self as candidate
        self.reign: Server | None = None  # its last self as leader
        # Its last self as a leader transferring leadership (a TimeoutNow built then
        # may be recorded as sent a little later: see _send_timeout_now).
        self.transferring: Server | None = None
        self.reads = Reads()  # its ReadIndex reads (replay_extensions)


class _Replay:
    """The model state and what the trace has told so far (ids, saved state)."""

    event_checks = _EVENT_CHECKS  # the per-event rules of the trace's version

    def __init__(self, nodes: int, invariants: tuple[Invariant, ...], mode: str) -> None:
        self.n = nodes
        self.state: State = initial_state(nodes)
        self.invariants = invariants
        self.watch = (
            None if mode == "full" else Watch(self.state, invariants, verify=mode == "verify")
        )
        self.fresh: list[Message] = []  # messages put in flight by the current step
        self.commit_before = 0  # the receiver's commitIndex before the current request
        # The receiver's log, snapshot and the request's prevLogIndex: what a rejection's
        # fast-backup hints must be computed from (only when there is one).
        self.hint_source: tuple[Log, int, int] = ((), 0, 0)
        self.installing_received = 0  # what the follower of the current chunk must say it holds
        # The step in which each AppendEntries and InstallSnapshot was sent (id -> step):
        # a message sent after a read began confirms it (ReadIndex, replay_extensions).
        self.sent_step: dict[int, int] = {}
        # Whether the model withheld the current RequestVote's vote (thesis §4.2.3).
        self.withheld = False
        self.at = 0  # index of the event being replayed
        self.nodes = [_Node() for _ in range(nodes)]
        self.requests: dict[int, Message] = {}  # id -> the model's request, as sent
        self.snapshots_sent: dict[int, SnapshotSent] = {}
        self.replies_sent: dict[int, Mapping[str, Any]] = {}  # id -> the reply as logged
        self.replies: dict[int, Message] = {}  # id -> the model's reply, as sent
        # Replies released after a later sync (a storage that syncs off the event
        # loop): id -> the reply the receive step computed, what its check needs,
        # and the step whose changes must be saved before it may leave.
        self.pending: dict[int, _PendingReply] = {}
        self.steps = 0  # steps replayed so far
        # The last step of a trace cut short by a crash may end before its
        # follow-ups (cut_ok): then a final state unlike the model's is kept in
        # `cut` instead of raised.
        self.cut_ok = False
        self.cut: _Broken | None = None
        self.entries = Entries()  # interned entries
        self.starters: dict[str, Callable[[Sequence[Event], int, int], str]] = {
            "init": self._init,
            "crash": self._crash,
            "timeout": self._timeout,
            "receive": self._receive,
            "client_request": self._client_request,
            "snapshot": self._snapshot,
            "apply": self._apply,
            "apply_snapshot": self._apply_snapshot,
            "drop": self._drop,
            "quorum_lost": self._quorum_lost,
            "transfer_leadership": self._transfer_leadership,
            "transfer_abandoned": self._transfer_abandoned,
            "read_index": self._read_index,
            "send": self._send,
            "persist": self._lone,
            "synced": self._lone,
        }

    # ------------------------------------------------------------ steps

    def run_step(self, events: Sequence[Event], start: int, end: int) -> None:
        """Replay events[start:end] (one step), then check the state and invariants."""
        first = events[start]
        name = first["event"]
        node = first["node"]
        handler = self.starters.get(name)
        if handler is None:
            if name in KNOWN_EVENTS:
                raise _Broken(
                    "Trace order",
                    "a starter (receive, timeout, ...) before it in the same step",
                    f"{name} on its own",
                )
            raise TraceError(first["seq"], None, f"unknown event {name!r}")
        if node < 0 and name != "drop":
            raise TraceError(first["seq"], None, f"{name} at node {node}: only drops are")
        if node >= 0:
            if node >= self.n:
                raise TraceError(first["seq"], None, f"node {node} is not one of {self.n}")
            if name != "init" and not self.nodes[node].up:
                raise _Broken("Crash", "no event at a node that is down", name)
        before = self.state
        self.fresh.clear()
        self.steps += 1
        rule = handler(events, start, end)
        self.at = end - 1
        if node >= 0 and durable_part(before.servers[node]) != durable_part(
            self.state.servers[node]
        ):
            self.nodes[node].disk.changed_at = self.steps
        if node >= 0 and name != "crash":
            last = events[end - 1]
            try:
                self._compare(node, last["state"], rule)
            except _Broken as broken:
                if not self.cut_ok or name == "init":  # (an init is whole, or torn away)
                    raise
                # Cut short by a crash: its follow-ups are missing, but the events
                # that were written must still be true, the last one included.
                prior = events[end - 2]["state"] if end - start > 1 else self.nodes[node].last_state
                self._check_event(last, prior)
                self.cut = broken
            self.nodes[node].last_state = last["state"]
            s = self.state.servers[node]
            if s.role == LEADER:
                self.nodes[node].reign = s
                if s.ext.transfer_to != NOBODY:
                    self.nodes[node].transferring = s
            elif s.role == CANDIDATE:
                self.nodes[node].campaign = s
        self._check_invariants(before)

    def _follow_ups(
        self, events: Sequence[Event], start: int, end: int, reply: Message | None = None
    ) -> None:
        """Check (or take) the follow-up events of a step against the model, and the
        logged state of every event but the last (compared whole after the step)."""
        last = end - 1
        if start < last:
            self.at = start
            starter = events[start]
            before = self.nodes[starter["node"]].last_state
            if starter["event"] not in UNCHANGING or starter["state"] != before:
                self._check_event(starter, before)
        for k in range(start + 1, end):
            self.at = k
            e = events[k]
            name = e["event"]
            i = e["node"]
            if name == "persist":
                self._save(i, staged=bool(e.get("staged")))
            elif name == "synced":
                self._synced(i)
            elif name == "send":
                if e["id"] in self.pending:
                    self._send_deferred_reply(e)  # released after a later sync
                else:
                    self._send_reply(e, reply)
            elif name == "commit":
                self._commit(i, e["index"])
            elif name == "become_leader":
                self._become_leader(i)
            elif name == "noop":
                self._noop(events, k)
            else:
                self._check_follow_up(e, i, name, reply)
            if k < last:
                before = events[k - 1]["state"]
                if name not in UNCHANGING or e["state"] != before:  # (the common case inline)
                    self._check_event(e, before)

    def _check_event(self, e: Event, before: Mapping[str, Any] | None) -> None:
        """The state an event logs, at that point of its step: an event of
        :data:`UNCHANGING` logs ``before`` (its node's previous event's state)
        again; any other sets the fields :data:`EVENT_CHANGES` names to the
        model's values (the model has taken the event's action) and keeps the
        rest as ``before``.  Only those fields are compared: no dict is built."""
        name = e["event"]
        state = e["state"]
        if name in UNCHANGING:
            if state != before:
                raise _event_lie(f"event state: {name} changes nothing", state, before, ())
            return
        check = self.event_checks.get(name)
        if check is None:
            return  # a crash: its state is compared with the model's as it happens
        kept, changed, expected = check
        if kept(state) != kept(before):
            raise _event_lie(f"event state: {name}", state, before, EVENT_CHANGES[name])
        model = expected(self.state.servers[e["node"]])
        logged = changed(state)
        if logged != model:
            field, want, got = next(
                (f, w, g)
                for f, w, g in zip(EVENT_CHANGES[name], model, logged, strict=True)
                if w != g
            )
            raise _Broken(f"event state: {name}", f"{field} {show(want)}", f"{field} {show(got)}")

    def _check_follow_up(self, e: Event, i: int, name: str, reply: Message | None) -> None:
        s = self.state.servers[i]
        if name == "term_update":
            if s.current_term != e["new_term"]:
                raise _Broken(
                    "All Servers: a higher term makes a follower",
                    f"term {s.current_term}",
                    f"new_term {e['new_term']}",
                )
        elif name == "become_follower":
            if s.role != FOLLOWER:
                raise _Broken("Become follower", f"a {role_name(s)}", "become_follower")
        elif name == "become_candidate":
            self._become_candidate(i, s)
        elif name == "become_pre_candidate":
            if s.role != PRE_CANDIDATE:
                raise _Broken(
                    "Timeout: become pre-candidate (thesis §9.6)",
                    f"a {role_name(s)}",
                    "become_pre_candidate",
                )
        elif name == "vote":
            self._check_vote(e, reply)
        elif name == "pre_vote":
            self._check_pre_vote(e, reply)
        elif name == "timeout_now":
            if not (
                isinstance(reply, TimeoutNowResponse)
                and s.role == CANDIDATE
                and s.ext.campaign
                and s.current_term == reply.term + 1
            ):
                raise _Broken(
                    "TimeoutNow receiver (thesis §3.10)",
                    "an election started by a TimeoutNow of its term",
                    f"timeout_now at a {role_name(s)}",
                )
        elif name == "read_served":
            self._read_served(e, i)
        elif name == "read_failed":
            self._read_failed(e, i, s)
        elif name == "append":
            if e["index"] <= self.commit_before:
                raise _Broken(
                    "AppendEntries receiver rule 3",
                    f"no entry up to commitIndex {self.commit_before} deleted or overwritten",
                    f"append of {e['count']} entries from index {e['index']} "
                    "(a committed entry overwritten)",
                )
            last = e["index"] + e["count"] - 1
            if last != len(s.log):
                raise _Broken(
                    "AppendEntries receiver rules 3-4",
                    f"log ending at {len(s.log)}",
                    f"append of {e['count']} entries from {e['index']}",
                )
        elif name == "install_snapshot":
            self._check_install(i, e)
        else:
            raise _Broken("Trace order", "a follow-up of the step", name)

    # ------------------------------------------------------------ state checks

    def _compare(self, i: int, logged: Mapping[str, Any], rule: str) -> None:
        """The node's logged state after the step against the model's server."""
        s = self.state.servers[i]
        log = s.log
        if logged["term"] != s.current_term:
            raise _Broken(rule, f"term {s.current_term}", f"term {logged['term']}")
        if logged["role"] != ROLE_NAMES[s.role]:
            raise _Broken(rule, f"role {role_name(s)}", f"role {logged['role']}")
        if vote(logged["voted_for"]) != s.voted_for:
            raise _Broken(
                rule, f"voted_for {show_vote(s.voted_for)}", f"voted_for {logged['voted_for']}"
            )
        if logged["commit_index"] != s.commit_index:
            raise _Broken(
                rule, f"commit_index {s.commit_index}", f"commit_index {logged['commit_index']}"
            )
        if logged["last_applied"] != s.last_applied:
            raise _Broken(
                rule, f"last_applied {s.last_applied}", f"last_applied {logged['last_applied']}"
            )
        if logged["last_index"] != len(log):
            raise _Broken(rule, f"last_index {len(log)}", f"last_index {logged['last_index']}")
        last_term = log[-1].term if log else 0
        if logged["last_term"] != last_term:
            raise _Broken(rule, f"last_term {last_term}", f"last_term {logged['last_term']}")
        index = s.snapshot_index
        term = snapshot_term(s)
        if logged["snapshot_index"] != index or logged["snapshot_term"] != term:
            raise _Broken(
                "Snapshot",
                f"snapshot {index}/t{term}",
                f"snapshot {logged['snapshot_index']}/t{logged['snapshot_term']}",
            )

    def _check_invariants(self, before: State) -> None:
        """Every invariant of the registry holds after the step."""
        state = self.state
        if state is before:
            return
        if self.watch is None:
            found = first_violation(state, self.invariants)
        else:
            found = self.watch.check(before, state, self.fresh)
        if found is not None:
            name, problem = found
            summary = next(inv.summary for inv in self.invariants if inv.name == name)
            raise _Broken(name, summary, problem)

    # ------------------------------------------------------------ lifecycle

    def _init(self, events: Sequence[Event], start: int, end: int) -> str:
        """A node starts: fresh at the beginning, else Restart from what it saved."""
        e = events[start]
        i = e["node"]
        if self.nodes[i].up:
            self._lose_unsaved(i)  # started again without a crash event: a crash
        restored = bool(e["restored"])
        self.nodes[i].reads.reset()  # a new incarnation numbers its reads from 1
        killed = self.nodes[i].disk.killed
        if killed is not None:
            self.restore_killed(i, e, restored, killed)
            self._set_options(i, e)
            self.nodes[i].up = True
            self._follow_ups(events, start, end)
            return "Restart"
        saved = self.nodes[i].disk.saved
        if not self.nodes[i].started:
            self.nodes[i].started = True
            if restored:
                raise _Broken("Restart", "a fresh first start", "a restored state")
        elif not restored and saved != FRESH:
            raise _Broken(
                "Restart: persistent state",
                f"the saved state (term {saved.term}, log of {len(saved.log)})",
                "a fresh start",
            )
        self._check_restored_log(i, e["log"], saved)
        self._set_options(i, e)
        self.nodes[i].up = True
        self._follow_ups(events, start, end)
        return "Restart"

    def _set_options(self, i: int, e: Event) -> None:
        """The extensions node ``i`` runs from this start on, as its ``init`` says
        (volatile configuration: a restart reads them again)."""
        s = self.state.servers[i]
        options = options_of(e)
        if s.ext.options != options:
            self.state = self._with(i, s._replace(ext=s.ext._replace(options=options)))

    def _check_restored_log(self, i: int, logged: Sequence[Any], saved: Durable) -> None:
        """The log a restarted node reports is the one it saved (after its snapshot)."""
        first = saved.snapshot_index
        entries = saved.log[first:]
        for k in range(max(len(entries), len(logged))):
            mine = f"t{entries[k].term}={entries[k].value!r}" if k < len(entries) else "none"
            theirs = f"t{logged[k][0]}={logged[k][1]!r}" if k < len(logged) else "none"
            if mine != theirs:
                index = first + k + 1
                raise _Broken(
                    "Restart: persistent state",
                    f"the saved log: {len(saved.log)} entries, entry {index} {mine}",
                    f"{first + len(logged)} entries, entry {index} {theirs}",
                )

    def _crash(self, events: Sequence[Event], start: int, end: int) -> str:
        """A node is killed: what it did not save is lost (Restart happens here)."""
        e = events[start]
        i = e["node"]
        self._compare(i, e["state"], "Crash")
        self._lose_unsaved(i)
        self.nodes[i].up = False
        self._follow_ups(events, start, end)
        return "Crash"

    def _forget_pending(self, i: int) -> None:
        """A crashed node never sends the replies it had not sent."""
        for message_id in [k for k, p in self.pending.items() if p.reply.source == i]:
            del self.pending[message_id]

    def _lose_unsaved(self, i: int) -> None:
        """Restart: only what the node saved survives, and its state machine is
        restored from its saved snapshot (which must hold only committed entries)."""
        self._forget_pending(i)
        self._restart_from(i, self.nodes[i].disk.saved, self.nodes[i].disk.saved_snapshot)

    def _restart_from(self, i: int, saved: Durable, snapshot: SnapshotId | None) -> None:
        """Restart server ``i`` with ``saved`` as its persistent state (what it
        reads back from storage) and ``snapshot`` the bytes of its snapshot."""
        node = self.nodes[i]
        node.disk.restart_from(saved, snapshot)
        s = self.state.servers[i]
        durable = (saved.term, saved.voted_for, saved.log, saved.snapshot_index)
        if (s.current_term, s.voted_for, s.log, s.snapshot_index) != durable:
            s = s._replace(
                current_term=saved.term,
                voted_for=saved.voted_for,
                log=saved.log,
                snapshot_index=saved.snapshot_index,
            )
            self.state = self._with(i, s)
        if saved.snapshot_index:
            known = self._known_committed()
            for k, entry in enumerate(saved.log[: saved.snapshot_index], 1):
                if (k, entry.term, entry.value) not in known:
                    raise _Broken(
                        "Restart: snapshot",
                        "a snapshot of entries known committed",
                        f"snapshot up to {saved.snapshot_index} holding uncommitted entry {k}",
                    )
        t = restart(self.state, i)
        assert t is not None  # restart is always enabled
        self.state = t
        index = saved.snapshot_index
        node.held = {index: snapshot} if index else {}
        node.chunks.reset()

    def _known_committed(self) -> set[tuple[int, int, Value]]:
        """(index, term, value) of every entry known committed."""
        return {record[:3] for record in self.state.committed}

    def kill(self, i: int) -> None:
        """Node ``i`` died without a crash event (kill -9): what it did not make
        durable may be lost, so which state it restarts from is decided by its next
        ``init`` (:meth:`restore_killed`).  Until then it takes no step."""
        node = self.nodes[i]
        if not node.up:
            return  # it crashed already (a crash event): restarts as it saved
        self._forget_pending(i)
        node.disk.kill(durable_of(self.state.servers[i]))
        node.up = False

    def restore_killed(self, i: int, e: Event, restored: bool, candidates: list[Durable]) -> None:
        """Restart after a kill -9: the node reads back what its disk holds, which
        may be less than its last persist (a staged write lost, or torn) but never
        less than its last sync.  Its ``init`` says what it read; that must be:

        - term and vote: as synced, or as one persisted later (one hard-state
          record; a term of its own is never lost once synced);
        - snapshot: as synced, or one persisted later (same index and term);
        - log: at each index, the entry (or no entry) of its synced log or of a
          log it persisted later: a synced entry goes only if a later persist
          had dropped it (a truncation), and every entry of its synced log the
          cluster knows committed is kept.

        The model's server is then what it read (Restart from there)."""
        self.nodes[i].disk.killed = None
        synced = candidates[0]
        later = candidates[1:]
        if restored:
            state = e["state"]
            term, voted = state["term"], vote(state["voted_for"])
            index, s_term = state["snapshot_index"], state["snapshot_term"]
            entries: Sequence[Any] = e["log"]
        else:  # its disk held nothing at all
            term, voted, index, s_term, entries = 0, NOBODY, 0, 0, ()
        if all((c.term, c.voted_for) != (term, voted) for c in candidates):
            raise _Broken(
                "Restart: persistent state",
                as_synced(
                    f"term {synced.term} vote {show_vote(synced.voted_for)}",
                    (f"term {c.term} vote {show_vote(c.voted_for)}" for c in later),
                ),
                f"term {term} vote {show_vote(voted)}",
            )
        source = next(
            (c for c in candidates if (c.snapshot_index, c.snapshot_term) == (index, s_term)),
            None,
        )
        if source is None:
            raise _Broken(
                "Restart: persistent state",
                as_synced(
                    f"snapshot {synced.snapshot_index}/t{synced.snapshot_term}",
                    (f"snapshot {c.snapshot_index}/t{c.snapshot_term}" for c in later),
                ),
                f"snapshot {index}/t{s_term}",
            )
        log = source.log[:index] + self.entries.log(entries)
        self._check_kept(log, candidates)
        snapshot = self.nodes[i].held.get(index) if index else None
        self._restart_from(i, Durable(term, voted, log, index, s_term), snapshot)

    def _check_kept(self, log: Log, candidates: list[Durable]) -> None:
        """A log read back after a kill -9 against what the node synced and
        persisted since (see :meth:`restore_killed` and ``replay_durability.check_kept``)."""
        found = check_kept(log, candidates, self.state.committed)
        if found is not None:
            raise _Broken("Restart: persistent state", *found)

    def lose(self, message_id: int, reply: bool) -> None:
        """The message sent under ``message_id`` is never received: it leaves the bag."""
        m = (self.replies if reply else self.requests).get(message_id)
        if m is not None:
            t = drop_message(self.state, m)
            if t is not None:
                self.state = t

    def _save(self, i: int, *, staged: bool) -> None:
        """A persist: what a crash keeps (a killed peer completes a staged write);
        durable at once unless staged."""
        s = self.state.servers[i]
        node = self.nodes[i]
        node.disk.save(
            durable_of(s), node.held.get(s.snapshot_index), staged=staged, step=self.steps
        )

    def _synced(self, i: int) -> None:
        """What the node saved is durable: messages that depend on it may leave."""
        self.nodes[i].disk.sync(self.steps)

    def _lone(self, events: Sequence[Event], start: int, end: int) -> str:
        e = events[start]
        if e["event"] == "synced":
            self._synced(e["node"])
        else:
            self._save(e["node"], staged=bool(e.get("staged")))
        self._follow_ups(events, start, end)
        return "Persist"

    # ------------------------------------------------------------ elections

    def _timeout(self, events: Sequence[Event], start: int, end: int) -> str:
        """Followers/Candidates: the election timeout elapses: start an election."""
        i = events[start]["node"]
        # §4.2.3: the timer's first part is the lease; it fired, so the lease is over.
        self._lease_over(i)
        t = timeout(self.state, i)
        if t is None:
            raise _Broken("Timeout", "a follower or candidate", "a leader's election timeout")
        self.state = t
        self._follow_ups(events, start, end)
        return "Timeout"

    def _lease_over(self, i: int) -> None:
        """The implementation shows server ``i`` is no longer in its lease (its timer
        fired, it granted a pre-vote, it decided a vote of a higher term on its
        merits): the model's lease may have ended any time before (expire_lease)."""
        t = expire_lease(self.state, i)
        if t is not None and self.state.servers[i].role != LEADER:
            self.state = t

    def _become_candidate(self, i: int, s: Server) -> None:
        """A candidate now: by its timeout or a TimeoutNow (the model took it already),
        or a pre-candidate that a majority would vote for (thesis §9.6)."""
        if s.role == CANDIDATE:
            return
        if s.role != PRE_CANDIDATE:
            raise _Broken("Timeout: become candidate", f"a {role_name(s)}", "become_candidate")
        t = become_candidate(self.state, i)
        if t is None:
            votes = [k for k in range(self.n) if s.votes_granted >> k & 1]
            raise _Broken(
                "Pre-Vote (thesis §9.6): an election only after a majority of pre-votes",
                f"pre-votes from a majority ({self.n // 2 + 1} of {self.n})",
                f"become_candidate with pre-votes from {votes}",
            )
        self.state = t

    def _become_leader(self, i: int) -> None:
        t = become_leader(self.state, i)
        if t is None:
            s = self.state.servers[i]
            if s.role != CANDIDATE:
                raise _Broken("BecomeLeader", "a candidate", f"a {role_name(s)} becoming leader")
            votes = [k for k in range(self.n) if s.votes_granted >> k & 1]
            needed = f"votes from a majority ({self.n // 2 + 1} of {self.n})"
            term = s.current_term
            rivals = [k for k, o in enumerate(self.state.servers) if term in o.led_terms]
            if rivals:
                raise _Broken(
                    "ElectionSafety",
                    f"one leader per term: server {rivals[0]} leads term {term}, and "
                    f"server {i} lacks {needed}",
                    f"server {i} becomes a second leader of term {term} with votes from {votes}",
                )
            raise _Broken("BecomeLeader", needed, f"votes from {votes} in term {term}")
        self.state = t

    def _check_vote(self, e: Event, reply: Message | None) -> None:
        if not isinstance(reply, RequestVoteResponse):
            raise _Broken("Trace order", "a vote only while handling a RequestVote", "vote")
        if bool(e.get("withheld")) != self.withheld:
            voter = self.state.servers[reply.source]
            if self.withheld:
                raise _Broken(
                    "Vote withholding (thesis §4.2.3)",
                    f"the vote withheld: server {reply.source} leads term {voter.current_term}",
                    f"vote {'granted' if e['granted'] else 'refused'}, not withheld",
                )
            raise _Broken(
                "Vote withholding (thesis §4.2.3)",
                "a vote withheld only by a leader, or a follower that heard its leader "
                "in its term (in its lease), and never from a transfer's election",
                f"vote withheld by a {role_name(voter)} of term {voter.current_term} "
                "without a lease",
            )
        if e["candidate"] != reply.dest or bool(e["granted"]) != reply.vote_granted:
            voter = self.state.servers[reply.source]
            why = ""
            if not reply.vote_granted and voter.voted_for not in (NOBODY, reply.dest):
                why = f" (it voted for {voter.voted_for} in term {voter.current_term})"
            raise _Broken(
                "RequestVote receiver",
                f"vote {'granted' if reply.vote_granted else 'refused'} to {reply.dest}{why}",
                f"vote {'granted' if e['granted'] else 'refused'} to {e['candidate']}",
            )

    def _check_pre_vote(self, e: Event, reply: Message | None) -> None:
        if not isinstance(reply, PreVoteResponse):
            raise _Broken("Trace order", "a pre_vote only while handling a PreVote", "pre_vote")
        if e["candidate"] != reply.dest or bool(e["granted"]) != reply.vote_granted:
            raise _Broken(
                "PreVote receiver (thesis §9.6, §4.2.3)",
                f"pre-vote {'granted' if reply.vote_granted else 'refused'} to {reply.dest}",
                f"pre-vote {'granted' if e['granted'] else 'refused'} to {e['candidate']}",
            )

    # ------------------------------------------------------------ CheckQuorum, transfer

    def _quorum_lost(self, events: Sequence[Event], start: int, end: int) -> str:
        """CheckQuorum (thesis §6.2): a leader that heard from no majority within an
        election timeout steps down in its term (check_quorum: at any moment)."""
        i = events[start]["node"]
        s = self.state.servers[i]
        t = check_quorum(self.state, i)
        if t is None:
            runs = "runs CheckQuorum" if s.ext.options & CHECK_QUORUM else "without CheckQuorum"
            raise _Broken(
                "CheckQuorum (thesis §6.2)", "a leader running it", f"a {role_name(s)} {runs}"
            )
        self.state = t
        self._follow_ups(events, start, end)
        return "CheckQuorum"

    def _transfer_leadership(self, events: Sequence[Event], start: int, end: int) -> str:
        """Leadership transfer (thesis §3.10): a leader starts handing over to a target.
        A new transfer while one is under way re-targets it (the model's own rule); a
        second one to the same target starts it again (the old one abandoned)."""
        e = events[start]
        i = e["node"]
        s = self.state.servers[i]
        if s.role == LEADER and s.ext.transfer_to == e["target"]:
            t = abandon_transfer(self.state, i)
            assert t is not None
            self.state = t
        t = transfer_leadership(self.state, i, e["target"])
        if t is None:
            raise _Broken(
                "Leadership transfer (thesis §3.10)",
                "a leader handing over to another server",
                f"a {role_name(s)} transferring to {e['target']}",
            )
        self.state = t
        self._follow_ups(events, start, end)
        return "Leadership transfer"

    def _transfer_abandoned(self, events: Sequence[Event], start: int, end: int) -> str:
        """Thesis §3.10: no election ended the transfer within an election timeout."""
        e = events[start]
        i = e["node"]
        s = self.state.servers[i]
        if s.role != LEADER or s.ext.transfer_to != e["target"]:
            under_way = (
                f"a transfer to {s.ext.transfer_to}" if s.ext.transfer_to != NOBODY else "none"
            )
            raise _Broken(
                "Leadership transfer (thesis §3.10)",
                f"a leader's transfer under way to {e['target']}",
                f"abandoned by a {role_name(s)} (transfer under way: {under_way})",
            )
        t = abandon_transfer(self.state, i)
        assert t is not None
        self.state = t
        self._follow_ups(events, start, end)
        return "Leadership transfer abandoned"

    # ------------------------------------------------------------ ReadIndex

    def _read_index(self, events: Sequence[Event], start: int, end: int) -> str:
        """ReadIndex (thesis §6.4): a leader takes a read; the messages it sends from
        the next step on confirm it."""
        e = events[start]
        i = e["node"]
        s = self.state.servers[i]
        t = read_index(self.state, i)
        if t is None:
            raise _Broken("ReadIndex (thesis §6.4)", "a leader taking a read", f"a {role_name(s)}")
        reads = self.nodes[i].reads
        reads.sync(len(s.ext.reads))
        problem = reads.begin(e["read"], self.steps)
        if problem is not None:
            raise _Broken("ReadIndex", "a new read", problem)
        self.state = t
        self._follow_ups(events, start, end)
        return "ReadIndex"

    def _confirm_reads(
        self, message_id: int, m: AppendEntriesRequest | InstallSnapshotRequest
    ) -> None:
        """Follower ``m.dest`` handled, in the leader's term, a message the leader sent
        after some of its waiting reads began: it confirms those (ack_read)."""
        i, j = m.source, m.dest
        leader = self.state.servers[i]
        if leader.role != LEADER or not leader.ext.reads or leader.current_term != m.term:
            return
        sent = self.sent_step.get(message_id)
        if sent is None:
            return
        reads = self.nodes[i].reads
        reads.sync(len(leader.ext.reads))
        count = reads.before(sent)
        if count:
            t = ack_read(self.state, i, j, count)
            if t is not None:
                self.state = t

    def _read_served(self, e: Event, i: int) -> None:
        """Thesis §6.4: the oldest waiting read is served at commitIndex, once an entry of
        the leader's term is committed and a majority confirmed it still led after the
        read began (serve_read)."""
        s = self.state.servers[i]
        reads = self.nodes[i].reads
        reads.sync(len(s.ext.reads) if s.role == LEADER else 0)
        oldest = reads.oldest()
        if oldest != e["read"]:
            waiting = f"read {oldest} waiting first" if oldest is not None else "no read waiting"
            raise _Broken("ReadIndex", waiting, f"read {e['read']} served")
        t = serve_read(self.state, i, count=1)
        if t is None:
            read = s.ext.reads[0]
            acks = [k for k in range(self.n) if read.acks >> k & 1]
            commit = s.commit_index
            if not commit or s.log[commit - 1].term != s.current_term:
                why = f"no entry of its term {s.current_term} committed (commitIndex {commit})"
            else:
                why = f"confirmed by {acks} only"
            raise _Broken(
                "ReadIndex (thesis §6.4): a read index served without a confirming round",
                "an entry of the leader's term committed, and a majority that answered a "
                "message sent after the read began",
                f"read {e['read']} served with {why}",
            )
        if e["index"] != s.commit_index:
            raise _Broken(
                "ReadIndex (thesis §6.4)",
                f"the read served at commitIndex {s.commit_index}",
                f"index {e['index']}",
            )
        self.state = t
        reads.served()

    def _read_failed(self, e: Event, i: int, s: Server) -> None:
        """A waiting read fails when its leader steps down (the model drops its reads)."""
        if s.role == LEADER:
            raise _Broken(
                "ReadIndex (thesis §6.4)",
                "a read fails only when its leader steps down",
                f"read {e['read']} failed at a leader of term {s.current_term}",
            )
        if not self.nodes[i].reads.failed(e["read"]):
            raise _Broken("ReadIndex", "a read that was waiting", f"read {e['read']} failed")

    # ------------------------------------------------------------ client, commit, apply

    def _client_request(self, events: Sequence[Event], start: int, end: int) -> str:
        """Leaders: a command from a client is appended to the local log."""
        e = events[start]
        if e["digest"] == NOOP:
            raise _Broken("NoOp", "a no-op only from a leader just elected", "a client's no-op")
        self._append_command(e, e["digest"], "ClientRequest")
        self._follow_ups(events, start, end)
        return "ClientRequest"

    def _noop(self, events: Sequence[Event], k: int) -> None:
        """Raft §8: a leader just elected appends a no-op entry of its term at once
        (the model's ClientRequest with the no-op's value)."""
        e = events[k]
        before = events[k - 1]
        if before["event"] != "become_leader" or before["node"] != e["node"]:
            raise _Broken(
                "NoOp", "a no-op right after become_leader", f"a no-op after {before['event']}"
            )
        self._append_command(e, NOOP, "NoOp")

    def _append_command(self, e: Event, value: str, rule: str) -> None:
        i = e["node"]
        s = self.state.servers[i]
        t = client_request(self.state, i, value)
        if t is None:
            if s.role == LEADER:
                raise _Broken(
                    "Leadership transfer (thesis §3.10)",
                    "no client request while a transfer is under way",
                    f"a command appended while transferring to {s.ext.transfer_to}",
                )
            raise _Broken(rule, "a leader", f"a {role_name(s)} appending a command")
        if e["index"] != len(s.log) + 1 or e["term"] != s.current_term:
            raise _Broken(
                rule,
                f"entry {len(s.log) + 1} of term {s.current_term}",
                f"entry {e['index']} of term {e['term']}",
            )
        self.state = t

    def _commit(self, i: int, index: int) -> None:
        """Leaders: AdvanceCommitIndex; others: commitIndex from AppendEntries rule 5."""
        s = self.state.servers[i]
        if s.role != LEADER:
            if s.commit_index != index:
                raise _Broken(
                    "AppendEntries receiver rule 5",
                    f"commit_index {s.commit_index}",
                    f"commit of index {index}",
                )
            return
        t = advance_commit_index(self.state, i, index)
        if t is None:
            limit = commit_index_limit(self.state, i)
            raise _Broken(
                "AdvanceCommitIndex",
                f"commitIndex {s.commit_index} < N <= {limit} (replicated on a majority) "
                f"with log[N].term == {s.current_term}",
                f"commit of index {index}",
            )
        # A leader's own copy counts only once durable (it may send entries it is
        # still writing, thesis §10.2.1): a majority of durable copies holds N.
        synced = self.nodes[i].disk.synced.log
        own = len(synced) >= index and synced[index - 1] == s.log[index - 1]
        others = sum(1 for j in range(self.n) if j != i and s.match_index[j] >= index)
        if 2 * (others + own) <= self.n:
            raise _Broken(
                "AdvanceCommitIndex: durable copies",
                f"entry {index} durable on a majority (the leader's own copy "
                f"{'is' if own else 'is not yet'} durable, {others} followers hold it)",
                f"commit of index {index}",
            )
        self.state = t

    def _apply(self, events: Sequence[Event], start: int, end: int) -> str:
        """All Servers: if commitIndex > lastApplied, apply log[lastApplied + 1]."""
        e = events[start]
        i = e["node"]
        s = self.state.servers[i]
        index = s.last_applied + 1
        if e["index"] != index:
            raise _Broken(
                "Apply", f"index {index} (lastApplied + 1)", f"apply of index {e['index']}"
            )
        if index > s.commit_index:
            raise _Broken(
                "Apply", f"an index <= commitIndex {s.commit_index}", f"apply of index {index}"
            )
        entry = s.log[index - 1]
        if e["term"] != entry.term or e["digest"] != entry.value:
            raise _Broken(
                "Apply",
                f"entry {index}:t{entry.term}={entry.value!r}",
                f"entry {index}:t{e['term']}={e['digest']!r}",
            )
        t = apply(self.state, i)
        assert t is not None
        self.state = t
        self._follow_ups(events, start, end)
        return "Apply"

    # ------------------------------------------------------------ snapshots

    def _snapshot(self, events: Sequence[Event], start: int, end: int) -> str:
        """The service compacted the log up to an index it applied (take_snapshot)."""
        e = events[start]
        i = e["node"]
        index = e["index"]
        s = self.state.servers[i]
        t = take_snapshot(self.state, i, index)
        if t is None:
            raise _Broken(
                "Snapshot",
                f"an index in {s.snapshot_index + 1}..lastApplied {s.last_applied}",
                f"snapshot at {index}",
            )
        self.state = t
        self.nodes[i].held[index] = snapshot_id(e)
        self._follow_ups(events, start, end)
        return "Snapshot"

    def _check_install(self, i: int, e: Event) -> None:
        """InstallSnapshot receiver: the model installed the same snapshot (rules 6-7:
        its entries are the log's prefix; commitIndex and snapshot_index are its),
        and its bytes are the leader's (rule 8 resets the state machine to them)."""
        index, term = e["index"], e["snapshot_term"]
        s = self.state.servers[i]
        if (s.snapshot_index, s.commit_index) != (index, index) or term_at(s.log, index) != term:
            raise _Broken(
                "InstallSnapshot receiver",
                f"snapshot {s.snapshot_index}/t{term_at(s.log, s.snapshot_index)}, "
                f"commitIndex {s.commit_index}",
                f"install_snapshot {index}/t{term}",
            )
        installed = snapshot_id(e)
        source = self.nodes[i].chunks.installing
        if source is not None and source[1] == index:
            sent = self.nodes[source[0]].held.get(index)
            if sent is not None and installed is not None and sent != installed:
                raise _Broken(
                    "InstallSnapshot receiver",
                    f"leader {source[0]}'s snapshot {index}: {show_id(sent)}",
                    f"installed {show_id(installed)}",
                )
        self.nodes[i].held[index] = installed

    def _apply_snapshot(self, events: Sequence[Event], start: int, end: int) -> str:
        """Figure 13 rule 8: the state machine is reset to an installed snapshot."""
        e = events[start]
        i = e["node"]
        index = e["index"]
        s = self.state.servers[i]
        if index != s.snapshot_index:
            raise _Broken(
                "Apply snapshot", f"the snapshot it holds ({s.snapshot_index})", f"index {index}"
            )
        if term_at(s.log, index) != e["snapshot_term"]:
            raise _Broken(
                "Apply snapshot",
                f"term {term_at(s.log, index)} at {index}",
                f"snapshot_term {e['snapshot_term']}",
            )
        held = self.nodes[i].held.get(index)
        delivered = snapshot_id(e)
        if held is not None and delivered is not None and held != delivered:
            raise _Broken("Apply snapshot", show_id(held), show_id(delivered))
        t = apply_snapshot(self.state, i, index)
        if t is None:
            raise _Broken(
                "Apply snapshot",
                f"lastApplied {s.last_applied} < index <= commitIndex {s.commit_index}",
                f"apply_snapshot of {index}",
            )
        self.state = t
        self._follow_ups(events, start, end)
        return "Apply snapshot"

    # ------------------------------------------------------------ the network

    def _drop(self, events: Sequence[Event], start: int, end: int) -> str:
        """The network lost a message: remove it from the bag if it is there."""
        e = events[start]
        known = self.requests if e["leg"] == "request" else self.replies
        m = known.get(e["id"])
        if m is not None:
            t = drop_message(self.state, m)
            if t is not None:
                self.state = t
        return "Drop"

    def _with(self, i: int, server: Server) -> State:
        state = self.state
        servers = list(state.servers)
        servers[i] = server
        return state._replace(servers=tuple(servers))

    def _in_bag(self, m: Message) -> None:
        """Make sure ``m`` is in flight: a second delivery of a message is a duplicate
        the network made while it was in flight (the model allows it)."""
        state = self.state
        if m not in state.network:
            self.fresh.append(m)
            bag = sorted((*state.network, m))
            self.state = state._replace(network=tuple(bag))

    def _send(self, events: Sequence[Event], start: int, end: int) -> str:
        e = events[start]
        msg = e["msg"]
        i = e["node"]
        if msg["from"] != i:
            raise _Broken("Send", f"a message from {i}", f"a message from {msg['from']}")
        kind = msg["type"]
        if kind == "AppendEntries":
            self._send_append_entries(e["id"], i, msg)
            self.sent_step[e["id"]] = self.steps
            rule = "Leaders: AppendEntries"
        elif kind == "RequestVote":
            self._send_request_vote(e["id"], i, msg)
            rule = "Candidates: RequestVote"
        elif kind == "InstallSnapshot":
            self._send_install_snapshot(e["id"], i, msg)
            self.sent_step[e["id"]] = self.steps
            rule = "Leaders: InstallSnapshot"
        elif kind == "PreVote":
            self._send_pre_vote(e["id"], i, msg)
            rule = "Pre-candidates: PreVote (thesis §9.6)"
        elif kind == "TimeoutNow":
            self._send_timeout_now(e["id"], i, msg)
            rule = "Leadership transfer: TimeoutNow (thesis §3.10)"
        else:
            self._send_deferred_reply(e)
            rule = "Persistence: saved before replying"
        self._follow_ups(events, start, end)
        return rule

    def _sender(self, i: int, term: int, role: int) -> tuple[Server, bool]:
        """Server ``i`` as it was when it built a request of ``term``: now, if it still
        is a ``role`` of that term, else its last self as one (built, then recorded
        when the send ran a few steps later).  Second value: it is the current self."""
        s = self.state.servers[i]
        if s.role == role and s.current_term == term:
            return s, True
        past = self.nodes[i].reign if role == LEADER else self.nodes[i].campaign
        if past is not None and past.current_term == term:
            return past, False
        raise _Broken(
            "Send",
            f"a {ROLE_NAMES[role]} of term {term} sends it",
            f"a {role_name(s)} of term {s.current_term} "
            f"(never a {ROLE_NAMES[role]} of term {term})",
        )

    def _sent_by(
        self,
        i: int,
        sender: Server,
        m: Message,
        action: str,
        send: Callable[[State], tuple[State, Message] | None],
    ) -> None:
        """Take the model's send (``send``, the rule ``action``) from ``sender`` (server
        ``i`` as it built the message): it must put exactly ``m`` in flight."""
        current = self.state.servers[i]
        sent = send(self.state if sender is current else self._with(i, sender))
        if sent is None:
            raise _Broken(f"Send {format_message(m)}", f"{action} enabled", "not enabled")
        t, produced = sent
        if produced != m:
            raise _Broken(f"Send ({action})", format_message(produced), format_message(m))
        self.state = self.state._replace(network=t.network)
        self.fresh.append(m)

    def _send_request_vote(self, message_id: int, i: int, msg: Mapping[str, Any]) -> None:
        """Candidates: send RequestVote RPCs to all other servers."""
        m = request_vote_of(msg, i)
        if msg["candidate_id"] != i:
            raise _Broken("Send", f"candidate_id {i}", f"candidate_id {msg['candidate_id']}")
        sender, _ = self._sender(i, m.term, CANDIDATE)
        saved = self.nodes[i].disk.synced
        if saved.term < m.term or (saved.term == m.term and saved.voted_for != i):
            raise _Broken(
                "Persistence: saved before sending",
                f"term {m.term} and the vote for itself saved",
                f"saved term {saved.term}, vote {show_vote(saved.voted_for)}",
            )
        self._sent_by(
            i, sender, m, "request_vote", lambda state: request_vote_sent(state, i, m.dest)
        )
        self.requests[message_id] = m

    def _send_pre_vote(self, message_id: int, i: int, msg: Mapping[str, Any]) -> None:
        """Pre-candidates (thesis §9.6): ask every other server about term + 1."""
        m = pre_vote_of(msg, i)
        if msg["candidate_id"] != i:
            raise _Broken("Send", f"candidate_id {i}", f"candidate_id {msg['candidate_id']}")
        s = self.state.servers[i]
        if s.role != PRE_CANDIDATE or m.term != s.current_term + 1:
            raise _Broken(
                "Send",
                f"a pre-candidate of term {m.term - 1} sends it",
                f"a {role_name(s)} of term {s.current_term}",
            )
        # (A grant of an earlier pre-election for the same term may have come in
        # between building the request and recording it.)
        sender = s._replace(votes_granted=s.votes_granted & ~(1 << m.dest))
        self._sent_by(i, sender, m, "pre_vote", lambda state: pre_vote_sent(state, i, m.dest))
        self.requests[message_id] = m

    def _send_timeout_now(self, message_id: int, i: int, msg: Mapping[str, Any]) -> None:
        """Thesis §3.10: the target of a transfer under way holds the leader's whole
        log (its matchIndex), so it is told to stand at once.  The request is built
        when that becomes true and recorded when it leaves, a little later (maybe
        after the transfer was abandoned): its leader's last self transferring is
        tried too."""
        m = timeout_now_of(msg, i)
        if msg["leader_id"] != i:
            raise _Broken("Send", f"leader_id {i}", f"leader_id {msg['leader_id']}")
        leader, _ = self._sender(i, m.term, LEADER)
        saved = self.nodes[i].disk.synced
        if saved.term < m.term:
            raise _Broken(
                "Persistence: saved before sending",
                f"term {m.term} saved",
                f"saved term {saved.term}",
            )
        selves = [leader]
        past = self.nodes[i].transferring
        if past is not None and past is not leader and past.current_term == m.term:
            selves.append(past)
        current = self.state.servers[i]
        for sender in selves:
            state = self.state if sender is current else self._with(i, sender)
            sent = timeout_now_sent(state, i)
            if sent is not None and sent[1] == m:
                self.state = self.state._replace(network=sent[0].network)
                self.fresh.append(m)
                self.requests[message_id] = m
                return
        ext = leader.ext
        target = f"a transfer to {ext.transfer_to}" if ext.transfer_to != NOBODY else "no transfer"
        match = leader.match_index[m.dest] if 0 <= m.dest < len(leader.match_index) else None
        raise _Broken(
            "Leadership transfer (thesis §3.10): TimeoutNow",
            f"a transfer to {m.dest} under way, its matchIndex at the leader's last index "
            f"{len(leader.log)}",
            f"TimeoutNow to {m.dest} with {target} under way, matchIndex {match}",
        )

    def _append_entries_message(self, i: int, msg: Mapping[str, Any]) -> AppendEntriesRequest:
        if msg["leader_id"] != i:
            raise _Broken("Send", f"leader_id {i}", f"leader_id {msg['leader_id']}")
        return append_entries_of(msg, i, self.entries)

    def _leader_as_of(self, i: int, j: int, term: int, commit: int, next_index: int) -> Server:
        """The leader as it built a message to ``j``: its self of ``term``, with the
        commitIndex it had then (at most today's) and nextIndex[j] as it was."""
        sender, _ = self._sender(i, term, LEADER)
        if not 0 <= j < self.n or j == i:
            raise _Broken("Send", "a message to another server", f"a message to {j}")
        if commit > sender.commit_index:
            raise _Broken(
                "Leaders: AppendEntries",
                f"leaderCommit <= commitIndex {sender.commit_index}",
                f"leader_commit {commit}",
            )
        if not 1 <= next_index <= len(sender.log) + 1:
            raise _Broken(
                "Leaders: AppendEntries",
                f"nextIndex in 1..{len(sender.log) + 1}",
                f"prev_log_index {next_index - 1}",
            )
        nexts = sender.next_index
        if commit == sender.commit_index and nexts[j] == next_index:
            return sender
        nexts = (*nexts[:j], next_index, *nexts[j + 1 :])
        return sender._replace(commit_index=commit, next_index=nexts)

    def _send_append_entries(self, message_id: int, i: int, msg: Mapping[str, Any]) -> None:
        """Leaders: AppendEntries from nextIndex (read off the message), leaderCommit."""
        m = self._append_entries_message(i, msg)
        j = m.dest
        sender = self._leader_as_of(i, j, m.term, m.leader_commit, m.prev_log_index + 1)
        # The term must be durable; the entries need not be: a leader may send
        # entries it is still writing, counting itself towards a majority only
        # once they are durable (thesis §10.2.1; a leader's commit is checked
        # against its saved log below).
        saved = self.nodes[i].disk.synced
        if saved.term < m.term:
            raise _Broken(
                "Persistence: saved before sending",
                f"term {m.term} saved",
                f"saved term {saved.term}",
            )
        self._sent_by(
            i,
            sender,
            m,
            "append_entries",
            lambda state: append_entries_sent(state, i, m.dest, len(m.entries)),
        )
        current = self.state.servers[i]
        if current.role == LEADER and current.current_term == m.term:
            # nextIndex is the implementation's choice: adopt the one it used.
            nexts = current.next_index
            if nexts[j] != m.prev_log_index + 1:
                nexts = (*nexts[:j], m.prev_log_index + 1, *nexts[j + 1 :])
                self.state = self._with(i, current._replace(next_index=nexts))
        self.requests[message_id] = m

    def _send_install_snapshot(self, message_id: int, i: int, msg: Mapping[str, Any]) -> None:
        """Figure 13: a leader sends a chunk of its snapshot (entries up to an index it
        committed); which model message it is depends on the follower (below)."""
        term = msg["term"]
        j = msg["to"]
        index = msg["last_included_index"]
        if msg["leader_id"] != i:
            raise _Broken("Send", f"leader_id {i}", f"leader_id {msg['leader_id']}")
        leader, _ = self._sender(i, term, LEADER)
        if index not in self.nodes[i].held:
            held = ", ".join(map(str, sorted(self.nodes[i].held))) or "none"
            raise _Broken(
                "Leaders: InstallSnapshot",
                f"a snapshot it holds (held since it started: {held})",
                f"snapshot {index}",
            )
        known = self.nodes[i].held[index]
        if known is not None:
            end = msg["offset"] + msg["data_len"]
            if end > known[0] or bool(msg["done"]) != (end == known[0]):
                raise _Broken(
                    "Leaders: InstallSnapshot chunks",
                    f"chunks within its {known[0]}-byte snapshot, done on the last",
                    f"bytes {msg['offset']}..{end}, done {bool(msg['done'])}",
                )
        s_term = term_at(leader.log, index)
        if index > leader.commit_index or s_term != msg["last_included_term"]:
            raise _Broken(
                "Leaders: InstallSnapshot",
                f"a committed entry (commitIndex {leader.commit_index}), term {s_term} at {index}",
                f"snapshot {index}/t{msg['last_included_term']}",
            )
        # The leader as it built the chunk: its snapshot was this one, and nextIndex[j]
        # was inside it; the model's install_snapshot must be enabled there.
        sender = self._leader_as_of(i, j, term, index, index)
        sender = sender._replace(snapshot_index=index)
        full = install_snapshot_request(
            term=term,
            source=i,
            dest=j,
            last_included_index=index,
            last_included_term=msg["last_included_term"],  # s_term: checked above
            data=sender.log[:index],
        )
        sent = install_snapshot_sent(self._with(i, sender), i, j)
        if sent is None or sent[1] != full:
            raise _Broken("Leaders: InstallSnapshot", "install_snapshot enabled", "not enabled")
        # Nothing is in flight yet: the follower's step says whether this chunk
        # completed the snapshot (the whole one) or not (install_snapshot_chunk's
        # message, enabled exactly when install_snapshot is).
        chunk = install_snapshot_request(
            term=term, source=i, dest=j, last_included_index=0, last_included_term=0, data=()
        )
        fields = chunk_fields(msg)
        total = msg["offset"] + msg["data_len"]
        self.snapshots_sent[message_id] = SnapshotSent(fields, full, chunk, total, fields[-1])

    # ------------------------------------------------------------ receiving

    def _receive(self, events: Sequence[Event], start: int, end: int) -> str:
        e = events[start]
        msg = e["msg"]
        i = e["node"]
        if msg["to"] != i:
            raise _Broken("Receive", f"a message to {i}", f"a message to {msg['to']}")
        kind = msg["type"]
        if kind in REQUESTS:
            return self._receive_request(events, start, end, e["id"], kind, msg)
        return self._receive_reply(events, start, end, e["id"], kind, msg)

    def _never_sent(self, message_id: int, kind: str) -> _Broken:
        return _Broken(
            "Receive",
            "receipt of a message that was sent",
            f"receipt of a message never sent ({kind} id {message_id})",
        )

    def _receive_request(
        self,
        events: Sequence[Event],
        start: int,
        end: int,
        message_id: int,
        kind: str,
        msg: Mapping[str, Any],
    ) -> str:
        """RequestVote / AppendEntries receiver: handle the request, check the reply."""
        m: Message
        if kind == "InstallSnapshot":
            m = self._snapshot_received(events, start, end, message_id, msg)
            rule = "InstallSnapshot receiver"
        else:
            sent = self.requests.get(message_id)
            if sent is None or MESSAGE_NAMES[sent.kind] != kind:
                raise self._never_sent(message_id, kind)
            m = sent
            logged: Message
            if kind == "AppendEntries":
                logged = self._append_entries_message(msg["from"], msg)
                rule = "AppendEntries receiver"
            elif kind == "RequestVote":
                logged = request_vote_of(msg, msg["from"])
                rule = "RequestVote receiver"
            elif kind == "PreVote":
                logged = pre_vote_of(msg, msg["from"])
                rule = "PreVote receiver (thesis §9.6)"
            else:
                logged = timeout_now_of(msg, msg["from"])
                rule = "TimeoutNow receiver (thesis §3.10)"
            if logged != m:
                raise _Broken("Receive", format_message(m), format_message(logged))
        self._in_bag(m)
        if isinstance(m, (RequestVoteRequest, PreVoteRequest)):
            self._lease_shown_over(events, start, end, m)
        receiver = self.state.servers[m.dest]
        self.commit_before = receiver.commit_index
        if isinstance(m, AppendEntriesRequest):
            self.hint_source = (receiver.log, m.prev_log_index, receiver.snapshot_index)
        handled: tuple[State, Message] | None
        if isinstance(m, RequestVoteRequest):
            self.withheld = (
                m.term > receiver.current_term and not m.transfer and _withholds_vote(receiver)
            )
            handled = handle_request_vote_sent(self.state, m)
        elif isinstance(m, AppendEntriesRequest):
            handled = handle_append_entries_sent(self.state, m)
        elif isinstance(m, InstallSnapshotRequest):
            handled = handle_install_snapshot_sent(self.state, m)
        elif isinstance(m, PreVoteRequest):
            handled = handle_pre_vote_sent(self.state, m)
        else:
            assert isinstance(m, TimeoutNowRequest)
            handled = handle_timeout_now_sent(self.state, m)
        assert handled is not None  # m is in flight
        self.state, reply = handled  # the handler says which reply it put in flight
        self.fresh.append(reply)
        if isinstance(m, (AppendEntriesRequest, InstallSnapshotRequest)):
            self._confirm_reads(message_id, m)
        self._follow_ups(events, start, end, reply)
        if self.replies.get(message_id) is not reply:
            # No reply in this step: it may leave once a persist covers every change
            # the node made up to and including this step.
            i = m.dest
            if durable_part(receiver) != durable_part(self.state.servers[i]):
                self.nodes[i].disk.changed_at = self.steps
            received = self.installing_received if kind == "InstallSnapshot" else None
            self.pending[message_id] = _PendingReply(
                reply, self.hint_source, self.nodes[i].disk.changed_at, received
            )
        return rule

    def _lease_shown_over(
        self,
        events: Sequence[Event],
        start: int,
        end: int,
        m: RequestVoteRequest | PreVoteRequest,
    ) -> None:
        """A follower that does not withhold from an election of a higher term (its
        ``vote`` not ``withheld``, its ``pre_vote`` granted) is out of its lease
        (§4.2.3): the implementation's lease (the first part of its election timer)
        ended, so the model's lease ends first (expire_lease, enabled at any moment)."""
        j = m.dest
        s = self.state.servers[j]
        if not s.ext.lease or m.term <= s.current_term:
            return
        if isinstance(m, RequestVoteRequest):
            decided = find(events, start + 1, end, "vote")
            over = decided is not None and not decided.get("withheld")
        else:
            decided = find(events, start + 1, end, "pre_vote")
            over = decided is not None and bool(decided["granted"])
        if over:
            self._lease_over(j)

    def _snapshot_received(
        self,
        events: Sequence[Event],
        start: int,
        end: int,
        message_id: int,
        msg: Mapping[str, Any],
    ) -> InstallSnapshotRequest:
        """The model message a received chunk is: the whole snapshot if the follower's
        reply says it now holds all of it, else a chunk (only the term counts)."""
        sent = self.snapshots_sent.get(message_id)
        if sent is None:
            raise self._never_sent(message_id, "InstallSnapshot")
        fields = chunk_fields(msg)
        if fields != sent.fields:
            raise _Broken("Receive", f"InstallSnapshot {sent.fields}", f"{fields}")
        received = self._assemble(msg)
        self.installing_received = received
        complete = sent.done and received >= sent.total
        for k in range(start + 1, end):
            e = events[k]
            if e["event"] == "send" and e["msg"].get("received") != received:
                raise _Broken(
                    "InstallSnapshot receiver rules 2-5",
                    f"received {received} (chunks of one snapshot, in order from offset 0)",
                    f"received {e['msg'].get('received')}",
                )
        return sent.full if complete else sent.chunk

    def _assemble(self, msg: Mapping[str, Any]) -> int:
        """Figure 13 rules 2-5 at the follower (``replay_chunks.Assembly``): what it
        must reply it holds."""
        j: int = msg["to"]
        return self.nodes[j].chunks.add(msg, self.state.servers[j].current_term)

    def _receive_reply(
        self,
        events: Sequence[Event],
        start: int,
        end: int,
        message_id: int,
        kind: str,
        msg: Mapping[str, Any],
    ) -> str:
        """Candidates count votes; leaders update nextIndex and matchIndex."""
        r = self.replies.get(message_id)
        if r is None or MESSAGE_NAMES[r.kind] != kind:
            raise self._never_sent(message_id, kind)
        _check_reply(r, msg)
        sent = self.replies_sent[message_id]
        if msg != sent:
            changed = sorted(k for k in sent.keys() | msg.keys() if sent.get(k) != msg.get(k))
            raise _Broken(
                "Receive",
                f"the {kind} as sent: " + ", ".join(f"{k} {sent.get(k)!r}" for k in changed),
                ", ".join(f"{k} {msg.get(k)!r}" for k in changed),
            )
        self._in_bag(r)
        if isinstance(r, RequestVoteResponse):
            t = handle_request_vote_response(self.state, r)
            rule = "Candidates: count votes"
        elif isinstance(r, AppendEntriesResponse):
            t = handle_append_entries_response(self.state, r, self._next_index_choice(r))
            rule = "Leaders: nextIndex and matchIndex"
        elif isinstance(r, PreVoteResponse):
            t = handle_pre_vote_response(self.state, r)
            rule = "Pre-candidates: count pre-votes (thesis §9.6)"
        elif isinstance(r, TimeoutNowResponse):
            t = handle_timeout_now_response(self.state, r)
            rule = "Leadership transfer: TimeoutNow reply"
        else:
            assert isinstance(r, InstallSnapshotResponse)
            t = handle_install_snapshot_response(self.state, r)
            rule = "Leaders: InstallSnapshot reply"
        assert t is not None
        self.state = t
        self._follow_ups(events, start, end)
        return rule

    def _next_index_choice(self, r: AppendEntriesResponse) -> int | None:
        """After a rejection nextIndex is the implementation's choice: keep it for now;
        its next AppendEntries to that follower says where it went."""
        s = self.state.servers[r.dest]
        if r.success or r.prev_log_index == 0 or s.role != LEADER:
            return None
        return s.next_index[r.source]

    def _send_deferred_reply(self, e: Event) -> None:
        """A reply leaving after the step that handled its request: the reply that
        step computed, once a persist covered that step."""
        msg = e["msg"]
        i = e["node"]
        pending = self.pending.pop(e["id"], None)
        if pending is None or pending.reply.source != i:
            raise _Broken("Trace order", "a reply to a request this node handled", msg["type"])
        if self.nodes[i].disk.synced_at < pending.step:
            raise _Broken(
                "Persistence: saved before replying",
                "a persist of every change the node made until it handled the request",
                f"the {msg['type']} sent before they were saved",
            )
        if pending.received is not None and msg.get("received") != pending.received:
            raise _Broken(
                "InstallSnapshot receiver rules 2-5",
                f"received {pending.received} (chunks of one snapshot, in order from offset 0)",
                f"received {msg.get('received')}",
            )
        self._check_reply_fields(msg, pending.reply, pending.hint_source)
        self.replies[e["id"]] = pending.reply
        self.replies_sent[e["id"]] = msg

    def _send_reply(self, e: Event, reply: Message | None) -> None:
        """The reply of the step's request: the model's reply, from durable state."""
        msg = e["msg"]
        i = e["node"]
        if reply is None or msg["type"] not in REPLIES:
            raise _Broken("Trace order", "a reply only to the step's request", msg["type"])
        self._check_reply_fields(msg, reply, self.hint_source)
        s = self.state.servers[i]
        saved = self.nodes[i].disk.synced
        if (s.current_term, s.voted_for) != (saved.term, saved.voted_for) or (
            s.log is not saved.log and s.log != saved.log
        ):
            raise _Broken(
                "Persistence: saved before replying",
                f"saved: term {s.current_term}, vote {show_vote(s.voted_for)}, "
                f"{len(s.log)} entries",
                f"saved: term {saved.term}, vote {show_vote(saved.voted_for)}, "
                f"{len(saved.log)} entries",
            )
        self.replies[e["id"]] = reply
        self.replies_sent[e["id"]] = msg

    def _check_reply_fields(
        self, msg: Mapping[str, Any], reply: Message, hint_source: tuple[Log, int, int]
    ) -> None:
        """A reply as logged against the model's, fast-backup hints included."""
        _check_reply(reply, msg)
        if isinstance(reply, AppendEntriesResponse) and msg["type"] == "AppendEntriesReply":
            # Only a rejection for the log (not for the term) carries hints.
            expected = _conflict_hints(*hint_source) if reply.prev_log_index else (0, 0)
            logged = (msg.get("conflict_index", 0), msg.get("conflict_term", 0))
            if logged != expected:
                raise _Broken(
                    "AppendEntries receiver: fast-backup hints",
                    f"conflict_index {expected[0]}, conflict_term {expected[1]}",
                    f"conflict_index {logged[0]}, conflict_term {logged[1]}",
                )


class _PendingReply(NamedTuple):
    """A reply its receive step computed but did not send (see ``_Replay.pending``)."""

    reply: Message
    hint_source: tuple[Log, int, int]
    step: int  # the node's last change by the receive step: a persist at or after it first
    received: int | None  # InstallSnapshot: what the follower must say it holds


def _check_reply(model: Message, msg: Mapping[str, Any]) -> None:
    """A reply in the trace against the model's: direction, term, and the verdict
    (vote_granted; success; for InstallSnapshot only the term)."""
    kind = msg["type"]
    if (msg["from"], msg["to"]) != (model.source, model.dest) or msg["term"] != model.term:
        raise _Broken(
            "Reply", format_message(model), f"{kind} {msg['from']}->{msg['to']} t{msg['term']}"
        )
    if isinstance(model, RequestVoteResponse):
        if kind != "RequestVoteReply" or bool(msg["vote_granted"]) != model.vote_granted:
            raise _Broken("RequestVote receiver", format_message(model), _show_reply(msg))
    elif isinstance(model, AppendEntriesResponse):
        if kind != "AppendEntriesReply" or bool(msg["success"]) != model.success:
            raise _Broken("AppendEntries receiver", format_message(model), _show_reply(msg))
    elif isinstance(model, PreVoteResponse):
        if kind != "PreVoteReply" or bool(msg["vote_granted"]) != model.vote_granted:
            raise _Broken("PreVote receiver (thesis §9.6)", format_message(model), _show_reply(msg))
    elif isinstance(model, TimeoutNowResponse):
        if kind != "TimeoutNowReply":
            raise _Broken("Reply", format_message(model), kind)
    elif kind != "InstallSnapshotReply":
        raise _Broken("Reply", format_message(model), kind)


def _conflict_hints(log: Log, prev: int, snapshot_index: int) -> tuple[int, int]:
    """What a follower holding ``log`` (compacted up to ``snapshot_index``) must say
    when it rejects an AppendEntries at ``prev`` for the log: (conflict_index,
    conflict_term).  Too short a log: (its length + 1, 0); else the term of its
    entry at prev and the first index it holds of that term (§5.3's fast backup)."""
    if prev == 0:
        return 0, 0  # index 0 always matches: never rejected for the log
    if prev > len(log):
        return len(log) + 1, 0
    term = log[prev - 1].term
    first = prev
    while first - 1 > snapshot_index and log[first - 2].term == term:
        first -= 1
    return first, term


def _show_reply(msg: Mapping[str, Any]) -> str:
    verdict = msg.get("vote_granted", msg.get("success"))
    return f"{msg['type']} {msg['from']}->{msg['to']} t{msg['term']} {verdict}"
