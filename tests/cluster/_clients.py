"""Sync Kafka clients (confluent-kafka, kafka-python) driven from worker threads."""

from __future__ import annotations

import threading
import time
from typing import Any

import attrs


@attrs.define
class ProduceLog:
    """What a producer thread saw: values acknowledged, and delivery errors by name."""

    acked: list[tuple[int, int, bytes]] = attrs.Factory(list)  # (partition, offset, value)
    errors: dict[str, int] = attrs.Factory(dict)
    lock: threading.Lock = attrs.Factory(threading.Lock)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)


def produce_confluent(
    bootstrap: str,
    topic: str,
    values: list[bytes],
    *,
    partition: int | None = None,
    partitions: int | None = None,
    spread_s: float = 0.0,
    out: ProduceLog,
    timeout_s: float = 40.0,
) -> ProduceLog:
    """acks=all (``partitions``: round-robin over them), idempotence off (so a lost ack is a lost record, not a hidden retry)."""
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": False,
            "linger.ms": 2,
            "message.timeout.ms": 30000,
            "request.timeout.ms": 10000,
            "retry.backoff.ms": 50,
            "topic.metadata.refresh.interval.ms": 500,
            "socket.timeout.ms": 5000,
            "log_level": 3,
        }
    )

    def on_delivery(err: Any, msg: Any) -> None:
        with out.lock:
            if err is None:
                out.acked.append((msg.partition(), msg.offset(), msg.value()))
            else:
                out.errors[err.name()] = out.errors.get(err.name(), 0) + 1

    pause = spread_s / max(len(values), 1)
    for i, value in enumerate(values):
        kwargs: dict[str, Any] = {"on_delivery": on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        elif partitions is not None:
            kwargs["partition"] = i % partitions
        while True:
            try:
                producer.produce(topic, value, **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        if pause:
            time.sleep(pause)
    producer.flush(timeout_s)
    return out


async def produce_in_background(
    nursery: Any, bootstrap: str, topic: str, values: list[bytes], **options: Any
) -> ProduceLog:
    """Starts :func:`produce_confluent` in a worker thread of ``nursery``; returns the log it
    fills as deliveries come in."""
    import trio

    out = ProduceLog()

    def run() -> ProduceLog:
        return produce_confluent(bootstrap, topic, values, out=out, **options)

    nursery.start_soon(trio.to_thread.run_sync, run)
    return out


def consume_all(bootstrap: str, topic: str, partitions: int, expected: int) -> list[Any]:
    """Every record of every partition from offset 0 (kafka-python, assign + seek)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=1000,
    )
    try:
        tps = [TopicPartition(topic, i) for i in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        deadline = time.monotonic() + 20
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()
