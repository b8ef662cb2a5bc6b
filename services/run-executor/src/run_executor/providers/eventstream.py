"""Decoder of the AWS event-stream binary framing (`application/vnd.amazon.eventstream`), which
Bedrock's ConverseStream uses instead of SSE.

A message is: total length (u32) | headers length (u32) | prelude CRC32 (u32) | headers | payload |
message CRC32 (u32), big-endian. A header is: name length (u8) | name | type (u8) | value.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass
from typing import Any

_PRELUDE = 12
_MAX_MESSAGE = 16 * 1024 * 1024


class EventStreamError(ValueError):
    """The bytes are not a valid event stream (bad length or checksum)."""


@dataclass(frozen=True)
class EventStreamMessage:
    headers: dict[str, Any]
    payload: bytes


def _read_headers(data: bytes) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    pos = 0
    while pos < len(data):
        name_len = data[pos]
        pos += 1
        name = data[pos : pos + name_len].decode("utf-8")
        pos += name_len
        kind = data[pos]
        pos += 1
        value: Any
        if kind == 0:
            value = True
        elif kind == 1:
            value = False
        elif kind == 2:
            (value,) = struct.unpack_from(">b", data, pos)
            pos += 1
        elif kind == 3:
            (value,) = struct.unpack_from(">h", data, pos)
            pos += 2
        elif kind == 4:
            (value,) = struct.unpack_from(">i", data, pos)
            pos += 4
        elif kind in (5, 8):  # int64, timestamp (ms since epoch)
            (value,) = struct.unpack_from(">q", data, pos)
            pos += 8
        elif kind in (6, 7):  # bytes, string
            (length,) = struct.unpack_from(">H", data, pos)
            pos += 2
            raw = data[pos : pos + length]
            pos += length
            value = raw.decode("utf-8") if kind == 7 else raw
        elif kind == 9:
            value = str(uuid.UUID(bytes=data[pos : pos + 16]))
            pos += 16
        else:
            raise EventStreamError(f"unknown header value type {kind}")
        headers[name] = value
    return headers


class EventStreamDecoder:
    """Feed it body bytes as they arrive; it returns every complete message."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[EventStreamMessage]:
        self._buffer.extend(chunk)
        messages: list[EventStreamMessage] = []
        while len(self._buffer) >= _PRELUDE:
            total, headers_len, prelude_crc = struct.unpack_from(">III", self._buffer, 0)
            if zlib.crc32(bytes(self._buffer[:8])) != prelude_crc:
                raise EventStreamError("event-stream prelude checksum mismatch")
            if total < _PRELUDE + 4 + headers_len or total > _MAX_MESSAGE:
                raise EventStreamError(f"event-stream message length {total} is invalid")
            if len(self._buffer) < total:
                break
            message = bytes(self._buffer[:total])
            del self._buffer[:total]
            (message_crc,) = struct.unpack_from(">I", message, total - 4)
            if zlib.crc32(message[:-4]) != message_crc:
                raise EventStreamError("event-stream message checksum mismatch")
            headers = _read_headers(message[_PRELUDE : _PRELUDE + headers_len])
            messages.append(EventStreamMessage(headers, message[_PRELUDE + headers_len : -4]))
        return messages
