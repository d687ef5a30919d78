"""The invariant registry, evaluated incrementally along a long replayed trace.

The registry's functions (:mod:`.invariants`) read the whole state, history
included, so their cost grows with the run: checking them after every step
of a trace is quadratic.  :class:`Watch` checks, after each step, only what
the step changed, with indexes kept across steps, and asks the registry
itself (:func:`~.invariants.first_violation`) for the verdict and its wording
whenever it suspects anything.  So a violation is always named and described
by the registry, and its absence is decided in time proportional to the
change.

Rules of operation
------------------
- It relies on how the actions change state: unchanged servers are the same
  objects; logs change by keeping a prefix (found by :func:`common_prefix`);
  ``led_terms``, ``applied`` and ``committed`` grow (a change that is not an
  append falls back to the registry and a rebuild of the indexes).
- Log Matching compares prefixes by a 64-bit hash chain per log (``H[k]`` =
  hash of ``(H[k-1], term, value)``): two prefixes with equal chains are taken
  as equal, so a violation could be missed with probability about 2^-64 per
  comparison.
- Invariants it does not know (a registry that grew) are evaluated in full
  after every step.
- ``verify=True`` also evaluates the whole registry after every step and
  asserts both verdicts agree (the tests use it).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from .invariants import (
    Invariant,
    first_violation,
    message_term_at_most_sender,
    voted_for_in_term,
)
from .state import FOLLOWER, LEADER, NOBODY, Log, Message, Server, State, Value

HANDLED = frozenset(
    {
        "ElectionSafety",
        "LeaderAppendOnly",
        "LogMatching",
        "LeaderCompleteness",
        "StateMachineSafety",
        "VotedForInTerm",
        "TermCoversLog",
        "LogTermsNonDecreasing",
        "CommitWithinLog",
        "CommittedPrefixKnown",
        "AppliedPrefixesIdentical",
        "AppliedWereCommitted",
        "MessageTermAtMostSender",
    }
)


def common_prefix(old: Log, new: Log) -> int:
    """The length of the longest common prefix of two logs (C-speed slices)."""
    if new is old:
        return len(new)
    m = min(len(old), len(new))
    if new[:m] == old[:m]:
        return m
    low, high = 0, m - 1  # the prefix of length low is common, that of high + 1 is not
    while low < high:
        mid = (low + high + 1) // 2
        if new[:mid] == old[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


def hash_chain(log: Log, chain: list[int] | None = None, start: int = 0) -> list[int]:
    """``chain`` (``[0]`` when None) cut to ``start`` entries and extended over ``log``."""
    if chain is None:
        chain = [0]
    del chain[start + 1 :]
    h = chain[start]
    add = chain.append
    for entry in log[start:]:
        h = hash((h, entry.term, entry.value))
        add(h)
    return chain


class _Suspect(Exception):
    """Something may be violated (or an index cannot be updated): ask the registry."""


class Watch:
    """Checks the registry ``invariants`` step by step (see the module doc)."""

    def __init__(
        self, state: State, invariants: tuple[Invariant, ...], *, verify: bool = False
    ) -> None:
        self.invariants = invariants
        self.names = frozenset(inv.name for inv in invariants)
        self.others = tuple(inv for inv in invariants if inv.name not in HANDLED)
        self.verify = verify
        self._committed = state.committed  # of the state being checked
        self._rebuild(state)

    def _rebuild(self, state: State) -> None:
        """Every index from scratch (at the start, and after a fallback)."""
        self.chains = [hash_chain(s.log) for s in state.servers]
        self.led: dict[int, int] = {}
        self.chosen: dict[int, tuple[int, Value]] = {}
        self.known: set[tuple[int, int, Value]] = set()
        self.canon: list[tuple[int, int, Value]] = []
        for index, term, value, _ in state.committed:
            self.known.add((index, term, value))
            self.chosen.setdefault(index, (term, value))
        for i, s in enumerate(state.servers):
            for led in s.led_terms:
                self.led.setdefault(led, i)
            for k, applied in enumerate(s.applied):
                self.chosen.setdefault(applied[0], (applied[1], applied[2]))
                if k == len(self.canon):
                    self.canon.append(applied)

    def check(
        self, old: State, new: State, fresh: Sequence[Message] = ()
    ) -> tuple[str, str] | None:
        """The first violated invariant of ``new`` (registry order), or None; ``old`` is
        the state before the step, ``fresh`` the messages the step put in flight."""
        try:
            self._scan(old, new, fresh)
            for inv in self.others:
                if inv.check(new) is not None:
                    raise _Suspect
        except _Suspect:
            found = first_violation(new, self.invariants)
            if found is None:
                self._rebuild(new)  # an index could not follow the change: start over
            return found
        if self.verify:
            found = first_violation(new, self.invariants)
            assert found is None, f"incremental check missed {found}"
        return None

    # ------------------------------------------------------------ the scan

    def _scan(self, old: State, new: State, fresh: Sequence[Message]) -> None:
        self._committed = new.committed
        olds, news = old.servers, new.servers
        records = self._new_committed(old, new) if new.committed is not old.committed else ()
        prefix: dict[int, int] = {}
        lowered = False
        if news is not olds:
            for k, s1 in enumerate(news):
                s0 = olds[k]
                if s1 is s0:
                    continue
                if (
                    s1.log is s0.log
                    and s1.current_term == s0.current_term
                    and s1.commit_index == s0.commit_index
                    and s1.role == s0.role
                    and s1.voted_for == s0.voted_for
                    and s1.led_terms is s0.led_terms
                    and s1.snapshot_index == s0.snapshot_index
                ):
                    # Only lastApplied changed (an Apply): the history and its bound.
                    if s1.last_applied > s1.commit_index:
                        raise _Suspect  # CommitWithinLog
                    if s1.applied is not s0.applied:
                        self._applied(s0.applied, s1.applied)
                    continue
                p = len(s1.log)
                if s1.log is not s0.log:
                    p = common_prefix(s0.log, s1.log)
                    hash_chain(s1.log, self.chains[k], p)
                    prefix[k] = p
                lowered = lowered or s1.current_term < s0.current_term
                self._server(k, s0, s1, p)
                self._vote_and_commit(news, k)
            for a in prefix:
                self._log_matching(news, a, prefix)
        if records:
            self._completeness_of(records, news)
        # A crash that lost a term: other servers' votes and messages may now name
        # a term their subject no longer has.  Rare: ask the registry.
        if lowered and (
            voted_for_in_term(new) is not None or message_term_at_most_sender(new) is not None
        ):
            raise _Suspect
        for m in fresh:
            if m.term > news[m.source].current_term:
                raise _Suspect  # MessageTermAtMostSender

    @staticmethod
    def _vote_and_commit(servers: tuple[Server, ...], k: int) -> None:
        """VotedForInTerm and CommitWithinLog for server ``k`` (as the registry's)."""
        s = servers[k]
        if not s.last_applied <= s.commit_index <= len(s.log) or s.snapshot_index > s.commit_index:
            raise _Suspect
        voted = s.voted_for
        if voted == NOBODY:
            if s.role != FOLLOWER:
                raise _Suspect
        elif (
            not 0 <= voted < len(servers)
            or (s.role != FOLLOWER and voted != k)
            or servers[voted].current_term < s.current_term
        ):
            raise _Suspect

    def _new_committed(self, old: State, new: State) -> tuple[tuple[int, int, Value, int], ...]:
        """The committed records the step added (or whose commit term it lowered)."""
        before, after = old.committed, new.committed
        n = len(before)
        if len(after) >= n and after[:n] == before:
            records = after[n:]
        else:
            records = tuple(sorted(set(after) - set(before)))
        for index, term, value, _ in records:
            self.known.add((index, term, value))
            if self.chosen.setdefault(index, (term, value)) != (term, value):
                raise _Suspect  # StateMachineSafety
        return records

    def _server(self, k: int, s0: Server, s1: Server, p: int) -> None:
        """Every per-server invariant of server ``k`` after a change (log kept up to p)."""
        if s1.led_terms is not s0.led_terms:
            self._elected(k, s0.led_terms, s1.led_terms)
        log = s1.log
        if s1.role == LEADER and log is not s1.leader_log:
            held = s1.leader_log
            if log[: len(held)] != held:
                raise _Suspect  # LeaderAppendOnly
        self._terms(s0, s1, p)
        self._commit_prefix(s0, s1, p)
        if s1.applied is not s0.applied:
            self._applied(s0.applied, s1.applied)
        if s1.role == LEADER:
            if s0.role != LEADER or s0.current_term != s1.current_term:
                self._complete(s1, 0, None)
            elif log is not s0.log:
                self._complete(s1, p, None)

    def _elected(self, k: int, before: tuple[int, ...], after: tuple[int, ...]) -> None:
        n = len(before)
        if after[:n] != before:
            raise _Suspect
        for term in after[n:]:
            if self.led.setdefault(term, k) != k:
                raise _Suspect  # ElectionSafety

    def _terms(self, s0: Server, s1: Server, p: int) -> None:
        """TermCoversLog and LogTermsNonDecreasing over the entries after ``p``."""
        log = s1.log
        current = s1.current_term
        if current < s0.current_term:
            p = 0  # a lost term (a crash): every entry may now be too new
        last = log[p - 1].term if p else 0
        for entry in log[p:]:
            term = entry.term
            if term < last or term > current:
                raise _Suspect
            last = term

    def _commit_prefix(self, s0: Server, s1: Server, p: int) -> None:
        """CommittedPrefixKnown over the entries that newly count as committed."""
        log = s1.log
        start = min(s0.commit_index, len(s0.log), p)
        end = min(s1.commit_index, len(log))
        known = self.known
        for index in range(start + 1, end + 1):
            entry = log[index - 1]
            if (index, entry.term, entry.value) not in known:
                raise _Suspect

    def _applied(
        self, before: tuple[tuple[int, int, Value], ...], after: tuple[tuple[int, int, Value], ...]
    ) -> None:
        """AppliedPrefixesIdentical, AppliedWereCommitted and StateMachineSafety for the
        records a server just applied."""
        n = len(before)
        # Applied histories only grow and are sorted: one record more that sorts
        # after all the others was appended.
        if not (len(after) == n + 1 and (n == 0 or after[n] > before[n - 1])) and (
            len(after) < n or after[:n] != before
        ):
            raise _Suspect
        canon = self.canon
        for position, record in enumerate(after[n:], n + 1):
            index, term, value = record
            if index != position:
                raise _Suspect
            if position <= len(canon):
                if canon[position - 1] != record:
                    raise _Suspect
            else:
                canon.append(record)
            if record not in self.known:
                raise _Suspect
            if self.chosen.setdefault(index, (term, value)) != (term, value):
                raise _Suspect

    def _complete(
        self, s: Server, after: int, records: Sequence[tuple[int, int, Value, int]] | None
    ) -> None:
        """LeaderCompleteness for leader ``s``: committed records (those at indexes past
        ``after``, or just ``records``) of earlier terms are in its log."""
        log = s.log
        term = s.current_term
        if records is None:
            committed = self._committed
            records = committed[bisect_left(committed, (after + 1,)) :]
        for index, e_term, value, commit_term in records:
            if commit_term < term and (index > len(log) or log[index - 1] != (e_term, value)):
                raise _Suspect

    def _completeness_of(
        self, records: Sequence[tuple[int, int, Value, int]], servers: tuple[Server, ...]
    ) -> None:
        for s in servers:
            if s.role == LEADER:
                self._complete(s, 0, records)

    def _log_matching(self, servers: tuple[Server, ...], a: int, prefix: dict[int, int]) -> None:
        """Log Matching between server ``a`` (its log changed past ``prefix[a]``) and
        every other: the highest index where their terms agree must end equal prefixes."""
        log_a = servers[a].log
        chain_a = self.chains[a]
        for b, other in enumerate(servers):
            if b == a:
                continue
            low = min(prefix[a], prefix.get(b, prefix[a]))
            log_b = other.log
            k = min(len(log_a), len(log_b))
            while k > low and log_a[k - 1].term != log_b[k - 1].term:
                k -= 1
            if k > low and chain_a[k] != self.chains[b][k]:
                raise _Suspect
