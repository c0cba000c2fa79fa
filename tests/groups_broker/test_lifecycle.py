"""Group lifecycle across time and restarts, over the raw protocol: a member that stops
heartbeating (killed) is expired after its session timeout and the survivor gets a new
generation; a Stable group comes back Stable in its generation after a broker restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import trio

from quorumq import protocol as p
from quorumq.broker import Broker
from quorumq.client._connection import Connection, open_connection
from quorumq.client._consumer_protocol import (
    CONSUMER_PROTOCOL_TYPE,
    Subscription,
    encode_subscription,
)
from quorumq.errors import ErrorCode
from tests.groups_broker.conftest import group_config

SESSION_MS = 1_000
TOPIC = "events"


async def join(conn: Connection, group: str, member_id: str = "") -> Any:
    request = p.JoinGroupRequest(
        group_id=group,
        session_timeout_ms=SESSION_MS,
        rebalance_timeout_ms=SESSION_MS * 3,
        member_id=member_id,
        protocol_type=CONSUMER_PROTOCOL_TYPE,
        protocols=[
            p.JoinGroupRequestProtocol(
                name="range", metadata=encode_subscription(Subscription((TOPIC,)))
            )
        ],
    )
    return await conn.request(p.ApiKey.JOIN_GROUP, 3, request)  # v3: no MEMBER_ID_REQUIRED


async def sync(conn: Connection, group: str, joined: Any) -> Any:
    assignments = [
        p.SyncGroupRequestAssignment(member_id=m.member_id, assignment=b"") for m in joined.members
    ]
    return await conn.request(
        p.ApiKey.SYNC_GROUP,
        3,
        p.SyncGroupRequest(
            group_id=group,
            generation_id=joined.generation_id,
            member_id=joined.member_id,
            assignments=assignments,
        ),
    )


async def heartbeat(conn: Connection, group: str, generation: int, member: str) -> int:
    response = await conn.request(
        p.ApiKey.HEARTBEAT,
        3,
        p.HeartbeatRequest(group_id=group, generation_id=generation, member_id=member),
    )
    return int(response.error_code)


async def find(conn: Connection, group: str) -> None:
    found = await conn.request(p.ApiKey.FIND_COORDINATOR, 2, p.FindCoordinatorRequest(key=group))
    assert found.error_code == 0


async def test_a_silent_member_expires_and_the_survivor_rebalances(tmp_path: Path) -> None:
    # A short initial delay lets both members land in the first generation together.
    config = attrs.evolve(
        group_config(tmp_path / "data"),
        group_min_session_timeout_ms=500,
        group_initial_rebalance_delay_ms=300,
    )
    broker = Broker(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(broker.serve)
        async with (
            open_connection("127.0.0.1", broker.port or 0) as a,
            open_connection("127.0.0.1", broker.port or 0) as b,
        ):
            await find(a, "g")
            results: dict[str, Any] = {}

            async def join_as(name: str, conn: Connection) -> None:
                results[name] = await join(conn, "g")

            async with trio.open_nursery() as joins:
                joins.start_soon(join_as, "a", a)
                joins.start_soon(join_as, "b", b)
            generation = results["a"].generation_id
            assert results["b"].generation_id == generation
            leader = results["a"] if results["a"].members else results["b"]
            assert len(leader.members) == 2
            other = results["b"] if leader is results["a"] else results["a"]
            leader_conn = a if leader is results["a"] else b
            other_conn = b if leader_conn is a else a
            async with trio.open_nursery() as syncs:
                syncs.start_soon(sync, leader_conn, "g", leader)
                syncs.start_soon(sync, other_conn, "g", other)

            # The other member goes silent (killed); the leader keeps heartbeating until it is
            # told to rejoin, which must happen soon after the session timeout.
            code = 0
            with trio.fail_after(SESSION_MS * 5 / 1000):
                while code == 0:
                    await trio.sleep(0.2)
                    code = await heartbeat(leader_conn, "g", generation, leader.member_id)
            assert code == ErrorCode.REBALANCE_IN_PROGRESS
            rejoined = await join(leader_conn, "g", leader.member_id)
            assert rejoined.error_code == 0
            assert rejoined.generation_id == generation + 1
            assert [m.member_id for m in rejoined.members] == [leader.member_id]
            assert (await sync(leader_conn, "g", rejoined)).error_code == 0
            silent = await heartbeat(other_conn, "g", generation, other.member_id)
            assert silent == ErrorCode.UNKNOWN_MEMBER_ID
        broker.shutdown()


async def test_a_stable_group_comes_back_stable_after_a_broker_restart(tmp_path: Path) -> None:
    config = attrs.evolve(group_config(tmp_path / "data"), group_min_session_timeout_ms=500)
    async with trio.open_nursery() as nursery:
        first = Broker(config)
        await nursery.start(first.serve)
        async with open_connection("127.0.0.1", first.port or 0) as conn:
            await find(conn, "keep")
            joined = await join(conn, "keep")
            assert joined.error_code == 0
            assert (await sync(conn, "keep", joined)).error_code == 0
        first.shutdown()

    async with trio.open_nursery() as nursery:
        second = Broker(config)
        await nursery.start(second.serve)
        async with open_connection("127.0.0.1", second.port or 0) as conn:
            code = await heartbeat(conn, "keep", joined.generation_id, joined.member_id)
            assert code == 0  # same member, same generation: no rebalance needed
            described = await conn.request(
                p.ApiKey.DESCRIBE_GROUPS, 3, p.DescribeGroupsRequest(groups=["keep"])
            )
            group = described.groups[0]
            assert group.group_state == "Stable"
            assert [m.member_id for m in group.members] == [joined.member_id]
        second.shutdown()
