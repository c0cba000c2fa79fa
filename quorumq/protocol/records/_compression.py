"""The four codecs of RecordBatch v2, through cramjam, in the framings Kafka clients emit.

What each client writes (and so what :func:`decompress` must read):

- gzip: a gzip member (RFC 1952), from every client. Kafka's default level is 6.
- snappy: Java's client and kafka-python/aiokafka write xerial's ``SnappyOutputStream`` framing
  (a 16-byte header ``\\x82SNAPPY\\x00`` + version + compat, then ``int32`` length-prefixed raw
  snappy blocks of 32 KiB input each); librdkafka writes one raw snappy block. Kafka's reader
  (xerial's ``SnappyInputStream``) accepts both, and so do we. We write the xerial framing, the
  form every reader handles, including old Java brokers.
- lz4: the LZ4 *frame* format with independent blocks (KIP-57); Kafka refuses linked blocks.
- zstd: one or more zstd frames, with or without a content size (Java's streaming encoder
  omits it). Kafka's default level is 3.

Every decoder failure becomes :class:`CorruptRecord`: the batch passed its CRC, so a bad stream
means the producer wrote garbage, which Kafka answers with CORRUPT_MESSAGE too.
"""

from __future__ import annotations

import struct

import cramjam

from quorumq.errors import CorruptRecord, UnsupportedCompressionType
from quorumq.protocol.records._header import Compression

Buffer = bytes | bytearray | memoryview

XERIAL_MAGIC = b"\x82SNAPPY\x00"
"""First 8 bytes of xerial's snappy framing (then version and compat, two big-endian int32)."""

_XERIAL_HEADER = XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_XERIAL_HEADER_SIZE = 16
_XERIAL_BLOCK_SIZE = 32 * 1024
_BLOCK_LENGTH = struct.Struct(">i")

# Snappy's best case is a 3-byte copy tag that yields 64 bytes (ratio 21.3): a raw block that
# claims more than this per input byte is corrupt, and refusing it up front keeps a forged length
# header from making the decoder allocate gigabytes.
_SNAPPY_MAX_RATIO = 24

DEFAULT_LEVELS: dict[Compression, int | None] = {
    Compression.GZIP: 6,
    Compression.SNAPPY: None,
    Compression.LZ4: 9,
    Compression.ZSTD: 3,
}
"""Kafka's default ``compression.<codec>.level`` (KIP-390); snappy has no levels."""


def compress(codec: Compression, data: Buffer, level: int | None = None) -> bytes:
    """Compresses a batch's records section as ``codec`` in the framing Kafka expects.

    Args:
        codec: anything but :attr:`Compression.NONE`.
        data: the serialized records (everything after the 61-byte header).
        level: the codec's level; ``None`` takes Kafka's default.

    Raises:
        UnsupportedCompressionType: ``codec`` is NONE or not a codec.
    """
    if level is None:
        level = DEFAULT_LEVELS.get(codec)
    if codec == Compression.GZIP:
        return bytes(cramjam.gzip.compress(data, level=level))
    if codec == Compression.SNAPPY:
        return _xerial_snappy_compress(data)
    if codec == Compression.LZ4:
        compressor = cramjam.lz4.Compressor(level=level, content_checksum=False, block_linked=False)
        # The streaming compressor takes only bytes; one copy of a batch is cheap next to lz4.
        compressor.compress(data if isinstance(data, bytes) else bytes(data))
        return bytes(compressor.finish())
    if codec == Compression.ZSTD:
        return bytes(cramjam.zstd.compress(data, level=level))
    raise UnsupportedCompressionType(f"cannot compress with codec {codec!r}")


def decompress(codec: Compression | int, data: Buffer) -> bytes:
    """Decompresses a batch's records section written by any Kafka client.

    Raises:
        CorruptRecord: the stream does not decode (truncated, bad checksum, bad framing).
        UnsupportedCompressionType: ``codec`` is NONE or not a codec.
    """
    try:
        if codec == Compression.GZIP:
            return bytes(cramjam.gzip.decompress(data))
        if codec == Compression.SNAPPY:
            return _snappy_decompress(data)
        if codec == Compression.LZ4:
            return bytes(cramjam.lz4.decompress(data))
        if codec == Compression.ZSTD:
            return bytes(cramjam.zstd.decompress(data))
    except cramjam.DecompressionError as exc:
        name = Compression(codec).name.lower()
        raise CorruptRecord(f"{name} stream does not decode: {exc}") from None
    raise UnsupportedCompressionType(f"cannot decompress codec {codec!r}")


def _xerial_snappy_compress(data: Buffer) -> bytes:
    view = memoryview(data)
    out = bytearray(_XERIAL_HEADER)
    for start in range(0, len(view), _XERIAL_BLOCK_SIZE):
        block = cramjam.snappy.compress_raw(view[start : start + _XERIAL_BLOCK_SIZE])
        out += _BLOCK_LENGTH.pack(len(block))
        out += block
    return bytes(out)


def _snappy_decompress(data: Buffer) -> bytes:
    view = memoryview(data)
    if len(view) >= _XERIAL_HEADER_SIZE and view[:8] == XERIAL_MAGIC:
        # Version and compat are ignored, as kafka-python does: some producers (Redpanda) write
        # them little-endian, and there has only ever been one xerial block format.
        out = bytearray()
        position = _XERIAL_HEADER_SIZE
        end = len(view)
        while position < end:
            if end - position < 4:
                raise CorruptRecord("xerial snappy block length truncated")
            (length,) = _BLOCK_LENGTH.unpack_from(view, position)
            position += 4
            if length < 0 or position + length > end:
                raise CorruptRecord(f"xerial snappy block of {length} bytes does not fit")
            out += _snappy_raw(view[position : position + length])
            position += length
        return bytes(out)
    return bytes(_snappy_raw(view))


def _snappy_raw(block: memoryview) -> cramjam.Buffer:
    declared = cramjam.snappy.decompress_raw_len(block)
    if declared > _SNAPPY_MAX_RATIO * len(block) + 64:
        raise CorruptRecord(f"snappy block of {len(block)} bytes claims {declared} decompressed")
    return cramjam.snappy.decompress_raw(block)
