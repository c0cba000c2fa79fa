"""Coordinator failover in a three-broker cluster: committed offsets and a Stable group survive
the death of the coordinator's broker (the new leader of the group's ``__consumer_offsets``
partition loads it and FindCoordinator names it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from quorumq import protocol as p
from quorumq.client._connection import Connection, open_connection
from quorumq.client._consumer_protocol import CONSUMER_PROTOCOL_TYPE
from quorumq.errors import ErrorCode
from tests.cluster._harness import open_cluster

GROUP = "ledger-readers"
TOPIC = "ledger"
RETRIABLE = {
    ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_COORDINATOR,
    ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
    ErrorCode.REQUEST_TIMED_OUT,
}


async def retry(what: str, attempt: Callable[[], Awaitable[tuple[int, Any]]]) -> Any:
    """Repeats ``attempt`` while it answers a retriable coordinator error (15 s at most)."""
    code = -1
    with trio.move_on_after(15):
        while True:
            code, value = await attempt()
            if code not in RETRIABLE:
                assert code == 0, f"{what}: {ErrorCode(code).name}"
                return value
            await trio.sleep(0.1)
    raise AssertionError(f"{what}: still {ErrorCode(code).name} after 15 s")


async def find_coordinator(conn: Connection) -> tuple[int, Any]:
    found = await conn.request(p.ApiKey.FIND_COORDINATOR, 2, p.FindCoordinatorRequest(key=GROUP))
    return int(found.error_code), found


async def test_offsets_and_group_survive_the_coordinators_death(tmp_path: Path) -> None:
    async with open_cluster(tmp_path) as cluster:
        await cluster.create_topic(TOPIC, 1, 3)
        port_of = {m.node_id: m.port for m in cluster.members}
        async with open_connection("127.0.0.1", port_of[0]) as conn:
            found = await retry("find coordinator", lambda: find_coordinator(conn))
        first = found.node_id

        async with open_connection("127.0.0.1", port_of[first]) as conn:

            async def join() -> tuple[int, Any]:
                joined = await conn.request(
                    p.ApiKey.JOIN_GROUP,
                    3,
                    p.JoinGroupRequest(
                        group_id=GROUP,
                        session_timeout_ms=30_000,
                        rebalance_timeout_ms=30_000,
                        protocol_type=CONSUMER_PROTOCOL_TYPE,
                        protocols=[p.JoinGroupRequestProtocol(name="range", metadata=b"")],
                    ),
                )
                return int(joined.error_code), joined

            joined = await retry("join", join)
            synced = await conn.request(
                p.ApiKey.SYNC_GROUP,
                3,
                p.SyncGroupRequest(
                    group_id=GROUP,
                    generation_id=joined.generation_id,
                    member_id=joined.member_id,
                    assignments=[
                        p.SyncGroupRequestAssignment(member_id=joined.member_id, assignment=b"")
                    ],
                ),
            )
            assert synced.error_code == 0
            committed = await conn.request(
                p.ApiKey.OFFSET_COMMIT,
                7,
                p.OffsetCommitRequest(
                    group_id=GROUP,
                    generation_id=joined.generation_id,
                    member_id=joined.member_id,
                    topics=[
                        p.OffsetCommitRequestTopic(
                            name=TOPIC,
                            partitions=[
                                p.OffsetCommitRequestPartition(
                                    partition_index=0, committed_offset=42
                                )
                            ],
                        )
                    ],
                ),
            )
            # Answered only once the record is below the high watermark: on a majority.
            assert committed.topics[0].partitions[0].error_code == 0

        await cluster.stop(first)
        survivor = next(m.node_id for m in cluster.members if m.node_id != first)

        async def find_new() -> tuple[int, Any]:
            async with open_connection("127.0.0.1", port_of[survivor]) as conn:
                code, found = await find_coordinator(conn)
            if code == 0 and found.node_id == first:
                return int(ErrorCode.COORDINATOR_NOT_AVAILABLE), found  # not re-elected yet
            return code, found

        found = await retry("find the new coordinator", find_new)
        assert found.node_id != first
        async with open_connection("127.0.0.1", port_of[found.node_id]) as conn:

            async def fetch() -> tuple[int, Any]:
                response = await conn.request(
                    p.ApiKey.OFFSET_FETCH,
                    5,
                    p.OffsetFetchRequest(
                        group_id=GROUP,
                        topics=[p.OffsetFetchRequestTopic(name=TOPIC, partition_indexes=[0])],
                    ),
                )
                return int(response.error_code), response

            fetched = await retry("offset fetch", fetch)
            assert fetched.topics[0].partitions[0].committed_offset == 42
            heartbeat = await conn.request(
                p.ApiKey.HEARTBEAT,
                3,
                p.HeartbeatRequest(
                    group_id=GROUP,
                    generation_id=joined.generation_id,
                    member_id=joined.member_id,
                ),
            )
            assert heartbeat.error_code == 0  # the group came back Stable in its generation


async def test_offset_commits_are_refused_while_a_transfer_holds_the_offsets_partition(
    tmp_path: Path,
) -> None:
    """A leadership transfer holds writes until the target has caught up, and the group
    coordinator's own writes to ``__consumer_offsets`` are writes too: before, they kept
    appending, and a busy offsets partition could keep its target from ever draining. They
    are refused (NOT_COORDINATOR, which clients retry after finding the coordinator again)
    while the hold lasts, and go in once it ends."""
    async with open_cluster(tmp_path) as cluster:
        await cluster.create_topic(TOPIC, 1, 3)
        port_of = {m.node_id: m.port for m in cluster.members}
        async with open_connection("127.0.0.1", port_of[0]) as conn:
            found = await retry("find coordinator", lambda: find_coordinator(conn))
        broker = cluster.broker(found.node_id)
        key = ("__consumer_offsets", broker.groups.coordinator.partition_for(GROUP))
        await cluster.wait_for(lambda: key in broker.partitions, 10, "the offsets partition")
        offsets = broker.partitions[key]
        assert offsets.leader is not None

        async with open_connection("127.0.0.1", port_of[found.node_id]) as conn:

            async def commit(offset: int) -> tuple[int, Any]:
                committed = await conn.request(
                    p.ApiKey.OFFSET_COMMIT,
                    7,
                    p.OffsetCommitRequest(
                        group_id=GROUP,
                        generation_id=-1,  # a consumer without a group (assign, not subscribe)
                        member_id="",
                        topics=[
                            p.OffsetCommitRequestTopic(
                                name=TOPIC,
                                partitions=[
                                    p.OffsetCommitRequestPartition(
                                        partition_index=0, committed_offset=offset
                                    )
                                ],
                            )
                        ],
                    ),
                )
                return int(committed.topics[0].partitions[0].error_code), committed

            await retry("commit before", lambda: commit(1))
            target = next(iter(offsets.leader.progress))
            assert offsets.begin_transfer(target, offsets.leader.leader_epoch, lambda _: None)
            code, _ = await commit(2)
            assert code == ErrorCode.NOT_COORDINATOR
            offsets.transfer = None  # the hold over (the election, or its 2 s bound)
            await retry("commit after", lambda: commit(3))
