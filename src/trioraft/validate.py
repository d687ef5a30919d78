"""Checking recorded traces: the glue between trioraft.trace and the model's validator.

The validator itself lives in :mod:`trioraft.model` and sees only plain
dicts, so it never depends on the implementation it checks.
"""

from __future__ import annotations

from .trace.reader import TraceFormatError, check_records
from .trace.recorder import TraceRecorder


def validate_recorded(recorder: TraceRecorder) -> str | None:
    """Validate a trace recorded in memory; None when it is valid, else what is wrong."""
    try:
        check_records(recorder.records, "<recorded trace>")
    except TraceFormatError as exc:
        return str(exc)
    return None
