"""A breadth-first explicit-state model checker for the Figure 2 model.

Rules of operation
------------------
- Breadth-first from the initial state: every state at depth d is found
  before any at depth d + 1, and invariants are checked when a state is first
  found, so the first violation found is at the smallest depth there is and
  its trace is a shortest counterexample.
- Seen states are kept as 64-bit fingerprints (Python's deterministic hash of
  a tuple of ints), each mapped to its parent's fingerprint.  States
  themselves are kept only for the frontier.  A counterexample is rebuilt by
  replaying from the initial state, at each step taking a successor whose
  fingerprint is the next one on the parent chain.  (Two states sharing a
  fingerprint would hide one of them; at 64 bits and ten million states the
  chance is about 3 in a million.)
- With ``symmetry``, a state is fingerprinted in a canonical form over all
  renamings of the servers (they are interchangeable: every rule is the same
  for each), so states that differ only by server names count once.  Servers
  are ordered by a name-free key and only ties are tried both ways, so most
  states need one renaming.  The rebuilt trace is a concrete run (no renaming).
- Limits: ``max_states`` stops the search once that many distinct states are
  found; ``max_memory`` once the process's resident memory reaches that many
  bytes, sampled every ``MEMORY_SAMPLE_STATES`` new states (a read of
  /proc/self/statm costs microseconds; a state costs tens).  Either way the
  result says the search is incomplete and which limit stopped it.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Callable
from itertools import permutations, product
from typing import Final, NamedTuple

from .invariants import (
    INVARIANTS,
    SERVERS,
    SERVERS_AND_COMMITTED,
    Invariant,
    first_violation,
    for_options,
)
from .mutants import check_mutant
from .registry import next_states, successors
from .search import Bounds, Step, tidy_network
from .state import NOBODY, Ext, Read, Server, State, initial_state

_new = tuple.__new__

MEMORY_SAMPLE_STATES = 4096
"""The checker reads its resident memory once per this many new states."""

MAX_STATES: Final = "max_states"
MAX_MEMORY: Final = "max_memory"


class Progress(NamedTuple):
    """What the checker reports about once a second."""

    states: int  # distinct states found so far
    depth: int  # the BFS level being expanded
    frontier: int  # states left to expand at this level and the next
    seconds: float
    states_per_second: float


class CheckResult(NamedTuple):
    """The outcome of :func:`check`."""

    bounds: Bounds
    mutant: str | None
    symmetry: bool
    states: int  # distinct states found (canonical ones with symmetry)
    transitions: int  # successor states generated (including already-seen ones)
    depth: int  # the deepest BFS level reached (the counterexample's length, if any)
    seconds: float
    complete: bool  # every reachable state within the bounds was explored
    violation: tuple[str, str] | None  # (invariant name, what is wrong)
    trace: tuple[tuple[Step | None, State], ...]  # initial state first, violating state last
    stopped_by: str | None = None  # MAX_STATES or MAX_MEMORY when a limit cut the search short

    @property
    def ok(self) -> bool:
        return self.violation is None

    @property
    def states_per_second(self) -> float:
        return self.states / self.seconds if self.seconds > 0 else float("inf")


# --------------------------------------------------------------------- symmetry


def _rename_servers(servers: tuple[Server, ...], new_name: tuple[int, ...]) -> tuple[Server, ...]:
    """``servers`` with server ``k`` renamed ``new_name[k]`` everywhere."""
    n = len(servers)
    renamed: list[Server] = list(servers)
    for old, s in enumerate(servers):
        voted = s.voted_for
        votes = s.votes_granted
        if votes:
            bits = 0
            for k in range(n):
                if votes >> k & 1:
                    bits |= 1 << new_name[k]
            votes = bits
        next_index = s.next_index
        match_index = s.match_index
        if next_index:
            moved_next = [0] * n
            moved_match = [0] * n
            for k in range(n):
                moved_next[new_name[k]] = next_index[k]
                moved_match[new_name[k]] = match_index[k]
            next_index = tuple(moved_next)
            match_index = tuple(moved_match)
        renamed[new_name[old]] = s._replace(
            voted_for=voted if voted == NOBODY else new_name[voted],
            votes_granted=votes,
            next_index=next_index,
            match_index=match_index,
            ext=_rename_ext(s.ext, new_name) if s.ext.options else s.ext,
        )
    return tuple(renamed)


def _rename_ext(ext: Ext, new_name: tuple[int, ...]) -> Ext:
    """The extensions' state with server ``k`` renamed ``new_name[k]``."""
    target = ext.transfer_to
    reads = ext.reads
    if reads:
        reads = tuple(Read(read.floor, _rename_bits(read.acks, new_name)) for read in reads)
    return ext._replace(transfer_to=target if target == NOBODY else new_name[target], reads=reads)


def _rename_bits(bits: int, new_name: tuple[int, ...]) -> int:
    renamed = 0
    for k, name in enumerate(new_name):
        if bits >> k & 1:
            renamed |= 1 << name
    return renamed


def _name_free_key(i: int, s: Server) -> tuple[object, ...]:
    """What a server looks like without the names of servers (its own or others')."""
    voted = s.voted_for
    return (
        s.current_term,
        s.role,
        s.log,
        s.snapshot_index,
        s.commit_index,
        s.last_applied,
        0 if voted == NOBODY else 1 if voted == i else 2,
        s.votes_granted.bit_count(),
        tuple(sorted(s.match_index)),
        s.leader_log,
        s.led_terms,
        s.applied,
        _name_free_ext(s.ext) if s.ext.options else None,
    )


def _name_free_ext(ext: Ext) -> tuple[object, ...]:
    return (
        ext.options,
        ext.lease,
        ext.transfer_to != NOBODY,
        ext.abandoned,
        ext.campaign,
        tuple((read.floor, read.acks.bit_count()) for read in ext.reads),
        ext.lease_votes,
        ext.stale_reads,
    )


Renaming = tuple[tuple[int, ...] | None, tuple[Server, ...], int]
"""A renaming of the servers (None: keep the names), the servers renamed so, and
their hash."""


def canonical_renamings(servers: tuple[Server, ...]) -> tuple[Renaming, ...]:
    """The renamings that put ``servers`` in canonical order.

    Servers are sorted by a name-free key; where keys tie, every order of the
    tied servers is a candidate.  Renaming ``servers`` first by any permutation
    yields the same set of renamed results, so the least fingerprint over the
    candidates is the same for every renaming of a state.
    """
    n = len(servers)
    keys = [_name_free_key(i, s) for i, s in enumerate(servers)]
    order = sorted(range(n), key=keys.__getitem__)  # order[new] = old name
    groups: list[list[int]] = []
    for position, old in enumerate(order):
        if position and keys[old] == keys[order[position - 1]]:
            groups[-1].append(old)
        else:
            groups.append([old])
    found: list[Renaming] = []
    for arrangement in product(*(permutations(g) for g in groups)):
        new_name = [0] * n
        new = 0
        for group in arrangement:
            for old in group:
                new_name[old] = new
                new += 1
        if all(new_name[k] == k for k in range(n)):
            found.append((None, servers, hash(servers)))
        else:
            names = tuple(new_name)
            renamed = _rename_servers(servers, names)
            found.append((names, renamed, hash(renamed)))
    return tuple(found)


class Fingerprinter:
    """64-bit fingerprints of states; with ``symmetry``, equal for all renamings of
    the servers (they are interchangeable: every rule is the same for each).

    A fingerprint hashes the hash of the servers with the network, the committed
    history and the restart count, so a caller that knows the servers' hash
    (the parent's, when an action left the servers alone) passes it to
    :meth:`of`.  The canonical renamings of each distinct servers tuple are
    remembered: there are far fewer of those than states.
    """

    def __init__(self, symmetry: bool) -> None:
        self.symmetry = symmetry
        self._renamings: dict[int, tuple[Renaming, ...]] = {}
        self.named: set[int] = set()
        """The hashes of servers tuples already in canonical order, with no tie (their
        one canonical renaming keeps the names, so a state with them is canonical
        and fingerprinted as without symmetry).  Filled as :meth:`of` meets them."""

    def __call__(self, state: State) -> int:
        return self.of(state, hash(state.servers))

    def of(self, state: State, servers_hash: int) -> int:
        """The fingerprint of ``state``, whose servers hash to ``servers_hash``."""
        if not self.symmetry:
            return hash((servers_hash, state.network, state.committed, state.restarts, state.stood))
        best: int | None = None
        for new_name, _, renamed_hash in self._renamings_of(state, servers_hash):
            if new_name is None:
                network: tuple[object, ...] = state.network
            else:
                network = tuple(
                    sorted((*m[:2], new_name[m[2]], new_name[m[3]], *m[4:]) for m in state.network)
                )
            fp = hash((renamed_hash, network, state.committed, state.restarts, state.stood))
            if best is None or fp < best:
                best = fp
        assert best is not None
        return best

    def canonical(self, state: State, servers_hash: int) -> tuple[State, int]:
        """The renaming of ``state`` whose fingerprint :meth:`of` gives, and its
        servers' hash (``state`` itself without symmetry).

        The checker keeps canonical states in its frontier: their successors
        are often canonical already, and a canonical state needs no renaming.
        """
        if not self.symmetry:
            return state, servers_hash
        best: tuple[int, State, int] | None = None
        for new_name, renamed, renamed_hash in self._renamings_of(state, servers_hash):
            if new_name is None:
                candidate = state
            else:
                network = sorted(
                    _new(type(m), (*m[:2], new_name[m[2]], new_name[m[3]], *m[4:]))
                    for m in state.network
                )
                candidate = _new(
                    State, (renamed, tuple(network), state.committed, state.restarts, state.stood)
                )
            fp = hash(
                (renamed_hash, candidate.network, state.committed, state.restarts, state.stood)
            )
            if best is None or fp < best[0]:
                best = (fp, candidate, renamed_hash)
        assert best is not None
        return best[1], best[2]

    def _renamings_of(self, state: State, servers_hash: int) -> tuple[Renaming, ...]:
        renamings = self._renamings.get(servers_hash)
        if renamings is None:
            renamings = canonical_renamings(state.servers)
            self._renamings[servers_hash] = renamings
            if len(renamings) == 1 and renamings[0][0] is None:
                self.named.add(servers_hash)
        return renamings


def symmetric_fingerprint(state: State) -> int:
    """A fingerprint of ``state`` equal for all renamings of its servers."""
    return Fingerprinter(True)(state)


# --------------------------------------------------------------------- memory


def resident_memory() -> int:
    """This process's resident memory in bytes: now where /proc says (Linux), else
    its peak so far (getrusage); 0 where neither is known."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes there, KiB elsewhere


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


# --------------------------------------------------------------------- search


ProgressCallback = Callable[[Progress], None]


def check(
    bounds: Bounds,
    *,
    mutant: str | None = None,
    symmetry: bool = False,
    invariants: tuple[Invariant, ...] = INVARIANTS,
    progress: ProgressCallback | None = None,
    progress_interval: float = 1.0,
    max_states: int | None = None,
    max_memory: int | None = None,
    initial: State | None = None,
) -> CheckResult:
    """Explore every state reachable within ``bounds``, breadth-first, checking
    ``invariants`` in each; stop at the first violation with a shortest trace.

    ``max_states`` (distinct states) and ``max_memory`` (bytes of resident
    memory, see :func:`resident_memory`) stop the search early: ``complete`` is
    then False and ``stopped_by`` names the limit.  ``progress`` is called
    about every ``progress_interval`` seconds.  ``initial`` starts the
    search from a given state (say, one a scripted run reached) instead of the
    cluster's first boot (its network tidied, see ``search.tidy_network``); it
    must have ``bounds.servers`` servers.
    """
    mutant = check_mutant(mutant)
    _check_bounds(bounds)
    # States are trees of tuples, never cycles, so the cycle collector has nothing
    # to find; left on, it rescans the millions of live tuples again and again
    # (a third of the run time).
    options = bounds.options
    for s in initial.servers if initial is not None else ():
        options |= s.ext.options
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _search(
            bounds,
            mutant,
            symmetry,
            for_options(invariants, options),
            progress,
            progress_interval,
            _Limits(max_states, max_memory),
            initial,
        )
    finally:
        if collecting:
            gc.enable()


def _search(
    bounds: Bounds,
    mutant: str | None,
    symmetry: bool,
    invariants: tuple[Invariant, ...],
    progress: ProgressCallback | None,
    progress_interval: float,
    limits: _Limits,
    initial: State | None,
) -> CheckResult:
    start = time.perf_counter()
    if initial is None:
        init = initial_state(bounds.servers, bounds.options)
    else:
        init = tidy_network(initial)
    if len(init.servers) != bounds.servers:
        raise ValueError(
            f"the initial state has {len(init.servers)} servers but bounds.servers is "
            f"{bounds.servers}"
        )
    fingerprint_of = Fingerprinter(symmetry)
    fingerprint_with = fingerprint_of.of
    canonical_of = fingerprint_of.canonical
    named = fingerprint_of.named  # (servers hashes whose states are canonical as they are)
    init_fp = fingerprint_of(init)
    parents: dict[int, int] = {init_fp: init_fp}
    transitions = 0

    def result(
        depth: int,
        complete: bool,
        violation: tuple[str, str] | None,
        trace: tuple[tuple[Step | None, State], ...],
        stopped_by: str | None = None,
    ) -> CheckResult:
        return CheckResult(
            bounds,
            mutant,
            symmetry,
            len(parents),
            transitions,
            depth,
            time.perf_counter() - start,
            complete,
            violation,
            trace,
            stopped_by,
        )

    def violation_found(child: State, fp: int, depth: int) -> CheckResult:
        bad = first_violation(child, invariants)
        assert bad is not None
        trace = _rebuild(init, fp, parents, bounds, mutant, fingerprint_of)
        return result(depth, False, bad, trace)

    bad = first_violation(init, invariants)
    if bad is not None:
        return result(0, False, bad, ((None, init),))
    # Verdicts of the invariants that read only the servers (or the servers and
    # the committed history) are remembered: far fewer distinct server tuples
    # than states.  Keys are hashes, like the fingerprints.
    on_servers = tuple(inv for inv in invariants if inv.reads == SERVERS)
    on_committed = tuple(inv for inv in invariants if inv.reads == SERVERS_AND_COMMITTED)
    on_state = tuple(inv for inv in invariants if inv.reads not in (SERVERS, SERVERS_AND_COMMITTED))
    servers_ok: set[int] = set()
    committed_ok: set[int] = set()
    stopped_by = limits.reached(len(parents))
    if stopped_by is not None:
        return result(0, False, None, (), stopped_by)
    checkpoint = limits.next_check  # len(parents) at which to look at the limits again
    frontier: list[tuple[State, int, int]] = [(init, init_fp, hash(init.servers))]
    depth = 0
    next_report = start + progress_interval
    while frontier:
        depth += 1
        found: list[tuple[State, int, int]] = []
        keep = found.append
        for done, (state, state_fp, parent_hash) in enumerate(frontier):
            parent_servers = state.servers
            parent_committed = state.committed
            children = next_states(state, bounds, mutant)
            transitions += len(children)
            for child in children:
                servers = child.servers
                servers_hash = parent_hash if servers is parent_servers else hash(servers)
                if symmetry and servers_hash not in named:
                    fp = fingerprint_with(child, servers_hash)
                else:  # Fingerprinter.of, inlined for one renaming, keeping the names
                    fp = hash(
                        (servers_hash, child.network, child.committed, child.restarts, child.stood)
                    )
                if fp in parents:
                    continue
                parents[fp] = state_fp
                if servers is not parent_servers:
                    key = servers_hash
                    if key not in servers_ok:
                        for inv in on_servers:
                            if inv.check(child) is not None:
                                return violation_found(child, fp, depth)
                        servers_ok.add(key)
                if servers is not parent_servers or child.committed is not parent_committed:
                    key = hash((servers_hash, child.committed))
                    if key not in committed_ok:
                        for inv in on_committed:
                            if inv.check(child) is not None:
                                return violation_found(child, fp, depth)
                        committed_ok.add(key)
                for inv in on_state:
                    if inv.check(child) is not None:
                        return violation_found(child, fp, depth)
                if symmetry and servers_hash not in named:
                    child, servers_hash = canonical_of(child, servers_hash)
                keep((child, fp, servers_hash))
                if len(parents) >= checkpoint:
                    stopped_by = limits.reached(len(parents))
                    if stopped_by is not None:
                        return result(depth, False, None, (), stopped_by)
                    checkpoint = limits.next_check
            if progress is not None and done & 255 == 0:
                now = time.perf_counter()
                if now >= next_report:
                    next_report = now + progress_interval
                    elapsed = now - start
                    progress(
                        Progress(
                            len(parents),
                            depth,
                            len(frontier) - done + len(found),
                            elapsed,
                            len(parents) / elapsed,
                        )
                    )
        frontier = found
    return result(depth - 1, True, None, ())


class _Limits:
    """When the search stops early: at ``max_states`` distinct states, or once the
    process's resident memory reaches ``max_memory`` bytes."""

    def __init__(self, max_states: int | None, max_memory: int | None) -> None:
        self.max_states = max_states
        self.max_memory = max_memory
        self.next_check = 0

    def reached(self, states: int) -> str | None:
        """The limit that ``states`` found so far have reached (memory is read now),
        if any; else None, and :attr:`next_check` is when to look again."""
        if self.max_states is not None and states >= self.max_states:
            return MAX_STATES
        if self.max_memory is not None and resident_memory() >= self.max_memory:
            return MAX_MEMORY
        later = states + MEMORY_SAMPLE_STATES if self.max_memory is not None else sys.maxsize
        self.next_check = later if self.max_states is None else min(later, self.max_states)
        return None


def _rebuild(
    init: State,
    target: int,
    parents: dict[int, int],
    bounds: Bounds,
    mutant: str | None,
    fingerprint_of: Callable[[State], int],
) -> tuple[tuple[Step | None, State], ...]:
    """The concrete run from ``init`` to the state fingerprinted ``target``."""
    chain = [target]
    while parents[chain[-1]] != chain[-1]:
        chain.append(parents[chain[-1]])
    chain.reverse()
    trace: list[tuple[Step | None, State]] = [(None, init)]
    state = init
    for fp in chain[1:]:
        for step, child in successors(state, bounds, mutant):
            if fingerprint_of(child) == fp:
                trace.append((step, child))
                state = child
                break
        else:  # pragma: no cover - only a fingerprint collision could get here
            raise RuntimeError("could not replay the counterexample (fingerprint collision?)")
    return tuple(trace)


def _check_bounds(bounds: Bounds) -> None:
    if bounds.servers < 1:
        raise ValueError(f"servers must be at least 1, got {bounds.servers}")
    if bounds.servers > 16:
        raise ValueError(
            f"servers must be at most 16 for an exhaustive check, got {bounds.servers}"
        )
    for name in ("max_term", "max_log", "max_msgs", "max_restarts"):
        if getattr(bounds, name) < 0:
            raise ValueError(f"{name} must not be negative, got {getattr(bounds, name)}")
    if bounds.values < 1:
        raise ValueError(f"values must be at least 1, got {bounds.values}")
