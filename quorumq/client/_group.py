"""Group membership for the consumer: Kafka's classic group protocol, client side.

Theory of operation (Kafka's ``ConsumerCoordinator``, eager rebalancing):

1. **FindCoordinator** (key type group) names the broker that coordinates the group; every
   later group request goes there. ``COORDINATOR_NOT_AVAILABLE``, ``NOT_COORDINATOR`` or a lost
   connection sends us back to this step (with ``retry_backoff_ms`` between attempts).
2. **JoinGroup** with one protocol per assignor (its name and the member's
   :class:`~quorumq.client._consumer_protocol.Subscription` bytes). JoinGroup v4+ first answers
   ``MEMBER_ID_REQUIRED`` with the id to rejoin with. The answer names the generation, the chosen
   protocol and the leader; only the leader gets every member's subscription.
3. **SyncGroup**: the leader runs the chosen assignor over the partition counts it learns from
   Metadata and sends every member's assignment; everyone gets their own back.
4. **Heartbeat** every ``heartbeat_interval_ms`` while Stable. ``REBALANCE_IN_PROGRESS``,
   ``ILLEGAL_GENERATION`` or ``UNKNOWN_MEMBER_ID`` mean "rejoin" (the last two also forget the
   member id / generation). :meth:`GroupMember.heartbeat` raises the typed error; the consumer
   flips to rejoin.
5. **OffsetCommit** / **OffsetFetch** carry committed offsets (generation -1 and an empty member
   id for a consumer that uses ``assign`` with a group id); **LeaveGroup** on close.

Nothing here holds a task: the consumer owns the heartbeat loop and calls these methods.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import trio

from quorumq import protocol as p
from quorumq.client._assignors import (
    MemberSubscription,
    PartitionAssignor,
    RangeAssignor,
    RoundRobinAssignor,
)
from quorumq.client._consumer_protocol import (
    CONSUMER_PROTOCOL_TYPE,
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
)
from quorumq.client._metadata import BrokerAddress, ClusterMetadata, TopicPartition, raise_for_code
from quorumq.errors import (
    CoordinatorNotAvailable,
    ErrorCode,
    QuorumqError,
    RebalanceInProgress,
)

__all__ = ["ASSIGNORS", "GroupGeneration", "GroupMember", "assignor_for"]

log = logging.getLogger(__name__)

ASSIGNORS: dict[str, type[RangeAssignor] | type[RoundRobinAssignor]] = {
    "range": RangeAssignor,
    "roundrobin": RoundRobinAssignor,
}

_COORDINATOR_ERRORS = frozenset(
    {
        ErrorCode.COORDINATOR_NOT_AVAILABLE,
        ErrorCode.NOT_COORDINATOR,
        ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
    }
)
_REJOIN_ERRORS = frozenset(
    {
        ErrorCode.REBALANCE_IN_PROGRESS,
        ErrorCode.ILLEGAL_GENERATION,
        ErrorCode.UNKNOWN_MEMBER_ID,
        ErrorCode.MEMBER_ID_REQUIRED,
    }
)
NO_GENERATION = -1


def assignor_for(name: str | PartitionAssignor) -> PartitionAssignor:
    """The assignor named ``"range"`` or ``"roundrobin"`` (or the one passed)."""
    if not isinstance(name, str):
        return name
    try:
        return ASSIGNORS[name]()
    except KeyError:
        raise ValueError(f"unknown assignor {name!r} (known: {sorted(ASSIGNORS)})") from None


@attrs.frozen
class GroupGeneration:
    """The outcome of one join + sync: who we are in which generation, and what we read."""

    generation_id: int
    member_id: str
    protocol_name: str
    leader_id: str
    assignment: tuple[TopicPartition, ...]

    @property
    def is_leader(self) -> bool:
        return self.member_id == self.leader_id


class GroupMember:
    """One member of a consumer group, talking to its coordinator.

    Args:
        metadata: the consumer's cluster metadata (connections and partition counts).
        group_id: the group.
        assignors: protocols offered in JoinGroup, preferred first.
        session_timeout_ms: how long the coordinator waits for a heartbeat before evicting us.
        rebalance_timeout_ms: how long the coordinator waits for every member to rejoin.
        heartbeat_interval_ms: the consumer's heartbeat period (a third of the session).
        group_instance_id: a static member's id (KIP-345), or None.
    """

    def __init__(
        self,
        metadata: ClusterMetadata,
        group_id: str,
        *,
        assignors: Sequence[PartitionAssignor] = (RangeAssignor(),),
        session_timeout_ms: int = 10_000,
        rebalance_timeout_ms: int = 30_000,
        heartbeat_interval_ms: int = 3_000,
        group_instance_id: str | None = None,
        retry_backoff_ms: int = 100,
        request_timeout_ms: int = 30_000,
        max_attempts: int = 20,
    ) -> None:
        if not group_id:
            raise ValueError("group_id must not be empty")
        self.metadata = metadata
        self.group_id = group_id
        self.assignors = list(assignors)
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.group_instance_id = group_instance_id
        self.retry_backoff_ms = retry_backoff_ms
        self.request_timeout_ms = request_timeout_ms
        self.max_attempts = max_attempts
        self.member_id = ""
        self.generation: GroupGeneration | None = None
        self.coordinator_id: int | None = None
        self.needs_rejoin = True
        """True until a join succeeds, and again once the coordinator says the group moved on."""

    # --- coordinator -------------------------------------------------------------------------

    async def find_coordinator(self) -> int:
        """Asks FindCoordinator until a coordinator is named; returns its node id.

        Raises:
            CoordinatorNotAvailable: still none after ``max_attempts`` tries.
            UnsupportedVersion: the broker does not serve FindCoordinator.
            ConnectionError: no broker answers.
        """
        last: QuorumqError | None = None
        for attempt in range(self.max_attempts):
            if attempt:
                await trio.sleep(self.retry_backoff_ms / 1000)
            node_id, conn = await self.metadata.any_connection()
            version = conn.version_for(p.ApiKey.FIND_COORDINATOR)
            try:
                response = await conn.request(
                    p.ApiKey.FIND_COORDINATOR,
                    version,
                    p.FindCoordinatorRequest(key=self.group_id, key_type=p.COORDINATOR_GROUP),
                    timeout_s=self.request_timeout_ms / 1000,
                )
            except ConnectionError:
                self.metadata.close_connection(node_id)
                continue
            if response.error_code == ErrorCode.NONE:
                self.metadata.brokers.setdefault(
                    response.node_id,
                    BrokerAddress(response.node_id, response.host, response.port),
                )
                self.coordinator_id = response.node_id
                return response.node_id
            try:
                raise_for_code(response.error_code, f"FindCoordinator for {self.group_id!r}")
            except QuorumqError as exc:
                if response.error_code not in _COORDINATOR_ERRORS:
                    raise
                last = exc
        raise CoordinatorNotAvailable(
            f"no coordinator for group {self.group_id!r} after {self.max_attempts} tries: {last}"
        )

    def coordinator_dead(self) -> None:
        """Forgets the coordinator (after NOT_COORDINATOR or a lost connection)."""
        if self.coordinator_id is not None:
            self.metadata.close_connection(self.coordinator_id)
        self.coordinator_id = None

    async def _request(self, api_key: p.ApiKey, build: Any) -> Any:
        """Sends a group request to the coordinator, finding it first; ``build(version)`` makes
        the request. Coordinator moves and lost connections are retried; the response's own
        error code is the caller's to read."""
        for attempt in range(self.max_attempts):
            if attempt:
                await trio.sleep(self.retry_backoff_ms / 1000)
            node_id = self.coordinator_id
            if node_id is None:
                node_id = await self.find_coordinator()
            try:
                conn = await self.metadata.connection(node_id)
                version = conn.version_for(api_key)
                timeout_s = self.request_timeout_ms / 1000
                if api_key == p.ApiKey.JOIN_GROUP:
                    timeout_s += self.rebalance_timeout_ms / 1000
                response = await conn.request(api_key, version, build(version), timeout_s=timeout_s)
            except ConnectionError as exc:
                log.debug("%s to coordinator %s failed: %s", api_key.name, node_id, exc)
                self.coordinator_dead()
                continue
            code = _error_code_of(response)
            if code in _COORDINATOR_ERRORS:
                self.coordinator_dead()
                continue
            return response
        raise CoordinatorNotAvailable(f"group {self.group_id!r}: coordinator kept failing")

    # --- membership --------------------------------------------------------------------------

    async def join(self, topics: Iterable[str]) -> GroupGeneration:
        """Joins (or rejoins) the group subscribed to ``topics`` and returns our assignment.

        Retries MEMBER_ID_REQUIRED, REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID and
        ILLEGAL_GENERATION (forgetting the member id when the coordinator does not know it).

        Raises:
            InconsistentGroupProtocol, InvalidGroupId, GroupAuthorizationFailed, ...: typed.
            CoordinatorNotAvailable: no coordinator after ``max_attempts`` tries.
        """
        topic_list = sorted(set(topics))
        self.metadata.add_topics(topic_list)
        self.generation = None
        for attempt in range(self.max_attempts):
            if attempt:
                await trio.sleep(self.retry_backoff_ms / 1000)
            join = await self._request(
                p.ApiKey.JOIN_GROUP,
                lambda _v: p.JoinGroupRequest(
                    group_id=self.group_id,
                    session_timeout_ms=self.session_timeout_ms,
                    rebalance_timeout_ms=self.rebalance_timeout_ms,
                    member_id=self.member_id,
                    group_instance_id=self.group_instance_id,
                    protocol_type=CONSUMER_PROTOCOL_TYPE,
                    protocols=[
                        p.JoinGroupRequestProtocol(name=a.name, metadata=_encode_sub(a, topic_list))
                        for a in self.assignors
                    ],
                ),
            )
            if join.error_code == ErrorCode.MEMBER_ID_REQUIRED:
                self.member_id = join.member_id
                continue
            if join.error_code == ErrorCode.UNKNOWN_MEMBER_ID:
                self.member_id = ""
                continue
            if join.error_code in _REJOIN_ERRORS:
                continue
            raise_for_code(join.error_code, f"JoinGroup {self.group_id!r}")
            self.member_id = join.member_id
            assignments: dict[str, bytes] = {}
            if join.leader == join.member_id:
                assignments = await self._assign(join)
            sync_request = p.SyncGroupRequest(
                group_id=self.group_id,
                generation_id=join.generation_id,
                member_id=self.member_id,
                group_instance_id=self.group_instance_id,
                assignments=[
                    p.SyncGroupRequestAssignment(member_id=m, assignment=a)
                    for m, a in assignments.items()
                ],
            )
            sync = await self._request(p.ApiKey.SYNC_GROUP, lambda _v, r=sync_request: r)
            if sync.error_code == ErrorCode.UNKNOWN_MEMBER_ID:
                self.member_id = ""
                continue
            if sync.error_code in _REJOIN_ERRORS:
                continue
            raise_for_code(sync.error_code, f"SyncGroup {self.group_id!r}")
            assignment = decode_assignment(sync.assignment)
            self.generation = GroupGeneration(
                generation_id=join.generation_id,
                member_id=self.member_id,
                protocol_name=join.protocol_name,
                leader_id=join.leader,
                assignment=tuple(TopicPartition(t, i) for t, i in assignment.partitions()),
            )
            log.info(
                "joined group %s generation %d as %s: %s",
                self.group_id,
                join.generation_id,
                self.member_id,
                self.generation.assignment,
            )
            self.needs_rejoin = False
            return self.generation
        raise RebalanceInProgress(f"group {self.group_id!r}: no stable generation after retries")

    async def _assign(self, join: p.JoinGroupResponse) -> dict[str, bytes]:
        """The leader's part: decode subscriptions, count partitions, run the assignor."""
        assignor = next((a for a in self.assignors if a.name == join.protocol_name), None)
        if assignor is None:
            raise QuorumqError(
                f"coordinator chose protocol {join.protocol_name!r} we did not offer"
            )
        members = [
            MemberSubscription(m.member_id, decode_subscription(m.metadata), m.group_instance_id)
            for m in join.members
        ]
        topics = sorted({t for m in members for t in m.subscription.topics})
        self.metadata.add_topics(topics)
        partitions_per_topic: dict[str, int] = {}
        for topic in topics:
            try:
                partitions_per_topic[topic] = (await self.metadata.topic(topic)).num_partitions
            except QuorumqError as exc:
                log.warning(
                    "group %s: topic %s left out of the assignment: %s", self.group_id, topic, exc
                )
        result = assignor.assign(partitions_per_topic, members)
        return {member_id: encode_assignment(a) for member_id, a in result.items()}

    async def heartbeat(self) -> None:
        """Sends one Heartbeat for the current generation.

        Raises:
            RebalanceInProgress, IllegalGeneration, UnknownMemberId, FencedInstanceId: the
                member must rejoin (:attr:`needs_rejoin`). During a rebalance the generation
                stays valid for one last commit; after ILLEGAL_GENERATION or UNKNOWN_MEMBER_ID it
                is forgotten (and an unknown member also loses its id).
        """
        generation = self.generation
        if generation is None:
            raise RebalanceInProgress(f"group {self.group_id!r}: not a member yet")
        response = await self._request(
            p.ApiKey.HEARTBEAT,
            lambda _v: p.HeartbeatRequest(
                group_id=self.group_id,
                generation_id=generation.generation_id,
                member_id=generation.member_id,
                group_instance_id=self.group_instance_id,
            ),
        )
        self._check_membership(response.error_code, "Heartbeat")

    def _check_membership(self, code: int, what: str) -> None:
        if code == ErrorCode.NONE:
            return
        if code in _REJOIN_ERRORS or code == ErrorCode.FENCED_INSTANCE_ID:
            self.needs_rejoin = True
        if code in (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.ILLEGAL_GENERATION):
            self.generation = None
            if code == ErrorCode.UNKNOWN_MEMBER_ID:
                self.member_id = ""
        raise_for_code(code, f"{what} {self.group_id!r}")

    async def leave(self) -> None:
        """Sends LeaveGroup so the group rebalances now rather than after the session timeout.

        Errors are logged, not raised: leaving is best effort, as in Kafka.
        """
        if not self.member_id:
            return
        member_id = self.member_id
        try:
            response = await self._request(
                p.ApiKey.LEAVE_GROUP,
                lambda v: p.LeaveGroupRequest(
                    group_id=self.group_id,
                    member_id=member_id if v < 3 else "",
                    members=[
                        p.LeaveGroupMember(
                            member_id=member_id, group_instance_id=self.group_instance_id
                        )
                    ]
                    if v >= 3
                    else [],
                ),
            )
            if response.error_code:
                log.info("LeaveGroup %s: error %d", self.group_id, response.error_code)
        except (ConnectionError, QuorumqError) as exc:
            log.info("LeaveGroup %s failed: %s", self.group_id, exc)
        self.member_id = ""
        self.generation = None
        self.needs_rejoin = True

    # --- offsets -----------------------------------------------------------------------------

    async def commit(self, offsets: Mapping[TopicPartition, int], *, in_group: bool = True) -> None:
        """Commits ``offsets`` (the next offset to read, per partition) with OffsetCommit.

        Args:
            in_group: False for a consumer that ``assign``-ed partitions itself (generation -1,
                no member id), True to commit as the current generation's member.

        Raises:
            RebalanceInProgress, IllegalGeneration, UnknownMemberId: the generation ended; the
                commit was refused (rejoin, then consume again from the committed offsets).
            QuorumqError: another per-partition error (the first one), typed.
        """
        if not offsets:
            return
        generation = self.generation if in_group else None
        if in_group and generation is None:
            raise RebalanceInProgress(f"group {self.group_id!r}: commit outside a generation")
        by_topic: dict[str, list[p.OffsetCommitRequestPartition]] = {}
        for tp, offset in sorted(offsets.items()):
            by_topic.setdefault(tp.topic, []).append(
                p.OffsetCommitRequestPartition(
                    partition_index=tp.partition,
                    committed_offset=offset,
                    committed_leader_epoch=-1,
                    committed_metadata="",
                )
            )
        response = await self._request(
            p.ApiKey.OFFSET_COMMIT,
            lambda _v: p.OffsetCommitRequest(
                group_id=self.group_id,
                generation_id=generation.generation_id if generation else NO_GENERATION,
                member_id=generation.member_id if generation else "",
                group_instance_id=self.group_instance_id if generation else None,
                topics=[
                    p.OffsetCommitRequestTopic(name=t, partitions=ps) for t, ps in by_topic.items()
                ],
            ),
        )
        for topic in response.topics:
            for part in topic.partitions:
                if part.error_code in _COORDINATOR_ERRORS:
                    self.coordinator_dead()
                self._check_membership(
                    part.error_code, f"OffsetCommit {topic.name}-{part.partition_index}"
                )

    async def fetch_committed(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, int | None]:
        """Returns the committed offset of each partition (None where the group has none).

        Raises:
            QuorumqError: the response's error, typed.
        """
        by_topic: dict[str, list[int]] = {}
        for tp in sorted(set(partitions)):
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        if not by_topic:
            return {}
        response = await self._request(
            p.ApiKey.OFFSET_FETCH,
            lambda _v: p.OffsetFetchRequest(
                group_id=self.group_id,
                topics=[
                    p.OffsetFetchRequestTopic(name=t, partition_indexes=ps)
                    for t, ps in by_topic.items()
                ],
            ),
        )
        raise_for_code(response.error_code, f"OffsetFetch {self.group_id!r}")
        out: dict[TopicPartition, int | None] = {}
        for topic in response.topics:
            for part in topic.partitions:
                raise_for_code(part.error_code, f"OffsetFetch {topic.name}-{part.partition_index}")
                tp = TopicPartition(topic.name, part.partition_index)
                out[tp] = part.committed_offset if part.committed_offset >= 0 else None
        return out


def _encode_sub(assignor: PartitionAssignor, topics: list[str]) -> bytes:
    return encode_subscription(assignor.metadata(topics))


def _error_code_of(response: Any) -> int:
    """The top-level error code of a group response (OffsetCommit has only per-partition ones;
    OffsetFetch v1 likewise: take the first)."""
    code = getattr(response, "error_code", None)
    if code:
        return int(code)
    for topic in getattr(response, "topics", ()) or ():
        for part in topic.partitions:
            if part.error_code:
                return int(part.error_code)
    return int(code or 0)
