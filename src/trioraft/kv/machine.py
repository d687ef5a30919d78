"""The key-value state machine, with 6.824 Lab 3's exactly-once rule.

A log entry carries the writes of one client request or batch, in order:
``[client, [[seq, op, key, value], ...]]`` (op "put" or "del"): one entry per
batch, so Raft's cost per entry (checking, encoding, storing, replicating,
applying) is paid once for many writes.  A client numbers its requests 1, 2,
3, ... and retries a request with the same number (through leader changes,
lost replies), so the same write may be committed more than once; the machine
applies it once: it remembers, per client, the highest number applied and its
result, and answers a repeat without applying it.  A client has one request
or batch in flight at a time, so its numbers reach the log in order and the
highest one is all there is to remember.  The table is part of the snapshot,
so a node restored from one still knows what it applied.
"""

from __future__ import annotations

from typing import Any

import msgspec

PUT = "put"
DELETE = "del"
GET = "get"

OK: dict[str, Any] = {"ok": True}
REPEAT: dict[str, Any] = {"ok": True, "duplicate": True}


def writes_command(client: int, writes: list[list[Any]]) -> list[Any]:
    """The log entry for a client's writes ([seq, op, key, value] each), in order."""
    return [client, writes]


class _Snapshot(msgspec.Struct, array_like=True):
    data: dict[str, str]
    applied: dict[int, int]  # client -> highest seq applied
    writes: int = 0
    duplicates: int = 0


class KVMachine:
    """A dict of str to str; writes applied at most once per client request."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.applied: dict[int, int] = {}  # client -> the highest seq applied
        self.writes = 0  # client writes applied (each once)
        self.duplicates = 0  # repeats answered without applying

    def apply(self, command: Any, index: int) -> Any:
        """Apply a batch of one client's writes; the result of each, in order."""
        try:
            client, writes = command
            last = self.applied.get(client, 0)
            results: list[Any] = []
            data = self.data
            for seq, op, key, value in writes:
                if seq <= last:
                    self.duplicates += 1
                    results.append(REPEAT)
                    continue
                if op == PUT:
                    data[key] = value if value is not None else ""
                elif op == DELETE:
                    data.pop(key, None)
                else:
                    results.append({"error": f"unknown operation {op!r}"})
                    continue
                last = seq
                self.writes += 1
                results.append(OK)
            self.applied[client] = last
        except (TypeError, ValueError):
            return {"error": "not a key-value command"}
        return results

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def snapshot(self) -> bytes:
        state = _Snapshot(self.data, self.applied, self.writes, self.duplicates)
        return msgspec.msgpack.encode(state)

    def restore(self, data: bytes) -> None:
        state = msgspec.msgpack.decode(data, type=_Snapshot) if data else _Snapshot({}, {})
        self.data, self.applied = state.data, state.applied
        self.writes, self.duplicates = state.writes, state.duplicates
