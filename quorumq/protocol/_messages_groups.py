"""Message schemas of the classic consumer-group protocol and SASL.

JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, ListGroups,
DescribeGroups, SaslHandshake and SaslAuthenticate. Same conventions as ``_messages_core``.
Member metadata and assignments stay opaque ``bytes`` (the consumer protocol inside them is the
clients' business; the coordinator only stores and forwards them).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from quorumq.protocol._codec import BOOL, BYTES, INT16, INT32, INT64, STRING, Array, f

# --- JoinGroup (key 11) -----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class JoinGroupRequestProtocol:
    name: str = f(STRING)
    metadata: bytes = f(BYTES, default=b"")


@attrs.frozen(kw_only=True)
class JoinGroupRequest:
    group_id: str = f(STRING)
    session_timeout_ms: int = f(INT32)
    rebalance_timeout_ms: int = f(INT32, v=(1, None), default=-1)
    """-1 (v0): the session timeout is also the rebalance timeout."""
    member_id: str = f(STRING, default="")
    group_instance_id: str | None = f(STRING, v=(5, None), null=(5, None), default=None)
    protocol_type: str = f(STRING)
    protocols: Sequence[JoinGroupRequestProtocol] = f(Array(JoinGroupRequestProtocol))


@attrs.frozen(kw_only=True)
class JoinGroupResponseMember:
    member_id: str = f(STRING)
    group_instance_id: str | None = f(STRING, v=(5, None), null=(5, None), default=None)
    metadata: bytes = f(BYTES, default=b"")


@attrs.frozen(kw_only=True)
class JoinGroupResponse:
    throttle_time_ms: int = f(INT32, v=(2, None), default=0)
    error_code: int = f(INT16, default=0)
    generation_id: int = f(INT32, default=-1)
    protocol_name: str = f(STRING, default="")
    leader: str = f(STRING, default="")
    member_id: str = f(STRING, default="")
    members: Sequence[JoinGroupResponseMember] = f(Array(JoinGroupResponseMember), default=())
    """Filled for the leader only: every member's subscription metadata."""


# --- SyncGroup (key 14) -----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class SyncGroupRequestAssignment:
    member_id: str = f(STRING)
    assignment: bytes = f(BYTES, default=b"")


@attrs.frozen(kw_only=True)
class SyncGroupRequest:
    group_id: str = f(STRING)
    generation_id: int = f(INT32)
    member_id: str = f(STRING)
    group_instance_id: str | None = f(STRING, v=(3, None), null=(3, None), default=None)
    assignments: Sequence[SyncGroupRequestAssignment] = f(
        Array(SyncGroupRequestAssignment), default=()
    )
    """Sent by the leader only: the assignment of every member."""


@attrs.frozen(kw_only=True)
class SyncGroupResponse:
    throttle_time_ms: int = f(INT32, v=(1, None), default=0)
    error_code: int = f(INT16, default=0)
    assignment: bytes = f(BYTES, default=b"")


# --- Heartbeat (key 12) -----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class HeartbeatRequest:
    group_id: str = f(STRING)
    generation_id: int = f(INT32)
    member_id: str = f(STRING)
    group_instance_id: str | None = f(STRING, v=(3, None), null=(3, None), default=None)


@attrs.frozen(kw_only=True)
class HeartbeatResponse:
    throttle_time_ms: int = f(INT32, v=(1, None), default=0)
    error_code: int = f(INT16, default=0)


# --- LeaveGroup (key 13) ----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class LeaveGroupMember:
    member_id: str = f(STRING)
    group_instance_id: str | None = f(STRING, null=(0, None), default=None)


@attrs.frozen(kw_only=True)
class LeaveGroupRequest:
    """LeaveGroup: v0-2 name one ``member_id``; v3+ a batch of ``members`` (KIP-345)."""

    group_id: str = f(STRING)
    member_id: str = f(STRING, v=(0, 2), default="")
    members: Sequence[LeaveGroupMember] = f(Array(LeaveGroupMember), v=(3, None), default=())


@attrs.frozen(kw_only=True)
class LeaveGroupResponseMember:
    member_id: str = f(STRING)
    group_instance_id: str | None = f(STRING, null=(0, None), default=None)
    error_code: int = f(INT16, default=0)


@attrs.frozen(kw_only=True)
class LeaveGroupResponse:
    throttle_time_ms: int = f(INT32, v=(1, None), default=0)
    error_code: int = f(INT16, default=0)
    members: Sequence[LeaveGroupResponseMember] = f(
        Array(LeaveGroupResponseMember), v=(3, None), default=()
    )


# --- OffsetCommit (key 8) ---------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class OffsetCommitRequestPartition:
    partition_index: int = f(INT32)
    committed_offset: int = f(INT64)
    committed_leader_epoch: int = f(INT32, v=(6, None), default=-1)
    committed_metadata: str | None = f(STRING, null=(0, None), default="")


@attrs.frozen(kw_only=True)
class OffsetCommitRequestTopic:
    name: str = f(STRING)
    partitions: Sequence[OffsetCommitRequestPartition] = f(Array(OffsetCommitRequestPartition))


@attrs.frozen(kw_only=True)
class OffsetCommitRequest:
    group_id: str = f(STRING)
    generation_id: int = f(INT32, default=-1)
    """-1 for a commit from a consumer outside group management (``assign``)."""
    member_id: str = f(STRING, default="")
    group_instance_id: str | None = f(STRING, v=(7, None), null=(7, None), default=None)
    retention_time_ms: int = f(INT64, v=(2, 4), default=-1)
    topics: Sequence[OffsetCommitRequestTopic] = f(Array(OffsetCommitRequestTopic))


@attrs.frozen(kw_only=True)
class OffsetCommitResponsePartition:
    partition_index: int = f(INT32)
    error_code: int = f(INT16, default=0)


@attrs.frozen(kw_only=True)
class OffsetCommitResponseTopic:
    name: str = f(STRING)
    partitions: Sequence[OffsetCommitResponsePartition] = f(Array(OffsetCommitResponsePartition))


@attrs.frozen(kw_only=True)
class OffsetCommitResponse:
    throttle_time_ms: int = f(INT32, v=(3, None), default=0)
    topics: Sequence[OffsetCommitResponseTopic] = f(Array(OffsetCommitResponseTopic))


# --- OffsetFetch (key 9) ----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class OffsetFetchRequestTopic:
    name: str = f(STRING)
    partition_indexes: Sequence[int] = f(Array(INT32), default=())


@attrs.frozen(kw_only=True)
class OffsetFetchRequest:
    group_id: str = f(STRING)
    topics: Sequence[OffsetFetchRequestTopic] | None = f(
        Array(OffsetFetchRequestTopic), null=(2, None)
    )
    """None (v2+): every partition the group has committed."""


@attrs.frozen(kw_only=True)
class OffsetFetchResponsePartition:
    partition_index: int = f(INT32)
    committed_offset: int = f(INT64, default=-1)
    committed_leader_epoch: int = f(INT32, v=(5, None), default=-1)
    metadata: str | None = f(STRING, null=(0, None), default="")
    error_code: int = f(INT16, default=0)


@attrs.frozen(kw_only=True)
class OffsetFetchResponseTopic:
    name: str = f(STRING)
    partitions: Sequence[OffsetFetchResponsePartition] = f(Array(OffsetFetchResponsePartition))


@attrs.frozen(kw_only=True)
class OffsetFetchResponse:
    throttle_time_ms: int = f(INT32, v=(3, None), default=0)
    topics: Sequence[OffsetFetchResponseTopic] = f(Array(OffsetFetchResponseTopic))
    error_code: int = f(INT16, v=(2, None), default=0)


# --- OffsetDelete (key 47) --------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class OffsetDeleteRequestPartition:
    partition_index: int = f(INT32)


@attrs.frozen(kw_only=True)
class OffsetDeleteRequestTopic:
    name: str = f(STRING)
    partitions: Sequence[OffsetDeleteRequestPartition] = f(Array(OffsetDeleteRequestPartition))


@attrs.frozen(kw_only=True)
class OffsetDeleteRequest:
    group_id: str = f(STRING)
    topics: Sequence[OffsetDeleteRequestTopic] = f(Array(OffsetDeleteRequestTopic))


@attrs.frozen(kw_only=True)
class OffsetDeleteResponsePartition:
    partition_index: int = f(INT32)
    error_code: int = f(INT16, default=0)


@attrs.frozen(kw_only=True)
class OffsetDeleteResponseTopic:
    name: str = f(STRING)
    partitions: Sequence[OffsetDeleteResponsePartition] = f(Array(OffsetDeleteResponsePartition))


@attrs.frozen(kw_only=True)
class OffsetDeleteResponse:
    error_code: int = f(INT16, default=0)
    throttle_time_ms: int = f(INT32, default=0)
    topics: Sequence[OffsetDeleteResponseTopic] = f(Array(OffsetDeleteResponseTopic), default=())


# --- DeleteGroups (key 42) --------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class DeleteGroupsRequest:
    groups_names: Sequence[str] = f(Array(STRING))


@attrs.frozen(kw_only=True)
class DeletableGroupResult:
    group_id: str = f(STRING)
    error_code: int = f(INT16, default=0)


@attrs.frozen(kw_only=True)
class DeleteGroupsResponse:
    throttle_time_ms: int = f(INT32, default=0)
    results: Sequence[DeletableGroupResult] = f(Array(DeletableGroupResult))


# --- ListGroups (key 16) ----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ListGroupsRequest:
    pass


@attrs.frozen(kw_only=True)
class ListedGroup:
    group_id: str = f(STRING)
    protocol_type: str = f(STRING, default="")


@attrs.frozen(kw_only=True)
class ListGroupsResponse:
    throttle_time_ms: int = f(INT32, v=(1, None), default=0)
    error_code: int = f(INT16, default=0)
    groups: Sequence[ListedGroup] = f(Array(ListedGroup), default=())


# --- DescribeGroups (key 15) ------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class DescribeGroupsRequest:
    groups: Sequence[str] = f(Array(STRING), default=())
    include_authorized_operations: bool = f(BOOL, v=(3, None), default=False)


@attrs.frozen(kw_only=True)
class DescribedGroupMember:
    member_id: str = f(STRING)
    client_id: str = f(STRING, default="")
    client_host: str = f(STRING, default="")
    member_metadata: bytes = f(BYTES, default=b"")
    member_assignment: bytes = f(BYTES, default=b"")


@attrs.frozen(kw_only=True)
class DescribedGroup:
    error_code: int = f(INT16, default=0)
    group_id: str = f(STRING)
    group_state: str = f(STRING, default="")
    protocol_type: str = f(STRING, default="")
    protocol_data: str = f(STRING, default="")
    members: Sequence[DescribedGroupMember] = f(Array(DescribedGroupMember), default=())
    authorized_operations: int = f(INT32, v=(3, None), default=-2147483648)


@attrs.frozen(kw_only=True)
class DescribeGroupsResponse:
    throttle_time_ms: int = f(INT32, v=(1, None), default=0)
    groups: Sequence[DescribedGroup] = f(Array(DescribedGroup))


# --- SaslHandshake (key 17) and SaslAuthenticate (key 36) -------------------------------------


@attrs.frozen(kw_only=True)
class SaslHandshakeRequest:
    mechanism: str = f(STRING)


@attrs.frozen(kw_only=True)
class SaslHandshakeResponse:
    error_code: int = f(INT16, default=0)
    mechanisms: Sequence[str] = f(Array(STRING), default=())


@attrs.frozen(kw_only=True)
class SaslAuthenticateRequest:
    auth_bytes: bytes = f(BYTES)


@attrs.frozen(kw_only=True)
class SaslAuthenticateResponse:
    error_code: int = f(INT16, default=0)
    error_message: str | None = f(STRING, null=(0, None), default=None)
    auth_bytes: bytes = f(BYTES, default=b"")
    session_lifetime_ms: int = f(INT64, v=(1, None), default=0)
