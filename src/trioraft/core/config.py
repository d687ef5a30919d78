"""RaftConfig: the knobs of one peer, checked when made."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

_FLAGS = ("noop_on_election", "pre_vote", "check_quorum")
_NOT_POSITIVE_NUMBERS = frozenset({"seed", "tracer", *_FLAGS})
_WHOLE_NUMBERS = frozenset({"max_append_bytes", "snapshot_chunk_bytes"})


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Timing and limits of one peer.  The defaults meet the 6.824 rules.

    - ``heartbeat_interval``: a leader sends AppendEntries to each follower at
      least this often when idle.  6.824 allows at most 10 per second.
    - ``election_timeout_min``/``_max``: a follower that hears from no leader
      (and grants no vote) for a random time in this range starts an election.
      Several heartbeats fit in the minimum, so a lost one or two do not cause
      an election, and the range is wide enough that split votes are rare; a
      new leader comes well within 6.824's 5 s.
    - ``max_append_bytes``: the most command bytes one AppendEntries carries
      (at least one entry is always sent, however large).
    - ``snapshot_chunk_bytes``: InstallSnapshot sends snapshots in chunks of
      this size, so a slow link still makes progress.
    - ``seed``: seeds the peer's random choices (its election timeouts); None
      draws a fresh seed from the operating system.
    - ``tracer``: receives one event per state change (see ``trioraft.trace``);
      None records nothing and costs nothing.
    - ``noop_on_election``: a new leader appends a no-op entry of its own term
      at once (Raft §8), so entries of earlier terms commit without waiting
      for a client's command.  No-ops are not delivered on the apply channel
      (``command_index`` skips them), so it is off by default: the 6.824 tests
      expect no gaps.
    - ``pre_vote``: a peer whose election timer fires first asks the others
      whether they would vote for it at term + 1, without raising its own term,
      and starts the election only if a majority would (thesis §9.6); and a
      peer that heard from a leader within the minimum election timeout, or
      leads, refuses pre-votes and votes (§4.2.3), unless a leadership
      transfer asks.  A peer that was cut off then rejoins without deposing
      a healthy leader.
    - ``check_quorum``: a leader that heard from no majority of the cluster
      within an election timeout (the maximum) steps down (thesis §6.2), so a
      leader that can send but not hear does not hold the cluster forever.

    The two extensions are off by default: the 6.824 tests count RPCs.
    ``trioraft.open_node`` turns both on.
    """

    heartbeat_interval: float = 0.1
    election_timeout_min: float = 0.3
    election_timeout_max: float = 0.6
    max_append_bytes: int = 64 * 1024
    snapshot_chunk_bytes: int = 64 * 1024
    seed: int | None = None
    tracer: Any = None
    noop_on_election: bool = False
    pre_vote: bool = False
    check_quorum: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _NOT_POSITIVE_NUMBERS:
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"RaftConfig.{f.name} must be a positive number, got {value!r}")
            if f.name in _WHOLE_NUMBERS and not isinstance(value, int):
                raise ValueError(
                    f"RaftConfig.{f.name} must be a whole number of bytes, got {value!r}"
                )
        if self.seed is not None and (
            not isinstance(self.seed, int) or isinstance(self.seed, bool)
        ):
            raise TypeError(f"RaftConfig.seed must be an int or None, got {self.seed!r}")
        if self.tracer is not None and not callable(getattr(self.tracer, "event", None)):
            raise TypeError(
                "RaftConfig.tracer must be a trioraft.trace.TraceRecorder (or have an event() "
                f"method) or None, got {type(self.tracer).__name__}"
            )
        for flag in _FLAGS:
            value = getattr(self, flag)
            if not isinstance(value, bool):
                raise TypeError(f"RaftConfig.{flag} must be True or False, got {value!r}")
        if self.election_timeout_min > self.election_timeout_max:
            raise ValueError(
                "RaftConfig.election_timeout_min must not exceed election_timeout_max "
                f"({self.election_timeout_min} > {self.election_timeout_max})"
            )
        if self.heartbeat_interval >= self.election_timeout_min:
            raise ValueError(
                "RaftConfig.heartbeat_interval must be shorter than election_timeout_min, "
                "or followers time out between heartbeats "
                f"({self.heartbeat_interval} >= {self.election_timeout_min})"
            )
