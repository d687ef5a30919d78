"""Execution traces: every state change of every peer, as one ordered NDJSON stream.

:class:`TraceRecorder` is handed to the peers (``RaftConfig(tracer=...)``) and
to the simulated network; :func:`read_trace` reads a trace file back, with a
clear :class:`TraceFormatError` naming the line of anything malformed.  The
format is documented in ``spec/TRACE.md``.
"""

from .reader import TraceFormatError, read_trace, read_trace_lines
from .recorder import TRACE_FORMAT, TRACE_VERSION, TraceRecorder, current_message_id

__all__ = [
    "TRACE_FORMAT",
    "TRACE_VERSION",
    "TraceFormatError",
    "TraceRecorder",
    "current_message_id",
    "read_trace",
    "read_trace_lines",
]
