"""Frames on a TCP stream: a 4-byte big-endian length, then one msgpack message.

Rules of operation
------------------
- A frame's payload is one :data:`Message`, encoded by the project's codec
  (msgspec msgpack, array-encoded, tagged): :class:`Hello` first on every
  connection, then :class:`Request` and :class:`Response` in any order (a
  link between two nodes carries requests both ways).  Arguments and results
  travel already encoded (``msgspec.Raw``), so a frame is decoded once here
  and its arguments once more by the handler's own type, never to Python
  objects in between.
- A length above ``max_frame`` is refused *before* anything is allocated
  for it, and bytes that do not decode to a message are refused: both raise
  :class:`FrameError`, and the connection that sent them is closed (the node
  goes on serving everyone else).  Nothing is ever unpickled.
- :class:`FrameDecoder` is incremental: feed it whatever the socket gave,
  get back the complete messages; it holds at most one partial frame.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

DEFAULT_MAX_FRAME = 64 * 2**20
"""The largest frame accepted by default (64 MiB): room for a large command."""

_LENGTH = struct.Struct(">I")
LENGTH_SIZE = _LENGTH.size


class FrameError(ValueError):
    """Bytes on a connection that are not a valid frame (the connection is dropped)."""


class Hello(msgspec.Struct, frozen=True, array_like=True, tag=0):
    """The first frame each side sends: who it is.  With TLS the certificate is
    what counts (the claim must agree with it); without TLS (``insecure``) the
    claim is all there is.  ``role`` is "node" or "client"."""

    role: str
    node: int | None = None
    cluster: int = 0  # the sender's cluster size, so two clusters never mix


class Request(msgspec.Struct, frozen=True, array_like=True, tag=1):
    """One RPC call: ``id`` is the caller's (unique among its calls in flight on
    the connection); ``trace_id`` the message id of the execution trace, if any."""

    id: int
    method: str
    args: msgspec.Raw
    trace_id: int | None = None


NIL = msgspec.Raw(b"\xc0")
"""msgpack's nil, already encoded."""


class Response(msgspec.Struct, frozen=True, array_like=True, tag=2):
    """The reply to the request ``id``: ``result`` (encoded), or ``error`` when the
    callee had no reply to give (a killed peer, an unknown method...)."""

    id: int
    result: msgspec.Raw = NIL  # (msgspec's Raw takes part in no union: nil stands for none)
    error: str | None = None


Message = Hello | Request | Response

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


def encode_frame(message: Message) -> bytes:
    """A whole frame: length, then the encoded message."""
    payload = _encoder.encode(message)
    return _LENGTH.pack(len(payload)) + payload


def encode_value(value: Any) -> msgspec.Raw:
    """Arguments or a result, encoded once for a :class:`Request`/:class:`Response`."""
    return msgspec.Raw(_encoder.encode(value))


class FrameDecoder:
    """Splits a byte stream into messages (see the module docstring)."""

    __slots__ = ("_buffer", "_max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes | bytearray) -> list[Message]:
        """The messages completed by ``data`` (possibly none); :class:`FrameError`
        for an oversized or undecodable frame."""
        buffer = self._buffer
        buffer += data
        messages: list[Message] = []
        start = 0
        while len(buffer) - start >= LENGTH_SIZE:
            (length,) = _LENGTH.unpack_from(buffer, start)
            if length > self._max_frame:
                raise FrameError(
                    f"a frame of {length} bytes is larger than the limit of {self._max_frame}"
                )
            end = start + LENGTH_SIZE + length
            if end > len(buffer):
                break
            # A copy of its own: the Raw fields of a message point into the bytes
            # it was decoded from, and the buffer is reused.
            payload = bytes(buffer[start + LENGTH_SIZE : end])
            try:
                messages.append(_decoder.decode(payload))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise FrameError(f"a frame that is not a trioraft message: {exc}") from None
            start = end
        if start:
            del buffer[:start]
        return messages
