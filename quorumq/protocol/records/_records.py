"""RecordBatch v2 records: decode them out of a batch, build a batch from them.

Theory of operation: the broker never calls this module on produce, replicate or fetch (batches
stay opaque bytes there); compaction, our own client and tests do. A batch's records section
(after the 61-byte header) is, uncompressed or after decompression, ``recordCount`` records::

    length varint | attributes int8 | timestampDelta varlong | offsetDelta varint |
    keyLength varint | key | valueLength varint | value |
    headerCount varint | [headerKeyLength varint | headerKey utf-8 | headerValueLength varint |
    headerValue]...

(Kafka's ``DefaultRecord``; a length of -1 means null.) Decoding checks the batch's CRC first
(:func:`validate_batch`), then that every record consumes exactly its declared length and the
records consume exactly the section: any mismatch is :class:`CorruptRecord`, never an
``IndexError`` or ``UnicodeDecodeError``.

Building mirrors Kafka's ``MemoryRecordsBuilder``: ``baseTimestamp`` is the first record's
timestamp (or the delete horizon, KIP-534), ``maxTimestamp`` the largest, offsets are stored as
deltas from ``base_offset`` and may have gaps (a compacted batch keeps its records' offsets and,
through ``last_offset_delta``, its original offset range).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator, Sequence
from typing import TypeAlias

import attrs
from crc32c import crc32c

from quorumq.errors import CorruptRecord, InvalidRecord
from quorumq.protocol.records._compression import compress, decompress
from quorumq.protocol.records._header import (
    _HEADER,
    ATTR_COMPRESSION_MASK,
    ATTR_CONTROL,
    ATTR_DELETE_HORIZON,
    ATTR_TIMESTAMP_TYPE,
    ATTR_TRANSACTIONAL,
    CRC_START,
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC_V2,
    NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    NO_TIMESTAMP,
    BatchHeader,
    Compression,
    TimestampType,
    validate_batch,
)
from quorumq.protocol.records._varint import decode_varint, encode_varint

Buffer: TypeAlias = bytes | bytearray | memoryview
Header: TypeAlias = tuple[str, bytes | None]

_MAX_INT32 = (1 << 31) - 1
_CRC = struct.Struct(">I")
_CONTROL_KEY = struct.Struct(">hh")
_CONTROL_VALUE = struct.Struct(">hi")


@attrs.frozen
class Record:
    """One record of a batch, with absolute offset and timestamp.

    ``value`` None is a tombstone (compaction deletes the key); ``key`` None is an unkeyed record.
    """

    offset: int  # base_offset + offsetDelta
    # base_timestamp + timestampDelta, or the batch's max_timestamp under LOG_APPEND_TIME
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()


# Slot setters: a frozen attrs class refuses setattr, not its slots' descriptors. Building a
# Record through them costs 0.45 µs instead of 0.65 µs (a third of a batch's decode time).
_RECORD_SETTERS = tuple(Record.__dict__[field.name].__set__ for field in attrs.fields(Record))


class ControlRecordType(enum.IntEnum):
    """The ``type`` in a control record's key (Kafka's ``ControlRecordType``)."""

    ABORT = 0
    COMMIT = 1


def decode_records(batch: Buffer, position: int = 0) -> list[Record]:
    """Validates the batch at ``position`` and returns its records (see :func:`iter_records`).

    Raises:
        CorruptRecord: bad CRC, lengths, varints, compressed stream or UTF-8 header key.
        UnsupportedCompressionType: compression bits that name no codec.
    """
    header = validate_batch(batch, position)
    data, start, end = _records_section(batch, position, header)
    return _decode(data, start, end, header)


def iter_records(batch: Buffer, position: int = 0) -> Iterator[Record]:
    """Yields the records of the batch at ``position``, validated like :func:`decode_records`.

    The whole batch is validated and decoded before the first record is yielded, so a consumer
    never acts on the front of a batch whose back turns out corrupt.
    """
    yield from decode_records(batch, position)


def decode_batch(batch: Buffer, position: int = 0) -> tuple[BatchHeader, list[Record]]:
    """Validates the batch at ``position``; returns its header and its records."""
    header = validate_batch(batch, position)
    data, start, end = _records_section(batch, position, header)
    return header, _decode(data, start, end, header)


def _records_section(batch: Buffer, position: int, header: BatchHeader) -> tuple[Buffer, int, int]:
    """The records' bytes (decompressed if need be, else ``batch`` itself) and their span."""
    start = position + HEADER_SIZE
    end = position + header.size
    codec = header.attributes & ATTR_COMPRESSION_MASK
    if codec == Compression.NONE:
        return batch, start, end
    data = decompress(codec, memoryview(batch)[start:end])
    return data, 0, len(data)


def _decode(data: Buffer, pos: int, end: int, header: BatchHeader) -> list[Record]:
    """Parses ``header.record_count`` records from ``data[pos:end]``, which they must fill.

    The one-byte varint case is inlined for every field, the two-byte case for the lengths, and
    records are built through their slots rather than attrs' frozen ``__init__``: this loop
    is what compaction and our consumer spend their time in.
    """
    base_offset = header.base_offset
    base_timestamp = header.base_timestamp
    append_time = (
        header.max_timestamp if header.attributes & ATTR_TIMESTAMP_TYPE else None
    )  # LOG_APPEND_TIME: every record carries the broker's stamp
    records: list[Record] = []
    append = records.append
    slow = decode_varint
    new = object.__new__
    set_offset, set_timestamp, set_key, set_value, set_headers = _RECORD_SETTERS
    try:
        for _ in range(header.record_count):
            b = data[pos]
            if b < 0x80:
                length = (b >> 1) ^ -(b & 1)
                pos += 1
            elif data[pos + 1] < 0x80:  # 64..8191 bytes: the usual record
                z = (b & 0x7F) | (data[pos + 1] << 7)
                length = (z >> 1) ^ -(z & 1)
                pos += 2
            else:
                length, pos = slow(data, pos)
            record_end = pos + length
            if length < 0 or record_end > end:
                raise CorruptRecord(f"record length {length} does not fit the batch")
            pos += 1  # attributes: unused in v2
            b = data[pos]
            if b < 0x80:
                timestamp_delta = (b >> 1) ^ -(b & 1)
                pos += 1
            else:
                timestamp_delta, pos = slow(data, pos)
            b = data[pos]
            if b < 0x80:
                offset_delta = (b >> 1) ^ -(b & 1)
                pos += 1
            else:
                offset_delta, pos = slow(data, pos)
            b = data[pos]
            if b < 0x80:
                key_length = (b >> 1) ^ -(b & 1)
                pos += 1
            else:
                key_length, pos = slow(data, pos)
            if key_length >= 0:
                key: bytes | None = bytes(data[pos : pos + key_length])
                pos += key_length
            elif key_length == -1:
                key = None
            else:
                raise CorruptRecord(f"record key length {key_length}")
            b = data[pos]
            if b < 0x80:
                value_length = (b >> 1) ^ -(b & 1)
                pos += 1
            elif data[pos + 1] < 0x80:
                z = (b & 0x7F) | (data[pos + 1] << 7)
                value_length = (z >> 1) ^ -(z & 1)
                pos += 2
            else:
                value_length, pos = slow(data, pos)
            if value_length >= 0:
                value: bytes | None = bytes(data[pos : pos + value_length])
                pos += value_length
            elif value_length == -1:
                value = None
            else:
                raise CorruptRecord(f"record value length {value_length}")
            b = data[pos]
            if b == 0:
                headers: tuple[Header, ...] = ()
                pos += 1
            else:
                headers, pos = _decode_headers(data, pos, record_end)
            if pos != record_end:
                raise CorruptRecord(
                    f"record declares {length} bytes but its fields take {pos - record_end + length}"
                )
            record = new(Record)
            set_offset(record, base_offset + offset_delta)
            set_timestamp(
                record, base_timestamp + timestamp_delta if append_time is None else append_time
            )
            set_key(record, key)
            set_value(record, value)
            set_headers(record, headers)
            append(record)
    except IndexError:
        raise CorruptRecord("record runs past the end of the batch") from None
    if pos != end:
        raise CorruptRecord(f"{end - pos} bytes left after the batch's {len(records)} records")
    return records


def _decode_headers(data: Buffer, pos: int, limit: int) -> tuple[tuple[Header, ...], int]:
    count, pos = decode_varint(data, pos)
    if count < 0 or 2 * count > limit - pos:  # a header takes at least two bytes
        raise CorruptRecord(f"record header count {count}")
    headers: list[Header] = []
    for _ in range(count):
        key_length, pos = decode_varint(data, pos)
        if key_length < 0:
            raise CorruptRecord(f"record header key length {key_length}")
        try:
            key = str(data[pos : pos + key_length], "utf-8")
        except UnicodeDecodeError:
            raise CorruptRecord("record header key is not UTF-8") from None
        pos += key_length
        value_length, pos = decode_varint(data, pos)
        if value_length >= 0:
            value: bytes | None = bytes(data[pos : pos + value_length])
            pos += value_length
        elif value_length == -1:
            value = None
        else:
            raise CorruptRecord(f"record header value length {value_length}")
        headers.append((key, value))
    return tuple(headers), pos


RecordLike: TypeAlias = (
    Record | tuple[bytes | None, bytes | None] | tuple[bytes | None, bytes | None, Sequence[Header]]
)


def build_batch(
    records: Sequence[RecordLike],
    *,
    base_offset: int = 0,
    compression: Compression = Compression.NONE,
    compression_level: int | None = None,
    timestamp_type: TimestampType = TimestampType.CREATE_TIME,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = NO_PRODUCER_EPOCH,
    base_sequence: int = NO_SEQUENCE,
    partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
    is_transactional: bool = False,
    is_control: bool = False,
    last_offset_delta: int | None = None,
    max_timestamp: int | None = None,
    delete_horizon_ms: int | None = None,
    timestamp: int = NO_TIMESTAMP,
) -> bytes:
    """Serializes records as one RecordBatch v2 (Kafka's ``MemoryRecordsBuilder``).

    Args:
        records: :class:`Record` values (absolute offsets, strictly increasing, at or above
            ``base_offset``), or ``(key, value)`` / ``(key, value, headers)`` tuples, which take
            offsets ``base_offset, base_offset + 1, ...`` and the timestamp ``timestamp``.
        base_offset: stored as is; the leader overwrites it on append (:func:`patch_batch`).
        compression: the codec; always applied when asked (as Java's client does), even when it
            does not shrink the records.
        compression_level: the codec's level; ``None`` takes Kafka's default.
        last_offset_delta: the batch's offset range; defaults to the last record's delta. A
            compacted batch passes its original value so the offsets it covers stay the same
            (Kafka keeps even an empty batch this way, to keep a producer's last sequence).
        max_timestamp: overrides ``maxTimestamp`` (a compacted LOG_APPEND_TIME batch keeps the
            broker's stamp); defaults to the largest record timestamp.
        delete_horizon_ms: sets the delete-horizon attribute (KIP-534): ``baseTimestamp`` holds
            the horizon and record timestamps are deltas from it.

    Returns:
        The batch, CRC-32C filled in.

    Raises:
        InvalidRecord: offsets out of order or below ``base_offset``, a ``last_offset_delta``
            below the last record's, or a field out of its wire range.
    """
    rows = [
        r if type(r) is Record else _as_record(r, base_offset + i, timestamp)
        for i, r in enumerate(records)
    ]
    if delete_horizon_ms is not None:
        base_timestamp = delete_horizon_ms
    else:
        base_timestamp = rows[0].timestamp if rows else NO_TIMESTAMP
    enc = encode_varint
    parts: list[bytes] = []
    push = parts.append
    previous_delta = -1
    try:
        for record in rows:
            offset_delta = record.offset - base_offset
            if not previous_delta < offset_delta <= _MAX_INT32:
                raise InvalidRecord(
                    f"record offset {record.offset} out of order in a batch at {base_offset}"
                )
            previous_delta = offset_delta
            key, value = record.key, record.value
            if key is None:
                key_part = b"\x01"
                key = b""
            else:
                key_part = enc(len(key))
            if value is None:
                value_part = b"\x01"
                value = b""
            else:
                value_part = enc(len(value))
            body = b"".join(
                (
                    b"\x00",  # attributes
                    enc(record.timestamp - base_timestamp),
                    enc(offset_delta),
                    key_part,
                    key,
                    value_part,
                    value,
                    _encode_headers(record.headers) if record.headers else b"\x00",
                )
            )
            push(enc(len(body)))
            push(body)
    except OverflowError:
        raise InvalidRecord("record timestamp out of the varlong range") from None
    if last_offset_delta is None:
        last_offset_delta = max(previous_delta, 0)
    elif last_offset_delta < previous_delta:
        raise InvalidRecord(
            f"last_offset_delta {last_offset_delta} is below the last record's {previous_delta}"
        )
    if max_timestamp is None:
        max_timestamp = max(r.timestamp for r in rows) if rows else NO_TIMESTAMP
    attributes = int(compression) | (int(timestamp_type) << 3)
    if is_transactional:
        attributes |= ATTR_TRANSACTIONAL
    if is_control:
        attributes |= ATTR_CONTROL
    if delete_horizon_ms is not None:
        attributes |= ATTR_DELETE_HORIZON
    records_section = b"".join(parts)
    if compression != Compression.NONE:
        records_section = compress(compression, records_section, compression_level)
    out = bytearray(HEADER_SIZE)
    out += records_section
    try:
        _HEADER.pack_into(
            out,
            0,
            base_offset,
            len(out) - LOG_OVERHEAD,
            partition_leader_epoch,
            MAGIC_V2,
            0,
            attributes,
            last_offset_delta,
            base_timestamp,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            len(rows),
        )
    except struct.error as exc:
        raise InvalidRecord(f"record batch field out of range: {exc}") from None
    _CRC.pack_into(out, 17, crc32c(memoryview(out)[CRC_START:]))
    return bytes(out)


def _as_record(record: RecordLike, offset: int, timestamp: int) -> Record:
    if isinstance(record, Record):
        return record
    if len(record) == 2:
        return Record(offset, timestamp, record[0], record[1])
    return Record(offset, timestamp, record[0], record[1], tuple(record[2]))  # type: ignore[misc]


def _encode_headers(headers: Sequence[Header]) -> bytes:
    out = bytearray(encode_varint(len(headers)))
    for key, value in headers:
        raw = key.encode("utf-8")
        out += encode_varint(len(raw))
        out += raw
        if value is None:
            out += b"\x01"
        else:
            out += encode_varint(len(value))
            out += value
    return bytes(out)


def control_record(
    kind: ControlRecordType, offset: int, timestamp: int, coordinator_epoch: int = 0
) -> Record:
    """A transaction marker (``EndTransactionMarker`` v0) for a batch built with is_control."""
    return Record(
        offset,
        timestamp,
        _CONTROL_KEY.pack(0, kind),
        _CONTROL_VALUE.pack(0, coordinator_epoch),
    )


def control_record_type(record: Record) -> ControlRecordType:
    """The marker type of a record from a control batch.

    Raises:
        CorruptRecord: the key is not a control record key (version 0, type 0 or 1).
    """
    key = record.key
    if key is None or len(key) < _CONTROL_KEY.size:
        raise CorruptRecord("control record key shorter than 4 bytes")
    version, kind = _CONTROL_KEY.unpack_from(key)
    if version < 0 or kind not in (ControlRecordType.ABORT, ControlRecordType.COMMIT):
        raise CorruptRecord(f"control record key version {version} type {kind}")
    return ControlRecordType(kind)
