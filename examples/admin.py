"""Topic and group administration with a standard Kafka admin client (librdkafka's, through
confluent-kafka) against quorumq: what ``kafka-topics``, ``kafka-configs``,
``kafka-delete-records`` and ``kafka-consumer-groups`` do.

    uv run python examples/admin.py --bootstrap 127.0.0.1:9092

It uses only ``confluent_kafka``, never ``quorumq``. On a fresh topic it:

1. changes configs live (IncrementalAlterConfigs) and reads them back (DescribeConfigs);
2. grows the topic from 2 to 4 partitions (CreatePartitions);
3. writes 10 records to partition 0 and deletes the first 6 (DeleteRecords): a consumer then
   starts at offset 6;
4. commits an offset for a group nobody is in, and deletes the group (DeleteGroups).

It exits by itself; any step that fails prints one line and exits 1.
"""

from __future__ import annotations

import argparse
import sys
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

TIMEOUT_S = 15


def wait(futures: dict) -> None:  # type: ignore[type-arg]
    for future in futures.values():
        future.result(timeout=TIMEOUT_S)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    topic, group = f"admin-{run}", f"admin-group-{run}"
    common = {"bootstrap.servers": args.bootstrap, "socket.connection.setup.timeout.ms": 5000}
    admin = AdminClient(common)

    brokers = len(admin.list_topics(timeout=TIMEOUT_S).brokers)
    wait(admin.create_topics([NewTopic(topic, 2, min(3, brokers))]))
    print(f"created topic {topic}: 2 partitions on {brokers} broker(s)")

    # 1. Configs, live: a shorter retention, compaction as well as deletion.
    changes = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry(
                "cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND
            ),
        ],
    )
    wait(admin.incremental_alter_configs([changes]))
    described = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])
    (entries,) = [future.result(timeout=TIMEOUT_S) for future in described.values()]
    for name in ("retention.ms", "cleanup.policy"):
        print(f"config {name} = {entries[name].value}")

    # 2. More partitions (keys hash to other partitions afterwards, as in Kafka).
    wait(admin.create_partitions([NewPartitions(topic, 4)]))
    count = len(admin.list_topics(topic, timeout=TIMEOUT_S).topics[topic].partitions)
    print(f"topic {topic} now has {count} partitions")

    # 3. Delete the first six records of partition 0.
    producer = Producer({**common, "acks": "all"})
    for i in range(10):
        producer.produce(topic, f"record-{i}".encode(), partition=0)
    producer.flush(TIMEOUT_S)
    (deleted,) = admin.delete_records([TopicPartition(topic, 0, 6)]).values()
    print(f"deleted records below offset {deleted.result(timeout=TIMEOUT_S).low_watermark}")
    consumer = Consumer({**common, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, -2)])  # -2: from the earliest offset left
        message = None
        for _ in range(50):
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                break
        if message is None or message.error() is not None:
            raise KafkaException("no record to read after the deletion")
        print(f"a consumer now starts at offset {message.offset()}: {message.value().decode()}")
        # 4. A committed offset makes the group exist; with no member it can be deleted.
        consumer.commit(message=message, asynchronous=False)
    finally:
        consumer.close()
    wait(admin.delete_consumer_groups([group], request_timeout=TIMEOUT_S))
    print(f"deleted group {group} and its committed offsets")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KafkaException as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        sys.exit(1)
