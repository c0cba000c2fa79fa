"""DeleteGroups on a real broker with librdkafka's and kafka-python's admin clients: an empty
group and its committed offsets go; a group with members, or none at all, is refused."""

from __future__ import annotations

from typing import Any

import trio
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from quorumq.broker import Broker
from tests.groups_broker.conftest import bootstrap


def _commit_standalone(servers: str, group: str) -> None:
    consumer = Consumer({"bootstrap.servers": servers, "group.id": group})
    try:
        consumer.commit(offsets=[TopicPartition("t", 0, 7)], asynchronous=False)
    finally:
        consumer.close()


def _delete(servers: str, *groups: str) -> dict[str, Any]:
    """Each group's outcome: None, or the KafkaError code."""
    admin = AdminClient({"bootstrap.servers": servers})
    outcome: dict[str, Any] = {}
    for group, future in admin.delete_consumer_groups(list(groups), request_timeout=10).items():
        try:
            future.result(timeout=15)
            outcome[group] = None
        except KafkaException as exc:
            outcome[group] = exc.args[0].code()
    return outcome


def _committed(servers: str, group: str) -> int:
    consumer = Consumer({"bootstrap.servers": servers, "group.id": group})
    try:
        (tp,) = consumer.committed([TopicPartition("t", 0)], timeout=10)
        return tp.offset
    finally:
        consumer.close()


async def test_librdkafka_deletes_an_empty_group_and_its_offsets(broker: Broker) -> None:
    servers = bootstrap(broker)
    broker.create_topic("t", 1)
    await trio.to_thread.run_sync(_commit_standalone, servers, "gone")
    assert await trio.to_thread.run_sync(_committed, servers, "gone") == 7
    member = Consumer({"bootstrap.servers": servers, "group.id": "busy"})
    member.subscribe(["t"])
    try:
        with trio.fail_after(20):
            while not member.assignment():
                await trio.to_thread.run_sync(member.poll, 0.2)
        outcome = await trio.to_thread.run_sync(_delete, servers, "gone", "busy", "never")
    finally:
        await trio.to_thread.run_sync(member.close)
    assert outcome == {
        "gone": None,
        "busy": KafkaError.NON_EMPTY_GROUP,
        "never": KafkaError.GROUP_ID_NOT_FOUND,
    }
    assert await trio.to_thread.run_sync(_committed, servers, "gone") < 0  # no offset now
    assert broker.groups is not None
    assert "gone" not in broker.groups.coordinator.group_ids()


async def test_kafka_pythons_admin_client_deletes_groups(broker: Broker) -> None:
    from kafka.admin import KafkaAdminClient

    servers = bootstrap(broker)
    broker.create_topic("t", 1)
    await trio.to_thread.run_sync(_commit_standalone, servers, "old")

    def delete() -> Any:
        admin = KafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=10000)
        try:
            return admin.delete_groups(["old"])
        finally:
            admin.close()

    results = await trio.to_thread.run_sync(delete)
    assert results == {"old": "OK"}
    assert broker.groups is not None
    assert "old" not in broker.groups.coordinator.group_ids()


async def test_kafka_python_deletes_offsets_a_member_does_not_subscribe_to(
    broker: Broker,
) -> None:
    """OffsetDelete (``kafka-consumer-groups --delete-offsets``): an active group keeps the
    offsets of topics its members read, and loses the others."""
    from kafka import TopicPartition as KafkaTopicPartition
    from kafka.admin import KafkaAdminClient
    from kafka.errors import GroupSubscribedToTopicError

    servers = bootstrap(broker)
    broker.create_topic("t", 1)
    broker.create_topic("u", 1)
    member = Consumer({"bootstrap.servers": servers, "group.id": "active"})
    member.subscribe(["t"])
    try:
        with trio.fail_after(20):
            while not member.assignment():
                await trio.to_thread.run_sync(member.poll, 0.2)
        offsets = [TopicPartition("t", 0, 4), TopicPartition("u", 0, 9)]
        await trio.to_thread.run_sync(lambda: member.commit(offsets=offsets, asynchronous=False))

        def delete(partition: Any) -> Any:
            admin = KafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=10000)
            try:
                return admin.delete_group_offsets("active", [partition])
            finally:
                admin.close()

        result = await trio.to_thread.run_sync(delete, KafkaTopicPartition("u", 0))
        assert [getattr(e, "errno", e) for e in result.values()] == [0]
        result = await trio.to_thread.run_sync(delete, KafkaTopicPartition("t", 0))
        assert list(result.values()) == [GroupSubscribedToTopicError]
        committed = await trio.to_thread.run_sync(
            lambda: member.committed([TopicPartition("t", 0), TopicPartition("u", 0)], timeout=10)
        )
        assert [tp.offset for tp in committed] == [4, -1001]  # u-0 has none now
    finally:
        await trio.to_thread.run_sync(member.close)
