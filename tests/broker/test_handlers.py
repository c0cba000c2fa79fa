"""Admin and offset APIs over the wire: ListOffsets, CreateTopics, DeleteTopics, DescribeConfigs,
OffsetForLeaderEpoch, FindCoordinator, Metadata auto-creation, ApiVersions negotiation."""

from __future__ import annotations

import struct

import trio

from quorumq import protocol as p
from quorumq.broker import Broker
from quorumq.client._connection import Connection, open_connection
from quorumq.errors import ErrorCode
from quorumq.protocol.records import build_batch
from tests.broker.test_server import produce


async def list_offset(
    conn: Connection, topic: str, timestamp: int
) -> p.ListOffsetsResponsePartition:
    response = await conn.request(
        p.ApiKey.LIST_OFFSETS,
        5,
        p.ListOffsetsRequest(
            topics=[
                p.ListOffsetsRequestTopic(
                    name=topic,
                    partitions=[
                        p.ListOffsetsRequestPartition(partition_index=0, timestamp=timestamp)
                    ],
                )
            ]
        ),
    )
    return response.topics[0].partitions[0]


async def create(
    conn: Connection, *topics: p.CreatableTopic, validate_only: bool = False
) -> list[int]:
    response = await conn.request(
        p.ApiKey.CREATE_TOPICS,
        4,
        p.CreateTopicsRequest(topics=list(topics), validate_only=validate_only),
    )
    return [t.error_code for t in response.topics]


async def test_list_offsets_earliest_latest_and_by_timestamp(broker: Broker) -> None:
    broker.create_topic("t", 1)
    async with open_connection("127.0.0.1", broker.port or 0) as conn:
        for i in range(3):
            records = build_batch([(b"k", b"v1"), (b"k", b"v2")], timestamp=1000 * (i + 1))
            await produce(conn, "t", records)
        assert (await list_offset(conn, "t", -2)).offset == 0
        assert (await list_offset(conn, "t", -1)).offset == 6
        by_time = await list_offset(conn, "t", 2000)
        assert (by_time.offset, by_time.timestamp) == (2, 2000)
        assert (await list_offset(conn, "t", 10_000)).offset == -1
        assert (
            await list_offset(conn, "nope", -1)
        ).error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


async def test_create_topics_validates_like_kafka(broker: Broker) -> None:
    async with open_connection("127.0.0.1", broker.port or 0) as conn:
        ok = p.CreatableTopic(name="ok", num_partitions=2, replication_factor=1)
        assert await create(conn, ok, validate_only=True) == [0]
        assert ("ok", 0) not in broker.partitions
        assert await create(conn, ok) == [0]
        assert await create(conn, ok) == [ErrorCode.TOPIC_ALREADY_EXISTS]
        assert await create(
            conn,
            p.CreatableTopic(name="a/b", num_partitions=1, replication_factor=1),
            p.CreatableTopic(name="zero", num_partitions=0, replication_factor=1),
            p.CreatableTopic(name="rf3", num_partitions=1, replication_factor=3),
            p.CreatableTopic(
                name="cfg",
                num_partitions=1,
                replication_factor=1,
                configs=[p.CreatableTopicConfig(name="retention.ms", value="later")],
            ),
            p.CreatableTopic(name="dflt", num_partitions=-1, replication_factor=-1),
        ) == [
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            ErrorCode.INVALID_PARTITIONS,
            ErrorCode.INVALID_REPLICATION_FACTOR,
            ErrorCode.INVALID_CONFIG,
            0,
        ]
        deleted = await conn.request(
            p.ApiKey.DELETE_TOPICS, 3, p.DeleteTopicsRequest(topic_names=["ok", "missing"])
        )
        assert [r.error_code for r in deleted.responses] == [
            0,
            ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ]
        assert await create(conn, ok) == [0]  # the name is free again, the log is new
        assert (await list_offset(conn, "ok", -1)).offset == 0


async def test_metadata_auto_creates_valid_names_only(broker: Broker) -> None:
    async with open_connection("127.0.0.1", broker.port or 0) as conn:
        response = await conn.request(
            p.ApiKey.METADATA,
            8,
            p.MetadataRequest(
                topics=[p.MetadataRequestTopic(name="auto"), p.MetadataRequestTopic(name="bad!")]
            ),
        )
        auto, bad = response.topics
        assert (auto.error_code, len(auto.partitions)) == (0, 1)
        assert auto.partitions[0].leader_id == broker.config.node_id
        assert bad.error_code == ErrorCode.INVALID_TOPIC_EXCEPTION
        assert response.controller_id == broker.config.node_id
        no_create = await conn.request(
            p.ApiKey.METADATA,
            8,
            p.MetadataRequest(
                topics=[p.MetadataRequestTopic(name="other")], allow_auto_topic_creation=False
            ),
        )
        assert no_create.topics[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


async def test_describe_configs_reports_topic_and_default_values(broker: Broker) -> None:
    broker.create_topic("t", 1, {"retention.ms": "5000"})
    async with open_connection("127.0.0.1", broker.port or 0) as conn:
        response = await conn.request(
            p.ApiKey.DESCRIBE_CONFIGS,
            2,
            p.DescribeConfigsRequest(
                resources=[
                    p.DescribeConfigsResource(
                        resource_type=2,
                        resource_name="t",
                        configuration_keys=["retention.ms", "cleanup.policy"],
                    ),
                    p.DescribeConfigsResource(resource_type=2, resource_name="missing"),
                ]
            ),
        )
        found, missing = response.results
        values = {c.name: (c.value, c.config_source) for c in found.configs}
        assert values == {"retention.ms": ("5000", 1), "cleanup.policy": ("delete", 5)}
        assert missing.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


async def test_offset_for_leader_epoch_and_find_coordinator(broker: Broker) -> None:
    broker.create_topic("t", 1)
    async with open_connection("127.0.0.1", broker.port or 0) as conn:
        await produce(conn, "t", build_batch([(b"k", b"v")] * 3, timestamp=1))
        response = await conn.request(
            p.ApiKey.OFFSET_FOR_LEADER_EPOCH,
            3,
            p.OffsetForLeaderEpochRequest(
                topics=[
                    p.OffsetForLeaderTopic(
                        name="t",
                        partitions=[
                            p.OffsetForLeaderPartition(
                                partition_index=0, current_leader_epoch=0, leader_epoch=0
                            )
                        ],
                    )
                ]
            ),
        )
        epoch_end = response.topics[0].partitions[0]
        assert (epoch_end.error_code, epoch_end.leader_epoch, epoch_end.end_offset) == (0, 0, 3)
        coordinator = await conn.request(
            p.ApiKey.FIND_COORDINATOR, 2, p.FindCoordinatorRequest(key="group")
        )
        # The group coordinator (issue 6, _groups.py): a single broker coordinates every group.
        assert (coordinator.error_code, coordinator.node_id, coordinator.port) == (
            0,
            broker.config.node_id,
            broker.port,
        )


async def test_api_versions_above_3_is_answered_as_v0_with_unsupported_version(
    broker: Broker,
) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", broker.port or 0)
    header = struct.pack(">hhih", p.ApiKey.API_VERSIONS, 9, 42, -1)
    await stream.send_all(struct.pack(">i", len(header) + 1) + header + b"\x00")
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack_from(">i", data)[0]:
        data += await stream.receive_some(65536)
    response = p.decode_response(p.ApiKey.API_VERSIONS, 0, data[4:])
    assert response.error_code == ErrorCode.UNSUPPORTED_VERSION
    assert {k.api_key for k in response.api_keys} >= {0, 1, 2, 3, 18, 19, 20, 22, 23, 32}
    await stream.aclose()
