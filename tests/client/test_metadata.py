"""ClusterMetadata against a real broker: bootstrap, leaders, one connection per broker,
coalesced refreshes, reconnects, typed errors for topics that do not exist."""

from __future__ import annotations

import pytest
import trio

from quorumq import protocol as p
from quorumq.broker import Broker
from quorumq.client import ClusterMetadata, TopicPartition
from quorumq.client._metadata import is_retriable, parse_bootstrap, raise_for_code
from quorumq.errors import (
    ErrorCode,
    InvalidTopic,
    NotLeaderOrFollower,
    QuorumqError,
    UnknownTopicOrPartition,
)
from tests.client._helpers import (
    bootstrap_of,
    broker,  # noqa: F401  (fixture)
    start_proxy,
)


def test_parse_bootstrap() -> None:
    assert parse_bootstrap("127.0.0.1:9092, 127.0.0.1:9093") == [
        ("127.0.0.1", 9092),
        ("127.0.0.1", 9093),
    ]
    assert parse_bootstrap(["localhost"]) == [("localhost", 9092)]
    with pytest.raises(ValueError):
        parse_bootstrap(" , ")


def test_error_codes_map_to_typed_errors() -> None:
    raise_for_code(0, "fine")
    with pytest.raises(NotLeaderOrFollower, match="NOT_LEADER_OR_FOLLOWER"):
        raise_for_code(ErrorCode.NOT_LEADER_OR_FOLLOWER, "produce")
    with pytest.raises(QuorumqError, match="12345"):
        raise_for_code(12345, "odd")
    assert is_retriable(ErrorCode.LEADER_NOT_AVAILABLE)
    assert is_retriable(ErrorCode.REQUEST_TIMED_OUT)
    assert not is_retriable(ErrorCode.INVALID_TOPIC_EXCEPTION)


async def test_leader_and_partitions_of_an_auto_created_topic(broker: Broker) -> None:  # noqa: F811
    async with ClusterMetadata(bootstrap_of(broker)) as metadata:
        topic = await metadata.topic("orders")
        assert topic.num_partitions == 3
        assert topic.available() == [0, 1, 2]
        assert await metadata.leader_for(TopicPartition("orders", 2)) == 0
        assert metadata.cached_leader(TopicPartition("orders", 1)) == 0
        assert metadata.leader_epoch(TopicPartition("orders", 1)) == 0
        assert metadata.brokers[0].port == broker.port
        assert metadata.cluster_id == broker.cluster_id


async def test_one_connection_per_broker_and_reconnect(broker: Broker) -> None:  # noqa: F811
    async with ClusterMetadata(bootstrap_of(broker)) as metadata:
        await metadata.topic("t")
        first = await metadata.connection(0)
        conns: list[object] = []

        async def get() -> None:
            conns.append(await metadata.connection(0))

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(get)
        assert all(c is first for c in conns)
        metadata.close_connection(0)
        second = await metadata.connection(0)
        assert second is not first
        response = await second.request(p.ApiKey.METADATA, 8, p.MetadataRequest(topics=[]))
        assert response.brokers[0].node_id == 0


async def test_concurrent_refreshes_are_coalesced(
    nursery: trio.Nursery,
    broker: Broker,  # noqa: F811
) -> None:
    proxy = await start_proxy(nursery, broker)
    async with ClusterMetadata(proxy.bootstrap) as metadata:
        metadata.add_topics(["a", "b"])
        async with trio.open_nursery() as inner:
            for _ in range(10):
                inner.start_soon(metadata.refresh)
        assert proxy.count(p.ApiKey.METADATA) <= 2
        assert {"a", "b"} <= set(metadata.topics)


async def test_dead_bootstrap_address_is_skipped(broker: Broker) -> None:  # noqa: F811
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    dead_port = listener.socket.getsockname()[1]
    await listener.aclose()
    async with ClusterMetadata(
        [f"127.0.0.1:{dead_port}", bootstrap_of(broker)], connect_timeout_ms=2_000
    ) as metadata:
        assert (await metadata.topic("x")).num_partitions == 3


async def test_unknown_topic_without_auto_creation_is_typed(broker: Broker) -> None:  # noqa: F811
    async with ClusterMetadata(
        bootstrap_of(broker),
        allow_auto_topic_creation=False,
        max_attempts=3,
        retry_backoff_ms=1,
    ) as metadata:
        with pytest.raises(UnknownTopicOrPartition):
            await metadata.topic("missing")
        with pytest.raises(InvalidTopic):
            await metadata.topic("bad name!")  # not retriable: raised at once
        with pytest.raises(UnknownTopicOrPartition):
            await metadata.leader_for(TopicPartition("missing", 0))


async def test_no_broker_reachable_is_connection_error() -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    await listener.aclose()
    async with ClusterMetadata(f"127.0.0.1:{port}", max_attempts=2, retry_backoff_ms=1) as md:
        with pytest.raises(ConnectionError):
            await md.topic("t")


async def test_bootstrap_connection_becomes_the_brokers_connection(
    nursery: trio.Nursery,
    broker: Broker,  # noqa: F811
) -> None:
    proxy = await start_proxy(nursery, broker)
    async with ClusterMetadata(proxy.bootstrap) as metadata:
        await metadata.topic("one")
        assert await metadata.leader_for(TopicPartition("one", 0)) == 0
        conn = await metadata.connection(0)
        node_id, same = await metadata.any_connection()
        assert (node_id, same) == (0, conn)
        assert proxy.connections == 1  # the bootstrap connection is broker 0's connection
