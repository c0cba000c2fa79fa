"""GroupMember (the consumer's side of the classic group protocol) against a scripted
coordinator. Every request and answer goes through the real protocol codec (encode, decode, at
the version the client negotiates), so these also check that what the client sends parses as
Kafka's schema says. End-to-end group tests against the broker live in test_consumer.py."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
import pytest

from quorumq import protocol as p
from quorumq.client._assignors import RangeAssignor, RoundRobinAssignor
from quorumq.client._connection import Connection
from quorumq.client._consumer_protocol import (
    Subscription,
    decode_assignment,
    decode_subscription,
    encode_subscription,
)
from quorumq.client._group import GroupMember, assignor_for
from quorumq.client._metadata import BrokerAddress, TopicMetadata, TopicPartition
from quorumq.errors import (
    CoordinatorNotAvailable,
    ErrorCode,
    IllegalGeneration,
    RebalanceInProgress,
    UnknownMemberId,
)


class CodecConnection:
    """A Connection stand-in: each request is encoded, decoded as the broker would, handled,
    and the answer encoded and decoded back, all with the real codec."""

    peer = "fake:0"

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.api_versions = {
            int(k): v for k, v in {**p.API_VERSIONS, **p.GROUP_API_VERSIONS}.items()
        }
        self._closed_error: BaseException | None = None
        self._correlation_id = 0

    def version_for(self, api_key: p.ApiKey, ours: tuple[int, int] | None = None) -> int:
        return Connection.version_for(self, api_key, ours)  # type: ignore[arg-type]

    async def request(
        self,
        api_key: p.ApiKey,
        api_version: int,
        request: Any,
        *,
        expect_response: bool = True,
        timeout_s: float = 30.0,
    ) -> Any:
        self._correlation_id += 1
        frame = p.frame_bytes(
            p.encode_request(api_key, api_version, self._correlation_id, "test", request)
        )[4:]
        header, body_offset = p.decode_request_header(frame)
        decoded = p.decode_request(header, frame, body_offset)
        response = self.handler(header, decoded)
        if isinstance(response, BaseException):
            raise response
        answer = p.frame_bytes(p.encode_response(header, response))[4:]
        return p.decode_response(api_key, api_version, answer)


class FakeMetadata:
    """The slice of ClusterMetadata that GroupMember uses."""

    def __init__(self, conn: CodecConnection, partitions: dict[str, int]) -> None:
        self.conn = conn
        self.brokers: dict[int, BrokerAddress] = {}
        self.partitions = partitions
        self.closed: list[int] = []

    async def any_connection(self) -> tuple[int, CodecConnection]:
        return -1, self.conn

    async def connection(self, node_id: int) -> CodecConnection:
        return self.conn

    def close_connection(self, node_id: int) -> None:
        self.closed.append(node_id)

    def add_topics(self, topics: Iterable[str]) -> None:
        pass

    async def topic(self, name: str) -> TopicMetadata:
        return TopicMetadata(name, 0, tuple(range(self.partitions[name])))  # type: ignore[arg-type]


@attrs.define
class ScriptedCoordinator:
    """A coordinator with one other member ("m-0", subscribed to "a") already in the group."""

    find_errors: list[int] = attrs.Factory(list)
    join_errors: list[int] = attrs.Factory(list)
    heartbeat_error: int = 0
    generation: int = 0
    seen: list[tuple[int, int]] = attrs.Factory(list)  # (api_key, version)
    requests: list[Any] = attrs.Factory(list)
    sync_assignments: dict[str, bytes] = attrs.Factory(dict)
    committed: dict[tuple[str, int], int] = attrs.Factory(dict)
    other_subscription: bytes = encode_subscription(Subscription(("a",)))

    def __call__(self, header: p.RequestHeader, request: Any) -> Any:
        self.seen.append((header.api_key, header.api_version))
        self.requests.append(request)
        key = header.api_key
        if key == p.ApiKey.FIND_COORDINATOR:
            if self.find_errors:
                return p.FindCoordinatorResponse(error_code=self.find_errors.pop(0))
            return p.FindCoordinatorResponse(error_code=0, node_id=7, host="127.0.0.1", port=1)
        if key == p.ApiKey.JOIN_GROUP:
            if self.join_errors:
                return p.JoinGroupResponse(error_code=self.join_errors.pop(0))
            if not request.member_id and header.api_version >= 4:
                return p.JoinGroupResponse(error_code=ErrorCode.MEMBER_ID_REQUIRED, member_id="m-1")
            self.generation += 1
            member = request.member_id or "m-1"
            protocol = request.protocols[0]
            return p.JoinGroupResponse(
                error_code=0,
                generation_id=self.generation,
                protocol_name=protocol.name,
                leader=member,
                member_id=member,
                members=[
                    p.JoinGroupResponseMember(member_id="m-0", metadata=self.other_subscription),
                    p.JoinGroupResponseMember(member_id=member, metadata=protocol.metadata),
                ],
            )
        if key == p.ApiKey.SYNC_GROUP:
            self.sync_assignments = {a.member_id: a.assignment for a in request.assignments}
            return p.SyncGroupResponse(
                error_code=0, assignment=self.sync_assignments.get(request.member_id, b"")
            )
        if key == p.ApiKey.HEARTBEAT:
            return p.HeartbeatResponse(error_code=self.heartbeat_error)
        if key == p.ApiKey.OFFSET_COMMIT:
            ok = request.generation_id in (-1, self.generation)
            code = 0 if ok else ErrorCode.ILLEGAL_GENERATION
            if ok:
                for t in request.topics:
                    for part in t.partitions:
                        self.committed[(t.name, part.partition_index)] = part.committed_offset
            return p.OffsetCommitResponse(
                topics=[
                    p.OffsetCommitResponseTopic(
                        name=t.name,
                        partitions=[
                            p.OffsetCommitResponsePartition(
                                partition_index=x.partition_index, error_code=code
                            )
                            for x in t.partitions
                        ],
                    )
                    for t in request.topics
                ]
            )
        if key == p.ApiKey.OFFSET_FETCH:
            return p.OffsetFetchResponse(
                topics=[
                    p.OffsetFetchResponseTopic(
                        name=t.name,
                        partitions=[
                            p.OffsetFetchResponsePartition(
                                partition_index=i,
                                committed_offset=self.committed.get((t.name, i), -1),
                            )
                            for i in t.partition_indexes
                        ],
                    )
                    for t in request.topics
                ]
            )
        if key == p.ApiKey.LEAVE_GROUP:
            return p.LeaveGroupResponse(
                error_code=0,
                members=[
                    p.LeaveGroupResponseMember(member_id=m.member_id, error_code=0)
                    for m in request.members
                ],
            )
        raise AssertionError(f"unexpected api key {key}")


def member_for(
    coordinator: ScriptedCoordinator, *, assignor: Any = None, **kwargs: Any
) -> tuple[GroupMember, FakeMetadata]:
    metadata = FakeMetadata(CodecConnection(coordinator), {"a": 4, "b": 3})
    member = GroupMember(
        metadata,  # type: ignore[arg-type]
        "grp",
        assignors=[assignor or RangeAssignor()],
        retry_backoff_ms=0,
        max_attempts=5,
        **kwargs,
    )
    return member, metadata


async def test_join_as_leader_assigns_with_range_and_syncs() -> None:
    coordinator = ScriptedCoordinator()
    member, metadata = member_for(coordinator)
    generation = await member.join(["a", "b"])
    # MEMBER_ID_REQUIRED first (JoinGroup v5), then the real join with the id.
    joins = [r for r in coordinator.requests if isinstance(r, p.JoinGroupRequest)]
    assert [j.member_id for j in joins] == ["", "m-1"]
    assert (p.ApiKey.JOIN_GROUP, 5) in coordinator.seen
    assert joins[1].protocol_type == "consumer"
    assert decode_subscription(joins[1].protocols[0].metadata).topics == ("a", "b")
    # Range over a: 4 partitions for m-0 and m-1 (sorted by id); b only for m-1.
    sent = {m: decode_assignment(a).partitions() for m, a in coordinator.sync_assignments.items()}
    assert sent == {
        "m-0": [("a", 0), ("a", 1)],
        "m-1": [("a", 2), ("a", 3), ("b", 0), ("b", 1), ("b", 2)],
    }
    assert generation.is_leader
    assert generation.generation_id == 1
    assert generation.assignment == tuple(TopicPartition(t, i) for t, i in sent["m-1"])
    assert metadata.brokers[7] == BrokerAddress(7, "127.0.0.1", 1)
    assert member.coordinator_id == 7


async def test_round_robin_is_offered_by_name() -> None:
    coordinator = ScriptedCoordinator()
    member, _ = member_for(coordinator, assignor=assignor_for("roundrobin"))
    generation = await member.join(["a"])
    assert generation.protocol_name == RoundRobinAssignor.name
    sent = {m: decode_assignment(a).partitions() for m, a in coordinator.sync_assignments.items()}
    assert sent == {"m-0": [("a", 0), ("a", 2)], "m-1": [("a", 1), ("a", 3)]}
    with pytest.raises(ValueError):
        assignor_for("sticky-ish")


async def test_coordinator_errors_are_retried_by_finding_it_again() -> None:
    coordinator = ScriptedCoordinator(
        find_errors=[ErrorCode.COORDINATOR_NOT_AVAILABLE, ErrorCode.COORDINATOR_NOT_AVAILABLE],
        join_errors=[ErrorCode.NOT_COORDINATOR, ErrorCode.REBALANCE_IN_PROGRESS],
    )
    member, metadata = member_for(coordinator)
    generation = await member.join(["a"])
    finds = sum(1 for k, _ in coordinator.seen if k == p.ApiKey.FIND_COORDINATOR)
    assert finds == 4  # two refusals, then found, lost (NOT_COORDINATOR), found again
    assert 7 in metadata.closed
    assert generation.generation_id == 1


async def test_no_coordinator_at_all_is_typed() -> None:
    coordinator = ScriptedCoordinator(find_errors=[ErrorCode.COORDINATOR_NOT_AVAILABLE] * 10)
    member, _ = member_for(coordinator)
    with pytest.raises(CoordinatorNotAvailable):
        await member.join(["a"])


async def test_heartbeat_errors_end_the_generation() -> None:
    coordinator = ScriptedCoordinator()
    member, _ = member_for(coordinator)
    await member.join(["a"])
    await member.heartbeat()
    coordinator.heartbeat_error = ErrorCode.REBALANCE_IN_PROGRESS
    assert not member.needs_rejoin
    with pytest.raises(RebalanceInProgress):
        await member.heartbeat()
    # Rejoin, but the generation stays valid for a last commit before it.
    assert member.needs_rejoin and member.generation is not None
    await member.commit({TopicPartition("a", 2): 1})
    coordinator.heartbeat_error = ErrorCode.UNKNOWN_MEMBER_ID
    await member.join(["a"])
    assert not member.needs_rejoin
    with pytest.raises(UnknownMemberId):
        await member.heartbeat()
    assert member.generation is None and member.member_id == ""  # starts over
    with pytest.raises(RebalanceInProgress):
        await member.heartbeat()  # no generation: rejoin first


async def test_commit_and_fetch_committed_round_trip() -> None:
    coordinator = ScriptedCoordinator()
    member, _ = member_for(coordinator)
    await member.join(["a"])
    await member.commit({TopicPartition("a", 2): 42, TopicPartition("a", 3): 7})
    commit = next(r for r in coordinator.requests if isinstance(r, p.OffsetCommitRequest))
    assert (commit.generation_id, commit.member_id) == (1, "m-1")
    got = await member.fetch_committed([TopicPartition("a", i) for i in range(4)])
    assert got == {
        TopicPartition("a", 0): None,
        TopicPartition("a", 1): None,
        TopicPartition("a", 2): 42,
        TopicPartition("a", 3): 7,
    }
    # A commit from a generation the coordinator has moved past is refused, typed.
    coordinator.generation += 1
    with pytest.raises(IllegalGeneration):
        await member.commit({TopicPartition("a", 2): 50})
    assert member.generation is None
    assert coordinator.committed[("a", 2)] == 42
    # Outside group management (assign + group id): generation -1, no member id.
    await member.commit({TopicPartition("a", 0): 3}, in_group=False)
    assert coordinator.committed[("a", 0)] == 3


async def test_leave_names_the_member_and_forgets_it() -> None:
    coordinator = ScriptedCoordinator()
    member, _ = member_for(coordinator, group_instance_id="static-1")
    await member.join(["a"])
    await member.leave()
    leave = next(r for r in coordinator.requests if isinstance(r, p.LeaveGroupRequest))
    assert [(m.member_id, m.group_instance_id) for m in leave.members] == [("m-1", "static-1")]
    assert member.member_id == "" and member.generation is None
    await member.leave()  # nothing to leave: no request
    assert sum(isinstance(r, p.LeaveGroupRequest) for r in coordinator.requests) == 1


def test_group_id_is_required() -> None:
    with pytest.raises(ValueError):
        GroupMember(None, "")  # type: ignore[arg-type]
