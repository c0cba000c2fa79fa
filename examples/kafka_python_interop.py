"""A standard Kafka client (kafka-python) against quorumq: admin, producer, group consumer.

    uv run python examples/kafka_python_interop.py --bootstrap 127.0.0.1:9092

quorumq speaks Kafka's wire protocol, so existing clients work unchanged: this script uses only
``kafka`` (kafka-python), never ``quorumq``. It creates a topic with ``KafkaAdminClient``,
produces ``--count`` keyed records with ``acks="all"``, reads them back with a group
``KafkaConsumer`` (FindCoordinator, JoinGroup, SyncGroup, Heartbeat, OffsetCommit on quorumq's
group coordinator), commits, and prints the group's committed offsets. It exits by itself: the
consumer gives up after ``--timeout`` seconds without a record.
"""

from __future__ import annotations

import argparse
import sys
import uuid

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError


def create_topic(bootstrap: list[str], topic: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="interop-admin")
    try:
        brokers = len(admin.describe_cluster()["brokers"])
        replication = min(3, brokers)
        admin.create_topics([NewTopic(topic, partitions, replication)])
        print(f"created topic {topic}: {partitions} partitions, replication factor {replication}")
    except TopicAlreadyExistsError:
        print(f"topic {topic} exists")
    finally:
        admin.close()


def produce(bootstrap: list[str], topic: str, count: int, run: str) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        futures = [
            producer.send(topic, key=f"key-{i % 5}".encode(), value=f"{run}-{i}".encode())
            for i in range(count)
        ]
        producer.flush(timeout=30)
        for future in futures:
            metadata = future.get(timeout=30)
            print(f"produced to partition {metadata.partition} at offset {metadata.offset}")
    finally:
        producer.close(timeout=10)


def consume(
    bootstrap: list[str], topic: str, group: str, run: str, count: int, timeout: float
) -> int:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(timeout * 1000),  # iteration ends after this long without data
    )
    seen = 0
    try:
        for message in consumer:
            value = message.value.decode()
            print(
                f"consumed partition={message.partition} offset={message.offset} "
                f"key={message.key.decode()} value={value}"
            )
            if value.startswith(run):
                seen += 1
            if seen == count:
                break
        consumer.commit()
        committed = {
            tp.partition: consumer.committed(tp)
            for tp in sorted(consumer.assignment(), key=lambda tp: tp.partition)
        }
        print(f"group {group} committed offsets {committed}")
    finally:
        consumer.close()
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="HOST:PORT[,HOST:PORT]")
    parser.add_argument("--topic", default="interop-events")
    parser.add_argument("--group", default=None, help="default: a fresh group per run")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=15.0)
    args = parser.parse_args(argv)
    bootstrap = args.bootstrap.split(",")
    run = f"run-{uuid.uuid4().hex[:8]}"  # tells this run's records from earlier runs'
    group = args.group or f"interop-{run}"

    create_topic(bootstrap, args.topic, args.partitions)
    produce(bootstrap, args.topic, args.count, run)
    seen = consume(bootstrap, args.topic, group, run, args.count, args.timeout)
    print(f"kafka-python read {seen} of {args.count} records of {run} through quorumq")
    return 0 if seen == args.count else 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KafkaError as exc:
        sys.exit(f"error: {exc!r}")
