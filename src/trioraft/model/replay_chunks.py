"""InstallSnapshot chunks as the trace validator sees them (Figure 13, rules 2-5):
what identifies a chunk as sent, and how a follower assembles the chunks of one
snapshot."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from .state import InstallSnapshotRequest

SnapshotId = tuple[int, str]
"""A snapshot's size and digest, as the trace gives them."""


class SnapshotSent(NamedTuple):
    """An InstallSnapshot chunk as sent, and the two model messages it may stand for."""

    fields: tuple[Any, ...]  # every field of the chunk (see chunk_fields)
    full: InstallSnapshotRequest  # the follower completes the snapshot with it
    chunk: InstallSnapshotRequest  # it does not (not the last chunk, or out of order)
    total: int  # offset + data_len: what the follower must report to have it all
    done: bool


def snapshot_id(e: Mapping[str, Any]) -> SnapshotId | None:
    """The snapshot an event names (size, digest); None in traces that do not say."""
    size = e.get("snapshot_size")
    return None if size is None else (size, e["snapshot_digest"])


def show_id(snapshot: SnapshotId) -> str:
    return f"{snapshot[0]} bytes, digest {snapshot[1]}"


def chunk_fields(msg: Mapping[str, Any]) -> tuple[Any, ...]:
    """What identifies an InstallSnapshot chunk as sent: every field of it."""
    return (
        msg["from"],
        msg["leader_id"],
        msg["term"],
        msg["last_included_index"],
        msg["last_included_term"],
        msg["offset"],
        msg["data_len"],
        msg["data_digest"],
        bool(msg["done"]),
    )


class Assembly:
    """One follower's snapshot in the making: the chunks of one it is receiving
    ((leader term, index, term), bytes so far), and the last it completed
    (from which leader, of which index)."""

    __slots__ = ("installing", "receiving")

    def __init__(self) -> None:
        self.receiving: tuple[tuple[int, int, int], int] | None = None
        self.installing: tuple[int, int] | None = None  # (leader, index)

    def reset(self) -> None:
        """A restart forgets a snapshot in the making."""
        self.receiving = None
        self.installing = None

    def add(self, msg: Mapping[str, Any], current_term: int) -> int:
        """Figure 13 rules 2-5 at the follower (whose term is ``current_term``): a
        chunk at offset 0 starts a snapshot, one that continues it (same leader term,
        index and term; its offset what arrived so far) extends it, any other is
        refused; completing it ends it.  Returns what the follower must reply it
        holds."""
        if msg["term"] < current_term:
            return 0  # refused for the term: rule 1
        key: tuple[int, int, int] = (
            msg["term"],
            msg["last_included_index"],
            msg["last_included_term"],
        )
        offset = msg["offset"]
        have = self.receiving
        if offset == 0:
            have = (key, 0)
        if have is None or have[0] != key:
            return 0
        so_far: int = have[1]
        if offset != so_far:
            return so_far  # out of order: says what it holds, keeps it
        received: int = so_far + msg["data_len"]
        self.receiving = None if msg["done"] else (key, received)
        if msg["done"]:
            self.installing = (msg["from"], key[1])
        return received
