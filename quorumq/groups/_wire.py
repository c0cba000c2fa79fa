"""Kafka's fixed-width and (for flexible versions) compact primitives, for stored records.

Group records in ``__consumer_offsets`` use Kafka's message schemas: big-endian ints,
``int16``-length strings, ``int32``-length bytes (-1 = null) and, from the first flexible
version on, unsigned-varint compact lengths (n + 1, 0 = null) followed by tagged fields. Bad
input raises :class:`InvalidRecord`, never ``struct.error`` or ``IndexError``.
"""

from __future__ import annotations

import struct

from quorumq.errors import InvalidRecord

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")


class Reader:
    """A cursor over bytes that refuses to read past the end."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def _take(self, size: int) -> bytes:
        if size < 0 or self._pos + size > len(self._data):
            raise InvalidRecord(f"record truncated: need {size} bytes at {self._pos}")
        chunk = self._data[self._pos : self._pos + size]
        self._pos += size
        return chunk

    def int16(self) -> int:
        return int(_I16.unpack(self._take(2))[0])

    def int32(self) -> int:
        return int(_I32.unpack(self._take(4))[0])

    def int64(self) -> int:
        return int(_I64.unpack(self._take(8))[0])

    def uvarint(self) -> int:
        value = 0
        for shift in range(0, 35, 7):
            byte = self._take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise InvalidRecord("unsigned varint longer than 5 bytes")

    def _text(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRecord(f"string is not UTF-8: {exc}") from None

    def string(self, *, compact: bool = False) -> str:
        value = self.nullable_string(compact=compact)
        if value is None:
            raise InvalidRecord("null where a string is required")
        return value

    def nullable_string(self, *, compact: bool = False) -> str | None:
        size = self.uvarint() - 1 if compact else self.int16()
        if size < 0:
            if size == -1:
                return None
            raise InvalidRecord(f"negative string length {size}")
        return self._text(self._take(size))

    def bytes_(self, *, compact: bool = False) -> bytes:
        value = self.nullable_bytes(compact=compact)
        if value is None:
            raise InvalidRecord("null where bytes are required")
        return value

    def nullable_bytes(self, *, compact: bool = False) -> bytes | None:
        size = self.uvarint() - 1 if compact else self.int32()
        if size < 0:
            if size == -1:
                return None
            raise InvalidRecord(f"negative bytes length {size}")
        return self._take(size)

    def array_length(self, *, compact: bool = False) -> int:
        size = self.uvarint() - 1 if compact else self.int32()
        if size < 0:
            raise InvalidRecord(f"negative or null array length {size}")
        if size > self.remaining:  # every element takes at least one byte
            raise InvalidRecord(f"array of {size} elements in {self.remaining} bytes")
        return size

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self._take(self.uvarint())


class Writer:
    """Appends Kafka primitives to a buffer; ``getvalue()`` returns the bytes."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def getvalue(self) -> bytes:
        return b"".join(self._parts)

    def int16(self, value: int) -> None:
        self._parts.append(_I16.pack(value))

    def int32(self, value: int) -> None:
        self._parts.append(_I32.pack(value))

    def int64(self, value: int) -> None:
        self._parts.append(_I64.pack(value))

    def nullable_string(self, value: str | None) -> None:
        if value is None:
            self.int16(-1)
            return
        raw = value.encode("utf-8")
        if len(raw) > 0x7FFF:
            raise InvalidRecord(f"string of {len(raw)} bytes exceeds int16 length")
        self.int16(len(raw))
        self._parts.append(raw)

    def string(self, value: str) -> None:
        self.nullable_string(value)

    def nullable_bytes(self, value: bytes | None) -> None:
        if value is None:
            self.int32(-1)
            return
        self.int32(len(value))
        self._parts.append(bytes(value))

    def bytes_(self, value: bytes) -> None:
        self.nullable_bytes(value)
