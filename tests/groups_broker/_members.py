"""Group consumers of three Kafka clients, each in its own thread, behind one small interface.

A :class:`Member` polls until told to stop, publishing its current assignment and the values it
read; the Trio test watches them with bounded waits.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

SESSION_TIMEOUT_MS = 6_000
HEARTBEAT_MS = 500
MAX_RUN_S = 60.0
KAFKA_PYTHON_POLL_MS = 2_000  # a member thread never outlives this, whatever the test does


class Member:
    """One consumer of ``group`` subscribed to ``topic`` using client ``kind``."""

    def __init__(self, kind: str, bootstrap: str, group: str, topic: str) -> None:
        self.kind = kind
        self.bootstrap = bootstrap
        self.group = group
        self.topic = topic
        self.stop = threading.Event()
        self.finished = threading.Event()
        self.lock = threading.Lock()
        self.assignment: frozenset[int] = frozenset()
        self.values: set[bytes] = set()
        self.error: BaseException | None = None

    def run(self) -> None:
        """The thread's body: poll until ``stop`` (or MAX_RUN_S), then close (LeaveGroup)."""
        try:
            if self.kind == "kafka-python":
                self._run_kafka_python()
            elif self.kind == "confluent-kafka":
                self._run_confluent()
            else:
                asyncio.run(self._run_aiokafka())
        except BaseException as exc:  # reported to the test, which fails with it
            self.error = exc
        finally:
            self.finished.set()

    def _publish(self, partitions: set[int], values: list[bytes]) -> None:
        with self.lock:
            self.assignment = frozenset(partitions)
            self.values.update(values)

    def _deadline_passed(self, started: float) -> bool:
        import time

        return self.stop.is_set() or time.monotonic() - started > MAX_RUN_S

    def _run_kafka_python(self) -> None:
        import time

        from kafka import KafkaConsumer

        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            auto_offset_reset="earliest",
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_MS,
            auto_commit_interval_ms=200,
            retry_backoff_ms=50,
        )
        subscribe_after_metadata(consumer, self.topic)
        started = time.monotonic()
        try:
            while not self._deadline_passed(started):
                # A poll that times out while its JoinGroup/SyncGroup is in flight can leave
                # kafka-python 3.0.12 never applying the SyncGroup answer (it stops heartbeating
                # and is expired): a client race. Polls long enough to cover a rebalance avoid it.
                batches: Any = consumer.poll(timeout_ms=KAFKA_PYTHON_POLL_MS)
                values = [r.value for records in batches.values() for r in records]
                self._publish({tp.partition for tp in consumer.assignment()}, values)
        finally:
            consumer.close()

    def _run_confluent(self) -> None:
        import time

        from confluent_kafka import Consumer

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": self.group,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": SESSION_TIMEOUT_MS,
                "heartbeat.interval.ms": HEARTBEAT_MS,
                "auto.commit.interval.ms": 200,
                "topic.metadata.refresh.interval.ms": 1000,
            }
        )
        consumer.subscribe([self.topic])
        started = time.monotonic()
        try:
            while not self._deadline_passed(started):
                message = consumer.poll(0.1)
                values = []
                if message is not None and message.error() is None:
                    values.append(message.value())
                self._publish({tp.partition for tp in consumer.assignment()}, values)
        finally:
            consumer.close()

    async def _run_aiokafka(self) -> None:
        import time

        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            auto_offset_reset="earliest",
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_MS,
            auto_commit_interval_ms=200,
            retry_backoff_ms=50,
        )
        await consumer.start()
        started = time.monotonic()
        try:
            while not self._deadline_passed(started):
                batches = await consumer.getmany(timeout_ms=100)
                values = [r.value for records in batches.values() for r in records]
                self._publish({tp.partition for tp in consumer.assignment()}, values)
        finally:
            await consumer.stop()


def subscribe_after_metadata(consumer: Any, topic: str) -> None:
    """Subscribes a kafka-python consumer once it knows the topic's partitions.

    kafka-python 3.0.12's leader otherwise may assign before its first metadata response ("No
    partition metadata"), rejoin at once, and sometimes never act on the second SyncGroup answer
    (it stops heartbeating, the member expires): a client-side race, not the broker's.
    """
    consumer.partitions_for_topic(topic)
    consumer.subscribe([topic])


def produce(bootstrap: str, topic: str, count: int) -> None:
    """Writes ``count`` keyed records (values ``b"v0"``...) with kafka-python, acks=all."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for i in range(count):
            producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
        producer.flush(timeout=20)
    finally:
        producer.close(timeout=5)
