"""Broker restarts: data, topics and producer ids survive; idempotent retries never duplicate."""

from __future__ import annotations

import threading

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from kafka import KafkaConsumer, KafkaProducer

from tests.integration._workload import check_round_trip, samples
from tests.integration.conftest import BrokerThread
from tests.integration.test_kafka_python import consume as kp_consume
from tests.integration.test_kafka_python import produce as kp_produce


def test_restart_keeps_data_and_offsets(broker: BrokerThread) -> None:
    sent = samples(1_000, tag="restart")
    kp_produce(broker.bootstrap, "kept", sent[:600], acks="all", compression="gzip")
    broker.restart()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
    futures = [
        producer.send(
            "kept",
            key=r.key,
            value=r.value,
            headers=list(r.headers),
            timestamp_ms=r.timestamp_ms,
            partition=0,
        )
        for r in sent[600:]
    ]
    producer.flush(30)
    assert [f.get(10).offset for f in futures] == list(range(600, 1_000))
    producer.close(5)
    broker.restart()
    check_round_trip(sent, kp_consume(broker.bootstrap, "kept", len(sent)))


def test_producer_ids_survive_restart(broker: BrokerThread) -> None:
    def producer_id() -> int:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=True)
        producer.send("pids", b"v", partition=0).get(10)
        pid = producer._transaction_manager.producer_id_and_epoch.producer_id
        producer.close(5)
        return int(pid)

    first = producer_id()
    broker.restart()
    assert producer_id() > first


def test_idempotent_producer_across_restarts_has_no_duplicates_or_gaps(
    broker: BrokerThread,
) -> None:
    """librdkafka keeps batches in flight while the broker restarts under it twice; its retries
    of batches the broker had already appended must be recognised (from the log, after the
    restart) and not written again."""
    count = 20_000
    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "enable.idempotence": True,
            "linger.ms": 2,
            "batch.num.messages": 200,
            "retry.backoff.ms": 20,
            "reconnect.backoff.ms": 20,
            "reconnect.backoff.max.ms": 100,
            "message.timeout.ms": 60_000,
        }
    )
    errors: list[KafkaError] = []
    half = threading.Event()

    def delivered(err: KafkaError | None, msg: object) -> None:
        if err is not None:
            errors.append(err)

    def restart_twice() -> None:
        half.wait(30)
        broker.restart()
        broker.restart()

    restarter = threading.Thread(target=restart_twice)
    restarter.start()
    for i in range(count):
        while True:
            try:
                producer.produce("idem", value=str(i).encode(), partition=0, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.01)
        if i == count // 4:
            half.set()
        if i % 1000 == 0:
            producer.poll(0)
    restarter.join(60)
    assert producer.flush(60) == 0
    assert not errors, errors[:3]

    consumer = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": "unused", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition("idem", 0, 0)])
    values: list[int] = []
    idle = 0
    while len(values) < count and idle < 50:
        batch = consumer.consume(num_messages=5000, timeout=0.2)
        idle = 0 if batch else idle + 1
        values += [int(m.value()) for m in batch if m.error() is None]
    consumer.close()
    assert values == list(range(count))


_ = KafkaConsumer
