"""Kafka's errors for bad group requests, over the wire: stale generations, unknown members,
wrong coordinators; after each the group carries on."""

from __future__ import annotations

from typing import Any

from quorumq import protocol as p
from quorumq.broker import Broker
from quorumq.client._connection import Connection, open_connection
from quorumq.client._consumer_protocol import (
    CONSUMER_PROTOCOL_TYPE,
    Assignment,
    Subscription,
    decode_assignment,
    encode_assignment,
    encode_subscription,
)
from quorumq.errors import ErrorCode

GROUP = "audit"
TOPIC = "ledger"


async def join(conn: Connection, member_id: str = "") -> Any:
    request = p.JoinGroupRequest(
        group_id=GROUP,
        session_timeout_ms=6_000,
        rebalance_timeout_ms=10_000,
        member_id=member_id,
        protocol_type=CONSUMER_PROTOCOL_TYPE,
        protocols=[
            p.JoinGroupRequestProtocol(
                name="range", metadata=encode_subscription(Subscription((TOPIC,)))
            )
        ],
    )
    return await conn.request(p.ApiKey.JOIN_GROUP, 5, request)


async def commit(conn: Connection, generation_id: int, member_id: str, offset: int) -> int:
    response = await conn.request(
        p.ApiKey.OFFSET_COMMIT,
        7,
        p.OffsetCommitRequest(
            group_id=GROUP,
            generation_id=generation_id,
            member_id=member_id,
            topics=[
                p.OffsetCommitRequestTopic(
                    name=TOPIC,
                    partitions=[
                        p.OffsetCommitRequestPartition(partition_index=0, committed_offset=offset)
                    ],
                )
            ],
        ),
    )
    return int(response.topics[0].partitions[0].error_code)


async def committed_offset(conn: Connection) -> int:
    response = await conn.request(
        p.ApiKey.OFFSET_FETCH,
        5,
        p.OffsetFetchRequest(
            group_id=GROUP,
            topics=[p.OffsetFetchRequestTopic(name=TOPIC, partition_indexes=[0])],
        ),
    )
    assert response.error_code == 0
    return int(response.topics[0].partitions[0].committed_offset)


async def heartbeat(conn: Connection, generation_id: int, member_id: str) -> int:
    response = await conn.request(
        p.ApiKey.HEARTBEAT,
        3,
        p.HeartbeatRequest(group_id=GROUP, generation_id=generation_id, member_id=member_id),
    )
    return int(response.error_code)


async def test_stale_generation_and_unknown_member_get_kafkas_errors(broker: Broker) -> None:
    broker.create_topic(TOPIC, 1)
    async with open_connection("127.0.0.1", broker.port or 0) as conn:
        found = await conn.request(
            p.ApiKey.FIND_COORDINATOR, 2, p.FindCoordinatorRequest(key=GROUP)
        )
        assert (found.error_code, found.port) == (0, broker.port)

        first = await join(conn)  # v4+: the coordinator hands out the member id first
        assert first.error_code == ErrorCode.MEMBER_ID_REQUIRED and first.member_id
        joined = await join(conn, first.member_id)
        assert joined.error_code == 0 and joined.leader == first.member_id
        member, generation = joined.member_id, joined.generation_id
        mine = encode_assignment(Assignment(((TOPIC, (0,)),)))
        synced = await conn.request(
            p.ApiKey.SYNC_GROUP,
            3,
            p.SyncGroupRequest(
                group_id=GROUP,
                generation_id=generation,
                member_id=member,
                assignments=[p.SyncGroupRequestAssignment(member_id=member, assignment=mine)],
            ),
        )
        assert synced.error_code == 0
        assert decode_assignment(synced.assignment).partitions() == [(TOPIC, 0)]

        assert await commit(conn, generation, member, 5) == 0
        assert await commit(conn, generation + 1, member, 7) == ErrorCode.ILLEGAL_GENERATION
        assert await commit(conn, generation - 1, member, 7) == ErrorCode.ILLEGAL_GENERATION
        assert await commit(conn, generation, "nobody", 7) == ErrorCode.UNKNOWN_MEMBER_ID
        assert await heartbeat(conn, generation + 1, member) == ErrorCode.ILLEGAL_GENERATION
        assert await heartbeat(conn, generation, "nobody") == ErrorCode.UNKNOWN_MEMBER_ID
        assert await committed_offset(conn) == 5  # refused commits changed nothing

        # The group carries on: the member heartbeats and commits in its generation.
        assert await heartbeat(conn, generation, member) == 0
        assert await commit(conn, generation, member, 9) == 0
        assert await committed_offset(conn) == 9
        described = await conn.request(
            p.ApiKey.DESCRIBE_GROUPS, 3, p.DescribeGroupsRequest(groups=[GROUP])
        )
        group = described.groups[0]
        assert (group.error_code, group.group_state, group.protocol_data) == (0, "Stable", "range")
        assert [m.member_id for m in group.members] == [member]
        assert decode_assignment(group.members[0].member_assignment).partitions() == [(TOPIC, 0)]

        left = await conn.request(
            p.ApiKey.LEAVE_GROUP,
            3,
            p.LeaveGroupRequest(group_id=GROUP, members=[p.LeaveGroupMember(member_id=member)]),
        )
        assert left.error_code == 0 and left.members[0].error_code == 0
        assert await commit(conn, generation, member, 11) == ErrorCode.UNKNOWN_MEMBER_ID
        # An Empty group still takes standalone commits (assign() consumers: generation -1).
        assert await commit(conn, -1, "", 12) == 0
        assert await committed_offset(conn) == 12
        listed = await conn.request(p.ApiKey.LIST_GROUPS, 2, p.ListGroupsRequest())
        assert [(g.group_id, g.protocol_type) for g in listed.groups] == [
            (GROUP, CONSUMER_PROTOCOL_TYPE)
        ]


async def test_unknown_group_and_other_coordinator_types(broker: Broker) -> None:
    async with open_connection("127.0.0.1", broker.port or 0) as conn:
        # Before any FindCoordinator there is no __consumer_offsets: NOT_COORDINATOR, as Kafka.
        response = await conn.request(
            p.ApiKey.HEARTBEAT,
            3,
            p.HeartbeatRequest(group_id="nobody", generation_id=1, member_id="m"),
        )
        assert response.error_code == ErrorCode.NOT_COORDINATOR
        transaction = await conn.request(
            p.ApiKey.FIND_COORDINATOR,
            2,
            p.FindCoordinatorRequest(key="tx", key_type=p.COORDINATOR_TRANSACTION),
        )
        assert transaction.error_code == ErrorCode.COORDINATOR_NOT_AVAILABLE
        found = await conn.request(p.ApiKey.FIND_COORDINATOR, 0, p.FindCoordinatorRequest(key="g"))
        assert (found.error_code, found.node_id) == (0, broker.config.node_id)
        assert await heartbeat(conn, 1, "m") == ErrorCode.UNKNOWN_MEMBER_ID
        described = await conn.request(
            p.ApiKey.DESCRIBE_GROUPS, 0, p.DescribeGroupsRequest(groups=["missing"])
        )
        assert (described.groups[0].error_code, described.groups[0].group_state) == (0, "Dead")
