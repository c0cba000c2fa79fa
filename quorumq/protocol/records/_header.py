"""RecordBatch v2 headers: parse, validate and patch without touching the records.

Theory of operation: a produce request carries a *record set*, a run of RecordBatch v2 batches.
The broker validates each batch once (magic, lengths, CRC-32C, counts, attributes), then keeps
it as opaque bytes; the only fields it ever rewrites are ``baseOffset`` and
``partitionLeaderEpoch``, which sit before the CRC'd region (the CRC covers bytes 21..end), so
patching them needs no CRC recompute. That is what keeps produce, replicate and fetch free of
per-record Python work.

Layout (big-endian), as in Kafka's DefaultRecordBatch::

    0  baseOffset int64          27 baseTimestamp int64
    8  batchLength int32         35 maxTimestamp int64
    12 partitionLeaderEpoch int32 43 producerId int64
    16 magic int8                51 producerEpoch int16
    17 crc uint32                53 baseSequence int32
    21 attributes int16          57 recordCount int32
    23 lastOffsetDelta int32     61 records...
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator

import attrs
from crc32c import crc32c

from quorumq.errors import CorruptRecord, InvalidRecord, UnsupportedCompressionType

HEADER_SIZE = 61
"""Bytes of a RecordBatch v2 header, records excluded."""

LOG_OVERHEAD = 12
"""baseOffset + batchLength: the bytes of a batch not counted by ``batchLength``."""

CRC_START = 21
"""The CRC-32C covers from ``attributes`` (byte 21) to the end of the batch."""

MAGIC_V2 = 2
NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
NO_PARTITION_LEADER_EPOCH = -1
NO_TIMESTAMP = -1

_HEADER = struct.Struct(">qiibIhiqqqhii")
_OFFSET_AND_LENGTH = struct.Struct(">qi")
_BASE_OFFSET = struct.Struct(">q")
_LEADER_EPOCH = struct.Struct(">i")
_MAGIC_OFFSET = 16
_LEADER_EPOCH_OFFSET = 12


class Compression(enum.IntEnum):
    """The codec in attributes bits 0-2."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


class TimestampType(enum.IntEnum):
    """Attributes bit 3: who stamped the records' timestamps."""

    CREATE_TIME = 0
    LOG_APPEND_TIME = 1


ATTR_COMPRESSION_MASK = 0x07
ATTR_TIMESTAMP_TYPE = 0x08
ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20
ATTR_DELETE_HORIZON = 0x40


@attrs.frozen
class BatchHeader:
    """The 61-byte header of one RecordBatch v2, as parsed; the records stay bytes.

    invariant: ``size == LOG_OVERHEAD + batch_length``; ``last_offset == base_offset +
    last_offset_delta``.
    """

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def size(self) -> int:
        """Bytes of the whole batch, header included."""
        return LOG_OVERHEAD + self.batch_length

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        """The offset right after this batch: the log end offset once it is appended."""
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> Compression:
        """The codec; :class:`UnsupportedCompressionType` for bits 5-7 (unvalidated headers)."""
        codec = self.attributes & ATTR_COMPRESSION_MASK
        if codec > Compression.ZSTD:
            raise UnsupportedCompressionType(f"unknown compression codec {codec}")
        return Compression(codec)

    @property
    def timestamp_type(self) -> TimestampType:
        return TimestampType((self.attributes & ATTR_TIMESTAMP_TYPE) >> 3)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & ATTR_TRANSACTIONAL)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & ATTR_CONTROL)

    @property
    def last_sequence(self) -> int:
        """The sequence number of the batch's last record (sequences wrap at 2**31)."""
        if self.base_sequence == NO_SEQUENCE:
            return NO_SEQUENCE
        return (self.base_sequence + self.last_offset_delta) % (1 << 31)


def parse_batch_header(buf: bytes | bytearray | memoryview, position: int = 0) -> BatchHeader:
    """Parses the header of the batch at ``position`` without checking its CRC.

    Raises:
        CorruptRecord: fewer than 61 bytes, a magic other than 2, or a batch length that does
            not fit (too short for the header or longer than ``buf``).
    """
    if len(buf) - position < HEADER_SIZE:
        raise CorruptRecord(
            f"record batch header truncated: {len(buf) - position} of {HEADER_SIZE} bytes"
        )
    fields = _HEADER.unpack_from(buf, position)
    header = BatchHeader(*fields)
    if header.magic != MAGIC_V2:
        raise CorruptRecord(f"unsupported record batch magic {header.magic} (only v2 is)")
    if header.batch_length < HEADER_SIZE - LOG_OVERHEAD:
        raise CorruptRecord(f"record batch length {header.batch_length} is below the header size")
    if position + header.size > len(buf):
        raise CorruptRecord(
            f"record batch truncated: length says {header.size} bytes, "
            f"{len(buf) - position} present"
        )
    return header


def validate_batch(
    buf: bytes | bytearray | memoryview, position: int = 0, *, dense: bool = False
) -> BatchHeader:
    """Parses and fully validates the header of the batch at ``position`` (records untouched).

    Checks what Kafka's ``DefaultRecordBatch.ensureValid`` checks and what the broker relies on:
    magic 2, lengths, CRC-32C over bytes 21..end, a known compression codec, and
    ``0 <= recordCount <= lastOffsetDelta + 1``. Compacted batches keep their original offset
    range with fewer records (even none), so only ``dense=True`` (a batch fresh from a producer,
    as Kafka's LogValidator demands) requires ``lastOffsetDelta + 1 == recordCount``.

    Raises:
        CorruptRecord: any of the above fails.
        InvalidRecord: ``dense=True`` and the count disagrees with ``lastOffsetDelta``.
        UnsupportedCompressionType: compression bits 5-7 (no such codec).
    """
    header = parse_batch_header(buf, position)
    end = position + header.size
    actual = crc32c(memoryview(buf)[position + CRC_START : end])
    if actual != header.crc:
        raise CorruptRecord(
            f"record batch at offset {header.base_offset} fails its CRC-32C "
            f"(stored {header.crc:#010x}, computed {actual:#010x})"
        )
    codec = header.attributes & ATTR_COMPRESSION_MASK
    if codec > Compression.ZSTD:
        raise UnsupportedCompressionType(f"unknown compression codec {codec}")
    if header.last_offset_delta < 0 or not 0 <= header.record_count <= header.last_offset_delta + 1:
        raise CorruptRecord(
            f"record batch count {header.record_count} does not fit "
            f"lastOffsetDelta {header.last_offset_delta}"
        )
    if dense and header.record_count != header.last_offset_delta + 1:
        raise InvalidRecord(
            f"record batch count {header.record_count} disagrees with "
            f"lastOffsetDelta {header.last_offset_delta}"
        )
    return header


def iter_batch_headers(
    buf: bytes | bytearray | memoryview, *, validate: bool = True
) -> Iterator[BatchHeader]:
    """Yields the header of every batch in a record set, front to back.

    A record set must be a whole number of batches: trailing bytes that do not form a full
    batch raise :class:`CorruptRecord`, as a partial batch in a produce request is corrupt.
    (Readers of a fetch response, where a trailing partial batch is normal, use
    :func:`parse_batch_header` themselves and stop at the first short batch.)
    """
    parse = validate_batch if validate else parse_batch_header
    position = 0
    end = len(buf)
    while position < end:
        header = parse(buf, position)
        yield header
        position += header.size


def batch_positions(
    buf: bytes | bytearray | memoryview, *, validate: bool = True
) -> list[tuple[int, BatchHeader]]:
    """Returns ``(position, header)`` for every batch of a record set (see iter_batch_headers)."""
    parse = validate_batch if validate else parse_batch_header
    out: list[tuple[int, BatchHeader]] = []
    position = 0
    end = len(buf)
    while position < end:
        header = parse(buf, position)
        out.append((position, header))
        position += header.size
    return out


def patch_batch(
    buf: bytearray | memoryview,
    position: int,
    *,
    base_offset: int,
    partition_leader_epoch: int | None = None,
) -> None:
    """Rewrites ``baseOffset`` (and ``partitionLeaderEpoch``) of the batch at ``position``.

    Both fields sit before the CRC'd region, so the stored CRC stays valid: this is how the
    leader assigns offsets without decoding or re-checksumming records.
    """
    _BASE_OFFSET.pack_into(buf, position, base_offset)
    if partition_leader_epoch is not None:
        _LEADER_EPOCH.pack_into(buf, position + _LEADER_EPOCH_OFFSET, partition_leader_epoch)


def peek_offset_and_length(
    buf: bytes | bytearray | memoryview, position: int = 0
) -> tuple[int, int]:
    """Returns ``(baseOffset, total batch size)`` from the first 12 bytes (log scans)."""
    if len(buf) - position < LOG_OVERHEAD:
        raise CorruptRecord("record batch prefix truncated")
    base_offset, batch_length = _OFFSET_AND_LENGTH.unpack_from(buf, position)
    return base_offset, LOG_OVERHEAD + batch_length


def compute_crc(buf: bytes | bytearray | memoryview, position: int = 0) -> int:
    """The CRC-32C of the batch at ``position`` as it should be stored (for builders).

    Raises:
        CorruptRecord: fewer than 12 bytes at ``position``.
    """
    header_len = peek_offset_and_length(buf, position)[1]
    return crc32c(memoryview(buf)[position + CRC_START : position + header_len])
