"""Framing: every Kafka request and response is an int32 size followed by that many bytes.

:class:`FrameReader` is a sans-I/O accumulator: the connection feeds it whatever the socket
returned and takes out complete frames; it refuses a size above ``max_frame_bytes``
(``socket.request.max.bytes``) before buffering any of it, so a hostile prefix costs nothing.
"""

from __future__ import annotations

import struct

from quorumq.errors import InvalidRequest

FRAME_SIZE_BYTES = 4
"""The int32 size prefix of every frame."""

DEFAULT_MAX_REQUEST_BYTES = 104_857_600
"""Kafka's ``socket.request.max.bytes`` default (100 MiB)."""

_SIZE = struct.Struct(">i")


def read_frame_size(prefix: bytes | bytearray | memoryview, max_bytes: int) -> int:
    """Returns the size announced by a 4-byte frame prefix.

    Raises:
        InvalidRequest: fewer than 4 bytes, a negative size, or more than ``max_bytes``.
    """
    if len(prefix) < FRAME_SIZE_BYTES:
        raise InvalidRequest(f"frame prefix of {len(prefix)} bytes")
    (size,) = _SIZE.unpack_from(prefix, 0)
    if size < 0 or size > max_bytes:
        raise InvalidRequest(f"frame of {size} bytes (limit {max_bytes})")
    return size


def frame_size_prefix(size: int) -> bytes:
    """The 4-byte prefix of a frame of ``size`` bytes."""
    return _SIZE.pack(size)


class FrameReader:
    """Cuts a byte stream into frames (without their size prefix).

    Usage: ``reader.feed(data)`` then ``while (frame := reader.next_frame()) is not None``.
    Frames are ``memoryview``s of private ``bytes`` objects, safe to keep after the next feed.
    """

    __slots__ = ("_buf", "_max_bytes", "_need")

    def __init__(self, max_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> None:
        self._buf = bytearray()
        self._max_bytes = max_bytes
        self._need = -1  # size of the frame being accumulated, -1 while reading the prefix

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Appends bytes received from the peer."""
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a complete frame."""
        return len(self._buf)

    def next_frame(self) -> memoryview | None:
        """Returns the next complete frame, or None if more bytes are needed.

        Raises:
            InvalidRequest: a size prefix that is negative or above ``max_bytes``; the stream is
                unusable after that and the connection should close.
        """
        if self._need < 0:
            if len(self._buf) < FRAME_SIZE_BYTES:
                return None
            self._need = read_frame_size(self._buf, self._max_bytes)
            del self._buf[:FRAME_SIZE_BYTES]
        if len(self._buf) < self._need:
            return None
        frame = bytes(self._buf[: self._need])
        del self._buf[: self._need]
        self._need = -1
        return memoryview(frame)
