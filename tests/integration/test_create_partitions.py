"""Adding partitions to a topic on a real broker with librdkafka's and kafka-python's admin
clients: the new partitions take records at once and survive a restart."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from quorumq import protocol as p
from quorumq.errors import ErrorCode
from tests.integration.conftest import BrokerThread, call


def _partitions(port: int, topic: str) -> list[int]:
    answer = call(
        port,
        p.ApiKey.METADATA,
        8,
        p.MetadataRequest(
            topics=[p.MetadataRequestTopic(name=topic)], allow_auto_topic_creation=False
        ),
    )
    return sorted(x.partition_index for x in answer.topics[0].partitions)


def test_librdkafka_adds_partitions_that_take_records_at_once(broker: BrokerThread) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("t", 2, 1)])["t"].result(10)
    admin.create_partitions([NewPartitions("t", 5)])["t"].result(10)
    assert _partitions(broker.port, "t") == [0, 1, 2, 3, 4]
    delivered: list[int] = []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 5000})
    producer.produce("t", b"new", partition=4, on_delivery=lambda e, m: delivered.append(e))
    producer.flush(10)
    assert delivered == [None]
    broker.restart()
    assert _partitions(broker.port, "t") == [0, 1, 2, 3, 4]
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for request, code in [
        (NewPartitions("t", 3), KafkaError.INVALID_PARTITIONS),
        (NewPartitions("missing", 3), KafkaError.UNKNOWN_TOPIC_OR_PART),
        (NewPartitions("t", 6, replica_assignment=[[7]]), KafkaError.INVALID_REPLICA_ASSIGNMENT),
    ]:
        with pytest.raises(KafkaException) as raised:
            admin.create_partitions([request])[request.topic].result(10)
        assert raised.value.args[0].code() == code
    assert _partitions(broker.port, "t") == [0, 1, 2, 3, 4]


def test_validate_only_and_kafka_python(broker: BrokerThread) -> None:
    from kafka.admin import KafkaAdminClient
    from kafka.admin import NewPartitions as KafkaNewPartitions
    from kafka.admin import NewTopic as KafkaNewTopic

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    try:
        admin.create_topics([KafkaNewTopic("k", 1, 1)])
        admin.create_partitions({"k": KafkaNewPartitions(3)})
    finally:
        admin.close()
    assert _partitions(broker.port, "k") == [0, 1, 2]
    request = p.CreatePartitionsRequest(
        topics=[p.CreatePartitionsTopic(name="k", count=9)], validate_only=True
    )
    for version in range(4):
        answer = call(broker.port, p.ApiKey.CREATE_PARTITIONS, version, request)
        assert [r.error_code for r in answer.results] == [0]
    assert _partitions(broker.port, "k") == [0, 1, 2]
    twice = p.CreatePartitionsRequest(
        topics=[p.CreatePartitionsTopic(name="k", count=4)] * 2, validate_only=False
    )
    answer = call(broker.port, p.ApiKey.CREATE_PARTITIONS, 3, twice)
    assert [r.error_code for r in answer.results] == [ErrorCode.INVALID_REQUEST] * 2


def test_a_single_broker_answers_leader_elections_as_not_needed(broker: BrokerThread) -> None:
    """librdkafka's elect_leaders: the only broker leads every partition already."""
    from confluent_kafka import ElectionType

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("e", 2, 1)])["e"].result(10)
    partitions = [TopicPartition("e", 0), TopicPartition("e", 1), TopicPartition("e", 7)]
    result = admin.elect_leaders(ElectionType.PREFERRED, partitions).result(10)
    assert {tp.partition: error.code() for tp, error in result.items()} == {
        0: KafkaError.ELECTION_NOT_NEEDED,
        1: KafkaError.ELECTION_NOT_NEEDED,
        7: KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
    everything = call(broker.port, p.ApiKey.ELECT_LEADERS, 2, p.ElectLeadersRequest())
    assert everything.error_code == 0 and list(everything.replica_election_results) == []
