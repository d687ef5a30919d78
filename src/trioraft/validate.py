"""Checking recorded traces: the glue between trioraft.trace and the model's validator.

The validator itself (:mod:`trioraft.model.validator`) sees only plain dicts,
so it never depends on the implementation it checks.  This module feeds it:
trace files line by line (:func:`validate_file`, bounded memory however long
the trace), records a recorder kept in memory (:func:`validate_recorded`, the
test suite's fixture), or a run's events as they are recorded
(:class:`LiveValidation`, ``trioraft simulate``), and words its verdict:
``PATH: OK (N events, M steps)`` or
``PATH:LINE: event SEQ at node N: RULE: expected X, logged Y``.

A cluster whose nodes run as separate processes writes one file per node
incarnation: :func:`validate_cluster` reads them (two passes: the messages
sent and received, then the events) and validates them as one history
(:mod:`trioraft.model.cluster` merges them).

A file written by a process killed with ``kill -9`` may end in the middle of
a step, or in the middle of a line: a torn last line (no newline, not JSON)
is left out, and a last step whose final state is not the model's (its
follow-ups never written) is noted as cut short, not reported as a violation.

A malformed or unreadable trace raises :class:`~trioraft.trace.TraceFormatError`
naming the file and line.

``TRIORAFT_VALIDATE=0`` in the environment turns off the validation of
recorded traces (:func:`validate_recorded`) while recording stays on: the
benchmarks use it to time recording alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import msgspec

from .model.cluster import (
    ClusterResult,
    ClusterTraceError,
    NodeFile,
    message_key,
    order_incarnations,
)
from .model.cluster import validate_cluster as _merge_and_validate
from .model.validator import Result, TraceError, Validator, Violation
from .trace.reader import TraceFormatError, check_event, check_header, check_records, iter_trace
from .trace.recorder import TraceRecorder

__all__ = [
    "ClusterVerdict",
    "LiveValidation",
    "TraceVerdict",
    "validate_cluster",
    "validate_file",
    "validate_lines",
    "validate_recorded",
    "validation_enabled",
]

ByteProgress = Callable[[int, int], None]
"""``progress(bytes_read, bytes_total)`` while a file is validated."""

PROGRESS_EVERY = 8192  # events between two progress reports


@dataclass(frozen=True)
class TraceVerdict:
    """One trace's verdict: the validator's result, with where the trace came from."""

    source: str
    result: Result
    torn_line: int | None = None
    """The trace's last line, torn by a crash (no newline, not JSON) and left out."""

    @property
    def ok(self) -> bool:
        return self.result.ok

    @property
    def notes(self) -> tuple[str, ...]:
        """What is not a violation but worth saying: the trace was cut by a crash."""
        cut = self.result.cut
        if cut is not None:
            line = self.torn_line or cut.line
            return (
                f"last step cut short by a crash at line {line} "
                f"(expected {cut.expected}, logged {cut.logged})",
            )
        if self.torn_line is not None:
            return (f"last line {self.torn_line} torn by a crash (left out)",)
        return ()

    def describe(self) -> str:
        """One line: ``SOURCE: OK (...)`` (then ``; NOTE``, if any) or
        ``SOURCE:LINE: event ...: RULE: ...``."""
        result = self.result
        v = result.violation
        if v is None:
            text = f"{self.source}: OK ({result.events} events, {result.steps} steps)"
            return "; ".join((text, *self.notes))
        where = f"{self.source}:{v.line}" if v.line is not None else self.source
        return f"{where}: {v.describe()}"


@dataclass(frozen=True)
class ClusterVerdict:
    """The verdict on the files of one cluster run, validated as one history."""

    sources: tuple[str, ...]  # the files, in the order given
    nodes: int
    result: ClusterResult

    @property
    def ok(self) -> bool:
        return self.result.ok

    @property
    def source(self) -> str:
        """A name for the whole set: ``cluster of N files``."""
        return f"cluster of {len(self.sources)} files"

    @property
    def notes(self) -> tuple[str, ...]:
        """Files cut short by a crash, nodes without a file (each names its file)."""
        return self.result.notes

    def describe(self) -> str:
        """``cluster of N files (K nodes): OK (...)`` or
        ``FILE:LINE: event SEQ at node N: RULE: expected X, logged Y`` (the file, line
        and seq of the event in its own file), then one indented line per note."""
        result = self.result
        v = result.violation
        if v is None:
            head = (
                f"{self.source} ({self.nodes} nodes): OK "
                f"({result.events} events, {result.steps} steps)"
            )
        else:
            where = f"{result.source}:{v.line}" if v.line is not None else str(result.source)
            head = f"{where}: {v.describe()}"
        return "\n".join((head, *(f"  {note}" for note in self.notes)))


def validate_lines(
    lines: Iterable[str | bytes],
    source: str = "<trace>",
    *,
    progress: Callable[[int], None] | None = None,
) -> TraceVerdict:
    """Validate a trace given as NDJSON lines (header first), one line at a time.

    Each line is checked as :func:`~trioraft.trace.read_trace` checks it, then fed
    to the validator; it stops at the first violation.  ``progress(lines_read)``
    is called every few thousand events.
    """
    torn: list[int] = []
    records = iter_trace(_whole_lines(lines, source, torn), source)
    lineno, header = next(records)
    validator = _validator(source, lineno, header)
    for lineno, event in records:
        try:
            if validator.feed(event, lineno) is not None:
                break
        except TraceError as exc:
            raise TraceFormatError(source, exc.line or lineno, exc.problem) from None
        if progress is not None and lineno % PROGRESS_EVERY == 0:
            progress(lineno)
    result = _finish(source, validator, lineno, cut=True)
    return TraceVerdict(source, result, torn[0] if torn else None)


_NEWLINES = ("\n", b"\n")


def _whole_lines(
    lines: Iterable[str | bytes], source: str, torn: list[int]
) -> Iterator[str | bytes]:
    """``lines``, without a last line torn by a crash (no newline, and not JSON):
    its number goes to ``torn``.  Only the last line can lack its newline."""
    for number, text in enumerate(lines, start=1):
        if text[-1:] not in _NEWLINES and text.strip():
            try:
                msgspec.json.decode(text)
            except (msgspec.DecodeError, UnicodeDecodeError):
                if number == 1:
                    raise TraceFormatError(
                        source, 1, "the header line is cut short (torn by a crash)"
                    ) from None
                torn.append(number)
                return
        yield text


def _validator(source: str, lineno: int, header: Mapping[str, Any]) -> Validator:
    try:
        return Validator(header)
    except TraceError as exc:
        raise TraceFormatError(source, lineno, exc.problem) from None


def _finish(source: str, validator: Validator, lineno: int, *, cut: bool = False) -> Result:
    try:
        return validator.finish(cut=cut)
    except TraceError as exc:
        raise TraceFormatError(source, exc.line or lineno, exc.problem) from None


def validate_file(path: str, progress: ByteProgress | None = None) -> TraceVerdict:
    """Read and validate a trace file, streaming; :class:`TraceFormatError` if it is
    unreadable or malformed.  ``progress(bytes_read, bytes_total)`` now and then."""
    try:
        with open(path, "rb") as file:
            total = os.fstat(file.fileno()).st_size
            report = None
            if progress is not None:
                progress(0, total)

                def report(_: int) -> None:
                    progress(file.tell(), total)

            verdict = validate_lines(file, path, progress=report)
            if progress is not None:
                progress(total, total)
            return verdict
    except OSError as exc:
        raise TraceFormatError(path, 0, f"cannot read: {exc.strerror}") from None


def validation_enabled() -> bool:
    """False when ``TRIORAFT_VALIDATE=0`` (recording still happens; see the module doc)."""
    return os.environ.get("TRIORAFT_VALIDATE", "1") != "0"


def validate_recorded(recorder: TraceRecorder) -> str | None:
    """Validate a trace recorded in memory; None when it is valid, else what is wrong."""
    if not validation_enabled():
        return None
    source = "<recorded trace>"
    try:
        trace = check_records(recorder.records, source)
        validator = _validator(source, 1, trace.header)
        for event, line in zip(trace.events, trace.lines, strict=True):
            if validator.feed(event, line) is not None:
                break
        verdict = TraceVerdict(source, _finish(source, validator, 0))
    except TraceError as exc:
        return str(TraceFormatError(source, exc.line or 0, exc.problem))
    except TraceFormatError as exc:
        return str(exc)
    return None if verdict.ok else verdict.describe()


class LiveValidation:
    """Validates a run while it is recorded: pass it as a recorder's ``listener``.

    Events are fed as they are written (numbered by their ``seq``, the
    trace's line minus one); :meth:`verdict` finishes the replay.  The first
    violation is kept in :attr:`violation` and handed to ``on_violation`` as
    soon as it is found (``trioraft simulate`` stops the run there); later
    events are not replayed.
    """

    def __init__(
        self,
        nodes: int,
        source: str = "<recorded trace>",
        on_violation: Callable[[Violation], None] | None = None,
    ) -> None:
        self.source = source
        self.violation: Violation | None = None
        self._on_violation = on_violation
        self._validator = Validator({"nodes": nodes})

    def __call__(self, record: dict[str, Any]) -> None:
        if self.violation is None:
            violation = self._validator.feed(record, record["seq"] + 1)
            if violation is not None:
                self._found(violation)

    def verdict(self, *, cut: bool = False) -> TraceVerdict:
        """The verdict on everything fed; ``cut``: the run stopped early, so its
        last step may be incomplete (see :meth:`Validator.finish`)."""
        result = self._validator.finish(cut=cut)
        if result.violation is not None and self.violation is None:
            self._found(result.violation)
        return TraceVerdict(self.source, result)

    def _found(self, violation: Violation) -> None:
        self.violation = violation
        if self._on_violation is not None:
            self._on_violation(violation)


# ------------------------------------------------------------------ a cluster's files


class _Message(msgspec.Struct):
    type: str


class _Glance(msgspec.Struct):
    """What the first pass reads of an event (msgspec skips the rest)."""

    node: int
    event: str
    id: int | None = None
    msg: _Message | None = None


_GLANCE = msgspec.json.Decoder(_Glance)


def validate_cluster(
    paths: Sequence[str], *, progress: ByteProgress | None = None
) -> ClusterVerdict:
    """Validate the trace files of one cluster run (one file per node incarnation,
    spec/TRACE.md "Cluster traces") as one history.

    A node's incarnations are ordered by their header's ``meta["started"]`` (then
    by the order given).  Two passes over the files: the first collects which
    messages are sent and received (and checks the headers), the second merges
    the events into one history and replays it (:mod:`trioraft.model.cluster`),
    holding one step per node.  ``progress(bytes_read, bytes_total)`` now and then
    during the second pass.  A file that is unreadable, malformed, or not one of
    a consistent set (no ``node`` in its header, another cluster size, a message
    id sent in two files, one incarnation given twice) raises
    :class:`TraceFormatError` naming it.
    """
    if not paths:
        raise TraceFormatError("<cluster>", 0, "no trace files given")
    seen: dict[str, str] = {}
    for path in paths:
        real = os.path.realpath(path)
        if real in seen:
            raise TraceFormatError(path, 0, f"given twice (as {seen[real]} too)")
        seen[real] = path
    sent: set[int] = set()
    received: set[int] = set()
    files: list[NodeFile] = []
    nodes = 0
    sizes: dict[str, int] = {}
    reading: dict[str, IO[bytes] | None] = {}  # the second pass's files: open, or done
    for path in paths:
        f, cluster_size, sizes[path] = _first_pass(path, sent, received, reading)
        if nodes and cluster_size != nodes:
            raise TraceFormatError(
                path, 1, f"a cluster of {cluster_size} nodes, while {files[0].source} has {nodes}"
            )
        nodes = cluster_size
        files.append(f)
    try:
        incarnations = order_incarnations(nodes, files)
        total = sum(sizes.values())
        report = None
        if progress is not None:
            progress(0, total)

            def report(_: int) -> None:
                done = 0
                for path, file in list(reading.items()):
                    try:
                        done += sizes[path] if file is None else file.tell()
                    except (OSError, ValueError):  # closed meanwhile
                        done += sizes[path]
                progress(done, total)

        result = _merge_and_validate(
            nodes, incarnations, sent=sent, received=received, progress=report
        )
        if progress is not None:
            progress(total, total)
    except ClusterTraceError as exc:
        raise TraceFormatError(exc.source, exc.line, exc.problem) from None
    finally:
        for file in list(reading.values()):
            if file is not None:
                file.close()  # (a violation stops the merge before the files end)
    return ClusterVerdict(tuple(paths), nodes, result)


def _first_pass(
    path: str, sent: set[int], received: set[int], reading: dict[str, IO[bytes] | None]
) -> tuple[NodeFile, int, int]:
    """Read one file quickly: its header, the messages it sends and receives (added
    to ``sent`` and ``received``), how it ends.  Returns it as a
    :class:`~trioraft.model.cluster.NodeFile` (its ``events`` read it again), the
    cluster size, and its size in bytes."""
    torn: list[int] = []
    mine: set[int] = set()  # this file's sends: `sent` holds the other files'
    header: dict[str, Any] | None = None
    node = nodes = 0
    last_event = ""
    last_line = 0
    events = 0
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            for line, text in enumerate(_whole_lines(file, path, torn), start=1):
                if not text.strip():
                    continue
                if header is None:
                    header = _cluster_header(path, line, text)
                    node, nodes = header["node"], header["nodes"]
                    continue
                try:
                    glance = _GLANCE.decode(text)
                except (msgspec.DecodeError, UnicodeDecodeError) as exc:
                    raise _bad_line(path, line, text, nodes, exc) from None
                if glance.node != node:
                    raise TraceFormatError(
                        path,
                        line,
                        f"an event of node {glance.node} in the trace of node {node} "
                        "(a node's file holds its own events only)",
                    )
                name = glance.event
                if name == "send" or name == "receive":
                    if glance.id is None or glance.msg is None:
                        raise TraceFormatError(path, line, f"a {name} without 'id' and 'msg'")
                    key = message_key(glance.id, glance.msg.type)
                    if name == "receive":
                        received.add(key)
                    elif key in sent:
                        raise TraceFormatError(
                            path,
                            line,
                            f"message id {glance.id} ({glance.msg.type}) is sent in an earlier "
                            "file too: these are not the files of one run (or one is given "
                            "twice)",
                        )
                    else:
                        mine.add(key)
                last_event = name
                last_line = line
                events += 1
    except OSError as exc:
        raise TraceFormatError(path, 0, f"cannot read: {exc.strerror}") from None
    if header is None:
        raise TraceFormatError(path, 1, "the trace is empty (no header line)")
    sent |= mine
    meta = header.get("meta")
    started = meta.get("started") if isinstance(meta, dict) else None
    if started is not None and (isinstance(started, bool) or not isinstance(started, int | float)):
        raise TraceFormatError(path, 1, f"meta 'started' must be a number, got {started!r}")

    def read_events() -> Iterator[tuple[int, dict[str, Any]]]:
        try:
            with open(path, "rb") as file:
                reading[path] = file
                records = iter_trace(_whole_lines(file, path, []), path)
                next(records)  # the header
                yield from records
        except OSError as exc:
            raise TraceFormatError(path, 0, f"cannot read: {exc.strerror}") from None
        finally:
            reading[path] = None

    f = NodeFile(
        source=path,
        node=node,
        started=started,
        events=read_events,
        crashed=last_event == "crash",
        last_line=torn[0] if torn else last_line,
        torn=bool(torn),
        empty=events == 0,
    )
    return f, nodes, size


def _cluster_header(path: str, line: int, text: str | bytes) -> dict[str, Any]:
    """The header of one node's file: a trace header naming its node."""
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise TraceFormatError(path, line, f"not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise TraceFormatError(path, line, f"not UTF-8 text: {exc.reason}") from None
    header = check_header(path, value)
    node = header.get("node")
    if node is None:
        raise TraceFormatError(
            path,
            line,
            "the header has no 'node': not the trace of one node (a cluster's files "
            "are one per node incarnation, each naming its node)",
        )
    if not isinstance(node, int) or isinstance(node, bool) or not 0 <= node < header["nodes"]:
        raise TraceFormatError(
            path, line, f"header field 'node' must be a node of the {header['nodes']}: {node!r}"
        )
    return header


def _bad_line(path: str, line: int, text: str | bytes, nodes: int, exc: Exception) -> Exception:
    """What is wrong with an event line the first pass could not read, worded as the
    reader words it."""
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError as error:
        return TraceFormatError(path, line, f"not valid JSON: {error}")
    except UnicodeDecodeError as error:
        return TraceFormatError(path, line, f"not UTF-8 text: {error.reason}")
    try:
        check_event(path, line, value, nodes, -(2**63))
    except TraceFormatError as error:
        return error
    return TraceFormatError(path, line, f"event {value.get('seq')} is malformed: {exc}")
