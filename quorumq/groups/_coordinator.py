"""The classic group coordinator as a pure state machine (Kafka's ``GroupCoordinator``).

Theory of operation
-------------------
A group moves through Kafka's states::

    Empty ──join──▶ PreparingRebalance ──all joined / rebalance timeout──▶ CompletingRebalance
      ▲                   ▲      │ (no member left)                              │ leader's
      │                   │      ▼                                               │ SyncGroup
      └──── last member ──┴── Stable ◀───────────── assignment written ──────────┘  written
            leaves              │ join with new metadata, leave, session expiry ─▶ Preparing...

    Dead: the group was removed (unloaded, deleted after its offsets expired).

Each completed join starts a new **generation** (``generation_id`` + 1). Members are identified by
``f"{client_id}-{uuid}"`` ids the coordinator makes up; the first member to join a group leads it
and computes the assignment; static members (KIP-345) also carry a ``group.instance.id``.

Kafka answers JoinGroup and SyncGroup *later*: a JoinGroup waits until every member rejoined (or
the rebalance timeout passes), a SyncGroup waits for the leader's assignment and for that
assignment to be written to ``__consumer_offsets``. Sans-I/O, that becomes **handles**: every
JoinGroup, SyncGroup, LeaveGroup and OffsetCommit call returns a :class:`Step` whose ``handle``
names that request, plus every :class:`Completion` now due (for that request or earlier, still
pending ones) and every :class:`Append` the shell must write. The shell:

1. delivers each completion's result (the shell encodes it as the Kafka response) to the connection that sent the request with that
   handle (and drops it if the connection is gone);
2. appends each ``Append.records`` to ``__consumer_offsets`` partition ``Append.partition``
   (acks=all), then calls :meth:`GroupCoordinator.on_append_done` with the outcome. Answers that
   depend on a write (a commit, the leader's sync) are completed only then, so an acknowledged
   commit is always in the replicated log first;
3. calls :meth:`GroupCoordinator.tick` at :meth:`GroupCoordinator.next_deadline_ms` at the latest
   (session expiry, rebalance timeouts, the initial rebalance delay, offset expiry).

Errors: a request refused before anything changed raises the :class:`QuorumqError` Kafka would
answer with (``UnknownMemberId``, ``IllegalGeneration``, ``RebalanceInProgress``...), so the
dispatcher writes ``exc.code``. Outcomes decided later come back inside a result's ``error``
field, as does ``MEMBER_ID_REQUIRED``, whose result carries the member id to rejoin with.

Randomness (member ids) comes from the injected ``random.Random``; time from ``now_ms``.
"""

from __future__ import annotations

import enum
import random
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

import attrs

from quorumq.errors import (
    CoordinatorLoadInProgress,
    CoordinatorNotAvailable,
    ErrorCode,
    FencedInstanceId,
    GroupIdNotFound,
    IllegalGeneration,
    InconsistentGroupProtocol,
    InvalidGroupId,
    InvalidSessionTimeout,
    NonEmptyGroup,
    NotCoordinator,
    RebalanceInProgress,
    UnknownMemberId,
)
from quorumq.groups._loader import GroupStateLoader
from quorumq.groups._records import (
    DEFAULT_OFFSETS_PARTITIONS,
    GroupMetadataValue,
    MemberMetadataValue,
    OffsetAndMetadata,
    Record,
    group_metadata_record,
    group_tombstone,
    offset_commit_record,
    offset_tombstone,
    partition_for_group,
)
from quorumq.groups._types import TopicPartition

__all__ = [
    "Append",
    "Completion",
    "DeleteGroupResult",
    "GroupConfig",
    "GroupCoordinator",
    "GroupDescription",
    "GroupListing",
    "GroupResult",
    "GroupState",
    "JoinGroupMember",
    "JoinGroupResult",
    "LeaveGroupMemberResult",
    "LeaveGroupResult",
    "ListGroupsResult",
    "MemberDescription",
    "MemberIdentity",
    "OffsetCommitResult",
    "OffsetDeleteResult",
    "Step",
    "SyncGroupResult",
]


class GroupState(enum.Enum):
    """Kafka's classic group states; ``value`` is the name DescribeGroups and ListGroups use."""

    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


@attrs.frozen
class GroupConfig:
    """The broker's group settings, named after Kafka's ``group.*`` / ``offsets.*`` configs."""

    min_session_timeout_ms: int = 6_000  # group.min.session.timeout.ms
    max_session_timeout_ms: int = 1_800_000  # group.max.session.timeout.ms
    # group.initial.rebalance.delay.ms: a new group waits this long for more members before its
    # first generation, so three consumers starting together share one rebalance, not three.
    initial_rebalance_delay_ms: int = 3_000
    # A new member waiting in its first JoinGroup is dropped after this long (KAFKA-7610).
    new_member_join_timeout_ms: int = 300_000
    offset_metadata_max_bytes: int = 4_096  # offset.metadata.max.bytes
    offsets_retention_ms: int = 7 * 24 * 3600 * 1000  # offsets.retention.minutes
    offsets_retention_check_interval_ms: int = 600_000  # offsets.retention.check.interval.ms
    offsets_topic_num_partitions: int = DEFAULT_OFFSETS_PARTITIONS  # offsets.topic.num.partitions


# --- results and effects --------------------------------------------------------------------


@attrs.frozen
class JoinGroupMember:
    """One member in the leader's JoinGroup response: its metadata for the chosen protocol."""

    member_id: str
    group_instance_id: str | None
    metadata: bytes


@attrs.frozen
class JoinGroupResult:
    """A JoinGroup answer. ``members`` is filled only for the leader."""

    error: ErrorCode
    generation_id: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    member_id: str = ""
    members: tuple[JoinGroupMember, ...] = ()


@attrs.frozen
class SyncGroupResult:
    """A SyncGroup answer: this member's assignment bytes (ConsumerProtocol for consumers)."""

    error: ErrorCode
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


@attrs.frozen
class OffsetCommitResult:
    """An OffsetCommit answer: one error code per partition of the request."""

    errors: Mapping[TopicPartition, ErrorCode]


@attrs.frozen
class MemberIdentity:
    """A member named in LeaveGroup v3+ (v0-v2 name one member by id)."""

    member_id: str
    group_instance_id: str | None = None


@attrs.frozen
class LeaveGroupMemberResult:
    member_id: str
    group_instance_id: str | None
    error: ErrorCode


@attrs.frozen
class LeaveGroupResult:
    """A LeaveGroup answer. For v0-v2 (one member, no per-member list on the wire) the shell
    answers with ``members[0].error``; v3+ sends ``error`` and the list."""

    error: ErrorCode
    members: tuple[LeaveGroupMemberResult, ...]


@attrs.frozen
class DeleteGroupResult:
    """One group's DeleteGroups answer, once its tombstones are written."""

    error: ErrorCode


@attrs.frozen
class OffsetDeleteResult:
    """An OffsetDelete answer, once its tombstones are written: the group's error, and one
    per partition of the request."""

    error: ErrorCode
    errors: Mapping[TopicPartition, ErrorCode]


GroupResult = (
    JoinGroupResult
    | SyncGroupResult
    | OffsetCommitResult
    | LeaveGroupResult
    | DeleteGroupResult
    | OffsetDeleteResult
)


@attrs.frozen
class Completion:
    """The answer to the request that was given ``handle``."""

    handle: int
    result: GroupResult


@attrs.frozen
class Append:
    """Records to append (in order, acks=all) to ``__consumer_offsets`` partition ``partition``.

    When the append finished (or failed), the shell calls
    ``on_append_done(append_id, error, now_ms)``; answers that wait on it are released then.
    """

    append_id: int
    partition: int
    records: tuple[Record, ...]


@attrs.frozen
class Step:
    """What one call to the coordinator decided.

    ``handle`` names the request the call made (None for :meth:`GroupCoordinator.tick` and
    :meth:`GroupCoordinator.on_append_done`); its answer is among ``completions`` if it is due
    now, else it comes in a later step. Invariant: each handle is completed exactly once.
    """

    handle: int | None = None
    completions: tuple[Completion, ...] = ()
    appends: tuple[Append, ...] = ()

    @property
    def result(self) -> GroupResult | None:
        """This request's own answer if it is already due, else None (it is pending)."""
        return self.result_for(self.handle) if self.handle is not None else None

    def result_for(self, handle: int) -> GroupResult | None:
        """Returns the completion for ``handle`` in this step, or None."""
        for completion in self.completions:
            if completion.handle == handle:
                return completion.result
        return None


@attrs.frozen
class MemberDescription:
    """A member as DescribeGroups shows it; metadata and assignment only when Stable."""

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


@attrs.frozen
class GroupDescription:
    """DescribeGroups for one group. An unknown group is described as ``Dead`` with no members,
    as Kafka does."""

    group_id: str
    state: GroupState
    protocol_type: str
    protocol_name: str
    members: tuple[MemberDescription, ...]
    generation_id: int = -1
    leader: str | None = None


@attrs.frozen
class GroupListing:
    group_id: str
    protocol_type: str
    state: GroupState


@attrs.frozen
class ListGroupsResult:
    """ListGroups: ``COORDINATOR_LOAD_IN_PROGRESS`` with a partial list while loading."""

    error: ErrorCode
    groups: tuple[GroupListing, ...]


# --- internal state ---------------------------------------------------------------------------


@attrs.define(eq=False)
class _Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    protocols: tuple[tuple[str, bytes], ...]
    last_heartbeat_ms: int
    assignment: bytes = b""
    join_handle: int | None = None  # set while a JoinGroup waits for the rebalance
    sync_handle: int | None = None  # set while a SyncGroup waits for the assignment
    is_new: bool = True  # joined in this rebalance; dropped by new_member_join_timeout_ms

    def metadata(self, protocol_name: str | None) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol_name:
                return metadata
        return b""

    def matches(self, protocols: Sequence[tuple[str, bytes]]) -> bool:
        return tuple((n, bytes(m)) for n, m in protocols) == self.protocols

    def vote(self, candidates: set[str]) -> str:
        for name, _ in self.protocols:
            if name in candidates:
                return name
        raise AssertionError("a member of the group supports none of its protocols")


@attrs.define(eq=False)
class _Group:
    group_id: str
    state_timestamp_ms: int
    state: GroupState = GroupState.EMPTY
    generation_id: int = 0
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str | None = None
    # Insertion-ordered: the first member is the leader's successor when the leader leaves.
    members: dict[str, _Member] = attrs.Factory(dict)
    # Member ids handed out with MEMBER_ID_REQUIRED (KIP-394), with their expiry deadline.
    pending_members: dict[str, int] = attrs.Factory(dict)
    static_members: dict[str, str] = attrs.Factory(dict)  # group.instance.id -> member id
    offsets: dict[TopicPartition, OffsetAndMetadata] = attrs.Factory(dict)
    pending_offset_appends: int = 0
    join_deadline_ms: int | None = None
    # While the initial delayed join of a new group runs: how much of the rebalance timeout is
    # left to extend it with. None outside it.
    initial_remaining_ms: int | None = None
    new_member_added: bool = False
    sync_append_id: int | None = None  # the leader's assignment write in flight
    # Members of the current generation that have not sent SyncGroup yet, and when they will be
    # removed for it (Kafka's DelayedSync: one rebalance timeout after the join completed).
    pending_sync: set[str] = attrs.Factory(set)
    sync_deadline_ms: int | None = None

    def has_all_members_joined(self) -> bool:
        return not self.pending_members and all(
            m.join_handle is not None for m in self.members.values()
        )

    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def supports(self, protocol_type: str, protocols: Sequence[tuple[str, bytes]]) -> bool:
        """Kafka's ``supportsProtocols``: any type for an empty group, else the same type and at
        least one protocol every member supports."""
        if not protocol_type or not protocols:
            return False
        if not self.members:
            return True
        if protocol_type != self.protocol_type:
            return False
        names = {name for name, _ in protocols}
        for member in self.members.values():
            names &= {name for name, _ in member.protocols}
        return bool(names)

    def select_protocol(self) -> str:
        """Kafka's ``selectProtocol``: among protocols every member supports, the one most members
        list first among those; ties go to the earliest member's choice (deterministic)."""
        members = list(self.members.values())
        candidates = {name for name, _ in members[0].protocols}
        for member in members[1:]:
            candidates &= {name for name, _ in member.protocols}
        votes = [m.vote(candidates) for m in members]
        counts = Counter(votes)
        best = max(counts.values())
        return next(v for v in votes if counts[v] == best)

    def transition(self, state: GroupState, now_ms: int) -> None:
        self.state = state
        self.state_timestamp_ms = now_ms


@attrs.define(eq=False)
class _OffsetAppend:
    group_id: str
    handle: int
    values: dict[TopicPartition, OffsetAndMetadata]
    errors: dict[TopicPartition, ErrorCode]


@attrs.define(eq=False)
class _SyncAppend:
    group_id: str
    generation_id: int
    assignments: dict[str, bytes]


@attrs.define(eq=False)
class _DeleteAppend:
    handle: int
    offsets: Mapping[TopicPartition, ErrorCode] | None = None
    """OffsetDelete's per-partition answers (None: a DeleteGroups)."""


@attrs.define(eq=False)
class _Effects:
    handle: int | None
    completions: list[Completion] = attrs.Factory(list)
    appends: list[Append] = attrs.Factory(list)

    def complete(self, handle: int, result: GroupResult) -> None:
        self.completions.append(Completion(handle, result))

    def step(self) -> Step:
        return Step(self.handle, tuple(self.completions), tuple(self.appends))


# Kafka's GroupMetadataManager maps a failed append of group metadata / offsets to these.
_APPEND_ERROR_MAP = {
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_ENOUGH_REPLICAS: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.REQUEST_TIMED_OUT: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_LEADER_OR_FOLLOWER: ErrorCode.NOT_COORDINATOR,
    ErrorCode.KAFKA_STORAGE_ERROR: ErrorCode.NOT_COORDINATOR,
    ErrorCode.FENCED_LEADER_EPOCH: ErrorCode.NOT_COORDINATOR,
}
_TOO_LARGE = {ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.RECORD_LIST_TOO_LARGE}


def _map_append_error(error: ErrorCode, *, offsets: bool) -> ErrorCode:
    if error in _TOO_LARGE:
        return ErrorCode.INVALID_COMMIT_OFFSET_SIZE if offsets else ErrorCode.UNKNOWN_SERVER_ERROR
    return _APPEND_ERROR_MAP.get(error, error)


# --- the coordinator ----------------------------------------------------------------------------


@attrs.define(eq=False)
class GroupCoordinator:
    """Every classic group whose ``__consumer_offsets`` partition this broker leads.

    The shell loads a partition when it becomes its leader (:meth:`begin_load`,
    :meth:`complete_load`) and unloads it when it stops being leader (:meth:`unload`). Requests
    for a group of any other partition raise :class:`NotCoordinator`; during a load,
    :class:`CoordinatorLoadInProgress`.
    """

    config: GroupConfig = attrs.Factory(GroupConfig)
    rng: random.Random = attrs.Factory(random.Random)
    _groups: dict[str, _Group] = attrs.field(factory=dict, init=False)
    _active: set[int] = attrs.field(factory=set, init=False)
    _loading: set[int] = attrs.field(factory=set, init=False)
    _next_handle: int = attrs.field(default=1, init=False)
    _next_append: int = attrs.field(default=1, init=False)
    _appends: dict[int, tuple[int, _OffsetAppend | _SyncAppend | None]] = attrs.field(
        factory=dict, init=False
    )
    _next_cleanup_ms: int | None = attrs.field(default=None, init=False)

    # --- ownership ----------------------------------------------------------------------------

    def partition_for(self, group_id: str) -> int:
        """Returns the ``__consumer_offsets`` partition whose leader coordinates ``group_id``."""
        return partition_for_group(group_id, self.config.offsets_topic_num_partitions)

    @property
    def active_partitions(self) -> frozenset[int]:
        return frozenset(self._active)

    def begin_load(self, partition: int) -> Step:
        """Marks ``partition`` as loading: its groups answer COORDINATOR_LOAD_IN_PROGRESS.

        Groups of the partition still in memory (a reload without an unload) are dropped first;
        the returned step answers their waiting requests NOT_COORDINATOR, as :meth:`unload`.
        """
        step = self.unload(partition)
        self._loading.add(partition)
        return step

    def complete_load(self, partition: int, loader: GroupStateLoader, now_ms: int) -> None:
        """Installs the groups of ``partition`` rebuilt by ``loader`` and starts serving them.

        A group stored with members comes back Stable in its generation, so members keep
        heartbeating and committing without a rebalance; their session timers restart now.
        A group with offsets but no metadata (standalone commits) comes back Empty.
        """
        for group_id in loader.group_ids():
            if self.partition_for(group_id) != partition:
                continue
            group = _Group(group_id, now_ms)
            stored = loader.groups.get(group_id)
            if stored is not None:
                group.generation_id = stored.generation_id
                group.protocol_type = stored.protocol_type or None
                group.protocol_name = stored.protocol_name
                group.leader_id = stored.leader
                if stored.current_state_timestamp_ms >= 0:
                    group.state_timestamp_ms = stored.current_state_timestamp_ms
                for m in stored.members:
                    protocols = ((stored.protocol_name or "", m.subscription),)
                    member = _Member(
                        m.member_id,
                        m.group_instance_id,
                        m.client_id,
                        m.client_host,
                        m.rebalance_timeout_ms,
                        m.session_timeout_ms,
                        stored.protocol_type,
                        protocols,
                        last_heartbeat_ms=now_ms,
                        assignment=m.assignment,
                        is_new=False,
                    )
                    group.members[m.member_id] = member
                    if m.group_instance_id is not None:
                        group.static_members[m.group_instance_id] = m.member_id
                if group.members:
                    group.state = GroupState.STABLE
                    if group.leader_id not in group.members:
                        group.leader_id = next(iter(group.members))
            group.offsets = dict(loader.offsets.get(group_id, {}))
            self._groups[group_id] = group
        self._loading.discard(partition)
        self._active.add(partition)

    def load_partition(
        self, partition: int, records: Iterable[Record] = (), now_ms: int = 0
    ) -> Step:
        """Loads ``partition`` in one call: replays ``records`` and starts serving it.

        Returns:
            :meth:`begin_load`'s step (empty unless the partition was already loaded).
        """
        step = self.begin_load(partition)
        loader = GroupStateLoader()
        loader.apply_all(records)
        self.complete_load(partition, loader, now_ms)
        return step

    def unload(self, partition: int) -> Step:
        """Stops coordinating the groups of ``partition`` (leadership moved away).

        Every request still waiting on one of them is answered NOT_COORDINATOR, so its client
        looks up the new coordinator; writes still in flight are forgotten.
        """
        fx = _Effects(None)
        self._active.discard(partition)
        self._loading.discard(partition)
        for group_id in [g for g in self._groups if self.partition_for(g) == partition]:
            group = self._groups.pop(group_id)
            group.state = GroupState.DEAD
            for member in group.members.values():
                self._answer_waiters(member, ErrorCode.NOT_COORDINATOR, fx)
        for append_id, (append_partition, pending) in list(self._appends.items()):
            if append_partition != partition:
                continue
            del self._appends[append_id]
            if isinstance(pending, _OffsetAppend):
                errors = dict.fromkeys(pending.values, ErrorCode.NOT_COORDINATOR)
                errors.update(pending.errors)
                fx.complete(pending.handle, OffsetCommitResult(errors))
        return fx.step()

    def _check_owned(self, group_id: str) -> None:
        partition = self.partition_for(group_id)
        if partition in self._loading:
            raise CoordinatorLoadInProgress(f"loading __consumer_offsets-{partition}")
        if partition not in self._active:
            raise NotCoordinator(f"group {group_id!r} lives on __consumer_offsets-{partition}")

    @staticmethod
    def _check_group_id(group_id: str) -> None:
        if not group_id:
            raise InvalidGroupId("the group id is empty")

    # --- JoinGroup ----------------------------------------------------------------------------

    def join_group(
        self,
        *,
        group_id: str,
        member_id: str,
        client_id: str,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocol_type: str,
        protocols: Sequence[tuple[str, bytes]],
        now_ms: int,
        group_instance_id: str | None = None,
        require_known_member_id: bool = False,
        client_host: str = "",
    ) -> Step:
        """Handles JoinGroup (v0-v5+): adds or updates a member and (re)starts a rebalance.

        Args:
            member_id: "" for a member joining for the first time.
            rebalance_timeout_ms: JoinGroup v0 has none: pass -1 (or the session timeout);
                the session timeout stands in for it, as in Kafka.
            protocols: ``(name, metadata)`` in the member's order of preference.
            require_known_member_id: JoinGroup v4+: a dynamic member without an id is answered
                MEMBER_ID_REQUIRED with its new id (KIP-394) instead of joining.

        Returns:
            A step whose ``handle`` is answered with a :class:`JoinGroupResult` when the
            generation completes (possibly in this very step).

        Raises:
            InvalidGroupId, NotCoordinator, CoordinatorLoadInProgress, InvalidSessionTimeout,
            UnknownMemberId, InconsistentGroupProtocol, FencedInstanceId,
            CoordinatorNotAvailable.
        """
        self._check_group_id(group_id)
        self._check_owned(group_id)
        cfg = self.config
        if not cfg.min_session_timeout_ms <= session_timeout_ms <= cfg.max_session_timeout_ms:
            raise InvalidSessionTimeout(
                f"session timeout {session_timeout_ms} ms outside "
                f"[{cfg.min_session_timeout_ms}, {cfg.max_session_timeout_ms}]"
            )
        if rebalance_timeout_ms < 0:
            rebalance_timeout_ms = session_timeout_ms  # JoinGroup v0 has no rebalance timeout
        protocols = tuple((name, bytes(metadata)) for name, metadata in protocols)
        group = self._groups.get(group_id)
        if group is None:
            if member_id:
                raise UnknownMemberId(f"group {group_id!r} does not exist")
            if not protocol_type or not protocols:
                raise InconsistentGroupProtocol("a member must name a protocol type and protocols")
            group = _Group(group_id, now_ms)
            self._groups[group_id] = group
        if group.state is GroupState.DEAD:
            raise CoordinatorNotAvailable(f"group {group_id!r} was just removed")
        if not group.supports(protocol_type, protocols):
            raise InconsistentGroupProtocol(
                f"{protocol_type}/{[n for n, _ in protocols]} shares no protocol with the group"
            )
        fx = _Effects(self._new_handle())
        assert fx.handle is not None
        args = (
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            protocol_type,
            protocols,
        )
        if not member_id:
            new_id = f"{client_id}-{uuid.UUID(int=self.rng.getrandbits(128), version=4)}"
            if group_instance_id is not None:
                old_id = group.static_members.get(group_instance_id)
                if old_id is not None:
                    previous_leader = group.leader_id
                    member = self._replace_static_member(group, old_id, new_id, fx)
                    if group.state is GroupState.STABLE and member.matches(protocols):
                        self._rejoin_static_member_in_place(
                            group, member, previous_leader, fx, now_ms
                        )
                    else:
                        self._update_member_and_rebalance(group, member, args, fx, now_ms)
                else:
                    self._add_member_and_rebalance(
                        group, new_id, group_instance_id, args, fx, now_ms
                    )
            elif require_known_member_id:
                group.pending_members[new_id] = now_ms + session_timeout_ms
                fx.complete(
                    fx.handle, JoinGroupResult(ErrorCode.MEMBER_ID_REQUIRED, member_id=new_id)
                )
            else:
                self._add_member_and_rebalance(group, new_id, None, args, fx, now_ms)
            return fx.step()

        if member_id in group.pending_members and group_instance_id is None:
            del group.pending_members[member_id]
            self._add_member_and_rebalance(group, member_id, None, args, fx, now_ms)
            return fx.step()
        self._check_static(group, member_id, group_instance_id)
        member = group.members.get(member_id)
        if member is None or group.state is GroupState.EMPTY:
            raise UnknownMemberId(f"{member_id!r} is not a member of {group_id!r}")
        if group.state is GroupState.PREPARING_REBALANCE:
            self._update_member_and_rebalance(group, member, args, fx, now_ms)
        elif group.state is GroupState.COMPLETING_REBALANCE and member.matches(protocols):
            # A retried JoinGroup whose answer was lost: hand out the same generation again.
            member.last_heartbeat_ms = now_ms
            fx.complete(fx.handle, self._join_result(group, member))
        elif group.state is GroupState.STABLE and (
            member.member_id != group.leader_id and member.matches(protocols)
        ):
            member.last_heartbeat_ms = now_ms
            fx.complete(fx.handle, self._join_result(group, member))
        else:
            # The leader rejoining (it may have seen a metadata change) or new metadata.
            self._update_member_and_rebalance(group, member, args, fx, now_ms)
        return fx.step()

    def _add_member_and_rebalance(
        self,
        group: _Group,
        member_id: str,
        group_instance_id: str | None,
        args: tuple[str, str, int, int, str, tuple[tuple[str, bytes], ...]],
        fx: _Effects,
        now_ms: int,
    ) -> None:
        client_id, client_host, rebalance_ms, session_ms, protocol_type, protocols = args
        member = _Member(
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_ms,
            session_ms,
            protocol_type,
            protocols,
            last_heartbeat_ms=now_ms,
            join_handle=fx.handle,
        )
        if group.state is GroupState.PREPARING_REBALANCE and group.generation_id == 0:
            group.new_member_added = True
        if not group.members:
            group.protocol_type = protocol_type
        group.members[member_id] = member
        if group.leader_id is None:
            group.leader_id = member_id
        if group_instance_id is not None:
            group.static_members[group_instance_id] = member_id
        self._maybe_prepare_rebalance(group, fx, now_ms)
        self._try_complete_join(group, fx, now_ms)

    def _update_member_and_rebalance(
        self,
        group: _Group,
        member: _Member,
        args: tuple[str, str, int, int, str, tuple[tuple[str, bytes], ...]],
        fx: _Effects,
        now_ms: int,
    ) -> None:
        _, _, rebalance_ms, session_ms, _, protocols = args
        if member.join_handle is not None and member.join_handle != fx.handle:
            # A second JoinGroup supersedes the first; its sender has given up on it.
            fx.complete(
                member.join_handle,
                JoinGroupResult(ErrorCode.REBALANCE_IN_PROGRESS, member_id=member.member_id),
            )
        member.protocols = protocols
        member.rebalance_timeout_ms = rebalance_ms
        member.session_timeout_ms = session_ms
        member.join_handle = fx.handle
        member.last_heartbeat_ms = now_ms
        self._maybe_prepare_rebalance(group, fx, now_ms)
        self._try_complete_join(group, fx, now_ms)

    def _replace_static_member(
        self, group: _Group, old_id: str, new_id: str, fx: _Effects
    ) -> _Member:
        """A static member restarted: its new member id takes over the old one's place, and any
        request the old incarnation still waits on is fenced (Kafka's ``replaceStaticMember``)."""
        member = group.members.pop(old_id)
        self._answer_waiters(member, ErrorCode.FENCED_INSTANCE_ID, fx)
        member.member_id = new_id
        group.members[new_id] = member
        assert member.group_instance_id is not None
        group.static_members[member.group_instance_id] = new_id
        if group.leader_id == old_id:
            group.leader_id = new_id
        if old_id in group.pending_sync:
            group.pending_sync.discard(old_id)
            group.pending_sync.add(new_id)
        return member

    @staticmethod
    def _sync_received(group: _Group, member_id: str) -> None:
        group.pending_sync.discard(member_id)
        if not group.pending_sync:
            group.sync_deadline_ms = None

    def _rejoin_static_member_in_place(
        self,
        group: _Group,
        member: _Member,
        previous_leader: str | None,
        fx: _Effects,
        now_ms: int,
    ) -> None:
        """KIP-345: a restarted static member with unchanged metadata takes its old place in a
        Stable group without a rebalance; its SyncGroup returns its old assignment.

        The answer names the *previous* leader id, so a restarted leader does not compute an
        assignment nobody would receive (Kafka does the same). The group is rewritten so that
        a coordinator loaded later knows the new member id.
        """
        assert fx.handle is not None
        member.last_heartbeat_ms = now_ms
        record = group_metadata_record(group.group_id, self._snapshot(group))
        self._append(group, (record,), None, fx)
        fx.complete(
            fx.handle,
            JoinGroupResult(
                ErrorCode.NONE,
                generation_id=group.generation_id,
                protocol_type=group.protocol_type,
                protocol_name=group.protocol_name,
                leader=previous_leader or "",
                member_id=member.member_id,
            ),
        )

    def _maybe_prepare_rebalance(self, group: _Group, fx: _Effects, now_ms: int) -> None:
        if group.state in (
            GroupState.STABLE,
            GroupState.COMPLETING_REBALANCE,
            GroupState.EMPTY,
        ):
            self._prepare_rebalance(group, fx, now_ms)

    def _prepare_rebalance(self, group: _Group, fx: _Effects, now_ms: int) -> None:
        if group.state is GroupState.COMPLETING_REBALANCE:
            self._reset_and_propagate_sync_error(group, ErrorCode.REBALANCE_IN_PROGRESS, fx)
        group.sync_append_id = None
        group.pending_sync.clear()
        group.sync_deadline_ms = None
        delay = self.config.initial_rebalance_delay_ms
        if group.state is GroupState.EMPTY and delay > 0:
            group.join_deadline_ms = now_ms + delay
            group.initial_remaining_ms = max(group.rebalance_timeout_ms() - delay, 0)
        else:
            group.join_deadline_ms = now_ms + group.rebalance_timeout_ms()
            group.initial_remaining_ms = None
        group.new_member_added = False
        group.transition(GroupState.PREPARING_REBALANCE, now_ms)

    def _try_complete_join(self, group: _Group, fx: _Effects, now_ms: int) -> None:
        if (
            group.state is GroupState.PREPARING_REBALANCE
            and group.initial_remaining_ms is None
            and group.has_all_members_joined()
        ):
            self._complete_join(group, fx, now_ms)

    def _complete_join(self, group: _Group, fx: _Effects, now_ms: int) -> None:
        """Kafka's ``onCompleteJoin``: drop dynamic members that did not rejoin, then start the
        next generation and answer every waiting JoinGroup."""
        for member in list(group.members.values()):
            if member.join_handle is None and member.group_instance_id is None:
                self._remove_member(group, member, fx)
        group.join_deadline_ms = None
        group.initial_remaining_ms = None
        group.new_member_added = False
        joined = [m for m in group.members.values() if m.join_handle is not None]
        if group.members and not joined:
            # Only static members that have not rejoined: wait another rebalance timeout for
            # them (or for their sessions to expire).
            group.join_deadline_ms = now_ms + group.rebalance_timeout_ms()
            return
        leader = group.members.get(group.leader_id or "")
        if leader is None or leader.join_handle is None:
            # Kafka's maybeElectNewJoinedLeader: the leader must be a member that rejoined.
            group.leader_id = joined[0].member_id if joined else None
        group.generation_id += 1
        if group.members:
            group.protocol_name = group.select_protocol()
            group.transition(GroupState.COMPLETING_REBALANCE, now_ms)
            group.pending_sync = set(group.members)
            group.sync_deadline_ms = now_ms + group.rebalance_timeout_ms()
        else:
            group.protocol_name = None
            group.leader_id = None
            group.transition(GroupState.EMPTY, now_ms)
            self._append(
                group, (group_metadata_record(group.group_id, self._snapshot(group)),), None, fx
            )
        for member in group.members.values():
            if member.join_handle is not None:
                fx.complete(member.join_handle, self._join_result(group, member))
                member.join_handle = None
            member.last_heartbeat_ms = now_ms
            member.is_new = False

    def _join_result(self, group: _Group, member: _Member) -> JoinGroupResult:
        members: tuple[JoinGroupMember, ...] = ()
        if member.member_id == group.leader_id:
            members = tuple(
                JoinGroupMember(m.member_id, m.group_instance_id, m.metadata(group.protocol_name))
                for m in group.members.values()
            )
        return JoinGroupResult(
            ErrorCode.NONE,
            generation_id=group.generation_id,
            protocol_type=group.protocol_type,
            protocol_name=group.protocol_name,
            leader=group.leader_id or "",
            member_id=member.member_id,
            members=members,
        )

    # --- SyncGroup ----------------------------------------------------------------------------

    def sync_group(
        self,
        *,
        group_id: str,
        generation_id: int,
        member_id: str,
        assignments: Mapping[str, bytes],
        now_ms: int,
        group_instance_id: str | None = None,
        protocol_type: str | None = None,
        protocol_name: str | None = None,
    ) -> Step:
        """Handles SyncGroup (v0-v5): the leader hands in every member's assignment, everyone
        receives their own.

        Args:
            assignments: ``{member_id: bytes}`` from the leader; ignored from others. Members
                the leader left out get empty bytes, as Kafka does.
            protocol_type, protocol_name: SyncGroup v5 checks them against the group's.

        Returns:
            A step whose ``handle`` is answered with a :class:`SyncGroupResult` once the
            leader's assignment is written (possibly already, if the group is Stable).

        Raises:
            InvalidGroupId, NotCoordinator, UnknownMemberId, IllegalGeneration,
            InconsistentGroupProtocol, FencedInstanceId, CoordinatorNotAvailable.
            RebalanceInProgress: in PreparingRebalance, and while the group's partition loads.
        """
        self._check_group_id(group_id)
        try:
            self._check_owned(group_id)
        except CoordinatorLoadInProgress:
            # The rebalance in flight was lost with the old coordinator; old clients do not expect
            # COORDINATOR_LOAD_IN_PROGRESS here, so tell them to rejoin (as Kafka does).
            raise RebalanceInProgress(f"group {group_id!r} is loading; rejoin") from None
        group = self._groups.get(group_id)
        if group is None:
            raise UnknownMemberId(f"group {group_id!r} does not exist")
        if group.state is GroupState.DEAD:
            raise CoordinatorNotAvailable(f"group {group_id!r} was just removed")
        self._check_static(group, member_id, group_instance_id)
        member = group.members.get(member_id)
        if member is None:
            raise UnknownMemberId(f"{member_id!r} is not a member of {group_id!r}")
        if generation_id != group.generation_id:
            raise IllegalGeneration(f"generation {generation_id} != {group.generation_id}")
        if protocol_type is not None and protocol_type != group.protocol_type:
            raise InconsistentGroupProtocol(f"protocol type {protocol_type!r}")
        if protocol_name is not None and protocol_name != group.protocol_name:
            raise InconsistentGroupProtocol(f"protocol {protocol_name!r}")
        if group.state is GroupState.EMPTY:
            raise UnknownMemberId(f"group {group_id!r} is empty")
        if group.state is GroupState.PREPARING_REBALANCE:
            raise RebalanceInProgress(f"group {group_id!r} is rebalancing")
        fx = _Effects(self._new_handle())
        assert fx.handle is not None
        member.last_heartbeat_ms = now_ms
        self._sync_received(group, member_id)
        if group.state is GroupState.STABLE:
            fx.complete(fx.handle, self._sync_result(group, member))
            return fx.step()
        # CompletingRebalance: wait for the leader's assignment to be written.
        if member.sync_handle is not None:
            fx.complete(member.sync_handle, SyncGroupResult(ErrorCode.REBALANCE_IN_PROGRESS))
        member.sync_handle = fx.handle
        if member_id == group.leader_id and group.sync_append_id is None:
            full = {m: bytes(assignments.get(m, b"")) for m in group.members}
            value = self._snapshot(group, full, now_ms)
            record = group_metadata_record(group.group_id, value)
            pending = _SyncAppend(group.group_id, group.generation_id, full)
            group.sync_append_id = self._append(group, (record,), pending, fx)
        return fx.step()

    def _sync_result(self, group: _Group, member: _Member) -> SyncGroupResult:
        return SyncGroupResult(
            ErrorCode.NONE, group.protocol_type, group.protocol_name, member.assignment
        )

    def _reset_and_propagate_sync_error(
        self, group: _Group, error: ErrorCode, fx: _Effects
    ) -> None:
        for member in group.members.values():
            member.assignment = b""
            if member.sync_handle is not None:
                fx.complete(member.sync_handle, SyncGroupResult(error))
                member.sync_handle = None

    # --- Heartbeat and LeaveGroup -------------------------------------------------------------

    def heartbeat(
        self,
        *,
        group_id: str,
        member_id: str,
        generation_id: int,
        now_ms: int,
        group_instance_id: str | None = None,
    ) -> None:
        """Handles Heartbeat (v0-v4): keeps the member's session alive.

        Raises:
            RebalanceInProgress: the member must rejoin (its session was still refreshed).
            InvalidGroupId, NotCoordinator, UnknownMemberId, IllegalGeneration,
            FencedInstanceId, CoordinatorNotAvailable. While the group's partition loads it
            returns quietly, as Kafka answers NONE then.
        """
        self._check_group_id(group_id)
        try:
            self._check_owned(group_id)
        except CoordinatorLoadInProgress:
            return  # Kafka answers NONE blindly while loading: the member is kept, not failed
        group = self._groups.get(group_id)
        if group is None:
            raise UnknownMemberId(f"group {group_id!r} does not exist")
        if group.state is GroupState.DEAD:
            raise CoordinatorNotAvailable(f"group {group_id!r} was just removed")
        self._check_static(group, member_id, group_instance_id)
        member = group.members.get(member_id)
        if member is None or group.state is GroupState.EMPTY:
            raise UnknownMemberId(f"{member_id!r} is not a member of {group_id!r}")
        if generation_id != group.generation_id:
            raise IllegalGeneration(f"generation {generation_id} != {group.generation_id}")
        member.last_heartbeat_ms = now_ms
        if group.state is GroupState.PREPARING_REBALANCE:
            raise RebalanceInProgress(f"group {group_id!r} is rebalancing")

    def leave_group(self, *, group_id: str, members: Sequence[MemberIdentity], now_ms: int) -> Step:
        """Handles LeaveGroup (v0-v2: one member; v3+: a batch, static members by instance id).

        Returns:
            A step answering its own ``handle`` with a :class:`LeaveGroupResult` at once; its
            other completions are JoinGroups the departure let complete.

        Raises:
            InvalidGroupId, NotCoordinator, CoordinatorLoadInProgress,
            CoordinatorNotAvailable. An unknown group answers UNKNOWN_MEMBER_ID per member.
        """
        self._check_group_id(group_id)
        self._check_owned(group_id)
        group = self._groups.get(group_id)
        if group is not None and group.state is GroupState.DEAD:
            raise CoordinatorNotAvailable(f"group {group_id!r} was just removed")
        fx = _Effects(self._new_handle())
        assert fx.handle is not None
        if group is None:
            unknown = tuple(
                LeaveGroupMemberResult(
                    m.member_id, m.group_instance_id, ErrorCode.UNKNOWN_MEMBER_ID
                )
                for m in members
            )
            fx.complete(fx.handle, LeaveGroupResult(ErrorCode.NONE, unknown))
            return fx.step()
        results = []
        for identity in members:
            error = ErrorCode.NONE
            if identity.group_instance_id is not None:
                registered = group.static_members.get(identity.group_instance_id)
                if registered is None:
                    error = ErrorCode.UNKNOWN_MEMBER_ID
                elif identity.member_id and identity.member_id != registered:
                    error = ErrorCode.FENCED_INSTANCE_ID
                else:
                    self._remove_member_and_update(group, group.members[registered], fx, now_ms)
            elif identity.member_id in group.pending_members:
                del group.pending_members[identity.member_id]
                self._try_complete_join(group, fx, now_ms)
            elif identity.member_id not in group.members:
                error = ErrorCode.UNKNOWN_MEMBER_ID
            else:
                self._remove_member_and_update(group, group.members[identity.member_id], fx, now_ms)
            results.append(
                LeaveGroupMemberResult(identity.member_id, identity.group_instance_id, error)
            )
        fx.complete(fx.handle, LeaveGroupResult(ErrorCode.NONE, tuple(results)))
        return fx.step()

    def _remove_member(self, group: _Group, member: _Member, fx: _Effects) -> None:
        self._answer_waiters(member, ErrorCode.UNKNOWN_MEMBER_ID, fx)
        del group.members[member.member_id]
        self._sync_received(group, member.member_id)
        instance_id = member.group_instance_id
        if instance_id is not None and group.static_members.get(instance_id) == member.member_id:
            del group.static_members[instance_id]
        if group.leader_id == member.member_id:
            group.leader_id = next(iter(group.members), None)

    def _remove_member_and_update(
        self, group: _Group, member: _Member, fx: _Effects, now_ms: int
    ) -> None:
        self._remove_member(group, member, fx)
        if group.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._maybe_prepare_rebalance(group, fx, now_ms)
        if group.state is GroupState.PREPARING_REBALANCE:
            self._try_complete_join(group, fx, now_ms)

    def _answer_waiters(self, member: _Member, error: ErrorCode, fx: _Effects) -> None:
        if member.join_handle is not None:
            fx.complete(member.join_handle, JoinGroupResult(error, member_id=member.member_id))
            member.join_handle = None
        if member.sync_handle is not None:
            fx.complete(member.sync_handle, SyncGroupResult(error))
            member.sync_handle = None

    def _check_static(self, group: _Group, member_id: str, group_instance_id: str | None) -> None:
        if group_instance_id is None:
            return
        registered = group.static_members.get(group_instance_id)
        if registered is None:
            raise UnknownMemberId(f"unknown group.instance.id {group_instance_id!r}")
        if registered != member_id:
            raise FencedInstanceId(
                f"{group_instance_id!r} now belongs to {registered!r}, not {member_id!r}"
            )

    # --- offsets ------------------------------------------------------------------------------

    def commit_offsets(
        self,
        *,
        group_id: str,
        member_id: str,
        generation_id: int,
        offsets: Mapping[TopicPartition, OffsetAndMetadata],
        now_ms: int,
        group_instance_id: str | None = None,
        retention_time_ms: int = -1,
    ) -> Step:
        """Handles OffsetCommit (v2-v8).

        A commit with ``generation_id < 0`` to an Empty (or unknown) group is a standalone
        commit (``assign()`` consumers, admin tools) and is accepted from anyone, as Kafka does.
        Otherwise the member must belong to the current generation; Kafka accepts commits during
        PreparingRebalance (the heartbeat tells the member to rejoin) but not during
        CompletingRebalance. Kafka lets a member commit a *lower* offset than before (rewind).

        Args:
            offsets: per partition, the offset, its leader epoch and metadata;
                ``commit_timestamp_ms`` is replaced by ``now_ms``.
            retention_time_ms: OffsetCommit v2-v4's retention; -1 = the broker's default.

        Returns:
            A step whose ``handle`` is answered with an :class:`OffsetCommitResult` once the
            records in its append are written (or at once if every partition was refused).

        Raises:
            NotCoordinator, CoordinatorLoadInProgress, UnknownMemberId, IllegalGeneration,
            RebalanceInProgress, FencedInstanceId, CoordinatorNotAvailable: group-level errors;
            the shell answers every partition of the request with ``exc.code``.
        """
        self._check_owned(group_id)
        group = self._groups.get(group_id)
        if group is None and generation_id >= 0:
            raise IllegalGeneration(f"group {group_id!r} does not exist")
        if group is not None:
            if group.state is GroupState.DEAD:
                raise CoordinatorNotAvailable(f"group {group_id!r} was just removed")
            self._check_static(group, member_id, group_instance_id)
            if not (generation_id < 0 and group.state is GroupState.EMPTY):
                member = group.members.get(member_id)
                if member is None:
                    raise UnknownMemberId(f"{member_id!r} is not a member of {group_id!r}")
                if generation_id != group.generation_id:
                    raise IllegalGeneration(f"generation {generation_id} != {group.generation_id}")
                if group.state is GroupState.COMPLETING_REBALANCE:
                    raise RebalanceInProgress(f"group {group_id!r} is completing a rebalance")
                member.last_heartbeat_ms = now_ms
        else:
            group = _Group(group_id, now_ms)
            self._groups[group_id] = group
        fx = _Effects(self._new_handle())
        assert fx.handle is not None
        expire = None if retention_time_ms < 0 else now_ms + retention_time_ms
        values: dict[TopicPartition, OffsetAndMetadata] = {}
        errors: dict[TopicPartition, ErrorCode] = {}
        for tp, requested in offsets.items():
            tp = TopicPartition(*tp)
            metadata = requested.metadata or ""
            if len(metadata.encode("utf-8")) > self.config.offset_metadata_max_bytes:
                errors[tp] = ErrorCode.OFFSET_METADATA_TOO_LARGE
                continue
            values[tp] = OffsetAndMetadata(
                requested.offset, metadata, now_ms, requested.leader_epoch, expire
            )
        if not values:
            fx.complete(fx.handle, OffsetCommitResult(errors))
            return fx.step()
        records = tuple(offset_commit_record(group_id, tp, v) for tp, v in values.items())
        group.pending_offset_appends += 1
        self._append(group, records, _OffsetAppend(group_id, fx.handle, values, errors), fx)
        return fx.step()

    def fetch_offsets(
        self, *, group_id: str, partitions: Sequence[TopicPartition] | None = None
    ) -> dict[TopicPartition, OffsetAndMetadata | None]:
        """Handles OffsetFetch (v1-v8, one group): the committed offsets of ``partitions``.

        Args:
            partitions: None asks for every partition the group has an offset for (v2+).

        Returns:
            Per partition, the committed offset, or None where there is none (the shell answers
            offset -1, empty metadata, leader epoch -1, error NONE, as Kafka does).

        Raises:
            NotCoordinator, CoordinatorLoadInProgress.
        """
        self._check_owned(group_id)
        group = self._groups.get(group_id)
        stored = group.offsets if group is not None else {}
        if partitions is None:
            return dict(stored)
        return {TopicPartition(*tp): stored.get(TopicPartition(*tp)) for tp in partitions}

    def delete_group(self, *, group_id: str) -> Step:
        """Handles one group of DeleteGroups (Kafka's ``handleDeleteGroups``): an Empty group
        is removed, with a tombstone for each committed offset and one for the group.

        Returns:
            A step whose ``handle`` is answered with a :class:`DeleteGroupResult` once the
            tombstones are written (a failed write maps as a SyncGroup's does).

        Raises:
            InvalidGroupId, NotCoordinator, CoordinatorLoadInProgress; GroupIdNotFound: no such
            group; NonEmptyGroup: it has members, or is rebalancing.
        """
        self._check_group_id(group_id)
        self._check_owned(group_id)
        group = self._groups.get(group_id)
        if group is None or group.state is GroupState.DEAD:
            raise GroupIdNotFound(f"no group {group_id!r}")
        if group.state is not GroupState.EMPTY or group.members or group.pending_members:
            raise NonEmptyGroup(f"group {group_id!r} has members ({group.state.value})")
        records = [offset_tombstone(group_id, tp) for tp in group.offsets]
        records.append(group_tombstone(group_id))
        group.state = GroupState.DEAD
        del self._groups[group_id]
        fx = _Effects(self._new_handle())
        assert fx.handle is not None
        self._append(group, tuple(records), _DeleteAppend(fx.handle), fx)
        return fx.step()

    def delete_offsets(
        self,
        *,
        group_id: str,
        partitions: Sequence[TopicPartition],
        topics_of: Callable[[bytes], Collection[str] | None],
    ) -> Step:
        """Handles OffsetDelete (KIP-496, ``kafka-consumer-groups --delete-offsets``).

        An Empty group loses the offsets named. A consumer group with members keeps those of
        topics a member subscribes to (GROUP_SUBSCRIBED_TO_TOPIC: they would be committed
        again, or worse, reset) and loses the others; ``topics_of`` reads a member's
        subscription from its protocol metadata (None: unreadable, which counts as every
        topic, as Kafka does). Any other group with members: NON_EMPTY_GROUP.

        Returns:
            A step whose ``handle`` is answered with an :class:`OffsetDeleteResult` once the
            tombstones are written (at once if there is nothing to delete).

        Raises:
            InvalidGroupId, NotCoordinator, CoordinatorLoadInProgress, GroupIdNotFound,
            NonEmptyGroup: group-level errors.
        """
        self._check_group_id(group_id)
        self._check_owned(group_id)
        group = self._groups.get(group_id)
        if group is None or group.state is GroupState.DEAD:
            raise GroupIdNotFound(f"no group {group_id!r}")
        partitions = [TopicPartition(*tp) for tp in partitions]
        errors = dict.fromkeys(partitions, ErrorCode.NONE)
        if group.state is not GroupState.EMPTY:
            if group.protocol_type != "consumer":
                raise NonEmptyGroup(f"group {group_id!r} has members ({group.state.value})")
            subscribed: set[str] | None = set()
            for member in group.members.values():
                topics = topics_of(member.metadata(group.protocol_name))
                if topics is None or subscribed is None:
                    subscribed = None
                else:
                    subscribed.update(topics)
            for tp in partitions:
                if subscribed is None or tp.topic in subscribed:
                    errors[tp] = ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC
        gone = [tp for tp in partitions if not errors[tp] and tp in group.offsets]
        fx = _Effects(self._new_handle())
        assert fx.handle is not None
        if not gone:
            fx.complete(fx.handle, OffsetDeleteResult(ErrorCode.NONE, errors))
            return fx.step()
        for tp in gone:
            del group.offsets[tp]
        records = tuple(offset_tombstone(group_id, tp) for tp in gone)
        self._append(group, records, _DeleteAppend(fx.handle, errors), fx)
        return fx.step()

    # --- writes -------------------------------------------------------------------------------

    def _append(
        self,
        group: _Group,
        records: tuple[Record, ...],
        pending: _OffsetAppend | _SyncAppend | _DeleteAppend | None,
        fx: _Effects,
    ) -> int:
        append_id = self._next_append
        self._next_append += 1
        partition = self.partition_for(group.group_id)
        self._appends[append_id] = (partition, pending)
        fx.appends.append(Append(append_id, partition, records))
        return append_id

    def on_append_done(
        self, append_id: int, error: ErrorCode = ErrorCode.NONE, now_ms: int = 0
    ) -> Step:
        """Reports the outcome of an :class:`Append`; releases the answers waiting on it.

        A commit is applied to the offsets OffsetFetch returns only now, and only if the write
        succeeded. A failed write of the leader's assignment answers the SyncGroups with the
        mapped error (Kafka's mapping: NOT_LEADER_OR_FOLLOWER -> NOT_COORDINATOR, not enough
        replicas -> COORDINATOR_NOT_AVAILABLE...) and rebalances the group. Unknown ids (the
        partition was unloaded meanwhile) are ignored.
        """
        fx = _Effects(None)
        entry = self._appends.pop(append_id, None)
        if entry is None:
            return fx.step()
        _, pending = entry
        if isinstance(pending, _OffsetAppend):
            group = self._groups.get(pending.group_id)
            if group is not None:
                group.pending_offset_appends -= 1
            if error is ErrorCode.NONE:
                if group is not None:
                    group.offsets.update(pending.values)
                outcome = ErrorCode.NONE
            else:
                outcome = _map_append_error(error, offsets=True)
            errors = dict.fromkeys(pending.values, outcome)
            errors.update(pending.errors)
            fx.complete(pending.handle, OffsetCommitResult(errors))
        elif isinstance(pending, _DeleteAppend):
            outcome = ErrorCode.NONE
            if error is not ErrorCode.NONE:
                outcome = _map_append_error(error, offsets=pending.offsets is not None)
            if pending.offsets is None:
                fx.complete(pending.handle, DeleteGroupResult(outcome))
            else:
                # A partition whose tombstone was in the failed write carries the failure too.
                errors = {tp: code or outcome for tp, code in pending.offsets.items()}
                fx.complete(pending.handle, OffsetDeleteResult(outcome, errors))
        elif isinstance(pending, _SyncAppend):
            group = self._groups.get(pending.group_id)
            if (
                group is None
                or group.sync_append_id != append_id
                or group.state is not GroupState.COMPLETING_REBALANCE
                or group.generation_id != pending.generation_id
            ):
                return fx.step()  # the group moved on; its waiters were answered already
            group.sync_append_id = None
            if error is ErrorCode.NONE:
                for member in group.members.values():
                    member.assignment = pending.assignments.get(member.member_id, b"")
                group.transition(GroupState.STABLE, now_ms)
                for member in group.members.values():
                    if member.sync_handle is not None:
                        fx.complete(member.sync_handle, self._sync_result(group, member))
                        member.sync_handle = None
            else:
                mapped = _map_append_error(error, offsets=False)
                self._reset_and_propagate_sync_error(group, mapped, fx)
                self._maybe_prepare_rebalance(group, fx, now_ms)
        return fx.step()

    def _snapshot(
        self, group: _Group, assignments: Mapping[str, bytes] | None = None, now_ms: int = -1
    ) -> GroupMetadataValue:
        members = tuple(
            MemberMetadataValue(
                m.member_id,
                m.client_id,
                m.client_host,
                m.rebalance_timeout_ms,
                m.session_timeout_ms,
                m.metadata(group.protocol_name),
                (assignments or {}).get(m.member_id, m.assignment),
                m.group_instance_id,
            )
            for m in group.members.values()
        )
        return GroupMetadataValue(
            group.protocol_type or "",
            group.generation_id,
            group.protocol_name,
            group.leader_id,
            members,
            now_ms if now_ms >= 0 else group.state_timestamp_ms,
        )

    # --- time ---------------------------------------------------------------------------------

    def tick(self, now_ms: int) -> Step:
        """Advances time: expires sessions and pending member ids, completes rebalances whose
        timeout passed, extends or ends a new group's initial delay, and expires offsets.

        Returns:
            A step with the JoinGroup answers due and any writes (group metadata when a group
            empties, tombstones for expired offsets and removed groups).
        """
        fx = _Effects(None)
        for group in list(self._groups.values()):
            self._tick_group(group, fx, now_ms)
        if self._next_cleanup_ms is None:
            self._next_cleanup_ms = now_ms + self.config.offsets_retention_check_interval_ms
        elif now_ms >= self._next_cleanup_ms:
            self._next_cleanup_ms = now_ms + self.config.offsets_retention_check_interval_ms
            self._expire_offsets(fx, now_ms)
        return fx.step()

    def _tick_group(self, group: _Group, fx: _Effects, now_ms: int) -> None:
        for pending_id, deadline in list(group.pending_members.items()):
            if now_ms >= deadline:
                del group.pending_members[pending_id]
                self._try_complete_join(group, fx, now_ms)
        for member in list(group.members.values()):
            if member.member_id in group.members and not self._keep_alive(member, now_ms):
                self._remove_member_and_update(group, member, fx, now_ms)
        sync_deadline = group.sync_deadline_ms
        if sync_deadline is not None and now_ms >= sync_deadline:
            # Kafka's onExpirePendingSync: members that joined but never synced are dropped.
            group.sync_deadline_ms = None
            laggards = [group.members[m] for m in group.pending_sync if m in group.members]
            group.pending_sync.clear()
            if laggards and group.state in (
                GroupState.COMPLETING_REBALANCE,
                GroupState.STABLE,
            ):
                for member in laggards:
                    self._remove_member(group, member, fx)
                self._prepare_rebalance(group, fx, now_ms)
                self._try_complete_join(group, fx, now_ms)
        deadline = group.join_deadline_ms
        if group.state is not GroupState.PREPARING_REBALANCE or deadline is None:
            return
        if now_ms < deadline:
            return
        remaining = group.initial_remaining_ms
        if remaining is not None and group.new_member_added and remaining > 0:
            # Kafka's InitialDelayedJoin: members keep arriving, wait a little longer.
            delay = min(self.config.initial_rebalance_delay_ms, remaining)
            group.initial_remaining_ms = remaining - delay
            group.new_member_added = False
            group.join_deadline_ms = now_ms + delay
            return
        group.initial_remaining_ms = None
        self._complete_join(group, fx, now_ms)

    def _keep_alive(self, member: _Member, now_ms: int) -> bool:
        """Kafka's ``shouldKeepAlive``: a member waiting in JoinGroup or SyncGroup is alive (a
        new member only up to the new-member timeout); others within their session."""
        if member.join_handle is not None:
            return (
                not member.is_new
                or now_ms < member.last_heartbeat_ms + self.config.new_member_join_timeout_ms
            )
        if member.sync_handle is not None:
            return True
        return now_ms < member.last_heartbeat_ms + member.session_timeout_ms

    def _expire_offsets(self, fx: _Effects, now_ms: int) -> None:
        """Kafka's ``cleanupGroupMetadata`` (KIP-211): offsets of an Empty group expire
        ``offsets.retention`` after it became empty (standalone offsets: after their commit, or
        at an explicit expire timestamp); an Empty group with no offsets left is removed."""
        retention = self.config.offsets_retention_ms
        for group in list(self._groups.values()):
            if group.state is not GroupState.EMPTY or group.pending_offset_appends:
                continue
            expired = []
            for tp, value in group.offsets.items():
                if value.expire_timestamp_ms is not None:
                    expires_at = value.expire_timestamp_ms
                elif group.protocol_type is None:
                    expires_at = value.commit_timestamp_ms + retention
                else:
                    expires_at = max(group.state_timestamp_ms, 0) + retention
                if now_ms >= expires_at:
                    expired.append(tp)
            records = [offset_tombstone(group.group_id, tp) for tp in expired]
            for tp in expired:
                del group.offsets[tp]
            if not group.offsets and not group.members and not group.pending_members:
                group.state = GroupState.DEAD
                del self._groups[group.group_id]
                records.append(group_tombstone(group.group_id))
            if records:
                self._append(group, tuple(records), None, fx)

    def next_deadline_ms(self) -> int | None:
        """Returns the earliest ``now_ms`` at which :meth:`tick` has something to do, or None.

        Offset expiry runs every ``offsets_retention_check_interval_ms`` after the first tick.
        """
        deadlines: list[int] = []
        if self._next_cleanup_ms is not None:
            deadlines.append(self._next_cleanup_ms)
        for group in self._groups.values():
            deadlines.extend(group.pending_members.values())
            if group.state is GroupState.PREPARING_REBALANCE and group.join_deadline_ms is not None:
                deadlines.append(group.join_deadline_ms)
            if group.sync_deadline_ms is not None:
                deadlines.append(group.sync_deadline_ms)
            for m in group.members.values():
                if m.join_handle is not None:
                    if m.is_new:
                        deadlines.append(
                            m.last_heartbeat_ms + self.config.new_member_join_timeout_ms
                        )
                elif m.sync_handle is None:
                    deadlines.append(m.last_heartbeat_ms + m.session_timeout_ms)
        return min(deadlines, default=None)

    # --- ListGroups / DescribeGroups ----------------------------------------------------------

    def list_groups(self, states: Iterable[GroupState] | None = None) -> ListGroupsResult:
        """Handles ListGroups (v0-v4): groups of every partition this broker coordinates,
        optionally filtered by state (v4)."""
        wanted = None if states is None else set(states)
        listings = tuple(
            GroupListing(g.group_id, g.protocol_type or "", g.state)
            for g in self._groups.values()
            if self.partition_for(g.group_id) in self._active
            and (wanted is None or g.state in wanted)
        )
        error = ErrorCode.COORDINATOR_LOAD_IN_PROGRESS if self._loading else ErrorCode.NONE
        return ListGroupsResult(error, listings)

    def describe_group(self, group_id: str) -> GroupDescription:
        """Handles DescribeGroups for one group (Kafka's ``GroupMetadata.summary``).

        Raises:
            NotCoordinator, CoordinatorLoadInProgress.
        """
        self._check_owned(group_id)
        group = self._groups.get(group_id)
        if group is None:
            return GroupDescription(group_id, GroupState.DEAD, "", "", ())
        stable = group.state is GroupState.STABLE
        members = tuple(
            MemberDescription(
                m.member_id,
                m.group_instance_id,
                m.client_id,
                m.client_host,
                m.metadata(group.protocol_name) if stable else b"",
                m.assignment if stable else b"",
            )
            for m in group.members.values()
        )
        return GroupDescription(
            group_id,
            group.state,
            group.protocol_type or "",
            (group.protocol_name or "") if stable else "",
            members,
            group.generation_id,
            group.leader_id,
        )

    def group_ids(self) -> list[str]:
        """Returns every group this coordinator holds (for the CLI and tests)."""
        return list(self._groups)

    def _new_handle(self) -> int:
        handle = self._next_handle
        self._next_handle += 1
        return handle
