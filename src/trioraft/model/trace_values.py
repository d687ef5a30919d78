"""Trace dicts (spec/TRACE.md) as model values, and model values as a trace shows
them: the trace validator's conversions, in one place.

The trace says ``null`` for no vote (the model: ``NOBODY``), names roles
(the model: small ints), lists entries as ``[term, digest]`` pairs (the model:
:class:`~.state.Entry`, interned so equal entries are one object) and logs
messages as dicts (the model: the message tuples of :mod:`.state`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from .state import (
    NOBODY,
    ROLE_NAMES,
    AppendEntriesRequest,
    Entry,
    Log,
    PreVoteRequest,
    RequestVoteRequest,
    Server,
    TimeoutNowRequest,
    append_entries_request,
    pre_vote_request,
    request_vote_request,
    snapshot_term,
    timeout_now_request,
)

_new = tuple.__new__


def vote(voted_for: Any) -> int:
    """A logged ``voted_for`` (null: none) as the model's."""
    return NOBODY if voted_for is None else int(voted_for)


def logged_vote(s: Server) -> int | None:
    """Server ``s``'s vote as a trace logs it."""
    return None if s.voted_for == NOBODY else s.voted_for


def role_name(s: Server) -> str:
    return ROLE_NAMES[s.role]


def last_term(s: Server) -> int:
    log = s.log
    return log[-1].term if log else 0


def logged_state(s: Server) -> tuple[Any, ...]:
    """Server ``s`` as a trace logs its ``state`` (``validator.STATE_FIELDS``)."""
    return (
        s.current_term,
        ROLE_NAMES[s.role],
        logged_vote(s),
        s.commit_index,
        s.last_applied,
        len(s.log),
        last_term(s),
        s.snapshot_index,
        snapshot_term(s),
    )


def show(value: Any) -> str:
    return "null" if value is None else str(value)


def show_vote(voted_for: int) -> str:
    return "null" if voted_for == NOBODY else str(voted_for)


def show_entry(log: Log, index: int) -> str:
    if index > len(log):
        return "none"
    entry = log[index - 1]
    return f"t{entry.term}={entry.value!r}"


def tuple_getter(fields: Sequence[str]) -> Callable[[Any], tuple[Any, ...]]:
    """``itemgetter(*fields)`` that always returns a tuple."""
    if len(fields) > 1:
        return itemgetter(*fields)
    if fields:
        field = fields[0]
        return lambda d: (d[field],)
    return lambda d: ()


class Entries:
    """Log entries read from a trace, interned: one :class:`Entry` per (term, digest)."""

    __slots__ = ("_known",)

    def __init__(self) -> None:
        self._known: dict[tuple[int, str], Entry] = {}

    def entry(self, term: int, value: str) -> Entry:
        key = (term, value)
        entry = self._known.get(key)
        if entry is None:
            entry = self._known[key] = _new(Entry, key)
        return entry

    def log(self, pairs: Sequence[Sequence[Any]]) -> Log:
        """``[[term, digest], ...]`` as entries."""
        entry = self.entry
        return tuple([entry(t, v) for t, v in pairs])


def request_vote_of(msg: Mapping[str, Any], source: int) -> RequestVoteRequest:
    """A logged RequestVote from ``source`` as the model's message."""
    return request_vote_request(
        term=msg["term"],
        source=source,
        dest=msg["to"],
        last_log_term=msg["last_log_term"],
        last_log_index=msg["last_log_index"],
        transfer=bool(msg.get("leadership_transfer", False)),  # (version 4; absent: false)
    )


def pre_vote_of(msg: Mapping[str, Any], source: int) -> PreVoteRequest:
    """A logged PreVote from ``source`` as the model's message (its term: the one the
    pre-candidate would stand for)."""
    return pre_vote_request(
        term=msg["term"],
        source=source,
        dest=msg["to"],
        last_log_term=msg["last_log_term"],
        last_log_index=msg["last_log_index"],
    )


def timeout_now_of(msg: Mapping[str, Any], source: int) -> TimeoutNowRequest:
    """A logged TimeoutNow from ``source`` as the model's message."""
    return timeout_now_request(term=msg["term"], source=source, dest=msg["to"])


def append_entries_of(
    msg: Mapping[str, Any], source: int, entries: Entries
) -> AppendEntriesRequest:
    """A logged AppendEntries from ``source`` as the model's message."""
    return append_entries_request(
        term=msg["term"],
        source=source,
        dest=msg["to"],
        prev_log_index=msg["prev_log_index"],
        prev_log_term=msg["prev_log_term"],
        entries=entries.log(msg["entries"]),
        leader_commit=msg["leader_commit"],
    )
