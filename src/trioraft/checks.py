"""Argument checks of the public calls: they raise at the call, before anything changes.

Each check names the argument and says what was expected, so a caller's
mistake surfaces where it was made, never later inside the caller's nursery.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import trio

from .core.config import RaftConfig
from .persist import Persister
from .rpc import ClientEnd
from .storage.base import Storage


def _type_name(value: object) -> str:
    return type(value).__name__


def check_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """``value`` as an int (bool refused), at least ``minimum`` when given."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {_type_name(value)} ({value!r})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def check_make_arguments(
    peers: object,
    me: object,
    persister: object,
    apply_ch: object,
    nursery: object,
    config: object,
) -> None:
    """What ``make()`` needs, checked before a peer is built (CONTRACT: make)."""
    if not isinstance(peers, Sequence) or isinstance(peers, (str, bytes)):
        raise TypeError(
            f"peers must be a list of ClientEnd (one per peer), not {_type_name(peers)}"
        )
    if not peers:
        raise ValueError("peers must hold one ClientEnd per peer, this one's included")
    check_int("me", me)
    assert isinstance(me, int)
    if not 0 <= me < len(peers):
        raise ValueError(f"me={me} is not an index into the {len(peers)} peers")
    for j, end in enumerate(peers):
        if j != me and not isinstance(end, ClientEnd):
            raise TypeError(
                f"peers[{j}] must be a ClientEnd (an object with an async call(method, "
                f"args)), not {_type_name(end)}"
            )
    if not isinstance(persister, (Persister, Storage)):
        raise TypeError(
            "persister must be a trioraft.Persister, FilePersister or DiskStorage, "
            f"not {_type_name(persister)}"
        )
    if isinstance(apply_ch, trio.MemoryReceiveChannel):
        raise TypeError(
            "apply_ch is the receive end of a memory channel; pass the send end "
            "(the first value trio.open_memory_channel returns)"
        )
    if not isinstance(apply_ch, trio.MemorySendChannel):
        raise TypeError(f"apply_ch must be a trio.MemorySendChannel, not {_type_name(apply_ch)}")
    if not isinstance(nursery, trio.Nursery):
        raise TypeError(f"nursery must be a trio.Nursery, not {_type_name(nursery)}")
    if config is not None and not isinstance(config, RaftConfig):
        raise TypeError(f"config must be a trioraft.RaftConfig or None, not {_type_name(config)}")


def check_snapshot_arguments(index: Any, snapshot: Any, delivered: int) -> None:
    """``snapshot(index, data)``: bytes, and an index the service was given."""
    check_int("snapshot index", index, minimum=0)
    if not isinstance(snapshot, bytes):
        raise TypeError(
            f"snapshot must be bytes, not {_type_name(snapshot)}; encode the service's state first"
        )
    if index > delivered:
        raise ValueError(
            f"snapshot index {index} is past the last entry delivered on apply_ch "
            f"({delivered}): a snapshot can only fold in what the service applied"
        )
