"""A linearizability checker for key-value histories (Wing & Gong, Lowe, Porcupine).

A history is what concurrent clients saw: each operation's invocation (its
``call`` time) and response (its ``ret`` time and output).  It is
linearizable when the operations can be put in one order that respects real
time (an operation that returned before another was called comes first) and
in which every operation does what a single-copy key-value store would do.

Rules of operation
------------------
- One clock: an operation A happens before B iff ``A.ret < B.call``.  Events
  at equal times are ordered calls first, so operations whose intervals only
  touch are concurrent: an equal time stamp does not prove an order, and
  treating it as concurrency can only accept, never falsely reject.
- ``ret=None``: the client never got a response (it timed out or crashed).
  The operation may have taken effect at any time after its call, or never.
  As in Porcupine its return is at +infinity (nothing has to come after it),
  and a search succeeds once every operation *with* a response is
  linearized: the rest may never have taken effect.  Its output is unknown,
  so a get with no response constrains nothing and is left out.
- Linearizability is compositional (Herlihy & Wing): the history is
  linearizable iff each key's sub-history is.  Keys are checked one at a time
  in the order of their first call; the first failing key is reported.
- A key's search is Wing & Gong's with Lowe's memoization, as in Porcupine's
  ``checkSingle``: the call and return events sorted by time in a doubly
  linked list; an operation whose call comes before the first return still in
  the list may be linearized next (lifted out of the list, both events), and a
  configuration (bitset of linearized operations, model state) already tried
  is not tried again.  It is a loop with an explicit stack, no recursion.
  Events at equal times: see the first rule.
- Those candidates are tried in three passes: reads, then the other
  operations with a response, then those with none.  A legal read is
  linearized at once and never taken back alone (it changes nothing, so a
  linearization placing it later stays one with it moved here).  An
  operation with no response is tried only where nothing else works, and
  only if a read observes it right away (else it might as well never have
  taken effect).  Both prunings keep the search complete; the brute-force
  tests hold them to it.
- When a key fails, its history is shrunk (delta debugging, each candidate
  re-checked) to a failing part from which no single operation can be
  removed without it becoming linearizable.  A read is removed together with
  the operations it may have read from (a get of v needs every put of v, a get
  of nothing every delete: :meth:`KVModel.dependencies`).  Such a *closed* subset
  of a linearizable history is linearizable (restrict a linearization of the
  whole to it: every read still follows the write it read), so the failing
  part alone proves the history is not linearizable; it never blames a read
  on a write that was merely left out.
- Standard library only, and nothing from trioraft: like the Figure 2 model
  it is an independent check of the implementation.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, NoReturn

PUT = "put"
GET = "get"
DELETE = "delete"

FIELDS = ("client", "op", "key", "value", "output", "call", "ret")


class Operation(NamedTuple):
    """One client operation: its invocation, and its response if there was one."""

    client: int
    op: str  # "put", "get" or "delete"
    key: str
    value: str | None  # what a put writes (None for get and delete)
    output: str | None  # what a get read (None: the key was absent, or no response)
    call: float  # when the client sent it (seconds)
    ret: float | None  # when the client got the response; None: it never did

    @property
    def pending(self) -> bool:
        return self.ret is None

    def describe(self) -> str:
        """``put('x', '1')``, ``get('x') -> '1'``, ``get('x') -> absent``, ``delete('x')``."""
        if self.op == PUT:
            return f"{self.op}({self.key!r}, {self.value!r})"
        if self.op == GET:
            if self.ret is None:
                return f"get({self.key!r}) -> ?"
            return f"get({self.key!r}) -> {'absent' if self.output is None else repr(self.output)}"
        return f"{self.op}({self.key!r})"


def happens_before(a: Operation, b: Operation) -> bool:
    """Whether ``a`` returned before ``b`` was called, so must be linearized first."""
    return a.ret is not None and a.ret < b.call


# --------------------------------------------------------------------- the model

KVState = str | None
"""One key's value; None when it is absent."""


class KVModel:
    """One key of a key-value store, as a sequential object.

    The key starts absent.  ``put`` sets it to ``value``; ``delete`` makes it
    absent; ``get`` reads it, and a completed get is legal only if its output
    is the current value.  To model more operations, subclass and extend
    :data:`OPS`, :meth:`step`, :meth:`read_only`, :meth:`matters`, :meth:`problem`
    and :meth:`dependencies`.
    """

    OPS: tuple[str, ...] = (PUT, GET, DELETE)

    def init(self) -> KVState:
        return None

    def step(self, state: KVState, op: Operation) -> tuple[bool, KVState]:
        """Whether ``op`` is legal in ``state``, and the state after it."""
        kind = op.op
        if kind == GET:
            return op.ret is None or op.output == state, state
        if kind == PUT:
            return True, op.value
        if kind == DELETE:
            return True, None
        raise ValueError(f"unknown operation {kind!r}")

    def read_only(self, op: Operation) -> bool:
        """Whether ``op`` never changes the state (the search linearizes such an
        operation as soon as it is legal)."""
        return op.op == GET

    def matters(self, op: Operation) -> bool:
        """Whether ``op`` can constrain a history; one that cannot (a get with no
        response: neither an effect nor a known output) is left out of the search
        and of failing parts."""
        return not (op.op == GET and op.ret is None)

    def dependencies(self, ops: Sequence[Operation]) -> list[frozenset[int]]:
        """For each of ``ops`` (one key's), the indexes of those a failing part that
        keeps it must keep: for a completed get, every write it may have read from
        (every put of its value; every delete, for a get of nothing)."""
        puts: dict[str | None, list[int]] = {}
        deletes = []
        for i, op in enumerate(ops):
            if op.op == PUT:
                puts.setdefault(op.value, []).append(i)
            elif op.op == DELETE:
                deletes.append(i)
        none = frozenset(deletes)
        empty: frozenset[int] = frozenset()
        return [
            empty
            if op.op != GET or op.ret is None
            else none
            if op.output is None
            else frozenset(puts.get(op.output, ()))
            for op in ops
        ]

    def problem(self, op: Operation) -> str | None:
        """What is malformed in ``op`` for this model, or None."""
        if op.op not in self.OPS:
            return f"unknown operation {op.op!r} (expected one of {', '.join(self.OPS)})"
        if op.op == PUT and not isinstance(op.value, str):
            return f"a put needs a string value, got {op.value!r}"
        if op.op == GET and op.output is not None and not isinstance(op.output, str):
            return f"a get's output must be a string or None, got {op.output!r}"
        return None


# --------------------------------------------------------------------- results


@dataclass(frozen=True)
class Result:
    """The outcome of :func:`check`."""

    ok: bool  # linearizable
    key: str | None  # the first key whose operations are not linearizable
    failing: list[Operation]  # a minimal failing part of that key's operations, by call time

    def explain(self) -> str:
        """The verdict in words, with the failing part and, when it has a common
        shape (a stale read, a read of a value never or not yet written), why."""
        if self.ok:
            return "linearizable: each key's operations have an order that respects real time"
        ops = self.failing
        these = "this operation" if len(ops) == 1 else f"these {len(ops)} operations"
        lines = [
            f"not linearizable: key {self.key!r}: no order of {these} respects both real "
            f"time and the key's value (without any one of them, and the reads of what it "
            f"wrote, there is one):"
        ]
        width = max(len(op.describe()) for op in ops)
        for op in ops:
            lines.append(
                f"  client {op.client}: {op.describe():<{width}}  call {_time(op.call)}, "
                f"return {'never (no response)' if op.ret is None else _time(op.ret)}"
            )
        why = _why(ops)
        if why is not None:
            lines.append(why)
        return "\n".join(lines)


def _time(t: float) -> str:
    # repr: the shortest text that is the same float, so the order of two
    # times is never hidden by rounding.
    return repr(float(t))


def _why(ops: Sequence[Operation]) -> str | None:
    """A sentence for the common shapes of a failing part, else None."""
    for read in ops:
        if read.op != GET or read.ret is None:
            continue
        seen = "absent" if read.output is None else repr(read.output)
        sources = [op for op in ops if op.op == PUT and op.value == read.output]
        if read.output is not None and not sources:
            return f"why: the get returned {seen}, a value no operation on the key wrote"
        if read.output is not None and all(read.ret < op.call for op in sources):
            first = min(op.call for op in sources)
            return (
                f"why: the get returned {seen} at {_time(read.ret)}, but no put of it was "
                f"called before {_time(first)}"
            )
        if read.output is None:
            sources = [op for op in ops if op.op == DELETE]
        for write in ops:
            overwrites = (write.op == PUT and write.value != read.output) or (
                write.op == DELETE and read.output is not None
            )
            if (
                overwrites
                and write.ret is not None
                and write.ret < read.call
                and all(happens_before(source, write) for source in sources)
            ):
                after = (
                    f"after every {'delete' if read.output is None else 'put of ' + seen} had "
                    f"returned and "
                    if sources
                    else ""
                )
                return (
                    f"why: a stale read: the get called at {_time(read.call)} returned "
                    f"{seen}, but {write.describe()} ran from {_time(write.call)} to "
                    f"{_time(write.ret)}, {after}before the get was called"
                )
    return None


# --------------------------------------------------------------------- checking


def check(history: Iterable[Operation], model: KVModel | None = None) -> Result:
    """Whether ``history`` is linearizable; if not, the first failing key and a
    minimal failing part of its operations.  Raises ValueError for a malformed
    operation (unknown kind, a return before its call, a time that is not finite)."""
    model = KVModel() if model is None else model
    ops = list(history)
    _validate(ops, model)
    for key, part in _by_key(ops):
        searched = [op for op in part if model.matters(op)]
        if not linearizable(searched, model):
            return Result(False, key, _shrink(searched, model))
    return Result(True, None, [])


def _validate(ops: Sequence[Operation], model: KVModel) -> None:
    for index, op in enumerate(ops):
        problem = model.problem(op)
        if problem is None:
            problem = _time_problem(op.call, op.ret)
        if problem is not None:
            raise ValueError(f"operation {index} (client {op.client}, {op.describe()}): {problem}")


def _time_problem(call: object, ret: object) -> str | None:
    # bool is an int, but True is no time.
    if isinstance(call, bool) or not isinstance(call, int | float) or not math.isfinite(call):
        return f"call must be a finite number, got {call!r}"
    if ret is None:
        return None
    if isinstance(ret, bool) or not isinstance(ret, int | float) or not math.isfinite(ret):
        return f"ret must be a finite number or null, got {ret!r}"
    if ret < call:
        return f"ret {ret!r} is before call {call!r}"
    return None


def _by_key(ops: Iterable[Operation]) -> list[tuple[str, list[Operation]]]:
    """Each key's operations by call time, keys in the order of their first call."""
    parts: dict[str, list[Operation]] = {}
    for op in sorted(ops, key=lambda op: op.call):
        parts.setdefault(op.key, []).append(op)
    return list(parts.items())


def linearizable(ops: Sequence[Operation], model: KVModel | None = None) -> bool:
    """Whether ``ops``, all on one key, are linearizable (no partitioning, no shrinking).

    Wing & Gong's search with Lowe's memoization, as Porcupine's checkSingle,
    and two prunings that keep it complete (see :func:`_search`).
    """
    return _search(ops, KVModel() if model is None else model)


def _events(ops: Sequence[Operation]) -> tuple[list[int], list[int], list[int], list[int]]:
    """The doubly linked list of call and return events in time order, calls first
    at equal times: ``next``, ``prev``, the operation of each node, and each call
    node's return node (0 for a return node).

    Node 0 is the head, 1..2n the events, 2n + 1 a tail that is never lifted (so
    unlinking needs no end-of-list test).  No response is a return at +infinity.
    """
    n = len(ops)
    events = sorted(
        [(op.call, 0, i) for i, op in enumerate(ops)]
        + [(math.inf if op.ret is None else op.ret, 1, i) for i, op in enumerate(ops)]
    )
    tail = 2 * n + 1
    nxt = [*range(1, tail + 1), tail]
    prv = [0, *range(tail)]
    op_of = [-1] * (tail + 1)
    ret_of = [0] * (tail + 1)
    call_of = [0] * n
    for node, (_, kind, i) in enumerate(events, 1):
        op_of[node] = i
        if kind == 0:
            call_of[i] = node
        else:  # a call sorts before its own return
            ret_of[call_of[i]] = node
    return nxt, prv, op_of, ret_of


# The passes of the scan over the calls that may be linearized next.
READS, ANSWERED, UNANSWERED = 0, 1, 2


def _search(ops: Sequence[Operation], model: KVModel) -> bool:
    """Wing & Gong's depth-first search for a linearization of ``ops``.

    A configuration is the set of operations linearized so far (a bitset) and the
    model's state.  Any call before the first return still in the event list may
    be linearized next; a return reached means the configuration is a dead end,
    and the last choice is taken back.  Lowe's memo skips configurations already
    tried.  The calls are tried in three passes (reads, then the operations with
    a response, then those with none), with two prunings; each is complete, as it
    drops only choices such that, if a linearization followed, one would also
    follow from a choice kept:

    - A read that is legal now is linearized at once, and is never taken back
      alone: a linearization that placed it later stays one with it moved here
      (it changes no state, and no operation still to place returned before its
      call).  So when the configuration after it fails, so has this one.
    - A write with no response must be observed by a read right after it: one
      that is not (another write follows, or nothing does) can be dropped from a
      linearization, since it may never have taken effect.

    Success is every operation with a response linearized: the rest may never
    have taken effect.
    """
    nxt, prv, op_of, ret_of = _events(ops)
    step = model.step
    answered = [op.ret is not None for op in ops]
    # the pass in which each operation is tried
    kind = [
        READS if model.read_only(op) else ANSWERED if answered[i] else UNANSWERED
        for i, op in enumerate(ops)
    ]
    state = model.init()
    linearized = 0  # bit i set: ops[i] is in the linearization so far
    left = sum(answered)  # operations with a response not yet linearized
    tried: set[tuple[int, KVState, bool]] = set()
    undo: list[tuple[int, KVState]] = []  # (call node lifted, state before it)
    entry = nxt[0]
    scan = READS
    unread = False  # the configuration was reached by a write with no response
    while left:
        ret = ret_of[entry]
        if ret:
            i = op_of[entry]
            if kind[i] != scan:
                entry = nxt[entry]
                continue
            ok, after = step(state, ops[i])
            if ok:
                bits = linearized | 1 << i
                # The memo key says whether the write just placed has no response:
                # the second pruning makes that a different configuration to try.
                config = (bits, after, kind[i] == UNANSWERED)
                if config not in tried:
                    tried.add(config)
                    undo.append((entry, state))
                    linearized, state, unread = config
                    left -= answered[i]
                    _lift(nxt, prv, entry, ret)
                    entry = nxt[0]
                    scan = READS
                    continue
                if scan != READS:
                    entry = nxt[entry]
                    continue
                # A legal read whose configuration was tried (and failed): this
                # configuration fails too.
            else:
                entry = nxt[entry]
                continue
        elif scan == READS and unread:
            # No read observes the write with no response just placed: placing
            # it here is no use.
            pass
        elif scan != UNANSWERED:
            # The end of the calls that may come next: the next pass over them.
            entry = nxt[0]
            scan += 1
            continue
        # The configuration failed: take back choices (forced reads with the
        # configuration before them) up to the last free one, and go on with the
        # calls after it in its pass.
        while True:
            if not undo:
                return False
            entry, state = undo.pop()
            i = op_of[entry]
            linearized &= ~(1 << i)
            left += answered[i]
            _unlift(nxt, prv, entry, ret_of[entry])
            scan = kind[i]
            if scan != READS:
                break
        entry = nxt[entry]
        unread = False
    return True


def _lift(nxt: list[int], prv: list[int], call: int, ret: int) -> None:
    """Unlink an operation's two events (their own links are kept, for :func:`_unlift`)."""
    nxt[prv[call]] = nxt[call]
    prv[nxt[call]] = prv[call]
    nxt[prv[ret]] = nxt[ret]
    prv[nxt[ret]] = prv[ret]


def _unlift(nxt: list[int], prv: list[int], call: int, ret: int) -> None:
    """Undo :func:`_lift` (the most recent one still lifted), in reverse order."""
    nxt[prv[ret]] = ret
    prv[nxt[ret]] = ret
    nxt[prv[call]] = call
    prv[nxt[call]] = call


# --------------------------------------------------------------------- shrinking


def shrink(ops: Sequence[Operation], model: KVModel | None = None) -> list[Operation]:
    """A minimal failing part of ``ops`` (one key's operations, not linearizable).

    Delta debugging over complements: drop a chunk of the operations (and the
    reads that depended on them) if what is left still fails; halve the chunks
    when none can go.  It ends at chunks of one operation that none can go, so
    the part is 1-minimal.
    """
    model = KVModel() if model is None else model
    if linearizable(ops, model):
        raise ValueError("shrink: the operations are linearizable")
    return _shrink(ops, model)


def _shrink(ops: Sequence[Operation], model: KVModel) -> list[Operation]:
    """:func:`shrink` for operations known not to be linearizable."""
    needs = model.dependencies(ops)

    def fails(keep: list[int]) -> bool:
        return not linearizable([ops[i] for i in keep], model)

    current = list(range(len(ops)))
    chunks = 2
    while len(current) > 1:
        size = -(-len(current) // chunks)
        for start in range(0, len(current), size):
            candidate = _without(current, current[start : start + size], needs)
            if candidate and fails(candidate):
                current = candidate
                chunks = max(chunks - 1, 2)
                break
        else:
            if chunks >= len(current):
                break
            chunks = min(2 * chunks, len(current))
    return [ops[i] for i in current]


def _without(current: list[int], dropped: Iterable[int], needs: list[frozenset[int]]) -> list[int]:
    """``current`` less ``dropped`` and, transitively, what needs a dropped operation."""
    gone = set(dropped)
    while True:
        more = [i for i in current if i not in gone and not needs[i].isdisjoint(gone)]
        if not more:
            return [i for i in current if i not in gone]
        gone.update(more)


# --------------------------------------------------------------------- files


def dump_history(ops: Iterable[Operation], path: str | os.PathLike[str]) -> None:
    """Write ``ops`` to ``path`` as JSON lines, one operation per line."""
    with open(path, "w", encoding="utf-8") as file:
        for op in ops:
            file.write(json.dumps(op._asdict(), allow_nan=False) + "\n")


def load_history(path: str | os.PathLike[str]) -> list[Operation]:
    """Read a history written by :func:`dump_history` (blank lines are skipped).

    Raises ValueError("FILE:LINE: what is wrong") for a malformed line.
    """
    with open(path, "rb") as file:
        data = file.read()
    ops = []
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            ops.append(_parse_line(raw))
        except ValueError as error:
            raise ValueError(f"{os.fspath(path)}:{number}: {error}") from None
    return ops


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number JSON allows")


def _parse_line(raw: bytes) -> Operation:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 ({error.reason} at byte {error.start})") from None
    try:
        record = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    missing = [name for name in FIELDS if name not in record]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    unknown = sorted(set(record) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}")
    _expect(record, "client", lambda x: isinstance(x, int) and not isinstance(x, bool), "an int")
    _expect(record, "op", lambda x: isinstance(x, str), "a string")
    _expect(record, "key", lambda x: isinstance(x, str), "a string")
    _expect(record, "value", lambda x: x is None or isinstance(x, str), "a string or null")
    _expect(record, "output", lambda x: x is None or isinstance(x, str), "a string or null")
    problem = _time_problem(record["call"], record["ret"])
    if problem is not None:
        raise ValueError(problem)
    ret = record["ret"]
    return Operation(
        record["client"],
        record["op"],
        record["key"],
        record["value"],
        record["output"],
        float(record["call"]),
        None if ret is None else float(ret),
    )


def _expect(record: dict[str, Any], name: str, ok: Callable[[object], bool], what: str) -> None:
    if not ok(record[name]):
        raise ValueError(f"{name} must be {what}, got {record[name]!r}")
