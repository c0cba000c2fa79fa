"""kafka-python (pure Python, blocking) against a real broker on 127.0.0.1."""

from __future__ import annotations

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.integration._workload import Received, Sample, check_round_trip, samples
from tests.integration.conftest import BrokerThread


def produce(
    bootstrap: str, topic: str, records: list[Sample], *, acks: int | str, compression: str | None
) -> None:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks=acks,
        compression_type=compression,
        linger_ms=5,
        batch_size=64 * 1024,
        enable_idempotence=False,
    )
    try:
        futures = [
            producer.send(
                topic,
                key=r.key,
                value=r.value,
                headers=list(r.headers),
                timestamp_ms=r.timestamp_ms,
                partition=0,
            )
            for r in records
        ]
        producer.flush(timeout=60)
        if acks != 0:
            offsets = [f.get(timeout=30).offset for f in futures]
            assert offsets == list(range(len(records)))
    finally:
        producer.close(timeout=10)


def consume(bootstrap: str, topic: str, count: int) -> list[Received]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=10_000,
    )
    tp = TopicPartition(topic, 0)
    out: list[Received] = []
    try:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        for message in consumer:
            out.append(
                Received(
                    message.offset,
                    message.key,
                    message.value,
                    tuple(message.headers),
                    message.timestamp,
                )
            )
            if len(out) >= count:
                break
    finally:
        consumer.close()
    return out


def test_kafka_python_round_trips_10000_records(broker: BrokerThread) -> None:
    sent = samples(10_000, tag="kp")
    produce(broker.bootstrap, "kp-plain", sent, acks=1, compression=None)
    check_round_trip(sent, consume(broker.bootstrap, "kp-plain", len(sent)))


@pytest.mark.parametrize(
    ("acks", "compression"), [(0, None), ("all", None), (1, "gzip"), ("all", "gzip")]
)
def test_kafka_python_acks_and_compression(
    broker: BrokerThread, acks: int | str, compression: str | None
) -> None:
    sent = samples(500, tag=f"{acks}{compression}")
    topic = f"kp-{acks}-{compression}"
    produce(broker.bootstrap, topic, sent, acks=acks, compression=compression)
    check_round_trip(sent, consume(broker.bootstrap, topic, len(sent)))


def test_kafka_python_offsets_for_times_and_ends(broker: BrokerThread) -> None:
    sent = samples(300, tag="ts")
    produce(broker.bootstrap, "kp-times", sent, acks=1, compression=None)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    tp = TopicPartition("kp-times", 0)
    try:
        assert consumer.beginning_offsets([tp]) == {tp: 0}
        assert consumer.end_offsets([tp]) == {tp: 300}
        found = consumer.offsets_for_times({tp: sent[120].timestamp_ms})[tp]
        assert found is not None
        assert (found.offset, found.timestamp) == (120, sent[120].timestamp_ms)
        assert consumer.offsets_for_times({tp: sent[-1].timestamp_ms + 1})[tp] is None
    finally:
        consumer.close()
