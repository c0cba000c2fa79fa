"""confluent-kafka (librdkafka) against a real broker on 127.0.0.1."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from tests.integration._workload import Received, Sample, check_round_trip, samples
from tests.integration.conftest import BrokerThread


def produce(
    bootstrap: str,
    topic: str,
    records: list[Sample],
    *,
    acks: str,
    compression: str,
    idempotence: bool = False,
) -> None:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": acks,
            "compression.type": compression,
            "enable.idempotence": idempotence,
            "linger.ms": 5,
        }
    )
    errors: list[KafkaError] = []
    offsets: list[int] = []

    def delivered(err: KafkaError | None, msg: object) -> None:
        if err is not None:
            errors.append(err)
        else:
            offsets.append(msg.offset())  # type: ignore[attr-defined]

    for r in records:
        while True:
            try:
                producer.produce(
                    topic,
                    key=r.key,
                    value=r.value,
                    headers=list(r.headers),
                    timestamp=r.timestamp_ms,
                    partition=0,
                    on_delivery=delivered,
                )
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0
    assert not errors, errors[:3]
    if acks != "0":
        assert sorted(offsets) == list(range(len(records)))


def consume(bootstrap: str, topic: str, count: int) -> list[Received]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused",  # required by the client; assign() never joins a group
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    out: list[Received] = []
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        idle = 0
        while len(out) < count and idle < 100:
            batch = consumer.consume(num_messages=1000, timeout=0.1)
            idle = 0 if batch else idle + 1
            for m in batch:
                assert m.error() is None, m.error()
                out.append(
                    Received(
                        m.offset(),
                        m.key(),
                        m.value(),
                        tuple(m.headers() or ()),
                        m.timestamp()[1],
                    )
                )
    finally:
        consumer.close()
    return out


def test_confluent_kafka_round_trips_10000_records(broker: BrokerThread) -> None:
    sent = samples(10_000, tag="ck")
    produce(broker.bootstrap, "ck-plain", sent, acks="1", compression="none")
    check_round_trip(sent, consume(broker.bootstrap, "ck-plain", len(sent)))


@pytest.mark.parametrize(
    ("acks", "compression"),
    [
        ("0", "none"),
        ("all", "none"),
        ("1", "gzip"),
        ("1", "lz4"),
        ("1", "zstd"),
        ("all", "snappy"),
    ],
)
def test_confluent_kafka_acks_and_compression(
    broker: BrokerThread, acks: str, compression: str
) -> None:
    sent = samples(500, tag=f"{acks}{compression}")
    topic = f"ck-{acks}-{compression}"
    produce(broker.bootstrap, topic, sent, acks=acks, compression=compression)
    check_round_trip(sent, consume(broker.bootstrap, topic, len(sent)))


def test_confluent_kafka_idempotent_producer(broker: BrokerThread) -> None:
    sent = samples(2_000, tag="idem")
    produce(broker.bootstrap, "ck-idem", sent, acks="all", compression="lz4", idempotence=True)
    check_round_trip(sent, consume(broker.bootstrap, "ck-idem", len(sent)))
