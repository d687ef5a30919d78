"""The codec: commands round-trip unchanged; anything else is refused up front."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trioraft import codec
from trioraft.core.messages import AppendEntriesArgs, Entry, PersistentState

commands = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=5) | st.integers(-5, 5), children, max_size=4)
    ),
    max_leaves=20,
)


@given(commands)
def test_every_allowed_command_round_trips(value: Any) -> None:
    codec.check_command(value)
    assert codec.decode(codec.encode(value)) == value


def test_nan_round_trips_as_nan() -> None:
    assert math.isnan(codec.decode(codec.encode(float("nan"))))


@pytest.mark.parametrize(
    "value",
    [
        (1, 2),
        {1, 2},
        object(),
        2**64,
        -(2**63) - 1,
        {(1, 2): 3},
        {True: 1},
        [1, (2,)],
        {"a": [b"x", {"b": frozenset()}]},
        bytearray(b"x"),
    ],
)
def test_other_values_are_refused_with_a_type_error(value: Any) -> None:
    with pytest.raises(TypeError):
        codec.check_command(value)


def test_the_error_names_where_the_bad_value_is() -> None:
    with pytest.raises(TypeError, match=r"command\['a'\]\[1\]"):
        codec.check_command({"a": [1, (2,)]})


def test_messages_round_trip_by_value() -> None:
    import msgspec

    args = AppendEntriesArgs(3, 1, 4, 2, (Entry(3, msgspec.Raw(codec.encode("x"))),), 4)
    again = codec.decode(codec.encode(args), AppendEntriesArgs)
    assert again == args and again is not args


def test_bad_bytes_raise_codec_error_naming_what() -> None:
    with pytest.raises(codec.CodecError, match="persisted raft state"):
        codec.decode(b"\xc1", PersistentState, what="persisted raft state")
    with pytest.raises(codec.CodecError):
        codec.decode(codec.encode([1, 2]), PersistentState)


def test_heartbeats_are_small() -> None:
    # the 6.824 byte bounds are about waste: a heartbeat is a handful of bytes
    assert len(codec.encode(AppendEntriesArgs(12, 3, 1000, 11, (), 999))) < 16
