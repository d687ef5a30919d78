"""The key-value state machine, with 6.824 Lab 3's exactly-once rule.

Every write is a command ``{"client": id, "seq": n, "op": "put"|"del",
"key": k, "value": v}``.  A client numbers its requests 1, 2, 3, ... and
retries a request with the same number (through leader changes, lost
replies), so the same request may be committed more than once; the machine
applies it once: it remembers, per client, the highest number applied and its
result, and answers a repeat with that result.  The table is part of the
snapshot, so a node restored from one still knows what it applied.
"""

from __future__ import annotations

from typing import Any

import msgspec

PUT = "put"
DELETE = "del"
GET = "get"


class Write(msgspec.Struct, frozen=True):
    """A write as it travels in the log (also what a client sends)."""

    client: int
    seq: int
    op: str
    key: str
    value: str | None = None


class _Snapshot(msgspec.Struct, array_like=True):
    data: dict[str, str]
    applied: dict[int, tuple[int, Any]]  # client -> (seq, result)
    writes: int = 0
    duplicates: int = 0


class KVMachine:
    """A dict of str to str; writes applied at most once per client request."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.applied: dict[int, tuple[int, Any]] = {}  # client -> (last seq, its result)
        self.writes = 0  # client writes applied (each once)
        self.duplicates = 0  # repeats answered from the table instead

    def apply(self, command: Any, index: int) -> Any:
        try:
            write = msgspec.convert(command, Write)
        except msgspec.ValidationError:
            return {"error": "not a key-value write"}
        last = self.applied.get(write.client)
        if last is not None and write.seq <= last[0]:
            # Applied before (a retry that was committed twice): not again.  A
            # client's requests reach the log in the order it numbered them, so
            # its highest number applied is all there is to remember.
            self.duplicates += 1
            return last[1] if write.seq == last[0] else {"ok": True, "duplicate": True}
        if write.op == PUT:
            existed = write.key in self.data
            self.data[write.key] = write.value if write.value is not None else ""
            result: Any = {"ok": True, "existed": existed}
        elif write.op == DELETE:
            result = {"ok": True, "existed": self.data.pop(write.key, None) is not None}
        else:
            result = {"error": f"unknown operation {write.op!r}"}
        self.applied[write.client] = (write.seq, result)
        self.writes += 1
        return result

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def snapshot(self) -> bytes:
        state = _Snapshot(self.data, self.applied, self.writes, self.duplicates)
        return msgspec.msgpack.encode(state)

    def restore(self, data: bytes) -> None:
        state = msgspec.msgpack.decode(data, type=_Snapshot) if data else _Snapshot({}, {})
        self.data, self.applied = state.data, state.applied
        self.writes, self.duplicates = state.writes, state.duplicates
