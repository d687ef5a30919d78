"""Known Raft bugs the model can plant, for teaching and as a check of the checker.

A mutant is a name; the actions that a bug touches take ``mutant`` as a keyword
argument and change their rule when it names their bug.  Each entry says which
Figure 2 rule is broken and which invariant catches it (tests/test_model_checker.py
holds the bounds at which it is caught).
"""

from __future__ import annotations

from typing import Final

COMMIT_OLD_TERM_BY_COUNTING: Final = "commit-old-term-by-counting"
VOTE_WITHOUT_LOG_CHECK: Final = "vote-without-log-check"
FORGET_VOTED_FOR_ON_RESTART: Final = "forget-voted-for-on-restart"
APPEND_WITHOUT_PREV_CHECK: Final = "append-without-prev-check"
LEADER_OVERWRITES_LOG: Final = "leader-overwrites-log"
FOLLOWER_COMMITS_PAST_NEW_ENTRIES: Final = "follower-commits-past-new-entries"
INSTALL_SNAPSHOT_DISCARDS_LOG: Final = "install-snapshot-discards-log"

MUTANTS: Final[dict[str, str]] = {
    COMMIT_OLD_TERM_BY_COUNTING: (
        "AdvanceCommitIndex drops the 'log[N].term == currentTerm' test: a leader commits "
        "an older term's entry by counting replicas (the paper's Figure 8); caught by "
        "Leader Completeness"
    ),
    VOTE_WITHOUT_LOG_CHECK: (
        "HandleRequestVote grants a vote without the 'candidate's log is at least as "
        "up-to-date' test (§5.4.1); caught by Leader Completeness"
    ),
    FORGET_VOTED_FOR_ON_RESTART: (
        "Restart loses voted_for (it is not persisted), so a server can vote twice in "
        "one term; caught by Election Safety"
    ),
    APPEND_WITHOUT_PREV_CHECK: (
        "HandleAppendEntries accepts when the follower has an entry at prevLogIndex, "
        "without comparing its term to prevLogTerm; caught by State Machine Safety"
    ),
    LEADER_OVERWRITES_LOG: (
        "ClientRequest writes the new entry at commitIndex + 1, discarding the leader's "
        "uncommitted entries instead of appending; caught by Leader Append-Only"
    ),
    FOLLOWER_COMMITS_PAST_NEW_ENTRIES: (
        "HandleAppendEntries sets commitIndex = min(leaderCommit, last log index) instead "
        "of min(leaderCommit, index of last new entry), committing stale entries the "
        "request did not check; caught by State Machine Safety"
    ),
    INSTALL_SNAPSHOT_DISCARDS_LOG: (
        "HandleInstallSnapshot always discards the whole log (Figure 13 rule 7) even when "
        "it holds the snapshot's last entry, losing entries after it that may already "
        "count towards a commit; caught by Leader Completeness (needs --snapshots)"
    ),
}
"""Mutant name -> what the bug is and what catches it."""

NEEDS_SNAPSHOTS: Final = frozenset({INSTALL_SNAPSHOT_DISCARDS_LOG})
"""Mutants of a snapshot rule: only a check with snapshots can reach them."""


def check_mutant(name: str | None) -> str | None:
    """``name`` if it is a known mutant (or None); otherwise a ValueError naming them."""
    if name is None or name in MUTANTS:
        return name
    known = ", ".join(MUTANTS)
    raise ValueError(f"unknown mutant {name!r}; known mutants: {known}")
