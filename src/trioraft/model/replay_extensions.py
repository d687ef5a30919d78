"""What the trace validator keeps for the extensions (spec/TRACE.md, version 4):
which ones a node runs, and its ReadIndex reads.

Rules of operation
------------------
- **Options.**  A node's ``init`` says whether it runs Pre-Vote and CheckQuorum
  (``pre_vote``, ``check_quorum``, present only when true); leadership transfer
  and ReadIndex are API calls, always available, and the trace shows them when
  used (:func:`options_of`).  A restarted node runs what its new ``init`` says.
- **Reads** (thesis §6.4): a leader's read is confirmed by a follower that
  answers, in the leader's term, a message the leader built after the read
  began.  The implementation records a request's ``send`` when it builds it,
  and a ``read_index`` and a ``send`` of a request are each a step of their
  own, so "built after" is "sent in a later step".  :class:`Reads` keeps, per
  leader, the step at which each waiting read began, in the model's order of
  ``Ext.reads`` (reads leave it from the front when served, all at once when
  the leader steps down), so the validator can confirm exactly the reads a
  message covers (``extensions.ack_read(..., count)``).
- This module only tells what is wrong; the validator raises the violations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .state import CHECK_QUORUM, PRE_VOTE, READ_INDEX, TRANSFER

ALWAYS = TRANSFER | READ_INDEX
"""The extensions every node of a version-4 trace may use: API calls, seen when used."""


def options_of(init: Mapping[str, Any]) -> int:
    """The extensions a node runs, from its ``init`` event (``Ext.options``)."""
    options = ALWAYS
    if init.get("pre_vote"):
        options |= PRE_VOTE
    if init.get("check_quorum"):
        options |= CHECK_QUORUM
    return options


def find(events: Sequence[Mapping[str, Any]], start: int, end: int, name: str) -> Any:
    """The first event named ``name`` in events[start:end] (one step), or None."""
    for k in range(start, end):
        if events[k]["event"] == name:
            return events[k]
    return None


class Reads:
    """One node's ReadIndex reads as the trace numbers them (``read``)."""

    __slots__ = ("began", "open")

    def __init__(self) -> None:
        # The reads waiting in the model (Ext.reads), oldest first: (number, step begun).
        self.began: list[tuple[int, int]] = []
        self.open: set[int] = set()  # numbers begun, neither served nor failed yet

    def reset(self) -> None:
        """A restart: the node numbers its reads from 1 again."""
        self.began.clear()
        self.open.clear()

    def sync(self, waiting: int) -> None:
        """The model holds ``waiting`` reads: the others left from the front (served)
        or all together (a step-down)."""
        if len(self.began) > waiting:
            del self.began[: len(self.began) - waiting]

    def begin(self, number: int, step: int) -> str | None:
        """A ``read_index``; what is wrong with its number, if anything."""
        if number in self.open:
            return f"read {number} is already waiting"
        self.began.append((number, step))
        self.open.add(number)
        return None

    def before(self, step: int) -> int:
        """How many of the waiting reads began before ``step`` (a message sent then
        confirms those)."""
        count = 0
        for _, began in self.began:
            if began >= step:
                break
            count += 1
        return count

    def oldest(self) -> int | None:
        """The number of the oldest waiting read (the next one served), or None."""
        return self.began[0][0] if self.began else None

    def served(self) -> None:
        """The oldest waiting read was served (the implementation, like the model,
        serves them in order)."""
        number, _ = self.began.pop(0)
        self.open.discard(number)

    def failed(self, number: int) -> bool:
        """A ``read_failed``: was it waiting?"""
        if number not in self.open:
            return False
        self.open.discard(number)
        self.began[:] = [read for read in self.began if read[0] != number]
        return True
