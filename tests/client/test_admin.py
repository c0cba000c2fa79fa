"""The Trio client's Admin against real brokers: topics, configs, partitions, records and
groups, each routed where Kafka routes it, with Kafka's errors typed."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from quorumq.broker import Broker
from quorumq.client import Admin, Consumer, Producer, TopicPartition
from quorumq.errors import (
    GroupIdNotFound,
    GroupSubscribedToTopic,
    InvalidPartitions,
    NonEmptyGroup,
    OffsetOutOfRange,
    TopicAlreadyExists,
    UnknownTopicOrPartition,
)
from quorumq.testing import Cluster
from tests.client._helpers import (
    bootstrap_of,
    broker,  # noqa: F401  (fixture)
)


async def test_admin_manages_topics_records_and_groups(broker: Broker) -> None:  # noqa: F811
    bootstrap = bootstrap_of(broker)
    async with Admin(bootstrap) as admin:
        await admin.create_topic("orders", 2, configs={"retention.ms": "60000"})
        with pytest.raises(TopicAlreadyExists):
            await admin.create_topic("orders", 2)
        await admin.create_topic("orders", 2, exist_ok=True)
        await admin.alter_topic_configs("orders", {"segment.ms": "120000"}, delete=["retention.ms"])
        spec = broker.topics.get("orders")  # type: ignore[union-attr]
        assert dict(spec.configs) == {"segment.ms": "120000"}
        await admin.create_partitions("orders", 3)
        with pytest.raises(InvalidPartitions):
            await admin.create_partitions("orders", 3)
        async with Producer(bootstrap) as producer:
            for i in range(10):
                await producer.send("orders", b"%d" % i, partition=2)
        assert await admin.delete_records("orders", {2: 4}) == {2: 4}
        with pytest.raises(OffsetOutOfRange):
            await admin.delete_records("orders", {2: 99})
        with pytest.raises(UnknownTopicOrPartition):
            await admin.delete_records("missing", {0: 0})
        # A group with a member keeps the offsets of the topic it reads.
        async with Consumer(bootstrap, group_id="g") as consumer:
            consumer.subscribe(["orders"])
            with trio.fail_after(20):
                while not consumer.assignment():
                    await consumer.getmany(timeout_ms=200)
            await consumer.commit({TopicPartition("orders", 2): 7})
            with pytest.raises(GroupSubscribedToTopic):
                await admin.delete_group_offsets("g", "orders", [2])
            with pytest.raises(NonEmptyGroup):
                await admin.delete_group("g")
        await admin.delete_group_offsets("g", "orders", [2])
        await admin.delete_group("g")
        with pytest.raises(GroupIdNotFound):
            await admin.delete_group("g")
        await admin.delete_topic("orders")
        with pytest.raises(UnknownTopicOrPartition):
            await admin.delete_topic("orders")


async def test_admin_on_a_three_broker_cluster(tmp_path: Path) -> None:
    async with Cluster(brokers=3, tmp_path=tmp_path) as cluster, Admin(cluster.bootstrap) as admin:
        await admin.create_topic("t", 3, 3)
        async with Producer(cluster.bootstrap, acks="all") as producer:
            for i in range(30):
                await producer.send("t", b"%d" % i, partition=i % 3)
        # Each partition's DeleteRecords goes to its own leader.
        assert await admin.delete_records("t", {0: 5, 1: 5, 2: -1}) == {0: 5, 1: 5, 2: 10}
        await admin.create_partitions("t", 4)
        await admin.alter_topic_configs("t", {"retention.ms": "1000000"})
        leaders = {await cluster.leader("t", i) for i in range(3)}
        assert len(leaders) > 1  # the deletions really went to different brokers
