"""DeleteRecords on a real broker with librdkafka's and kafka-python's admin clients: the log
start offset moves, consumers start there, it survives a restart, and what Kafka refuses is
refused with Kafka's codes."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from quorumq import protocol as p
from quorumq.errors import ErrorCode
from tests.integration.conftest import BrokerThread, call


def _fill(servers: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": servers})
    for i in range(count):
        producer.produce(topic, b"%d" % i, partition=0)
    producer.flush(10)


def _earliest(port: int, topic: str) -> int:
    request = p.ListOffsetsRequest(
        topics=[
            p.ListOffsetsRequestTopic(
                name=topic,
                partitions=[p.ListOffsetsRequestPartition(partition_index=0, timestamp=-2)],
            )
        ]
    )
    return int(call(port, p.ApiKey.LIST_OFFSETS, 5, request).topics[0].partitions[0].offset)


def _delete(servers: str, topic: str, offset: int) -> Any:
    """The low watermark, or the KafkaError code."""
    admin = AdminClient({"bootstrap.servers": servers})
    (future,) = admin.delete_records([TopicPartition(topic, 0, offset)]).values()
    try:
        return future.result(timeout=15).low_watermark
    except KafkaException as exc:
        return ("error", exc.args[0].code())


def test_librdkafka_deletes_records_and_consumers_start_after_them(broker: BrokerThread) -> None:
    servers = broker.bootstrap
    admin = AdminClient({"bootstrap.servers": servers})
    admin.create_topics(
        [NewTopic("t", 1, 1), NewTopic("c", 1, 1, config={"cleanup.policy": "compact"})]
    )["t"].result(10)
    _fill(servers, "t", 100)
    assert _delete(servers, "t", 40) == 40
    assert _earliest(broker.port, "t") == 40
    assert _delete(servers, "t", 10) == 40  # below the log start: nothing to do
    consumer = Consumer(
        {"bootstrap.servers": servers, "group.id": "g", "auto.offset.reset": "earliest"}
    )
    try:
        consumer.assign([TopicPartition("t", 0)])
        first = None
        for _ in range(50):
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                first = message.offset()
                break
    finally:
        consumer.close()
    assert first == 40
    broker.restart()
    assert _earliest(broker.port, "t") == 40
    assert _delete(servers, "t", -1) == 100  # -1: up to the high watermark
    assert _delete(servers, "t", 101) == ("error", KafkaError.OFFSET_OUT_OF_RANGE)
    assert _delete(servers, "c", 0) == ("error", KafkaError.POLICY_VIOLATION)
    # On the wire, each partition answered alone: an unknown one, and a real one.
    request = p.DeleteRecordsRequest(
        topics=[
            p.DeleteRecordsTopic(
                name=name, partitions=[p.DeleteRecordsPartition(partition_index=0, offset=-1)]
            )
            for name in ("missing", "t")
        ],
        timeout_ms=5000,
    )
    for version in range(3):
        answer = call(broker.port, p.ApiKey.DELETE_RECORDS, version, request)
        assert [(x.error_code, x.low_watermark) for t in answer.topics for x in t.partitions] == [
            (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, -1),
            (0, 100),
        ]


def test_kafka_pythons_admin_client_deletes_records(broker: BrokerThread) -> None:
    from kafka import TopicPartition as KafkaTopicPartition
    from kafka.admin import KafkaAdminClient
    from kafka.admin import NewTopic as KafkaNewTopic

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    try:
        admin.create_topics([KafkaNewTopic("k", 1, 1)])
        _fill(broker.bootstrap, "k", 30)
        result = admin.delete_records({KafkaTopicPartition("k", 0): 25})
    finally:
        admin.close()
    assert _earliest(broker.port, "k") == 25
    assert [entry["low_watermark"] for entry in result.values()] == [25]


def test_list_offsets_finds_the_largest_timestamp(broker: BrokerThread) -> None:
    """KIP-734 (ListOffsets v7, librdkafka's OffsetSpec.max_timestamp): the first record with
    the largest timestamp, wherever it sits; v6 and older refuse the -3 timestamp."""
    from confluent_kafka.admin import OffsetSpec

    servers = broker.bootstrap
    admin = AdminClient({"bootstrap.servers": servers})
    admin.create_topics([NewTopic("ts", 1, 1)])["ts"].result(10)
    producer = Producer({"bootstrap.servers": servers, "linger.ms": 0})
    for i, stamp in enumerate([1000, 1001, 9000, 1003, 9000, 1005]):
        producer.produce("ts", b"%d" % i, partition=0, timestamp=stamp)
        producer.flush(10)
    (future,) = admin.list_offsets({TopicPartition("ts", 0): OffsetSpec.max_timestamp()}).values()
    found = future.result(timeout=10)
    assert (found.offset, found.timestamp) == (2, 9000)
    request = p.ListOffsetsRequest(
        topics=[
            p.ListOffsetsRequestTopic(
                name="ts",
                partitions=[p.ListOffsetsRequestPartition(partition_index=0, timestamp=-3)],
            )
        ]
    )
    old = call(broker.port, p.ApiKey.LIST_OFFSETS, 6, request).topics[0].partitions[0]
    assert old.error_code == ErrorCode.INVALID_REQUEST


def test_describe_log_dirs_reports_each_partitions_size(broker: BrokerThread) -> None:
    """kafka-python's describe_log_dirs (``kafka-log-dirs``): the data dir, every partition's
    bytes on disk, and the volume's space; a deletion shrinks what it reports."""
    from kafka.admin import KafkaAdminClient

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("sized", 2, 1)])["sized"].result(10)
    _fill(broker.bootstrap, "sized", 50)
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    try:
        answer = client.describe_log_dirs()
    finally:
        client.close()
    (per_broker,) = answer  # one entry per broker
    (result,) = per_broker["log_dirs"]
    assert result["error_code"] == 0 and result["log_dir"].endswith("data")
    sizes = {
        (t["name"], x["partition_index"]): (x["partition_size"], x["offset_lag"])
        for t in result["topics"]
        for x in t["partitions"]
    }
    assert sizes[("sized", 0)][0] > 50 * 2 and sizes[("sized", 0)][1] == 0
    assert sizes[("sized", 1)] == (0, 0)
    request = p.DescribeLogDirsRequest(
        topics=[p.DescribableLogDirTopic(topic="sized", partitions=[0])]
    )
    for version in (1, 2, 3, 4):
        described = call(broker.port, p.ApiKey.DESCRIBE_LOG_DIRS, version, request)
        (only,) = described.results
        assert [(t.name, [x.partition_index for x in t.partitions]) for t in only.topics] == [
            ("sized", [0])
        ]
        if version >= 4:
            assert 0 < only.usable_bytes <= only.total_bytes
