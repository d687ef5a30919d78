"""The one encoding of trioraft: compact msgpack via msgspec.

The simulated network, the persister's state and (later) the trace all go
through here, so there is one notion of "how big is this" and one error type
for bytes that do not decode.

Commands handed to ``start()`` are arbitrary user values; :func:`check_command`
enforces the contract's list of types up front, so a bad value is refused with
a ``TypeError`` at ``start()`` time instead of failing somewhere inside a peer.
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

import msgspec

T = TypeVar("T")

_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1

_encoder = msgspec.msgpack.Encoder()
_decoders: dict[object, msgspec.msgpack.Decoder[Any]] = {}


class CodecError(ValueError):
    """Bytes that do not decode to the expected type (corrupt or foreign data)."""


def encode(value: object) -> bytes:
    """Encode ``value`` (a message struct or plain data) as msgpack bytes."""
    try:
        return _encoder.encode(value)
    except (TypeError, OverflowError) as exc:
        raise TypeError(f"cannot encode {type(value).__name__}: {exc}") from None


@overload
def decode(data: bytes, type: type[T], *, what: str = ...) -> T: ...
@overload
def decode(data: bytes, type: Any = ..., *, what: str = ...) -> Any: ...
def decode(data: bytes, type: Any = Any, *, what: str = "message") -> Any:
    """Decode ``data`` as ``type``; raise :class:`CodecError` naming ``what`` on failure."""
    decoder = _decoders.get(type)
    if decoder is None:
        decoder = _decoders[type] = msgspec.msgpack.Decoder(type)
    try:
        result = decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CodecError(f"{what} does not decode: {exc}") from None
    return result


def encode_command(value: object) -> bytes:
    """A command checked (:func:`check_command`) and encoded, for ``start()``."""
    check_command(value)
    return encode(value)


def check_command(value: object, *, _path: str = "command") -> None:
    """Raise ``TypeError`` unless ``value`` round-trips through the codec unchanged.

    Allowed: None, bool, int (signed or unsigned 64-bit), float, str, bytes,
    list, and dict with str or int keys, nested freely.  Tuples are refused
    because they would come back as lists.
    """
    if value is None or isinstance(value, (bool, float, str, bytes)):
        return
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _UINT64_MAX:
            raise TypeError(f"{_path}: int {value} is outside the 64-bit range")
        return
    if type(value) is list:
        for i, item in enumerate(value):
            check_command(item, _path=f"{_path}[{i}]")
        return
    if type(value) is dict:
        for key, item in value.items():
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise TypeError(
                    f"{_path}: dict key {key!r} is a {type(key).__name__}; keys must be str or int"
                )
            if isinstance(key, int):
                check_command(key, _path=f"{_path} key")
            check_command(item, _path=f"{_path}[{key!r}]")
        return
    raise TypeError(
        f"{_path}: a {type(value).__name__} is not a valid command; use None, bool, int, "
        "float, str, bytes, list or dict (a tuple would come back as a list)"
    )
