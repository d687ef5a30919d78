"""One history from the trace files of a cluster whose nodes run as separate processes.

Rules of operation
------------------
Each node of such a cluster writes its own trace, one file per incarnation (a
node killed and restarted starts a new file): the events of that node only,
``seq`` numbered per file, ``time`` its own clock (never compared across
files), message ids unique across every file of the run (spec/TRACE.md,
"Cluster traces").  This module merges them into one history and replays it
through the :class:`~.validator.Validator`, as if one process had recorded it.
It sees plain data only (the glue in ``trioraft.validate`` reads the files).

- **Steps.**  A file's events are grouped into steps exactly as the validator
  groups a single trace (a starter and the follow-ups after it: see
  :mod:`.validator`), so a step of the merged history is a step of one file.
- **The merge** is one total order of all steps that keeps (a) each file's
  order, (b) every ``receive`` after the ``send`` with the same id (a
  request's, or its reply's), (c) each step whole, (d) a node's incarnations
  in order.  The rule: repeatedly take the next step of the lowest-numbered
  node that can go, i.e. whose step is no ``receive`` or receives a message
  already sent.  Sends are never used up, so a step that can go stays able
  to, and this greedy rule finds an order whenever one exists; any order that
  keeps (a)-(d) is a history the processes could have run (their steps touch
  one another only through messages), so which one is taken changes no
  verdict.  If no order exists (a ``receive`` whose ``send`` is in no file, or
  a cycle), the verdict is a violation of "Receive", at that receive's file
  and line.
- **Renumbering.**  The merged events get ``seq`` 1, 2, 3, ... (the event
  dicts are updated in place); a violation names the event's original file,
  line and ``seq``.
- **Lost messages.**  Nothing records a loss (a TCP transport does not know
  of one): a message that no file receives leaves the model's network right
  after the step that sent it, as a ``drop`` would.
- **Crashes.**  A file that ends with a ``crash`` event was stopped cleanly:
  the node restarts from its last persist, as in a single trace.  A file that
  ends without one was killed (``kill -9``): if the node has a later
  incarnation, a kill goes between the two (:meth:`.Validator.kill`), and
  the next ``init`` may restore less than the last persist (at least what
  was synced: see ``_Replay.restore_killed``).  The last step of such a file
  may also be cut short (its follow-ups never written): a final state unlike
  the model's there is a note, not a violation.
- **Memory**: one step per node, the ids of the messages received somewhere
  (which the caller collects in a first pass) and of those already sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from itertools import pairwise
from typing import Any, NamedTuple, cast

from .invariants import INVARIANTS, Invariant
from .validator import FOLLOW_UPS, REPLIES, Event, TraceError, Validator, Violation

EventLines = Iterable[tuple[int, dict[str, Any]]]
"""A file's events with their line numbers, in file order."""

Progress = Callable[[int], None]
"""``progress(events_done)``, called every :data:`PROGRESS_EVERY` events or so."""

PROGRESS_EVERY = 8192


def message_key(message_id: int, kind: str) -> int:
    """One number per leg of a message: its request's (even) or its reply's (odd)."""
    return message_id * 2 + (1 if kind in REPLIES else 0)


class ClusterTraceError(ValueError):
    """Files that cannot be merged or read: names the file, the line and what is wrong."""

    def __init__(self, source: str, line: int, problem: str) -> None:
        super().__init__(f"{source}:{line}: {problem}")
        self.source = source
        self.line = line
        self.problem = problem


class NodeFile(NamedTuple):
    """One incarnation of one node: what the caller's first pass learnt of its file."""

    source: str  # the file's name, for messages
    node: int
    started: float | None  # the header's meta["started"]: orders a node's incarnations
    events: Callable[[], EventLines]  # reads its events (the second pass)
    crashed: bool  # its last event is a crash: it was stopped cleanly
    last_line: int  # its last line (the torn one, if torn)
    torn: bool  # its last line was torn by a crash (and left out of events)
    empty: bool = False  # no events at all (a header only)


class ClusterResult(NamedTuple):
    """What validating a cluster's files found."""

    events: int
    steps: int
    violation: Violation | None  # its seq and line are those of its file
    source: str | None  # the violation's file
    merged_seq: int | None  # the violating event's place in the merged history
    notes: tuple[str, ...]  # cut files, nodes without a file

    @property
    def ok(self) -> bool:
        return self.violation is None


def order_incarnations(nodes: int, files: Sequence[NodeFile]) -> list[list[NodeFile]]:
    """Each node's files, its incarnations in order: by ``started`` (then in the
    order given, which is the order when no file of the node has one).  Two
    files of one node started at the same time (the same incarnation twice?)
    or a node with files with and without a start time raise
    :class:`ClusterTraceError`."""
    by_node: list[list[NodeFile]] = [[] for _ in range(nodes)]
    for f in files:
        if not 0 <= f.node < nodes:
            raise ClusterTraceError(f.source, 1, f"node {f.node} is not one of the {nodes} nodes")
        by_node[f.node].append(f)
    for node, mine in enumerate(by_node):
        timed = [f for f in mine if f.started is not None]
        if not timed:
            continue
        if len(timed) != len(mine):
            untimed = next(f for f in mine if f.started is None)
            raise ClusterTraceError(
                untimed.source,
                1,
                f"the header has no meta 'started' while other files of node {node} do: "
                "its incarnations cannot be ordered",
            )
        mine.sort(key=lambda f: f.started or 0.0)
        for a, b in pairwise(mine):
            if a.started == b.started:
                raise ClusterTraceError(
                    b.source,
                    1,
                    f"node {node} started at {b.started} in both {a.source} and {b.source} "
                    "(one incarnation given twice?)",
                )
    return by_node


class _Step:
    """One step of one file: its events and lines, and what it needs and sends."""

    __slots__ = ("events", "file", "kill", "last", "lines", "sends", "wait")

    def __init__(
        self,
        file: NodeFile | None,
        events: list[dict[str, Any]],
        lines: list[int | None],
        wait: int,
        sends: list[int],
        last: bool,
    ) -> None:
        self.file = file
        self.events = events
        self.lines = lines
        self.wait = wait  # the message_key it receives, or -1
        self.sends = sends  # the message_keys it sends
        self.last = last  # the last step of its file
        self.kill = file is None  # a kill between two incarnations (no event)


def _file_steps(f: NodeFile) -> Iterator[_Step]:
    """The steps of one file, grouped as the validator groups a trace's events."""
    events: list[dict[str, Any]] = []
    lines: list[int | None] = []
    sends: list[int] = []
    wait = -1
    line = 0
    event: dict[str, Any] = {}
    try:
        for line, event in f.events():
            name = event["event"]
            if name == "send":
                msg = event["msg"]
                kind = msg["type"]
                key = message_key(event["id"], kind)
                if events and kind in REPLIES:
                    events.append(event)
                    lines.append(line)
                    sends.append(key)
                    continue
            elif events and name in FOLLOW_UPS:
                events.append(event)
                lines.append(line)
                continue
            if events:
                yield _Step(f, events, lines, wait, sends, False)
            events = [event]
            lines = [line]
            sends = []
            wait = -1
            if name == "send":
                sends.append(key)
            elif name == "receive":
                msg = event["msg"]
                wait = message_key(event["id"], msg["type"])
    except (KeyError, TypeError) as exc:
        seq = event.get("seq", 0)
        what = f"missing field {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
        raise ClusterTraceError(f.source, line, f"event {seq} is malformed: {what}") from None
    if events:
        yield _Step(f, events, lines, wait, sends, True)


def _node_steps(files: Sequence[NodeFile]) -> Iterator[_Step]:
    """One node's steps, its incarnations one after another, with a kill between a
    file that ends without a crash event and the next."""
    killed = False
    for f in files:
        if f.empty:
            continue
        if killed:
            yield _Step(None, [], [], -1, [], False)
        yield from _file_steps(f)
        killed = not f.crashed


def validate_cluster(
    nodes: int,
    incarnations: Sequence[Sequence[NodeFile]],
    *,
    sent: AbstractSet[int],
    received: AbstractSet[int],
    progress: Progress | None = None,
    invariants: tuple[Invariant, ...] = INVARIANTS,
    mode: str = "incremental",
) -> ClusterResult:
    """Merge the files of one run (``incarnations[i]``: node ``i``'s, in order; see
    :func:`order_incarnations`) into one history and replay it.

    ``sent`` and ``received`` are the :func:`message_key` of every ``send`` and
    every ``receive`` in any of the files (a first pass over them collects
    these).  A file that cannot be read raises :class:`ClusterTraceError`.
    """
    validator = Validator({"nodes": nodes}, invariants=invariants, mode=mode)
    notes: list[str] = [
        f"node {i}: no trace file (it never ran, or its files were not given)"
        for i in range(nodes)
        if not any(not f.empty for f in incarnations[i])
    ]
    streams = [_node_steps(incarnations[i]) for i in range(nodes)]
    heads: list[_Step | None] = [next(s, None) for s in streams]
    emitted: set[int] = set()  # messages sent so far that some file receives
    seq = 0
    reported = 0
    while True:
        step = None
        chosen = 0
        for chosen in range(nodes):
            step = heads[chosen]
            if step is not None:
                wait = step.wait
                if wait < 0 or wait in emitted or wait not in sent:
                    break  # (a message sent in no file: the validator says so)
            step = None
        if step is None:
            blocked = [h for h in heads if h is not None]
            if not blocked:
                break
            return _cycle(validator, blocked[0], notes)
        heads[chosen] = next(streams[chosen], None)
        f = step.file
        if f is None:
            validator.kill(chosen)
            continue
        events = step.events
        lines = step.lines
        original = [e["seq"] for e in events]
        first = seq + 1
        for e in events:
            seq += 1
            e["seq"] = seq
        first_line = lines[0]
        cut = step.last and not f.crashed
        try:
            violation = validator.run_step(cast(list[Event], events), lines, cut=cut)
        except TraceError as exc:
            problem = exc.problem.replace(
                f"event {exc.seq} ", f"event {original[exc.seq - first]} ", 1
            )
            raise ClusterTraceError(f.source, exc.line or 0, problem) from None
        if violation is not None:
            merged = violation.seq
            violation = violation._replace(seq=original[merged - first])
            result = validator.finish()
            return ClusterResult(
                result.events, result.steps, violation, f.source, merged, tuple(notes)
            )
        for key in step.sends:
            if key in received:
                emitted.add(key)
            else:
                validator.drop(key >> 1, reply=bool(key & 1))
        if cut:
            found = validator.cut
            if found is not None:
                validator.cut = None
                notes.append(
                    f"{f.source}: last step cut short by a crash at line {f.last_line} "
                    f"(the step from line {first_line}: expected {found.expected}, "
                    f"logged {found.logged})"
                )
            elif f.torn:
                notes.append(f"{f.source}: last line {f.last_line} torn by a crash (left out)")
        if progress is not None and seq - reported >= PROGRESS_EVERY:
            reported = seq
            progress(seq)
    result = validator.finish()
    return ClusterResult(result.events, result.steps, None, None, None, tuple(notes))


def _cycle(validator: Validator, step: _Step, notes: list[str]) -> ClusterResult:
    """No step can go: each waits for a message sent only after another's step."""
    e = step.events[0]
    assert step.file is not None
    kind = e["msg"]["type"]
    violation = Violation(
        e["seq"],
        step.lines[0],
        e["node"],
        "receive",
        "Receive",
        "receipt of a message that was sent",
        f"receipt of a message never sent ({kind} id {e['id']}: its send comes only "
        "after events that wait for this receipt)",
    )
    result = validator.finish()
    return ClusterResult(
        result.events, result.steps, violation, step.file.source, None, tuple(notes)
    )
