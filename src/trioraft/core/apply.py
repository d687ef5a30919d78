"""ApplyMsg: what a peer delivers on its apply channel (6.824's ApplyMsg)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ApplyMsg:
    """A committed command (``command_valid``) or an installed snapshot (``snapshot_valid``).

    Commands are delivered strictly in index order, each once per peer
    incarnation; a snapshot replaces every command up to ``snapshot_index``.
    """

    command_valid: bool = False
    command: Any = None
    command_index: int = 0
    command_term: int = 0
    snapshot_valid: bool = False
    snapshot: bytes = b""
    snapshot_term: int = 0
    snapshot_index: int = 0
