"""Checking recorded traces: the glue between trioraft.trace and the model's validator.

The validator itself (:mod:`trioraft.model.validator`) sees only plain dicts,
so it never depends on the implementation it checks.  This module feeds it:
trace files line by line (:func:`validate_file`, bounded memory however long
the trace), records a recorder kept in memory (:func:`validate_recorded`, the
test suite's fixture), or a run's events as they are recorded
(:class:`LiveValidation`, ``trioraft simulate``), and words its verdict:
``PATH: OK (N events, M steps)`` or
``PATH:LINE: event SEQ at node N: RULE: expected X, logged Y``.

A malformed or unreadable trace raises :class:`~trioraft.trace.TraceFormatError`
naming the file and line.

``TRIORAFT_VALIDATE=0`` in the environment turns off the validation of
recorded traces (:func:`validate_recorded`) while recording stays on: the
benchmarks use it to time recording alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .model.validator import Result, TraceError, Validator
from .trace.reader import TraceFormatError, check_records, iter_trace
from .trace.recorder import TraceRecorder

__all__ = [
    "LiveValidation",
    "TraceVerdict",
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

    @property
    def ok(self) -> bool:
        return self.result.ok

    def describe(self) -> str:
        """One line: ``SOURCE: OK (...)`` or ``SOURCE:LINE: event ...: RULE: ...``."""
        result = self.result
        v = result.violation
        if v is None:
            return f"{self.source}: OK ({result.events} events, {result.steps} steps)"
        where = f"{self.source}:{v.line}" if v.line is not None else self.source
        return f"{where}: {v.describe()}"


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
    records = iter_trace(lines, source)
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
    return TraceVerdict(source, _finish(source, validator, lineno))


def _validator(source: str, lineno: int, header: Mapping[str, Any]) -> Validator:
    try:
        return Validator(header)
    except TraceError as exc:
        raise TraceFormatError(source, lineno, exc.problem) from None


def _finish(source: str, validator: Validator, lineno: int) -> Result:
    try:
        return validator.finish()
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
    trace's line minus one); :meth:`verdict` finishes the replay.
    """

    def __init__(self, nodes: int, source: str = "<recorded trace>") -> None:
        self.source = source
        self._validator = Validator({"nodes": nodes})

    def __call__(self, record: dict[str, Any]) -> None:
        self._validator.feed(record, record["seq"] + 1)

    def verdict(self) -> TraceVerdict:
        return TraceVerdict(self.source, self._validator.finish())
