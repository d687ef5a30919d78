"""The linearizability checker (trioraft.lincheck): verdicts on hand-made histories,
minimal failing parts, operations with no response, keys, files; the search's
prunings, by counting model steps; and, with hypothesis, agreement with brute
force and with histories linearizable by construction.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trioraft.lincheck import (
    KVModel,
    KVState,
    Operation,
    Result,
    check,
    dump_history,
    linearizable,
    load_history,
    shrink,
)


def put(key: str, value: str, call: float, ret: float | None, client: int = 0) -> Operation:
    return Operation(client, "put", key, value, None, call, ret)


def get(key: str, output: str | None, call: float, ret: float | None, client: int = 1) -> Operation:
    return Operation(client, "get", key, None, output, call, ret)


def delete(key: str, call: float, ret: float | None, client: int = 2) -> Operation:
    return Operation(client, "delete", key, None, None, call, ret)


def rejects(history: list[Operation]) -> Result:
    result = check(history)
    assert not result.ok, "expected a violation"
    return result


# --------------------------------------------------------------------- basics


def test_sequential_history_accepts() -> None:
    history = [
        get("x", None, 0, 1),
        put("x", "1", 2, 3),
        get("x", "1", 4, 5),
        put("x", "2", 6, 7),
        get("x", "2", 8, 9),
    ]
    result = check(history)
    assert result == Result(True, None, [])
    assert result.explain().startswith("linearizable")


def test_empty_history_accepts() -> None:
    assert check([]).ok


def test_get_of_a_value_never_written_rejects() -> None:
    bogus = get("x", "9", 4, 5)
    result = rejects([put("x", "1", 0, 1), get("x", "1", 2, 3), bogus, put("x", "2", 6, 7)])
    assert result.key == "x"
    assert result.failing == [bogus]
    assert "no operation on the key wrote" in result.explain()


def test_get_before_the_put_of_its_value_rejects() -> None:
    early = get("x", "1", 0, 1)
    result = rejects([early, put("x", "1", 2, 3)])
    assert result.failing == [early, put("x", "1", 2, 3)]
    assert "no put of it was called before 2.0" in result.explain()


@pytest.mark.parametrize("seen", [None, "1"])
def test_overlapping_put_and_get_accept_either_order(seen: str | None) -> None:
    # The get overlaps the put: it may be linearized before it (absent) or after (1).
    assert check([put("x", "1", 0, 2), get("x", seen, 1, 3)]).ok


def test_two_overlapping_puts_accept_either_winner() -> None:
    for winner in ("1", "2"):
        history = [put("x", "1", 0, 2), put("x", "2", 1, 3), get("x", winner, 4, 5)]
        assert check(history).ok
    # ... but only one winner: two later reads cannot see both orders.
    history = [
        put("x", "1", 0, 2),
        put("x", "2", 1, 3),
        get("x", "1", 4, 5),
        get("x", "2", 6, 7),
    ]
    assert not check(history).ok


def test_stale_read_of_absent_rejects_with_exactly_those_operations() -> None:
    write = put("x", "1", 0, 1)
    stale = get("x", None, 2, 3)
    noise = [put("y", "a", 0, 5, client=3), get("y", "a", 6, 7, client=4), get("x", "1", 4, 5)]
    result = rejects([write, *noise, stale])
    assert result.key == "x"
    assert result.failing == [write, stale]
    assert "stale read" in result.explain()


def test_stale_read_of_the_old_value_includes_the_initial_write() -> None:
    first = put("x", "0", 0, 1)
    second = put("x", "1", 2, 3, client=3)
    stale = get("x", "0", 4, 5)
    noise = [
        get("x", "0", 1.5, 1.8, client=4),
        get("x", "1", 3.5, 6, client=4),
        put("z", "q", 0, 9, client=5),
    ]
    result = rejects([first, *noise, second, stale])
    assert result.failing == [first, second, stale]
    text = result.explain()
    assert "stale read" in text
    assert "call 2.0, return 3.0" in text  # each operation with its times


def test_intervals_that_only_touch_are_concurrent() -> None:
    # The put returns at 1.0, the get is called at 1.0: equal times prove no order,
    # so the get may be linearized first (calls sort before returns at equal times).
    assert check([put("x", "1", 0, 1.0), get("x", None, 1.0, 2)]).ok
    assert not check([put("x", "1", 0, 1.0), get("x", None, 1.0 + 1e-9, 2)]).ok


def test_an_instant_operation_is_fine() -> None:
    assert check([put("x", "1", 1, 1), get("x", "1", 1, 1)]).ok
    assert not check([put("x", "1", 1, 1), get("x", None, 2, 2)]).ok


# --------------------------------------------------------------------- pending operations


def test_a_pending_put_may_have_taken_effect() -> None:
    assert check([put("x", "1", 0, None), get("x", "1", 5, 6)]).ok


def test_a_pending_put_may_never_take_effect() -> None:
    assert check([put("x", "1", 0, None), get("x", None, 5, 6), get("x", None, 7, 8)]).ok


def test_a_pending_put_cannot_take_effect_before_its_call() -> None:
    result = rejects([get("x", "1", 0, 1), put("x", "1", 2, None)])
    assert result.failing == [get("x", "1", 0, 1), put("x", "1", 2, None)]
    assert "return never (no response)" in result.explain()


def test_a_pending_put_that_took_effect_cannot_be_undone() -> None:
    history = [put("x", "1", 0, None), get("x", "1", 5, 6), get("x", None, 7, 8)]
    assert not check(history).ok


def test_a_pending_get_accepts_any_output() -> None:
    history = [put("x", "1", 0, 1), get("x", "never-written", 2, None), get("x", "1", 3, 4)]
    assert check(history).ok


def test_a_pending_delete_may_or_may_not_have_happened() -> None:
    base = [put("x", "1", 0, 1), delete("x", 2, None)]
    assert check([*base, get("x", "1", 3, 4)]).ok
    assert check([*base, get("x", None, 3, 4)]).ok
    assert not check([*base, get("x", None, 3, 4), get("x", "1", 5, 6)]).ok


# --------------------------------------------------------------------- deletes and keys


def test_deletes() -> None:
    assert check([put("x", "1", 0, 1), delete("x", 2, 3), get("x", None, 4, 5)]).ok
    # overlapping the delete, a get may see either side of it
    assert check([put("x", "1", 0, 1), delete("x", 2, 5), get("x", "1", 3, 4)]).ok
    assert check([put("x", "1", 0, 1), delete("x", 2, 5), get("x", None, 3, 4)]).ok
    # after it returned, the old value is stale
    result = rejects([put("x", "1", 0, 1), delete("x", 2, 3), get("x", "1", 4, 5)])
    assert result.failing == [put("x", "1", 0, 1), delete("x", 2, 3), get("x", "1", 4, 5)]
    assert "stale read" in result.explain()


def test_a_read_of_absent_keeps_the_deletes_in_the_failing_part() -> None:
    # get -> absent at 6 is stale after put 2 (4-5); the delete at 2-3 must stay in
    # the part, or the part would blame the read on a delete merely left out.
    history = [put("x", "1", 0, 1), delete("x", 2, 3), put("x", "2", 4, 5), get("x", None, 6, 7)]
    result = rejects(history)
    assert result.failing == history[1:]


def test_keys_are_independent() -> None:
    # The delete of a leaves b alone (a checker mixing keys up would reject this).
    history = [
        put("a", "1", 0, 1),
        put("b", "1", 0, 1),
        get("a", "1", 2, 3),
        get("b", "1", 2, 3),
        delete("a", 4, 5),
        get("b", "1", 6, 7),
        get("a", None, 6, 7),
    ]
    assert check(history).ok


def test_a_violation_on_one_key_is_found_and_named() -> None:
    good = [put(k, "1", 0, 1) for k in "acd"] + [get(k, "1", 2, 3) for k in "acd"]
    stale = [put("b", "1", 0, 1), get("b", None, 2, 3)]
    result = rejects(good + stale)
    assert result.key == "b"
    assert result.failing == stale
    assert "key 'b'" in result.explain()


def test_the_first_failing_key_is_the_one_first_called() -> None:
    late = [put("a", "1", 10, 11), get("a", None, 12, 13)]
    early = [put("z", "1", 0, 1), get("z", None, 2, 3)]
    assert rejects(late + early).key == "z"


def test_shrink_on_its_own() -> None:
    history = [put("x", "0", 0, 1), put("x", "1", 2, 3), get("x", "0", 4, 5), get("x", "1", 6, 7)]
    assert shrink(history) == history[:3]
    with pytest.raises(ValueError, match="linearizable"):
        shrink(history[:2])


def test_malformed_operations_are_refused() -> None:
    with pytest.raises(ValueError, match=r"operation 1 .*ret 1 is before call 2"):
        check([put("x", "1", 0, 1), get("x", None, 2, 1)])
    with pytest.raises(ValueError, match=r"unknown operation 'cas'"):
        check([Operation(0, "cas", "x", "1", None, 0, 1)])
    with pytest.raises(ValueError, match=r"a put needs a string value"):
        check([Operation(0, "put", "x", None, None, 0, 1)])
    with pytest.raises(ValueError, match=r"call must be a finite number"):
        check([put("x", "1", float("nan"), 1)])


# --------------------------------------------------------------------- scale


def simulated(n: int, clients: int, keys: int, seed: int) -> list[Operation]:
    """A linearizable history: each client's operations back to back, each taking
    effect at a random point of its interval on one dict."""
    rng = random.Random(seed)
    planned = []
    for client in range(clients):
        t = rng.random()
        for _ in range(n // clients):
            call = t
            ret = call + rng.expovariate(1 / 3)
            point = rng.uniform(call, ret)
            planned.append((point, client, call, ret))
            t = ret + rng.expovariate(1)
    store: dict[str, str] = {}
    history = []
    for number, (_, client, call, ret) in enumerate(sorted(planned)):
        key = f"k{rng.randrange(keys)}"
        kind = rng.choice(("put", "get", "get", "delete") if number % 10 == 0 else ("put", "get"))
        if kind == "put":
            store[key] = f"{client}.{number}"
            history.append(put(key, store[key], call, ret, client))
        elif kind == "get":
            history.append(get(key, store.get(key), call, ret, client))
        else:
            store.pop(key, None)
            history.append(delete(key, call, ret, client))
    return history


def test_a_thousand_operations_from_five_clients_accept() -> None:
    history = simulated(1000, 5, 4, seed=1)
    assert len(history) == 1000
    assert check(history).ok


def test_a_long_history_needs_no_recursion() -> None:
    # Far deeper than the interpreter's recursion limit: the search keeps its own stack.
    n = sys.getrecursionlimit() * 3
    history = [put("x", str(i), 2 * i, 2 * i + 1) for i in range(n)]
    history.append(get("x", str(n - 1), 2 * n, 2 * n + 1))
    assert check(history).ok
    history[-1] = get("x", "0", 2 * n, 2 * n + 1)
    first, overwrite, stale = rejects(history).failing  # any later put overwrites
    assert (first, stale) == (history[0], history[-1]) and overwrite.op == "put"


class CountingModel(KVModel):
    def __init__(self) -> None:
        self.steps = 0

    def step(self, state: KVState, op: Operation) -> tuple[bool, KVState]:
        self.steps += 1
        return super().step(state, op)


def test_concurrent_reads_are_not_tried_in_every_order() -> None:
    # 16 concurrent reads, then a stale one: proving the failure must not go
    # through the 2**16 sets of those reads (a legal read is placed at once).
    reads = [get("x", "1", 2 + i / 100, 10, client=i) for i in range(16)]
    history = [put("x", "1", 0, 1), *reads, put("x", "2", 11, 12), get("x", "1", 13, 14)]
    model = CountingModel()
    assert not linearizable(history, model)
    assert model.steps < 200


def test_configurations_already_tried_are_not_tried_again() -> None:
    # 7 concurrent puts, overwritten, then a stale read: 7! orders of the puts, but
    # only 2**7 sets of them (times the last value written), for Lowe's memo.
    history = [put("x", f"v{i}", i / 100, 10, client=i) for i in range(7)]
    history += [put("x", "w", 10.2, 10.4), get("x", "v0", 11, 12)]
    model = CountingModel()
    assert not linearizable(history, model)
    assert model.steps < 3000


def test_writes_with_no_response_are_not_tried_in_every_order() -> None:
    # 12 puts with no response, none of them read, and a stale read at the end.
    lost = [put("x", f"lost{i}", 2 + i / 100, None, client=i) for i in range(12)]
    history = [put("x", "1", 0, 1), *lost, put("x", "2", 11, 12), get("x", "1", 13, 14)]
    model = CountingModel()
    assert not linearizable(history, model)
    assert model.steps < 2000


# --------------------------------------------------------------------- hypothesis

offsets = st.integers(0, 12).map(lambda k: k / 4)  # quarters, so that times tie often


@st.composite
def executions(draw: st.DrawFn, max_ops: int = 24) -> list[Operation]:
    """A sequential run of a dict, operation i taking effect at time i, each given an
    interval around that point (so linearizable by construction); a few get no
    response, and those took effect or not."""
    store: dict[str, str] = {}
    history = []
    for i in range(draw(st.integers(1, max_ops))):
        kind = draw(st.sampled_from(("put", "put", "get", "get", "delete")))
        key = draw(st.sampled_from("ab"))
        client = draw(st.integers(0, 4))
        call = i - draw(offsets)
        pending = draw(st.integers(0, 7)) == 0
        ret = None if pending else i + draw(offsets)
        happened = not pending or draw(st.booleans())
        if kind == "put":
            if happened:
                store[key] = f"v{i}"
            history.append(put(key, f"v{i}", call, ret, client))
        elif kind == "get":
            history.append(get(key, None if pending else store.get(key), call, ret, client))
        else:
            if happened:
                store.pop(key, None)
            history.append(delete(key, call, ret, client))
    return history


@settings(max_examples=200, deadline=None)
@given(executions(), st.randoms(use_true_random=False))
def test_linearizable_by_construction_accepts_and_a_corrupt_read_rejects(
    history: list[Operation], rng: random.Random
) -> None:
    shuffled = rng.sample(history, len(history))  # the order given does not matter
    assert check(shuffled).ok
    reads = [i for i, op in enumerate(history) if op.op == "get" and op.ret is not None]
    if not reads:
        return
    i = rng.choice(reads)
    corrupt = history[i]._replace(output="never-written")
    result = check([*history[:i], corrupt, *history[i + 1 :]])
    assert not result.ok
    assert result.key == corrupt.key
    assert result.failing == [corrupt]


def closure_without(part: list[Operation], index: int) -> list[Operation]:
    """``part`` less ``part[index]`` and the completed reads that might have read it."""
    gone = part[index]
    rest = part[:index] + part[index + 1 :]

    def read_it(op: Operation) -> bool:
        if op.op != "get" or op.ret is None:
            return False
        return (gone.op == "put" and op.output == gone.value) or (
            gone.op == "delete" and op.output is None
        )

    return [op for op in rest if not read_it(op)]


def assert_minimal_failing_part(history: list[Operation], result: Result) -> None:
    assert not result.ok and result.key is not None
    part = result.failing
    mine = [op for op in history if op.key == result.key]
    assert part and all(op in mine for op in part)
    assert not linearizable(part), "the failing part must itself fail"
    assert not check(part).ok
    for op in part:  # closed: each read keeps every write it may have read
        if op.op == "get" and op.ret is not None:
            for w in mine:
                if (w.op == "put" and w.value == op.output) or (
                    w.op == "delete" and op.output is None
                ):
                    assert w in part
    for index in range(len(part)):
        assert linearizable(closure_without(part, index)), f"{part[index]} is not needed"


@settings(max_examples=200, deadline=None)
@given(executions(), st.randoms(use_true_random=False))
def test_the_failing_part_of_a_stale_history_is_minimal(
    history: list[Operation], rng: random.Random
) -> None:
    # Make one read return another value of its key (often stale, sometimes fine).
    reads = [i for i, op in enumerate(history) if op.op == "get" and op.ret is not None]
    if not reads:
        return
    i = rng.choice(reads)
    others = [op.value for op in history if op.op == "put" and op.key == history[i].key]
    corrupt = history[i]._replace(output=rng.choice([None, *others]))
    bad = [*history[:i], corrupt, *history[i + 1 :]]
    result = check(bad)
    if not result.ok:
        assert_minimal_failing_part(bad, result)


@settings(max_examples=200, deadline=None)
@given(executions(), st.randoms(use_true_random=False))
def test_closed_parts_of_a_linearizable_history_are_linearizable(
    history: list[Operation], rng: random.Random
) -> None:
    # What makes a failing part evidence: a part keeping, for each read, every write
    # it may have read from, is linearizable when the whole is.
    part = list(history)
    for _ in range(rng.randrange(len(part) + 1)):
        if part:
            part = closure_without(part, rng.randrange(len(part)))
    assert check(part).ok


def brute_force(history: list[Operation]) -> bool:
    """Linearizable iff the completed operations and some of the pending ones can
    be placed one by one, each after every operation that returned before its
    call, each legal on a dict: a plain search over every order, no memo, no
    pruning (the histories are small)."""

    def extend(remaining: tuple[Operation, ...], store: dict[str, str]) -> bool:
        if all(op.ret is None for op in remaining):
            return True  # the pending rest may never have taken effect
        for k, op in enumerate(remaining):
            if any(o.ret is not None and o.ret < op.call for o in remaining):
                continue  # something that returned before its call is still to place
            after = dict(store)
            if op.op == "put":
                assert op.value is not None
                after[op.key] = op.value
            elif op.op == "delete":
                after.pop(op.key, None)
            elif op.ret is not None and store.get(op.key) != op.output:
                continue
            if extend(remaining[:k] + remaining[k + 1 :], after):
                return True
        return False

    return extend(tuple(history), {})


@st.composite
def small_histories(
    draw: st.DrawFn, keys: str = "ab", values: str = "12", max_ops: int = 7
) -> list[Operation]:
    """Any few operations at random times, about a third with no response."""
    history = []
    for _ in range(draw(st.integers(1, max_ops))):
        kind = draw(st.sampled_from(("put", "get", "get", "delete")))
        key = draw(st.sampled_from(keys))
        call = draw(st.integers(0, 8)) / 2
        ret = None if draw(st.integers(0, 2)) == 0 else call + draw(st.integers(0, 6)) / 2
        value = draw(st.sampled_from(values))
        client = draw(st.integers(0, 3))
        if kind == "put":
            history.append(put(key, value, call, ret, client))
        elif kind == "get":
            output = draw(st.sampled_from((None, *values)))
            history.append(get(key, output, call, ret, client))
        else:
            history.append(delete(key, call, ret, client))
    return history


@settings(max_examples=400, deadline=None)
@given(small_histories())
def test_agrees_with_brute_force(history: list[Operation]) -> None:
    result = check(history)
    assert result.ok == brute_force(history)
    if not result.ok:
        assert_minimal_failing_part(history, result)


@settings(max_examples=400, deadline=None)
@given(small_histories(keys="x", values="123", max_ops=8))
def test_agrees_with_brute_force_on_one_busy_key(history: list[Operation]) -> None:
    # One key and more operations: deeper searches, several writes with no
    # response at once (what the search's pruning of those is about).
    assert linearizable(history) == brute_force(history)


def test_two_writes_with_no_response_can_take_effect_in_either_order() -> None:
    # put 1 (called second) must come before the first get, put 3 (called first)
    # after put 2: a search that took a failed configuration with more of them
    # linearized to rule out one with fewer would reject this.
    history = [
        get("x", "1", 0.5, 3.5),
        put("x", "3", 2.0, None),
        put("x", "1", 2.5, None),
        put("x", "2", 4.0, 4.5),
        get("x", "3", 4.5, 4.5),
    ]
    assert check(history).ok
    assert brute_force(history)


# --------------------------------------------------------------------- files


def test_dump_and_load_round_trip(tmp_path: Path) -> None:
    history = [
        put("x", "1", 0.1, 0.30000000000000004),
        get("clé \u2603", "1", 1e-9, None, client=7),
        delete("x", 2, 3),
        get("x", None, 4.5, 5.25),
    ]
    path = tmp_path / "history.jsonl"
    dump_history(history, path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4
    assert list(json.loads(lines[1])) == list(Operation._fields)
    assert load_history(path) == history
    assert load_history(str(path)) == history


def test_load_skips_blank_lines_and_reads_integer_times(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    record = {"client": 0, "op": "put", "key": "x", "value": "1", "output": None}
    path.write_text("\n" + json.dumps({**record, "call": 1, "ret": 2}) + "\n\n", encoding="utf-8")
    (op,) = load_history(path)
    assert op == put("x", "1", 1.0, 2.0) and isinstance(op.call, float)


GOOD = '{"client": 0, "op": "get", "key": "x", "value": null, "output": null, "call": 0, "ret": 1}'


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"client": 0}', "missing field(s) op, key, value, output, call, ret"),
        (GOOD[:-1] + ', "extra": 1}', "unknown field(s) extra"),
        (GOOD.replace('"client": 0', '"client": "0"'), "client must be an int"),
        (GOOD.replace('"client": 0', '"client": true'), "client must be an int"),
        (GOOD.replace('"op": "get"', '"op": 3'), "op must be a string"),
        (GOOD.replace('"output": null', '"output": 5'), "output must be a string or null"),
        (GOOD.replace('"call": 0', '"call": "0"'), "call must be a finite number"),
        (GOOD.replace('"ret": 1', '"ret": NaN'), "NaN is not a number JSON allows"),
        (GOOD.replace('"ret": 1', '"ret": -1'), "ret -1 is before call 0"),
    ],
)
def test_a_malformed_line_names_the_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{GOOD}\n\n{line}\n{GOOD}\n", encoding="utf-8")
    with pytest.raises(ValueError) as caught:
        load_history(path)
    assert str(caught.value).startswith(f"{path}:3: ")
    assert message in str(caught.value)


def test_a_line_that_is_not_utf8_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(GOOD.encode() + b"\n\xff\xfe\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not UTF-8"):
        load_history(path)
