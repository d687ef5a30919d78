"""Ready: what the shell must make durable, then carry out (etcd-io/raft's ``Ready``).

Rules of operation
------------------
After feeding the node an input, the shell asks ``node.has_ready()``; if so it
takes ``ready = node.ready()`` and, in this order:

1. **makes durable** what the Ready says changed: ``entries_from``/``entries``
   (drop every stored entry at or after ``entries_from``, then append
   ``entries``), ``snapshot`` (a new snapshot; stored entries up to its index
   are folded into it) and ``hard_state`` (term, vote, commit).  When
   ``must_sync`` is set the writes must reach stable storage (fsync) before
   step 2; a commit-only change may stay in the page cache.
2. **sends** ``messages``: vote requests, and replies to requests the node
   received (``reply_to`` is the shell's token for the request's caller);
3. **acknowledges** with ``node.advance(ready)``;
4. **applies** ``apply_snapshot`` and then ``apply_entries`` (indexes from
   ``apply_from``) to the service, in that order, and answers ``reads``.

Only one Ready is outstanding at a time: ``ready()`` refuses to hand out
another before ``advance()``.  Everything in a Ready depends only on state
that is durable once that Ready's own writes are (Figure 2: "updated on
stable storage before responding to RPCs"), so the shell's one loop of
persist, send, advance, apply keeps Raft's durability order without a flush
call placed by hand.  Messages the leader builds on demand
(``node.message_for``) need no Ready: their term is durable since the leader
was elected, and their entries need not be (thesis §10.2.1: a leader counts
itself towards a majority only for durable entries).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from .messages import AnyArgs, AnyReply, Entry


class HardState(msgspec.Struct, frozen=True, array_like=True):
    """The small durable record beside the log: Figure 2's currentTerm and
    votedFor, plus the commit index (which may lag: it is only ever a lower bound)."""

    term: int
    voted_for: int | None
    commit: int


class Snapshot(msgspec.Struct, frozen=True, array_like=True):
    """A snapshot (Figure 13): the service's state with every entry up to
    ``index`` (whose term is ``term``) folded in."""

    index: int
    term: int
    data: bytes


@dataclass(slots=True)
class Outbound:
    """A message to send once the Ready that carries it is durable.

    ``reply_to`` is None for a request (a RequestVote); for a reply it is the
    opaque token the shell passed in with the request.
    """

    to: int
    message: AnyArgs | AnyReply
    reply_to: Any = None


@dataclass(slots=True)
class Ready:
    """One batch of work for the shell (see the module docstring for the order)."""

    hard_state: HardState | None = None
    snapshot: Snapshot | None = None
    entries_from: int | None = None
    entries: list[Entry] = field(default_factory=list)
    must_sync: bool = False
    messages: list[Outbound] = field(default_factory=list)
    apply_snapshot: Snapshot | None = None
    apply_from: int = 0
    apply_entries: list[Entry] = field(default_factory=list)
    reads: list[tuple[Any, int | None]] = field(default_factory=list)
    """ReadIndex answers: (token, read index), or (token, None) when this node
    stopped being the leader before a majority confirmed it (thesis §6.4)."""

    @property
    def has_writes(self) -> bool:
        """Whether step 1 has anything to write."""
        return (
            self.hard_state is not None
            or self.snapshot is not None
            or self.entries_from is not None
        )

    @property
    def last_written(self) -> int | None:
        """The index of the last entry this Ready writes (None when it writes none)."""
        if self.entries_from is None:
            return None
        return self.entries_from + len(self.entries) - 1


NOOP = msgspec.Raw(b"\xc7\x00\x01")
"""The command of a leader's no-op entry (Raft §8): msgpack's extension type 1
with no data, a value no client command can be (commands are plain data, which
``trioraft.codec.check_command`` enforces), and one that any decoder skips."""
