"""Raft's safety properties (Figure 3) and auxiliary invariants, as state predicates.

Each invariant is a function ``state -> str | None``: None when it holds, else a
sentence saying what is wrong, naming servers, indexes and terms.  The
registry :data:`INVARIANTS` is the one list both the model checker and the
trace validator evaluate.  Properties about the past (Election Safety over
every leader ever elected, Leader Append-Only, State Machine Safety over
everything ever applied) read the history variables the actions keep in the
state (see :mod:`.state`).

They run on every new state the checker finds, so each is written to be cheap
on the common case (no leaders, short logs, empty histories).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from .state import (
    CANDIDATE,
    LEADER,
    NOBODY,
    PRE_VOTE,
    PRE_VOTE_REQUEST,
    PRE_VOTE_RESPONSE,
    READ_INDEX,
    ROLE_NAMES,
    TIMEOUT_NOW_REQUEST,
    TRANSFER,
    Entry,
    State,
    Value,
)


def election_safety(state: State) -> str | None:
    """At most one leader can be elected in a given term (over all of history)."""
    elected: dict[int, int] = {}
    for i, s in enumerate(state.servers):
        for term in s.led_terms:
            other = elected.setdefault(term, i)
            if other != i:
                return f"servers {other} and {i} were both elected leader in term {term}"
    return None


def leader_append_only(state: State) -> str | None:
    """A leader never overwrites or deletes entries in its log; it only appends."""
    for i, s in enumerate(state.servers):
        if s.role == LEADER:
            held = s.leader_log
            if s.log[: len(held)] != held:
                return (
                    f"leader {i} of term {s.current_term} held log {_show(held)} "
                    f"and now has {_show(s.log)}"
                )
    return None


def log_matching(state: State) -> str | None:
    """If two logs contain an entry with the same index and term, the logs are
    identical in all entries up through that index."""
    servers = state.servers
    n = len(servers)
    for a in range(n):
        log_a = servers[a].log
        if not log_a:
            continue
        for b in range(a + 1, n):
            log_b = servers[b].log
            if log_a is log_b or not log_b:
                continue
            k = min(len(log_a), len(log_b))
            while k > 0 and log_a[k - 1].term != log_b[k - 1].term:
                k -= 1
            if k and log_a[:k] != log_b[:k]:
                return (
                    f"servers {a} and {b} both have term {log_a[k - 1].term} at index {k} "
                    f"but their logs differ up to it: {_show(log_a[:k])} and {_show(log_b[:k])}"
                )
    return None


def leader_completeness(state: State) -> str | None:
    """If an entry is committed in a given term, it is present in the logs of the
    leaders of all higher terms."""
    committed = state.committed
    if not committed:
        return None
    for i, s in enumerate(state.servers):
        if s.role != LEADER:
            continue
        log = s.log
        for index, term, value, commit_term in committed:
            if commit_term < s.current_term and (
                index > len(log) or log[index - 1] != (term, value)
            ):
                return (
                    f"entry {index}:t{term}={value!r}, committed in term {commit_term}, is "
                    f"missing from the log of leader {i} of term {s.current_term}: {_show(log)}"
                )
    return None


def state_machine_safety(state: State) -> str | None:
    """No two different entries are ever committed, or applied by any server, at the
    same index."""
    chosen: dict[int, tuple[int, Value]] = {}
    for index, term, value, _ in state.committed:
        other = chosen.setdefault(index, (term, value))
        if other != (term, value):
            return (
                f"two different entries were committed at index {index}: "
                f"t{other[0]}={other[1]!r} and t{term}={value!r}"
            )
    for i, s in enumerate(state.servers):
        for index, term, value in s.applied:
            other = chosen.setdefault(index, (term, value))
            if other != (term, value):
                return (
                    f"server {i} applied t{term}={value!r} at index {index}, where "
                    f"t{other[0]}={other[1]!r} was committed or applied"
                )
    return None


# --------------------------------------------------------------------- auxiliary


def voted_for_in_term(state: State) -> str | None:
    """voted_for is only a vote of the current term: it names a server in that term
    or later, and candidates and leaders voted for themselves."""
    servers = state.servers
    for i, s in enumerate(servers):
        voted = s.voted_for
        if voted == NOBODY:
            if s.role == CANDIDATE or s.role == LEADER:
                return f"server {i} is a {_role(s.role)} of term {s.current_term} with no vote"
            continue
        if not 0 <= voted < len(servers):
            return f"server {i} voted for {voted}, which is not a server"
        if (s.role == CANDIDATE or s.role == LEADER) and voted != i:
            return f"server {i} is a {_role(s.role)} of term {s.current_term} but voted for {voted}"
        if servers[voted].current_term < s.current_term:
            return (
                f"server {i} has voted_for {voted} in term {s.current_term}, but server "
                f"{voted} is only in term {servers[voted].current_term}"
            )
    return None


def term_covers_log(state: State) -> str | None:
    """current_term is at least the term of every entry in the server's log."""
    for i, s in enumerate(state.servers):
        for index, entry in enumerate(s.log, 1):
            if entry.term > s.current_term:
                return (
                    f"server {i} is in term {s.current_term} but holds entry {index} "
                    f"of term {entry.term}"
                )
    return None


def log_terms_non_decreasing(state: State) -> str | None:
    """The terms in a log never decrease from one index to the next."""
    for i, s in enumerate(state.servers):
        last = 0
        for index, entry in enumerate(s.log, 1):
            if entry.term < last:
                return f"server {i}'s log goes back from term {last} to {entry.term} at {index}"
            last = entry.term
    return None


def commit_within_log(state: State) -> str | None:
    """last_applied <= commit_index <= the index of the last log entry, and
    snapshot_index <= commit_index (a snapshot holds only committed entries)."""
    for i, s in enumerate(state.servers):
        if not s.last_applied <= s.commit_index <= len(s.log):
            return (
                f"server {i} has last_applied {s.last_applied}, commit_index "
                f"{s.commit_index} and {len(s.log)} log entries"
            )
        if s.snapshot_index > s.commit_index:
            return (
                f"server {i} has a snapshot up to {s.snapshot_index} beyond its "
                f"commit_index {s.commit_index}"
            )
    return None


def committed_prefix_known(state: State) -> str | None:
    """Every entry up to a server's commit_index is an entry known committed at its
    index: an entry never changes once its server counts it committed."""
    committed = state.committed
    for i, s in enumerate(state.servers):
        log = s.log
        for index in range(1, min(s.commit_index, len(log)) + 1):
            entry = log[index - 1]
            for c_index, c_term, c_value, _ in committed:
                if c_index == index and c_term == entry.term and c_value == entry.value:
                    break
            else:
                return (
                    f"server {i} has commit_index {s.commit_index} but its entry {index}:"
                    f"t{entry.term}={entry.value!r} was never known committed"
                )
    return None


def applied_prefixes_identical(state: State) -> str | None:
    """Each server applied indexes 1, 2, ... in order, one entry each, and any two
    servers' applied sequences agree where both have applied (one is a prefix of
    the other)."""
    longest: tuple[tuple[int, int, Value], ...] = ()
    owner = 0
    for i, s in enumerate(state.servers):
        applied = s.applied
        for k, record in enumerate(applied, 1):
            if record[0] != k:
                return f"server {i} applied index {record[0]} as its entry number {k}"
        shorter, longer = (applied, longest) if len(applied) <= len(longest) else (longest, applied)
        if longer[: len(shorter)] != shorter:
            return (
                f"servers {owner} and {i} applied different sequences: "
                f"{_show_applied(longest)} and {_show_applied(applied)}"
            )
        if len(applied) > len(longest):
            longest, owner = applied, i
    return None


def applied_were_committed(state: State) -> str | None:
    """A server applies only entries known committed."""
    committed = {record[:3] for record in state.committed}
    for i, s in enumerate(state.servers):
        for record in s.applied:
            if record not in committed:
                index, term, value = record
                return f"server {i} applied {index}:t{term}={value!r}, never committed"
    return None


def message_term_at_most_sender(state: State) -> str | None:
    """A message's term is no larger than its sender's term at sending (terms only
    grow, so: than its sender's current term); a PreVote's is one larger, and a
    granted pre-vote carries the term it was asked about."""
    servers = state.servers
    for m in state.network:
        sender = servers[m.source].current_term
        if m.term > sender:
            if m.kind == PRE_VOTE_REQUEST and m.term == sender + 1:
                continue  # it asks about the term after its sender's (thesis §9.6)
            if m.kind == PRE_VOTE_RESPONSE and m[4]:
                continue  # a granted pre-vote carries the term it was asked about
            return f"a message from server {m.source} carries term {m.term} > its term {sender}"
    return None


# --------------------------------------------------------------------- the extensions


def pre_vote_terms(state: State) -> str | None:
    """With Pre-Vote, every term a server holds was first reached by a server that won
    a majority of pre-votes for it, or stood on a leadership transfer's TimeoutNow
    (thesis §9.6: no term rises without an election a majority would support).
    History: ``State.stood``, the highest term stood for so far (terms stood for
    rise one at a time, so every term up to it was stood for)."""
    servers = state.servers
    if not all(s.ext.options & PRE_VOTE for s in servers):
        return None
    for i, s in enumerate(servers):
        if s.current_term > state.stood:
            return (
                f"server {i} is in term {s.current_term}, which no server stood for after "
                f"a majority of pre-votes or a TimeoutNow (the highest: {state.stood})"
            )
    return None


def vote_withholding(state: State) -> str | None:
    """No server granted a vote of a higher term while it led or heard from its leader
    within the minimum election timeout, except for a leadership transfer (thesis
    §4.2.3)."""
    for i, s in enumerate(state.servers):
        if s.ext.lease_votes:
            return (
                f"server {i} granted a vote in term {s.ext.lease_votes[0]} while it believed "
                "a leader was alive (within its lease)"
            )
    return None


def read_index_linearizable(state: State) -> str | None:
    """Every read a leader served at index R began when every entry known committed
    anywhere was at an index <= R: a read sees every write committed before it
    began (ReadIndex, thesis §6.4)."""
    for i, s in enumerate(state.servers):
        for floor, index in s.ext.stale_reads:
            if index < floor:  # (only such reads are kept: state.Ext.stale_reads)
                return (
                    f"leader {i} served a read at index {index}, but entry {floor} was "
                    "committed before the read began"
                )
    return None


def transfer_completeness(state: State) -> str | None:
    """While a leader transfers leadership, a TimeoutNow it sent in its term to a
    target still in that term finds the target holding the leader's whole log, so
    the target can take over without losing an entry (thesis §3.10)."""
    servers = state.servers
    if all(s.ext.transfer_to == NOBODY for s in servers):
        return None
    for m in state.network:
        if m.kind != TIMEOUT_NOW_REQUEST:
            continue
        leader, target = servers[m.source], servers[m.dest]
        ext = leader.ext
        if (
            leader.role == LEADER
            and leader.current_term == m.term == target.current_term
            and ext.transfer_to == m.dest
            and not ext.abandoned
            and target.log[: len(leader.log)] != leader.log
        ):
            return (
                f"leader {m.source} told server {m.dest} to stand while holding "
                f"{_show(leader.log)}, but server {m.dest} has {_show(target.log)}"
            )
    return None


# --------------------------------------------------------------------- registry


SERVERS = "servers"
SERVERS_AND_COMMITTED = "servers+committed"
WHOLE_STATE = "state"


class Invariant(NamedTuple):
    """A named state predicate, with the parts of the state it reads.

    ``reads`` lets the checker remember verdicts: an invariant that reads only
    ``state.servers`` has the same verdict for every state with those servers.
    """

    name: str
    check: Callable[[State], str | None]
    summary: str
    reads: str = WHOLE_STATE
    option: int = 0
    """The extension it is about (``state.Ext.options`` bits; 0: Figure 2's own): it
    cannot fail where no server runs that extension."""


def _invariant(
    name: str, check: Callable[[State], str | None], reads: str, option: int = 0
) -> Invariant:
    doc = (check.__doc__ or name).split("\n\n")[0]
    return Invariant(name, check, " ".join(doc.split()), reads, option)


INVARIANTS: tuple[Invariant, ...] = (
    _invariant("ElectionSafety", election_safety, SERVERS),
    _invariant("LeaderAppendOnly", leader_append_only, SERVERS),
    _invariant("LogMatching", log_matching, SERVERS),
    _invariant("LeaderCompleteness", leader_completeness, SERVERS_AND_COMMITTED),
    _invariant("StateMachineSafety", state_machine_safety, SERVERS_AND_COMMITTED),
    _invariant("VotedForInTerm", voted_for_in_term, SERVERS),
    _invariant("TermCoversLog", term_covers_log, SERVERS),
    _invariant("LogTermsNonDecreasing", log_terms_non_decreasing, SERVERS),
    _invariant("CommitWithinLog", commit_within_log, SERVERS),
    _invariant("CommittedPrefixKnown", committed_prefix_known, SERVERS_AND_COMMITTED),
    _invariant("AppliedPrefixesIdentical", applied_prefixes_identical, SERVERS),
    _invariant("AppliedWereCommitted", applied_were_committed, SERVERS_AND_COMMITTED),
    _invariant("MessageTermAtMostSender", message_term_at_most_sender, WHOLE_STATE),
    _invariant("PreVoteTerms", pre_vote_terms, WHOLE_STATE, PRE_VOTE),  # (reads State.stood)
    _invariant("VoteWithholding", vote_withholding, SERVERS, PRE_VOTE),
    _invariant("ReadIndexLinearizable", read_index_linearizable, SERVERS, READ_INDEX),
    _invariant("TransferCompleteness", transfer_completeness, WHOLE_STATE, TRANSFER),
)
"""Figure 3's five properties first, then the auxiliary ones, then the extensions'."""

INVARIANTS_BY_NAME: dict[str, Invariant] = {inv.name: inv for inv in INVARIANTS}


def for_options(invariants: tuple[Invariant, ...], options: int) -> tuple[Invariant, ...]:
    """The ``invariants`` that can fail where the servers run the extensions in
    ``options`` (the checker skips the others: less work per state)."""
    return tuple(inv for inv in invariants if not inv.option or inv.option & options)


def violations(
    state: State, invariants: tuple[Invariant, ...] = INVARIANTS
) -> list[tuple[str, str]]:
    """Every violated invariant of ``state``: (name, what is wrong)."""
    found = []
    for inv in invariants:
        problem = inv.check(state)
        if problem is not None:
            found.append((inv.name, problem))
    return found


def first_violation(
    state: State, invariants: tuple[Invariant, ...] = INVARIANTS
) -> tuple[str, str] | None:
    """The first violated invariant of ``state`` in registry order, or None."""
    for inv in invariants:
        problem = inv.check(state)
        if problem is not None:
            return inv.name, problem
    return None


def _show(log: tuple[Entry, ...]) -> str:
    return "[" + " ".join(f"{k}:t{e.term}={e.value!r}" for k, e in enumerate(log, 1)) + "]"


def _show_applied(applied: tuple[tuple[int, int, Value], ...]) -> str:
    return "[" + " ".join(f"{i}:t{t}={v!r}" for i, t, v in applied) + "]"


def _role(role: int) -> str:
    return ROLE_NAMES[role]
