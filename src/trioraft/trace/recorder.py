"""The trace recorder: numbers events globally and writes them as NDJSON.

One recorder serves every peer of a run (and the network), so the trace is
one totally ordered stream: ``seq`` is the order in which things happened in
the (single-threaded) trio run, ``time`` is trio's clock (virtual under
MockClock).

Messages are paired by id.  The sender takes a fresh id and records "send";
the id travels with the request through the transport (the simulated network
reads :data:`current_message_id` in the caller's task and sets it again in
the task that runs the handler), so the receiver records "receive" with the
same id.  A reply gets its own id.  When the network loses a message it
records "drop" with the message's id.

Recording costs nothing when it is off: peers and the network check for a
tracer before building any event.
"""

from __future__ import annotations

import contextvars
import secrets
from collections.abc import Callable, Iterable
from typing import IO, Any

import msgspec
import trio

TRACE_FORMAT = "trioraft-trace"
TRACE_VERSION = 4
"""Version 2 adds the ``noop`` event and replies sent in a later step than their
request's; version 3 logs ``term_update`` with the node already a follower;
version 4 adds the extensions' events and messages (Pre-Vote, CheckQuorum,
leadership transfer, ReadIndex; spec/TRACE.md).  A reader reads every version up to this one."""
READABLE_VERSIONS = frozenset({1, 2, 3, 4})

current_message_id: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "trioraft_current_message_id", default=None
)
"""The id of the message being sent (in the caller) or handled (in the handler)."""

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
"""The node state recorded after every event, in this order (see spec/TRACE.md)."""


def incarnation_message_ids() -> int:
    """A first message id for one incarnation of one node: a random 20-bit prefix
    above 32 bits of counter, so the ids of every file of a cluster run differ
    (and stay below 2**53, exact in any JSON reader)."""
    return (secrets.randbits(20) << 32) + 1


class TraceRecorder:
    """Collects the events of one run, in memory and optionally to a file."""

    def __init__(
        self,
        *,
        nodes: int,
        seed: int | None = None,
        meta: dict[str, Any] | None = None,
        sink: IO[bytes] | None = None,
        keep: bool = True,
        observer: Callable[[int, str, tuple[Any, ...] | None, dict[str, Any]], None] | None = None,
        listener: Callable[[dict[str, Any]], None] | None = None,
        node: int | None = None,
        first_message_id: int = 1,
    ) -> None:
        """``node`` (with ``first_message_id``): a trace of one node of a cluster whose
        nodes run in separate processes, one file per node incarnation.  Its header
        names the node; message ids start at ``first_message_id``, which must make
        them unique across every file of the run (see ``incarnation_message_ids``)."""
        self.nodes = nodes
        self._encoder = msgspec.json.Encoder()
        self._sink = sink
        self._keep = keep
        self._observer = observer
        self._listener = listener  # gets every event record as written (not the header)
        self.records: list[dict[str, Any]] = []  # kept in memory (keep=True), header first
        self.events = 0
        self._message_ids = first_message_id - 1
        header: dict[str, Any] = {
            "format": TRACE_FORMAT,
            "version": TRACE_VERSION,
            "nodes": nodes,
            "seed": seed,
            "state_fields": list(STATE_FIELDS),
        }
        if node is not None:
            header["node"] = node
        if meta:
            header["meta"] = meta
        self._header = header
        self._write(header)

    def next_message_id(self) -> int:
        self._message_ids += 1
        return self._message_ids

    def event(
        self,
        node: int,
        name: str,
        state: tuple[Any, ...] | None = None,
        **fields: Any,
    ) -> None:
        """Record one event of ``node``, with its state after the event."""
        if self._observer is not None:
            self._observer(node, name, state, fields)
        self.events += 1
        try:
            now = trio.current_time()
        except RuntimeError:
            now = None  # outside a trio run (e.g. a test driving a node by hand)
        record: dict[str, Any] = {"seq": self.events, "time": now, "node": node, "event": name}
        if state is not None:
            record["state"] = dict(zip(STATE_FIELDS, state, strict=True))
        record.update(fields)
        self._write(record)
        if self._listener is not None:
            self._listener(record)

    def _write(self, record: dict[str, Any]) -> None:
        if self._keep:
            self.records.append(record)
        if self._sink is not None:
            self._sink.write(self._encoder.encode(record) + b"\n")

    @property
    def header(self) -> dict[str, Any]:
        return self._header

    def dump(self, path: str) -> None:
        """Write the kept records to ``path`` as NDJSON."""
        with open(path, "wb") as file:
            file.writelines(self._encoder.encode(record) + b"\n" for record in self.records)

    def text_lines(self) -> Iterable[str]:
        """The kept records as NDJSON lines (header first)."""
        return (self._encoder.encode(record).decode() + "\n" for record in self.records)
