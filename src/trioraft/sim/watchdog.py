"""Fail, never hang: a trio instrument that stops a run that livelocks or runs too long.

A livelock in virtual time looks like this: tasks keep waking each other
without ever all blocking, so ``MockClock`` never jumps and the run goes on
for ever at one instant.  The :class:`Watchdog` counts the scheduler's
batches (one ``before_io_wait`` each) since virtual time last moved; past
``max_steps`` it cancels the run's scope with a reason.  It also checks the
wall clock every few thousand batches against ``wall_limit``.

Usage::

    watchdog = Watchdog(scope_holder, max_steps=..., wall_limit=...)
    trio.run(fn, clock=..., instruments=[watchdog])

where the run opens ``with watchdog.guard():`` around its work and raises
:class:`Stalled` afterwards if ``watchdog.reason`` is set.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import trio

MAX_STEPS_WITHOUT_TIME = 200_000
"""Scheduler batches at one virtual instant before a run counts as livelocked."""

WALL_CHECK_EVERY = 4096
"""Batches between two looks at the wall clock."""


class Stalled(Exception):
    """A run livelocked, or ran past its wall-clock limit (the message says which)."""


class Watchdog(trio.abc.Instrument):
    """Cancels :meth:`guard`'s scope when the run livelocks or overruns its wall time."""

    def __init__(
        self,
        *,
        max_steps: int = MAX_STEPS_WITHOUT_TIME,
        wall_limit: float | None = None,
        name: str = "the run",
    ) -> None:
        self.max_steps = max_steps
        self.wall_limit = wall_limit
        self.name = name
        self.reason: str | None = None
        self._scope: trio.CancelScope | None = None
        self._last_time: float | None = None
        self._still = 0  # batches since virtual time last moved
        self._batches = 0
        start = time.monotonic()  # wall-clock ok: the limit is on wall time
        self._deadline = None if wall_limit is None else start + wall_limit

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Run the body under the watchdog; raises :class:`Stalled` if it fired."""
        with trio.CancelScope() as scope:
            self._scope = scope
            try:
                yield
            finally:
                self._scope = None
        if self.reason is not None:
            raise Stalled(self.reason)

    def before_io_wait(self, timeout: float) -> None:
        now = trio.current_time()
        if now != self._last_time:
            self._last_time = now
            self._still = 0
        else:
            self._still += 1
            if self._still == self.max_steps:
                self._fire(
                    f"{self.name} livelocked: {self.max_steps:,} scheduler steps at virtual "
                    f"time {now:.3f} s without time advancing"
                )
        self._batches += 1
        deadline = self._deadline
        if (
            deadline is not None
            and self._batches % WALL_CHECK_EVERY == 0
            and time.monotonic() > deadline  # wall-clock ok: the limit is on wall time
        ):
            self._fire(f"{self.name} ran past its wall-clock limit of {self.wall_limit:g} s")

    def _fire(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        if self._scope is not None:
            self._scope.cancel()
