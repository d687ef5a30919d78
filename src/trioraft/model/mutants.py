"""Known Raft bugs the model can plant, for teaching and as a check of the checker.

A mutant is a name; the actions that a bug touches take ``mutant`` as a keyword
argument and change their rule when it names their bug.  Each mutant says which
Figure 2 rule it breaks, which invariant catches it, and the bounds and options
under which ``trioraft check --mutant NAME`` finds it (the smallest found in a
few seconds; tests/test_model_checker.py checks each and its counterexample's
length).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

COMMIT_OLD_TERM_BY_COUNTING: Final = "commit-old-term-by-counting"
VOTE_WITHOUT_LOG_CHECK: Final = "vote-without-log-check"
FORGET_VOTED_FOR_ON_RESTART: Final = "forget-voted-for-on-restart"
APPEND_WITHOUT_PREV_CHECK: Final = "append-without-prev-check"
LEADER_OVERWRITES_LOG: Final = "leader-overwrites-log"
FOLLOWER_COMMITS_PAST_NEW_ENTRIES: Final = "follower-commits-past-new-entries"
INSTALL_SNAPSHOT_DISCARDS_LOG: Final = "install-snapshot-discards-log"
PRE_VOTE_PERSISTS_TERM: Final = "pre-vote-persists-term"
VOTE_DESPITE_LEASE: Final = "vote-despite-lease"
READ_WITHOUT_ROUND: Final = "read-without-round"
TRANSFER_ACCEPTS_REQUESTS: Final = "transfer-accepts-requests"


@dataclass(frozen=True, kw_only=True)
class MutantBounds:
    """The checker's bounds under which a mutant is found: the fields of
    ``actions.Bounds``, by name (this module cannot import it: the actions import
    the mutants' names)."""

    servers: int
    max_term: int
    max_log: int
    max_msgs: int
    max_restarts: int = 0
    values: int = 1
    fine_grained: bool = False
    snapshots: bool = False
    pre_vote: bool = False
    check_quorum: bool = False
    transfer: bool = False
    read_index: bool = False
    max_reads: int = 1


@dataclass(frozen=True)
class Mutant:
    """A planted bug: what it breaks, the invariant that catches it, and the
    bounds and options (``symmetry``) under which the checker finds it."""

    name: str
    breaks: str
    caught_by: str
    """The name of the invariant (``invariants.INVARIANTS_BY_NAME``) it violates first."""
    bounds: MutantBounds
    symmetry: bool = True

    @property
    def description(self) -> str:
        """What the bug is and what catches it, in one sentence."""
        b = self.bounds
        options = [
            name
            for name, on in (
                ("--snapshots", b.snapshots),
                ("--pre-vote", b.pre_vote),
                ("--check-quorum", b.check_quorum),
                ("--transfer", b.transfer),
                ("--read-index", b.read_index),
            )
            if on
        ]
        needs = f" (needs {' '.join(options)})" if options else ""
        return f"{self.breaks}; caught by {self.caught_by}{needs}"


_ALL: Final = (
    Mutant(
        COMMIT_OLD_TERM_BY_COUNTING,
        "AdvanceCommitIndex drops the 'log[N].term == currentTerm' test: a leader commits "
        "an older term's entry by counting replicas (the paper's Figure 8)",
        "LeaderCompleteness",
        MutantBounds(servers=3, max_term=4, max_log=1, max_msgs=1),
    ),
    Mutant(
        VOTE_WITHOUT_LOG_CHECK,
        "HandleRequestVote grants a vote without the 'candidate's log is at least as "
        "up-to-date' test (§5.4.1)",
        "LeaderCompleteness",
        MutantBounds(servers=3, max_term=2, max_log=1, max_msgs=1),
    ),
    Mutant(
        FORGET_VOTED_FOR_ON_RESTART,
        "Restart loses voted_for (it is not persisted), so a server can vote twice in one term",
        "ElectionSafety",
        MutantBounds(servers=3, max_term=1, max_log=0, max_msgs=1, max_restarts=1),
    ),
    Mutant(
        APPEND_WITHOUT_PREV_CHECK,
        "HandleAppendEntries accepts when the follower has an entry at prevLogIndex, "
        "without comparing its term to prevLogTerm",
        "StateMachineSafety",
        MutantBounds(servers=3, max_term=3, max_log=1, max_msgs=1),
    ),
    Mutant(
        LEADER_OVERWRITES_LOG,
        "ClientRequest writes the new entry at commitIndex + 1, discarding the leader's "
        "uncommitted entries instead of appending",
        "LeaderAppendOnly",
        MutantBounds(servers=3, max_term=2, max_log=1, max_msgs=1),
    ),
    Mutant(
        FOLLOWER_COMMITS_PAST_NEW_ENTRIES,
        "HandleAppendEntries sets commitIndex = min(leaderCommit, last log index) instead "
        "of min(leaderCommit, index of last new entry), committing stale entries the "
        "request did not check",
        "StateMachineSafety",
        MutantBounds(servers=3, max_term=2, max_log=1, max_msgs=1),
    ),
    Mutant(
        INSTALL_SNAPSHOT_DISCARDS_LOG,
        "HandleInstallSnapshot always discards the whole log (Figure 13 rule 7) even when "
        "it holds the snapshot's last entry, losing entries after it that may already "
        "count towards a commit",
        "LeaderCompleteness",
        MutantBounds(servers=3, max_term=2, max_log=2, max_msgs=2, snapshots=True),
    ),
    Mutant(
        PRE_VOTE_PERSISTS_TERM,
        "HandlePreVote raises the voter's term to the one asked about, as if it were a "
        "RequestVote (thesis §9.6: a pre-vote changes no term)",
        "PreVoteTerms",
        MutantBounds(servers=3, max_term=1, max_log=0, max_msgs=1, pre_vote=True),
    ),
    Mutant(
        VOTE_DESPITE_LEASE,
        "HandleRequestVote grants a vote of a higher term although the voter leads or "
        "heard from its leader within the minimum election timeout (thesis §4.2.3)",
        "VoteWithholding",
        MutantBounds(servers=3, max_term=2, max_log=0, max_msgs=2, pre_vote=True),
    ),
    Mutant(
        READ_WITHOUT_ROUND,
        "ServeRead answers a read without a majority's confirmation that the leader still "
        "leads (thesis §6.4): a deposed leader serves a stale read",
        "ReadIndexLinearizable",
        MutantBounds(servers=3, max_term=2, max_log=2, max_msgs=2, read_index=True),
    ),
    Mutant(
        TRANSFER_ACCEPTS_REQUESTS,
        "ClientRequest stays enabled while the leader transfers leadership (thesis §3.10): "
        "the target it told to stand lacks the new entry",
        "TransferCompleteness",
        MutantBounds(servers=3, max_term=2, max_log=1, max_msgs=1, transfer=True),
    ),
)

MUTANT_BY_NAME: Final[dict[str, Mutant]] = {mutant.name: mutant for mutant in _ALL}
"""Mutant name -> the mutant, with the bounds it is found at."""

MUTANTS: Final[dict[str, str]] = {mutant.name: mutant.description for mutant in _ALL}
"""Mutant name -> what the bug is and what catches it."""

NEEDS_SNAPSHOTS: Final = frozenset(mutant.name for mutant in _ALL if mutant.bounds.snapshots)
"""Mutants of a snapshot rule: only a check with snapshots can reach them."""


def check_mutant(name: str | None) -> str | None:
    """``name`` if it is a known mutant (or None); otherwise a ValueError naming them."""
    if name is None or name in MUTANTS:
        return name
    known = ", ".join(MUTANTS)
    raise ValueError(f"unknown mutant {name!r}; known mutants: {known}")
