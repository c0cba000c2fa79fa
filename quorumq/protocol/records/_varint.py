"""Zigzag varints as RecordBatch v2 records use them (Kafka's ``ByteUtils.writeVarint``).

A record's length, attributes aside, every field of a v2 record is a zigzag-encoded base-128
varint: ``varint`` for 32-bit values (at most 5 bytes), ``varlong`` for 64-bit ones (at most 10).
Values that are almost always small (lengths, deltas) take the one- and two-byte fast paths;
encoding memoizes those in a table so building a batch costs one lookup per field.
"""

from __future__ import annotations

from quorumq.errors import CorruptRecord

_CACHE_LIMIT = 1 << 13
"""Values in ``[-_CACHE_LIMIT, _CACHE_LIMIT)`` zigzag into at most two bytes: memoized."""


def _encode_uncached(value: int) -> bytes:
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while zigzag > 0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


# Index ``value + _CACHE_LIMIT``; built once at import (16 Ki tiny bytes, about a millisecond).
_SMALL: list[bytes] = [_encode_uncached(v) for v in range(-_CACHE_LIMIT, _CACHE_LIMIT)]

_MIN_INT64 = -(1 << 63)
_MAX_INT64 = (1 << 63) - 1


def encode_varint(value: int) -> bytes:
    """Returns the zigzag varint (or varlong) bytes of ``value`` (a signed 64-bit integer).

    Raises:
        OverflowError: ``value`` does not fit in 64 bits (a caller bug, never bad input).
    """
    if -_CACHE_LIMIT <= value < _CACHE_LIMIT:
        return _SMALL[value + _CACHE_LIMIT]
    if not _MIN_INT64 <= value <= _MAX_INT64:
        raise OverflowError(f"{value} does not fit a varlong")
    return _encode_uncached(value)


def size_of_varint(value: int) -> int:
    """Bytes that :func:`encode_varint` writes for ``value``."""
    return len(encode_varint(value))


def decode_varint(buf: bytes | bytearray | memoryview, position: int) -> tuple[int, int]:
    """Reads the zigzag varlong at ``position``; returns ``(value, position after it)``.

    Raises:
        CorruptRecord: the varint runs past ``buf`` or is longer than 10 bytes.
    """
    try:
        byte = buf[position]
        if byte < 0x80:
            return (byte >> 1) ^ -(byte & 1), position + 1
        result = byte & 0x7F
        shift = 7
        position += 1
        while True:
            byte = buf[position]
            position += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
            if shift > 63:
                raise CorruptRecord("varint longer than 10 bytes")
    except IndexError:
        raise CorruptRecord("varint runs past the end of the records") from None
    if result >> 64:
        raise CorruptRecord("varint does not fit 64 bits")
    return (result >> 1) ^ -(result & 1), position
