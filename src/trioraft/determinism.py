"""The one place that makes trio's scheduler deterministic.

trio randomises the order in which runnable tasks are stepped (so that code
does not come to depend on one order by accident).  For a simulation we want
the opposite: the same seed must give the same run.  trio has a switch for
exactly this, meant for Hypothesis: ``trio._core._run._ALLOW_DETERMINISTIC_SCHEDULING``
makes each batch of runnable tasks be sorted by creation order and shuffled by
``trio._core._run._r``, which we seed.  Both names are private, which is why
``pyproject.toml`` pins trio to a minor series and ``tests/test_determinism.py``
checks that the knobs still exist and still work.

Everything else a run depends on is ours: the virtual clock
(``trio.testing.MockClock``), and seeded ``random.Random`` objects in the
network and the peers.
"""

from __future__ import annotations

import trio
import trio._core._run as _trio_run
import trio.testing


def seed_scheduler(seed: int) -> None:
    """Make trio's task scheduling deterministic and seed it for the next run.

    Call it before ``trio.run``.  It stays switched on for the rest of the
    process (the cost is a sort of each batch of runnable tasks).
    """
    if not hasattr(_trio_run, "_ALLOW_DETERMINISTIC_SCHEDULING") or not hasattr(_trio_run, "_r"):
        raise RuntimeError(
            "this trio has no deterministic-scheduling switch; install the trio "
            "series pinned in trioraft's pyproject.toml"
        )
    _trio_run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    _trio_run._r.seed(seed)


def in_virtual_time() -> bool:
    """Whether the current trio run keeps virtual time (a ``MockClock``).

    Work that blocks a thread outside trio (an fsync) must then run inline: a
    task waiting on a worker thread looks blocked to ``MockClock``, which would
    jump the clock past timers while the disk works.
    """
    return isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)
