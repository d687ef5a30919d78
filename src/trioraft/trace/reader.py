"""Reading traces back: NDJSON lines to dicts, with errors that name the line."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias

import msgspec

from .recorder import READABLE_VERSIONS, STATE_FIELDS, TRACE_FORMAT, TRACE_VERSION


class TraceFormatError(ValueError):
    """A trace that cannot be read: names the file and line and what is wrong."""

    def __init__(self, source: str, line: int, problem: str) -> None:
        super().__init__(f"{source}:{line}: {problem}")
        self.source = source
        self.line = line
        self.problem = problem


@dataclass
class Trace:
    source: str
    header: dict[str, Any]
    events: list[dict[str, Any]]
    lines: list[int]  # the file line of each event

    @property
    def nodes(self) -> int:
        return int(self.header["nodes"])


TraceLine: TypeAlias = tuple[int, dict[str, Any]]
"""A checked record and its line number in the trace (the header's, then events')."""

REQUIRED = {"seq": int, "node": int, "event": str}


def check_header(source: str, header: Any) -> dict[str, Any]:
    if not isinstance(header, dict) or header.get("format") != TRACE_FORMAT:
        raise TraceFormatError(
            source,
            1,
            f"not a trioraft trace: the first line must be a header with format {TRACE_FORMAT!r}",
        )
    version = header.get("version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise TraceFormatError(
            source,
            1,
            f"trace format version {version!r} is not supported (this reader "
            f"reads versions 1 to {TRACE_VERSION})",
        )
    nodes = header.get("nodes")
    if not isinstance(nodes, int) or isinstance(nodes, bool) or nodes < 1:
        raise TraceFormatError(
            source, 1, f"header field 'nodes' must be a positive integer, got {nodes!r}"
        )
    return header


_STATE_KEYS = frozenset(STATE_FIELDS)


def check_event(source: str, lineno: int, event: Any, nodes: int, last_seq: int) -> None:
    """Raise :class:`TraceFormatError` naming what is wrong with an event line."""
    if type(event) is dict:
        # The common case, tested in one go; anything odd takes the slow path,
        # which names the problem.
        seq, node, state = event.get("seq"), event.get("node"), event.get("state")
        if (
            type(seq) is int
            and type(node) is int
            and type(event.get("event")) is str
            and seq > last_seq
            and -1 <= node < nodes
            and (state is None or (type(state) is dict and state.keys() == _STATE_KEYS))
        ):
            return
    if not isinstance(event, dict):
        raise TraceFormatError(source, lineno, "an event must be a JSON object")
    for name, kind in REQUIRED.items():
        value = event.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise TraceFormatError(
                source, lineno, f"field {name!r} must be {kind.__name__}, got {value!r}"
            )
    if event["seq"] <= last_seq:
        raise TraceFormatError(
            source, lineno, f"seq {event['seq']} does not follow {last_seq} (events out of order)"
        )
    node = event["node"]
    if not -1 <= node < nodes:
        raise TraceFormatError(source, lineno, f"node {node} is not one of the {nodes} nodes")
    state = event.get("state")
    if state is not None and (not isinstance(state, dict) or set(state) != set(STATE_FIELDS)):
        raise TraceFormatError(
            source, lineno, f"field 'state' must have exactly the fields {list(STATE_FIELDS)}"
        )


def iter_trace(lines: Iterable[str | bytes], source: str = "<trace>") -> Iterator[TraceLine]:
    """Parse and check a trace one line at a time: the header's line first, then each
    event's, as ``(line number, record)``; blank lines are skipped.  The first bad
    line (or an empty trace) raises :class:`TraceFormatError` naming it.  Memory
    stays bounded however long the trace: callers that stream (the validator)
    hold no more than the line at hand."""
    nodes: int | None = None
    last_seq = 0
    for lineno, text in enumerate(lines, start=1):
        try:
            value = msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            if not text.strip():
                continue  # a blank line
            raise TraceFormatError(source, lineno, f"not valid JSON: {exc}") from None
        except UnicodeDecodeError as exc:  # bytes lines: msgspec checks UTF-8
            raise TraceFormatError(source, lineno, f"not UTF-8 text: {exc.reason}") from None
        if nodes is None:
            header = check_header(source, value)
            nodes = header["nodes"]
            yield lineno, header
            continue
        check_event(source, lineno, value, nodes, last_seq)
        last_seq = value["seq"]
        yield lineno, value
    if nodes is None:
        raise TraceFormatError(source, 1, "the trace is empty (no header line)")


def read_trace_lines(lines: Iterable[str | bytes], source: str = "<trace>") -> Trace:
    """Parse a trace from text lines; raise :class:`TraceFormatError` on the first bad one."""
    records = iter_trace(lines, source)
    _, header = next(records)
    events: list[dict[str, Any]] = []
    numbers: list[int] = []
    for lineno, event in records:
        events.append(event)
        numbers.append(lineno)
    return Trace(source, header, events, numbers)


def check_records(records: list[dict[str, Any]], source: str = "<trace>") -> Trace:
    """Check records already in memory (header first), as a recorder keeps them."""
    if not records:
        raise TraceFormatError(source, 1, "the trace is empty (no header line)")
    header = check_header(source, records[0])
    last_seq = 0
    for number, event in enumerate(records[1:], start=2):
        check_event(source, number, event, header["nodes"], last_seq)
        last_seq = event["seq"]
    return Trace(source, header, records[1:], list(range(2, len(records) + 1)))


def read_trace(path: str) -> Trace:
    """Read a trace file; unreadable files and bad lines raise :class:`TraceFormatError`."""
    try:
        with open(path, encoding="utf-8") as file:
            return read_trace_lines(_lines(file), path)
    except OSError as exc:
        raise TraceFormatError(path, 0, f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise TraceFormatError(path, 0, f"not UTF-8 text: {exc.reason}") from None


def _lines(file: Iterable[str]) -> Iterator[str]:
    yield from file
