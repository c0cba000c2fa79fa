"""librdkafka interop: decode the batches it writes, and have it consume the ones we build.

librdkafka's built-in mock cluster (``test.mock.num.brokers``) stores produced batches as they
arrive and serves them back on Fetch; a hand-written Fetch v4 on a loopback socket gets those
bytes, so the decoder sees librdkafka's framings (raw snappy, its lz4 frames, zstd frames) and its
idempotent-producer header fields without any Kafka broker.
"""

from __future__ import annotations

import socket
import struct

import pytest

from quorumq.protocol.records import (
    Compression,
    Record,
    batch_positions,
    build_batch,
    decode_records,
)
from quorumq.protocol.records._compression import XERIAL_MAGIC

confluent_kafka = pytest.importorskip("confluent_kafka")

TOPIC = b"interop"
COUNT = 300


def _string(value: bytes) -> bytes:
    return struct.pack(">h", len(value)) + value


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        chunk = sock.recv(size - len(out))
        if not chunk:
            raise ConnectionError("mock broker closed the connection")
        out += chunk
    return bytes(out)


def _fetch_partition_zero(host: str, port: int) -> bytes:
    """The raw record set of partition 0 from offset 0 (Fetch v4, one topic, one partition)."""
    request = (
        struct.pack(">hhi", 1, 4, 1)  # api key Fetch, version 4, correlation id
        + _string(b"quorumq-test")
        + struct.pack(">iiiib", -1, 100, 1, 1 << 22, 0)  # replica, max wait, min/max bytes, iso
        + struct.pack(">i", 1)
        + _string(TOPIC)
        + struct.pack(">i", 1)
        + struct.pack(">iqi", 0, 0, 1 << 22)  # partition, fetch offset, partition max bytes
    )
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exactly(sock, 4))
        response = _recv_exactly(sock, size)
    position = 4 + 4 + 4  # correlation id, throttle time, topic count
    (name_length,) = struct.unpack_from(">h", response, position)
    position += 2 + name_length + 4  # topic name, partition count
    _partition, error_code, _hw, _lso = struct.unpack_from(">ihqq", response, position)
    assert error_code == 0
    position += 22
    (aborted,) = struct.unpack_from(">i", response, position)
    position += 4 + max(aborted, 0) * 16
    (length,) = struct.unpack_from(">i", response, position)
    position += 4
    return response[position : position + length]


def _expected(i: int) -> Record:
    return Record(
        i,
        1_700_000_000_000 + i,
        b"key-%d" % (i % 7) if i % 5 else None,
        (b"value %d " % i) * (1 + i % 9) if i % 11 else None,
        (("trace", b"t-%d" % i), ("empty", None)) if i % 3 == 0 else (),
    )


@pytest.mark.parametrize("codec", list(Compression), ids=lambda c: c.name)
def test_decode_reads_librdkafka_batches(codec: Compression) -> None:
    producer = confluent_kafka.Producer(
        {
            "test.mock.num.brokers": 1,
            "compression.type": codec.name.lower(),
            "enable.idempotence": True,
            "linger.ms": 20,
            "log_level": 3,
        }
    )
    for i in range(COUNT):
        record = _expected(i)
        producer.produce(
            TOPIC.decode(),
            key=record.key,
            value=record.value,
            partition=0,
            timestamp=record.timestamp,
            headers=list(record.headers) or None,
        )
    assert producer.flush(10) == 0
    broker = next(iter(producer.list_topics(timeout=5).brokers.values()))
    record_set = _fetch_partition_zero(broker.host, broker.port)
    decoded: list[Record] = []
    for position, header in batch_positions(record_set):
        assert header.compression == codec
        assert header.producer_id >= 0 and header.base_sequence == len(decoded)
        if codec == Compression.SNAPPY:
            # librdkafka writes one raw snappy block, not Java's xerial framing.
            assert record_set[position + 61 : position + 69] != XERIAL_MAGIC
        decoded.extend(decode_records(record_set, position))
    assert decoded == [_expected(i) for i in range(COUNT)]


def _produce(sock: socket.socket, topic: bytes, batch: bytes) -> int:
    """Produce v3 of one batch to partition 0 with acks=1; returns the assigned base offset.

    One batch per request: librdkafka's mock broker assigns offsets per request, not per batch.
    """
    request = (
        struct.pack(">hhi", 0, 3, 1)  # api key Produce, version 3, correlation id
        + _string(b"quorumq-test")
        + struct.pack(">hhi", -1, 1, 5000)  # null transactional id, acks, timeout
        + struct.pack(">i", 1)
        + _string(topic)
        + struct.pack(">i", 1)
        + struct.pack(">ii", 0, len(batch))
        + batch
    )
    sock.sendall(struct.pack(">i", len(request)) + request)
    (size,) = struct.unpack(">i", _recv_exactly(sock, 4))
    response = _recv_exactly(sock, size)
    position = 4 + 4 + 2 + len(topic) + 4  # correlation id, topic count, name, partition count
    _partition, error_code, base_offset = struct.unpack_from(">ihq", response, position)
    assert error_code == 0
    return base_offset


def test_librdkafka_reads_what_we_build() -> None:
    """Our batches (each codec, xerial snappy included) consumed by librdkafka's consumer."""
    host = confluent_kafka.Producer({"test.mock.num.brokers": 1, "log_level": 3})
    topic = "ours"
    metadata = host.list_topics(topic=topic, timeout=5)  # the mock creates it on Metadata
    broker = next(iter(metadata.brokers.values()))
    expected = [_expected(i) for i in range(10 * len(Compression))]
    with socket.create_connection((broker.host, broker.port), timeout=10) as sock:
        for i, codec in enumerate(Compression):
            chunk = expected[10 * i : 10 * (i + 1)]
            batch = build_batch(chunk, base_offset=chunk[0].offset, compression=codec)
            assert _produce(sock, topic.encode(), batch) == chunk[0].offset
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": f"{broker.host}:{broker.port}",
            "group.id": "quorumq-test",
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    try:
        consumer.assign([confluent_kafka.TopicPartition(topic, 0, 0)])
        got: list[Record] = []
        while len(got) < len(expected):
            message = consumer.poll(10)
            assert message is not None, f"librdkafka returned {len(got)} records, then nothing"
            assert message.error() is None, message.error()
            got.append(
                Record(
                    message.offset(),
                    message.timestamp()[1],
                    message.key(),
                    message.value(),
                    tuple(message.headers() or ()),
                )
            )
    finally:
        consumer.close()
    assert got == expected
