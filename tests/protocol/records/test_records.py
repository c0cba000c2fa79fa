"""RecordBatch v2 records: byte-for-byte against kafka-python and aiokafka, round trips, fuzz."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import aiokafka.record.default_records as aiokafka_records
import cramjam
import kafka.record.default_records as kafka_records
import pytest
from crc32c import crc32c
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quorumq.errors import CorruptRecord, InvalidRecord, UnsupportedCompressionType
from quorumq.protocol.records import (
    ATTR_DELETE_HORIZON,
    CRC_START,
    HEADER_SIZE,
    Compression,
    ControlRecordType,
    Record,
    TimestampType,
    build_batch,
    compress,
    compute_crc,
    control_record,
    control_record_type,
    decode_batch,
    decode_records,
    iter_records,
    parse_batch_header,
    validate_batch,
)

CODECS = list(Compression)
COMPRESSED = [c for c in Compression if c != Compression.NONE]

# --- strategies ---------------------------------------------------------------------------------

_blobs = st.none() | st.binary(max_size=300)
_headers = st.lists(
    st.tuples(st.text(max_size=12), st.none() | st.binary(max_size=20)), max_size=3
).map(tuple)


@st.composite
def record_lists(draw: st.DrawFn, *, gaps: bool = True, min_size: int = 1) -> list[Record]:
    """Records with strictly increasing offsets (gaps when ``gaps``), any timestamps."""
    count = draw(st.integers(min_value=min_size, max_value=25))
    base_timestamp = draw(st.integers(min_value=-1, max_value=2**42))
    offset = 0
    records: list[Record] = []
    for _ in range(count):
        records.append(
            Record(
                offset=offset,
                timestamp=base_timestamp + draw(st.integers(min_value=-(2**20), max_value=2**20)),
                key=draw(_blobs),
                value=draw(_blobs),
                headers=draw(_headers),
            )
        )
        offset += draw(st.integers(min_value=1, max_value=70_000)) if gaps else 1
    return records


def compressible_records(count: int = 40) -> list[Record]:
    return [
        Record(i, 1_700_000_000_000 + i * 7, b"key-%d" % (i % 5), b"value %d " % i * 10, ())
        for i in range(count)
    ]


# --- independent implementations ----------------------------------------------------------------


def kafka_python_batch(
    records: Sequence[Record], *, compression: Compression = Compression.NONE, **producer: Any
) -> bytes:
    builder = kafka_records.DefaultRecordBatchBuilder(
        magic=2,
        compression_type=int(compression),
        is_transactional=producer.get("is_transactional", False),
        producer_id=producer.get("producer_id", -1),
        producer_epoch=producer.get("producer_epoch", -1),
        base_sequence=producer.get("base_sequence", -1),
        batch_size=1 << 24,
    )
    for r in records:
        assert builder.append(r.offset, r.timestamp, r.key, r.value, list(r.headers)) is not None
    return bytes(builder.build())


def aiokafka_batch(records: Sequence[Record], *, compression: Compression) -> bytes:
    builder = aiokafka_records.DefaultRecordBatchBuilder(
        2, int(compression), 0, -1, -1, -1, 1 << 24
    )
    for r in records:
        assert builder.append(r.offset, r.timestamp, r.key, r.value, list(r.headers)) is not None
    return bytes(builder.build())


@contextmanager
def kafka_python_codecs_from(
    encoder: Callable[[Compression, bytes], bytes],
) -> Iterator[None]:
    """Makes kafka-python compress with ``encoder``: only its batch framing is then compared.

    kafka-python's own gzip stamps the current time into the gzip header (not reproducible),
    and its snappy/lz4/zstd need libraries that are not installed here.
    """
    names = {
        "gzip_encode": Compression.GZIP,
        "snappy_encode": Compression.SNAPPY,
        "lz4_encode": Compression.LZ4,
        "zstd_encode": Compression.ZSTD,
    }
    saved = {name: getattr(kafka_records, name) for name in names}
    saved_has = {n: getattr(kafka_records.codecs, n) for n in ("has_snappy", "has_lz4", "has_zstd")}
    try:
        for name, codec in names.items():
            setattr(kafka_records, name, lambda data, codec=codec: encoder(codec, bytes(data)))
        for name in saved_has:
            setattr(kafka_records.codecs, name, lambda: True)
        yield
    finally:
        for name, fn in saved.items():
            setattr(kafka_records, name, fn)
        for name, fn in saved_has.items():
            setattr(kafka_records.codecs, name, fn)


# --- byte for byte ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=record_lists(),
    producer_id=st.sampled_from([-1, 0, 4711, 2**62]),
    producer_epoch=st.integers(min_value=-1, max_value=2**15 - 1),
    base_sequence=st.integers(min_value=-1, max_value=2**31 - 1),
    is_transactional=st.booleans(),
)
def test_build_batch_matches_kafka_python_byte_for_byte(
    records: list[Record],
    producer_id: int,
    producer_epoch: int,
    base_sequence: int,
    is_transactional: bool,
) -> None:
    producer = dict(
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        is_transactional=is_transactional,
    )
    theirs = kafka_python_batch(records, **producer)
    # kafka-python leaves partitionLeaderEpoch 0 where Java's client writes -1.
    ours = build_batch(records, partition_leader_epoch=0, **producer)
    assert ours == theirs


@pytest.mark.parametrize("codec", COMPRESSED, ids=lambda c: c.name)
def test_compressed_framing_matches_kafka_python(codec: Compression) -> None:
    records = compressible_records()
    with kafka_python_codecs_from(lambda c, data: compress(c, data)):
        theirs = kafka_python_batch(records, compression=codec)
    assert build_batch(records, compression=codec, partition_leader_epoch=0) == theirs


@pytest.mark.parametrize(
    "codec", [Compression.SNAPPY, Compression.LZ4, Compression.ZSTD], ids=lambda c: c.name
)
def test_compressed_batch_matches_aiokafka_byte_for_byte(codec: Compression) -> None:
    # aiokafka compresses through cramjam with Kafka's framings and default levels, like us
    # (xerial snappy in 32 KiB blocks, lz4 frames with independent blocks at level 9, zstd 3).
    records = compressible_records(800)  # > 32 KiB: several xerial blocks
    theirs = aiokafka_batch(records, compression=codec)
    assert build_batch(records, compression=codec) == theirs  # aiokafka writes epoch -1, as Java


# --- decoding what clients write ----------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(records=record_lists(), codec=st.sampled_from([Compression.NONE, Compression.GZIP]))
def test_decode_reads_kafka_python_batches(records: list[Record], codec: Compression) -> None:
    # Genuine kafka-python output, its own gzip (stdlib, level 9) included; it falls back to
    # an uncompressed batch when gzip does not shrink the records, as it may.
    batch = kafka_python_batch(records, compression=codec)
    assert decode_records(batch) == records


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_decode_reads_aiokafka_batches(codec: Compression) -> None:
    records = compressible_records(900)
    batch = aiokafka_batch(records, compression=codec)
    assert validate_batch(batch).compression == codec
    assert decode_records(batch) == records


def _reframe(batch: bytes, payload: bytes) -> bytes:
    """``batch`` with its records section replaced by ``payload``: length and CRC fixed up."""
    out = bytearray(batch[:HEADER_SIZE] + payload)
    struct.pack_into(">i", out, 8, len(out) - 12)
    struct.pack_into(">I", out, 17, crc32c(memoryview(out)[CRC_START:]))
    return bytes(out)


def _records_section(records: Sequence[Record]) -> bytes:
    return build_batch(records)[HEADER_SIZE:]


def _with_codec(batch: bytes, codec: Compression) -> bytes:
    out = bytearray(batch)
    attributes = struct.unpack_from(">h", out, 21)[0] & ~0x07 | int(codec)
    struct.pack_into(">h", out, 21, attributes)
    struct.pack_into(">I", out, 17, crc32c(memoryview(out)[CRC_START:]))
    return bytes(out)


OTHER_FRAMINGS: dict[str, tuple[Compression, Callable[[bytes], bytes]]] = {
    # librdkafka: one raw snappy block, no xerial header.
    "snappy-raw-librdkafka": (Compression.SNAPPY, lambda d: bytes(cramjam.snappy.compress_raw(d))),
    # Redpanda writes the xerial version/compat little-endian (kafka-python issue 2414).
    "snappy-xerial-le-header": (
        Compression.SNAPPY,
        lambda d: (
            b"\x82SNAPPY\x00\x01\x00\x00\x00\x01\x00\x00\x00"
            + struct.pack(">i", len(c := bytes(cramjam.snappy.compress_raw(d))))
            + c
        ),
    ),
    # Python's gzip module, level 9, a real mtime: what kafka-python/aiokafka write.
    "gzip-stdlib": (Compression.GZIP, lambda d: gzip.compress(d, compresslevel=9)),
    "gzip-two-members": (
        Compression.GZIP,
        lambda d: gzip.compress(d[:100]) + gzip.compress(d[100:]),
    ),
    # lz4 frames with content checksum and size-less default settings (librdkafka style).
    "lz4-frame-default": (Compression.LZ4, lambda d: bytes(cramjam.lz4.compress(d))),
    # Java's zstd-jni streams frames without a content size.
    "zstd-streaming": (Compression.ZSTD, lambda d: _zstd_streaming(d)),
}


def _zstd_streaming(data: bytes) -> bytes:
    compressor = cramjam.zstd.Compressor(level=3)
    compressor.compress(data)
    return bytes(compressor.finish())


@pytest.mark.parametrize("framing", sorted(OTHER_FRAMINGS))
def test_decode_reads_every_clients_framing(framing: str) -> None:
    codec, encode = OTHER_FRAMINGS[framing]
    records = compressible_records(300)
    batch = _reframe(_with_codec(build_batch(records), codec), encode(_records_section(records)))
    assert decode_records(batch) == records


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_aiokafka_reads_what_we_build(codec: Compression) -> None:
    records = compressible_records(500)
    batch = aiokafka_records.DefaultRecordBatch(build_batch(records, compression=codec))
    assert batch.validate_crc()
    got = [Record(r.offset, r.timestamp, r.key, r.value, tuple(r.headers)) for r in batch]
    assert got == records


@pytest.mark.parametrize("codec", [Compression.NONE, Compression.GZIP], ids=lambda c: c.name)
def test_kafka_python_reads_what_we_build(codec: Compression) -> None:
    # kafka-python's snappy/lz4/zstd need libraries that are not installed here; aiokafka's
    # reader above covers those codecs.
    records = compressible_records(500)
    batch = kafka_records.DefaultRecordBatch(build_batch(records, compression=codec))
    assert batch.validate_crc()
    got = [Record(r.offset, r.timestamp, r.key, r.value, tuple(r.headers)) for r in batch]
    assert got == records


# --- round trips and batch semantics ------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    records=record_lists(),
    codec=st.sampled_from(CODECS),
    base_offset=st.integers(min_value=0, max_value=2**40),
    extra_range=st.integers(min_value=0, max_value=10),
)
def test_build_then_decode_round_trips(
    records: list[Record], codec: Compression, base_offset: int, extra_range: int
) -> None:
    shifted = [
        Record(r.offset + base_offset, r.timestamp, r.key, r.value, r.headers) for r in records
    ]
    last_delta = records[-1].offset + extra_range
    batch = build_batch(
        shifted, base_offset=base_offset, compression=codec, last_offset_delta=last_delta
    )
    header, decoded = decode_batch(batch)
    assert decoded == shifted
    assert header.base_offset == base_offset
    assert header.last_offset_delta == last_delta
    assert header.record_count == len(records)
    assert header.compression == codec
    assert header.base_timestamp == records[0].timestamp
    assert header.max_timestamp == max(r.timestamp for r in records)
    assert list(iter_records(batch)) == shifted


def test_tuples_take_consecutive_offsets_and_one_timestamp() -> None:
    batch = build_batch([(b"a", b"1"), (None, None), (b"c", b"3", [("h", None)])], base_offset=7,
                        timestamp=1234)  # fmt: skip
    assert decode_records(batch) == [
        Record(7, 1234, b"a", b"1"),
        Record(8, 1234, None, None),
        Record(9, 1234, b"c", b"3", (("h", None),)),
    ]


def test_log_append_time_gives_every_record_the_max_timestamp() -> None:
    records = [Record(0, 10, None, b"a"), Record(1, 30, None, b"b")]
    batch = build_batch(records, timestamp_type=TimestampType.LOG_APPEND_TIME, max_timestamp=99)
    assert validate_batch(batch).timestamp_type == TimestampType.LOG_APPEND_TIME
    assert [r.timestamp for r in decode_records(batch)] == [99, 99]


def test_compacted_batch_keeps_offsets_and_range() -> None:
    kept = [Record(103, 5, b"k1", b"v"), Record(107, 6, b"k2", None)]  # a tombstone
    batch = build_batch(kept, base_offset=100, last_offset_delta=9)
    header = validate_batch(batch)  # not dense: 2 records over 10 offsets is fine
    assert (header.base_offset, header.last_offset, header.record_count) == (100, 109, 2)
    assert decode_records(batch) == kept
    with pytest.raises(InvalidRecord):
        validate_batch(batch, dense=True)


def test_empty_batch_keeps_a_producers_range() -> None:
    batch = build_batch(
        [], base_offset=50, last_offset_delta=4, producer_id=9, producer_epoch=1, base_sequence=20
    )
    header = validate_batch(batch)
    assert (header.record_count, header.last_offset, header.last_sequence) == (0, 54, 24)
    assert decode_records(batch) == []


def test_delete_horizon_moves_the_base_timestamp() -> None:
    records = [Record(0, 1000, b"k", None)]
    batch = build_batch(records, delete_horizon_ms=5000)
    header = validate_batch(batch)
    assert header.attributes & ATTR_DELETE_HORIZON
    assert header.base_timestamp == 5000
    assert decode_records(batch) == records


def test_control_batch_decodes_transaction_markers() -> None:
    markers = [control_record(ControlRecordType.COMMIT, 5, 77, coordinator_epoch=3)]
    batch = build_batch(
        markers, base_offset=5, is_control=True, is_transactional=True, producer_id=1,
        producer_epoch=0,
    )  # fmt: skip
    header, records = decode_batch(batch)
    assert header.is_control and header.is_transactional
    assert records == markers
    assert control_record_type(records[0]) == ControlRecordType.COMMIT
    assert records[0].value == b"\x00\x00\x00\x00\x00\x03"
    with pytest.raises(CorruptRecord):
        control_record_type(Record(0, 0, b"\x00", None))


def test_batches_in_a_record_set_decode_by_position() -> None:
    first = build_batch([(b"a", b"1")], base_offset=0)
    second = build_batch([(b"b", b"2"), (b"c", b"3")], base_offset=1, compression=Compression.ZSTD)
    record_set = memoryview(bytearray(first + second))
    assert [r.key for r in decode_records(record_set, len(first))] == [b"b", b"c"]
    assert [r.key for r in decode_records(record_set)] == [b"a"]


@pytest.mark.parametrize(
    ("records", "kwargs"),
    [
        ([Record(5, 0, None, b"x"), Record(5, 0, None, b"y")], {}),  # offsets not increasing
        ([Record(3, 0, None, b"x")], {"base_offset": 4}),  # below the base offset
        ([Record(3, 0, None, b"x")], {"last_offset_delta": 2}),  # range shorter than records
        ([Record(0, 0, None, b"x")], {"producer_epoch": 2**15}),  # not an int16
        ([Record(0, 2**64, None, b"x")], {}),  # timestamp out of range
    ],
)
def test_build_refuses_impossible_batches(records: list[Record], kwargs: dict[str, int]) -> None:
    with pytest.raises(InvalidRecord):
        build_batch(records, **kwargs)


# --- bad bytes ----------------------------------------------------------------------------------

ALLOWED = (CorruptRecord, UnsupportedCompressionType, InvalidRecord)


def _recrc(buf: bytearray) -> bytes:
    if len(buf) > CRC_START:
        struct.pack_into(">I", buf, 17, crc32c(memoryview(buf)[CRC_START:]))
    return bytes(buf)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=record_lists(min_size=0),
    codec=st.sampled_from(CODECS),
    data=st.data(),
)
def test_mutated_batches_raise_only_typed_errors(
    records: list[Record], codec: Compression, data: st.DataObject
) -> None:
    batch = bytearray(build_batch(records, compression=codec, last_offset_delta=records[-1].offset
                                  if records else 0))  # fmt: skip
    edits = data.draw(
        st.lists(
            st.tuples(st.integers(min_value=0, max_value=len(batch) - 1), st.integers(0, 255)),
            min_size=1,
            max_size=4,
        )
    )
    for index, byte in edits:
        batch[index] = byte
    cut = data.draw(st.integers(min_value=0, max_value=len(batch)))
    # Fixing up the CRC (and length, when cut) makes the decoder look past the header.
    fix = data.draw(st.booleans())
    candidate = bytearray(batch[:cut])
    if fix and cut >= HEADER_SIZE:
        struct.pack_into(">i", candidate, 8, cut - 12)
        mutated = _recrc(candidate)
    else:
        mutated = bytes(candidate)
    with suppress(*ALLOWED):
        decode_records(mutated)


@pytest.mark.parametrize("codec", COMPRESSED, ids=lambda c: c.name)
def test_garbage_compressed_section_is_corrupt(codec: Compression) -> None:
    batch = build_batch([(b"k", b"v" * 50)] * 3, compression=codec)
    for payload in (b"", b"\x00", b"garbage that is not a stream" * 3, batch[HEADER_SIZE:-3]):
        with pytest.raises(CorruptRecord):
            decode_records(_reframe(batch, payload))


def test_forged_snappy_length_is_refused_before_allocation() -> None:
    # A raw snappy block that claims 4 GiB of output from 6 bytes.
    forged = b"\xff\xff\xff\xff\x0f\x00"
    batch = _with_codec(build_batch([(None, b"x")]), Compression.SNAPPY)
    with pytest.raises(CorruptRecord, match="claims"):
        decode_records(_reframe(batch, forged))


def test_trailing_bytes_after_the_records_are_corrupt() -> None:
    batch = build_batch([(b"k", b"v")])
    with pytest.raises(CorruptRecord, match="left after"):
        decode_records(_reframe(batch, batch[HEADER_SIZE:] + b"\x00"))


def test_bad_crc_is_corrupt() -> None:
    batch = bytearray(build_batch([(b"k", b"v")]))
    batch[-1] ^= 1
    with pytest.raises(CorruptRecord, match="CRC"):
        decode_records(batch)


def test_non_utf8_header_key_is_corrupt() -> None:
    batch = build_batch([Record(0, 0, None, None, (("\u00e9", None),))])
    good = "\u00e9".encode()
    section = batch[HEADER_SIZE:].replace(good, b"\xff\xfe")
    with pytest.raises(CorruptRecord, match="UTF-8"):
        decode_records(_reframe(batch, section))


def test_header_of_an_unknown_codec_raises_typed_errors() -> None:
    batch = _with_codec(build_batch([(b"k", b"v")]), Compression.ZSTD)
    bad = bytearray(batch)
    bad[22] |= 0x07  # compression bits 7: no such codec
    header = parse_batch_header(bad)
    with pytest.raises(UnsupportedCompressionType):
        _ = header.compression
    with pytest.raises(CorruptRecord):
        compute_crc(b"\x00" * 5)
