"""The group coordinator's Trio shell: Kafka's classic consumer groups served by the broker.

Theory of operation. :class:`quorumq.groups.GroupCoordinator` is a pure state machine: every
request method returns a :class:`~quorumq.groups.Step` (answers now due, identified by
*handles*, and records to write). This shell owns everything else:

- **Ownership.** Group ``G`` lives on partition ``partition_for_group(G, n)`` of the internal,
  compacted topic ``__consumer_offsets`` (``n`` = ``offsets.topic.num.partitions``, 50 unless the
  broker config says otherwise). This broker coordinates the groups of the partitions it leads.
  The topic is created on the first FindCoordinator for a group, as Kafka does. Standalone, the
  broker leads every partition: they are loaded at startup (or creation). In a cluster the
  cluster shell calls :meth:`GroupCoordinatorShell.on_become_leader` and
  :meth:`GroupCoordinatorShell.on_stop_leading` as leadership moves, sets ``standalone`` to
  False and sets ``leader_lookup`` so FindCoordinator names the right broker.
- **Loading.** A partition is loaded by replaying its log (log start to log end; a leader never
  truncates its own log) through :class:`~quorumq.groups.GroupStateLoader`, so committed offsets
  and group generations survive a restart or a failover. The replay is a task that reads a
  chunk at a time, so a large partition does not stop the broker while it loads; its groups
  answer COORDINATOR_LOAD_IN_PROGRESS until it is done.
- **Delayed answers.** A JoinGroup or SyncGroup (or an OffsetCommit waiting for its write) whose
  answer is not due yet registers a :class:`_Waiter` under its handle and returns a ``Delayed``;
  the connection's pipeline keeps its place in the response order. A later step's completion
  sets the waiter; a waiter whose connection went away is simply never read.
- **Writes.** Each :class:`~quorumq.groups.Append` becomes one RecordBatch appended to its
  partition at once (so records land in the order the coordinator decided), then a reporter task
  waits (acks=all) for the partition's high watermark to pass it and calls ``on_append_done``.
  Reports of one partition are chained so they reach the coordinator in log order.
- **Timers.** One task calls ``tick`` at ``next_deadline_ms`` (and after every request, which may
  have moved the deadline earlier).

Errors: a coordinator call that raises a ``QuorumqError`` is answered with its code (the request
changed nothing); anything else is a bug, logged and answered ``UNKNOWN_SERVER_ERROR`` by
:func:`quorumq.broker.error_code_for`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import trio

from quorumq import protocol as p
from quorumq.broker._server import Delayed
from quorumq.errors import (
    CoordinatorNotAvailable,
    ErrorCode,
    InvalidRequest,
    QuorumqError,
    UnknownTopicOrPartition,
)
from quorumq.groups import (
    DeleteGroupResult,
    GroupConfig,
    GroupCoordinator,
    GroupResult,
    GroupStateLoader,
    JoinGroupResult,
    LeaveGroupResult,
    MemberIdentity,
    OffsetAndMetadata,
    OffsetCommitResult,
    OffsetDeleteResult,
    Step,
    SyncGroupResult,
    TopicPartition,
    partition_for_group,
)
from quorumq.protocol.records import HEADER_SIZE, build_batch, decode_records, parse_batch_header

if TYPE_CHECKING:
    from quorumq.broker._broker import Broker, Handler

log = logging.getLogger("quorumq.broker.groups")

OFFSETS_TOPIC = "__consumer_offsets"
OFFSETS_TOPIC_CONFIGS: dict[str, str | None] = {"cleanup.policy": "compact"}
OFFSETS_COMMIT_TIMEOUT_MS = 5_000
"""``offsets.commit.timeout.ms``: how long a group write waits for the high watermark."""

_MAX_TICK_SLEEP_S = 1.0
_LOAD_READ_BYTES = 1 << 20

LeaderLookup = Callable[[str, int], "tuple[int, str, int] | None"]
"""``(topic, partition) -> (node_id, host, port)`` of the partition's leader, or None."""


def _now_ms() -> int:
    from quorumq.broker._broker import now_ms

    return now_ms()


def _code(exc: Exception, what: str) -> int:
    from quorumq.broker._broker import error_code_for

    return error_code_for(exc, what)


@attrs.define(eq=False)
class _Waiter:
    """One request waiting for its handle's completion."""

    done: trio.Event = attrs.Factory(trio.Event)
    result: GroupResult | None = None


class GroupCoordinatorShell:
    """One broker's group coordinator: the core, its waiters, its writer and its timer.

    Created by :func:`register`; the broker's nursery runs :meth:`run`.

    Attributes:
        coordinator: the sans-I/O core.
        standalone: True while this broker alone leads every ``__consumer_offsets`` partition
            (loaded at startup and on creation). The cluster shell sets it False and calls the
            leadership hooks instead.
        leader_lookup: set by the cluster shell: the leader of a partition, for FindCoordinator.
    """

    def __init__(self, broker: Broker, *, rng: random.Random | None = None) -> None:
        self._broker = broker
        self.standalone = True
        self.leader_lookup: LeaderLookup | None = None
        self.coordinator = GroupCoordinator(self._group_config(), rng=rng or random.Random())
        self._waiting: dict[int, _Waiter] = {}
        self._nursery: trio.Nursery | None = None
        self._wake = trio.Event()
        self._report_chain: dict[int, trio.Event] = {}
        self._load_tokens: dict[int, object] = {}
        """The load running for each partition (a newer one, or an unload, abandons it)."""
        self.loads_completed = 0
        """``__consumer_offsets`` partitions loaded so far (tests and stats)."""

    def _group_config(self, partitions: int | None = None) -> GroupConfig:
        config = self._broker.config
        return GroupConfig(
            min_session_timeout_ms=config.group_min_session_timeout_ms,
            initial_rebalance_delay_ms=config.group_initial_rebalance_delay_ms,
            offsets_topic_num_partitions=partitions or config.offsets_topic_num_partitions,
        )

    @property
    def num_partitions(self) -> int:
        return self.coordinator.config.offsets_topic_num_partitions

    # --- lifecycle ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Runs the timer and the write reporters until cancelled (the broker's nursery).

        Standalone, it first loads every ``__consumer_offsets`` partition already on disk.
        """
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                topics = self._broker.topics
                spec = topics.topics.get(OFFSETS_TOPIC) if topics is not None else None
                if spec is not None and spec.partitions != self.num_partitions:
                    # The topic on disk wins over the config: groups must keep their partition.
                    self.coordinator = GroupCoordinator(
                        self._group_config(spec.partitions), rng=self.coordinator.rng
                    )
                if spec is not None and self.standalone:
                    for index in range(spec.partitions):
                        self.on_become_leader(index)
                nursery.start_soon(self._tick_loop)
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._nursery = None

    def on_become_leader(self, partition: int) -> None:
        """Hook: this broker now leads ``__consumer_offsets-partition``: load its groups.

        The partition's log (log start to log end) is replayed one read of
        ``_LOAD_READ_BYTES`` at a time: the first read at once, any further ones by a task with
        a checkpoint between reads; meanwhile its groups answer COORDINATOR_LOAD_IN_PROGRESS
        (Kafka loads on a scheduler thread and answers the same). Why: replaying a large
        partition in one step stopped the whole broker, replication and heartbeats included,
        for as long as it took. Before the shell runs (no nursery yet) it loads at once. A partition that fails to load (corrupt
        records) stays unloaded, its groups answer NOT_COORDINATOR, and the failure is logged.
        """
        self._drive(self.coordinator.begin_load(partition))
        token = self._load_tokens[partition] = object()
        loader = GroupStateLoader()
        try:
            # The first read at once: a small partition (most are) is served without a wait.
            offset = self._replay_chunk(
                partition, self._offsets_part(partition).log_start_offset, loader
            )
            while offset is not None and self._nursery is None:
                offset = self._replay_chunk(partition, offset, loader)
        except Exception as exc:
            self._load_failed(partition, exc)
            return
        if offset is None:
            self._complete_load(partition, loader)
            return
        assert self._nursery is not None
        self._nursery.start_soon(self._load, partition, token, loader, offset)

    async def _load(
        self, partition: int, token: object, loader: GroupStateLoader, offset: int | None
    ) -> None:
        try:
            while offset is not None:
                await trio.lowlevel.checkpoint()
                if self._load_tokens.get(partition) is not token:
                    return  # leadership moved (or a newer load started) meanwhile
                offset = self._replay_chunk(partition, offset, loader)
        except Exception as exc:
            if self._load_tokens.get(partition) is token:
                self._load_failed(partition, exc)
            return
        if self._load_tokens.get(partition) is token:
            self._complete_load(partition, loader)

    def _load_failed(self, partition: int, exc: Exception) -> None:
        log.error("cannot load %s-%d", OFFSETS_TOPIC, partition, exc_info=exc)
        self._load_tokens.pop(partition, None)
        self._drive(self.coordinator.unload(partition))

    def _complete_load(self, partition: int, loader: GroupStateLoader) -> None:
        self._load_tokens.pop(partition, None)
        self.coordinator.complete_load(partition, loader, _now_ms())
        self.loads_completed += 1
        if loader.group_ids():
            log.info(
                "loaded %d groups from %s-%d", len(loader.group_ids()), OFFSETS_TOPIC, partition
            )
        self._wake.set()

    def on_stop_leading(self, partition: int) -> None:
        """Hook: this broker no longer leads ``__consumer_offsets-partition``: unload it (and
        abandon its load, if one is running).

        Waiting JoinGroup/SyncGroup/OffsetCommit requests of its groups answer NOT_COORDINATOR,
        so their clients look the coordinator up again.
        """
        self._load_tokens.pop(partition, None)
        self._drive(self.coordinator.unload(partition))

    def _offsets_part(self, partition: int) -> Any:
        return self._broker.partition(OFFSETS_TOPIC, partition)

    def _replay_chunk(self, partition: int, offset: int, loader: GroupStateLoader) -> int | None:
        """Replays one read (up to ``_LOAD_READ_BYTES``) from ``offset``; returns where the
        next read starts, or None at the log end (read again each time: nothing else writes
        the partition's groups while they load, but the end is not assumed)."""
        part = self._offsets_part(partition)
        end = part.log_end_offset
        if offset >= end:
            return None
        records = part.log.read(offset, _LOAD_READ_BYTES, max_offset=end).records
        position = 0
        advanced = False
        while len(records) - position >= HEADER_SIZE:
            header = parse_batch_header(records, position)
            if position + header.size > len(records):
                break
            if not header.is_control:
                for record in decode_records(records, position):
                    if record.key is not None:
                        loader.apply(record.key, record.value)
            position += header.size
            if header.next_offset > offset:
                offset = header.next_offset
                advanced = True
        return offset if advanced else None

    def ensure_offsets_topic(self) -> None:
        """Creates ``__consumer_offsets`` on first use (standalone: and loads its partitions).

        Raises:
            CoordinatorNotAvailable: the topic cannot be created now.
        """
        topics = self._broker.topics
        assert topics is not None
        if OFFSETS_TOPIC in topics.topics:
            return
        try:
            self._broker.create_topic(
                OFFSETS_TOPIC, self.num_partitions, dict(OFFSETS_TOPIC_CONFIGS)
            )
        except QuorumqError as exc:
            raise CoordinatorNotAvailable(f"cannot create {OFFSETS_TOPIC}: {exc}") from None
        if self.standalone:
            for index in range(self.num_partitions):
                self.on_become_leader(index)

    # --- driving steps -----------------------------------------------------------------------

    def _drive(self, step: Step) -> None:
        for completion in step.completions:
            waiter = self._waiting.pop(completion.handle, None)
            if waiter is not None:  # None: answered directly, or its request was dropped
                waiter.result = completion.result
                waiter.done.set()
        for append in step.appends:
            self._write(append.append_id, append.partition, append.records)
        self._wake.set()

    def _write(self, append_id: int, partition: int, records: Any) -> None:
        """Appends one batch now; a reporter task tells the core once it is committed."""
        last_offset = -1
        error = ErrorCode.NONE
        part = None
        try:
            part = self._broker.partition(OFFSETS_TOPIC, partition)
            require_leader = getattr(part, "require_leader", None)
            if require_leader is not None:
                require_leader()  # a replica that is not the leader refuses (cluster mode)
            # A leadership transfer holds writes until its target caught up; these are writes
            # too, or a busy offsets partition would keep the target from ever draining.
            part.check_writable()
            now = _now_ms()
            batch = build_batch(list(records), timestamp=now)
            info = part.log.append(batch, leader_epoch=part.leader_epoch, now_ms=now)
            last_offset = info.last_offset
            part.notify_append()  # wakes fetchers; in a cluster, feeds the leader's LEO
        except Exception as exc:
            error = ErrorCode(_code(exc, f"write to {OFFSETS_TOPIC}-{partition}"))
        previous = self._report_chain.get(partition)
        done = trio.Event()
        self._report_chain[partition] = done
        assert self._nursery is not None, "group writes before the coordinator task started"
        self._nursery.start_soon(
            self._report, append_id, part, last_offset, error, previous, done, partition
        )

    async def _report(
        self,
        append_id: int,
        part: Any,
        last_offset: int,
        error: ErrorCode,
        previous: trio.Event | None,
        done: trio.Event,
        partition: int,
    ) -> None:
        try:
            if error is ErrorCode.NONE:
                try:
                    await part.wait_for_high_watermark(last_offset, OFFSETS_COMMIT_TIMEOUT_MS)
                except QuorumqError as exc:
                    error = exc.code
            if previous is not None:
                await previous.wait()
            self._drive(self.coordinator.on_append_done(append_id, error, _now_ms()))
        finally:
            done.set()
            if self._report_chain.get(partition) is done:
                del self._report_chain[partition]

    async def _tick_loop(self) -> None:
        while True:
            deadline = self.coordinator.next_deadline_ms()
            if deadline is None:
                sleep_s = _MAX_TICK_SLEEP_S
            else:
                sleep_s = min(max((deadline - _now_ms()) / 1000, 0.005), _MAX_TICK_SLEEP_S)
            with trio.move_on_after(sleep_s):
                await self._wake.wait()
            self._drive(self.coordinator.tick(_now_ms()))
            # Replaced after the drive: _drive sets the event, so replacing it first left it set
            # and the loop spun (a full core per idle broker, measured in docs/benchmarks.md).
            self._wake = trio.Event()

    def _answer(self, step: Step, respond: Callable[[GroupResult], Any]) -> Any:
        """The response now, or a Delayed that waits for the step's handle to complete."""
        result = step.result
        waiter = None
        if result is None:
            assert step.handle is not None
            waiter = _Waiter()
            self._waiting[step.handle] = waiter
        self._drive(step)
        if waiter is None:
            assert result is not None
            return respond(result)
        if waiter.result is not None:  # completed by a synchronous write failure
            return respond(waiter.result)

        async def wait() -> Any:
            await waiter.done.wait()
            assert waiter.result is not None
            return respond(waiter.result)

        return Delayed(wait)

    # --- handlers ----------------------------------------------------------------------------

    def find_coordinator(self, header: p.RequestHeader, request: Any) -> Any:
        key_type = getattr(request, "key_type", p.COORDINATOR_GROUP)
        try:
            if key_type != p.COORDINATOR_GROUP:
                raise CoordinatorNotAvailable("quorumq has no transaction coordinator")
            if not request.key:
                raise InvalidRequest("empty group id")
            self.ensure_offsets_topic()
            partition = partition_for_group(request.key, self.num_partitions)
            node = self._leader_of(partition)
        except Exception as exc:
            return p.FindCoordinatorResponse(
                error_code=_code(exc, f"find coordinator for {request.key!r}"),
                error_message=str(exc) or None,
            )
        node_id, host, port = node
        return p.FindCoordinatorResponse(error_code=0, node_id=node_id, host=host, port=port)

    def _leader_of(self, partition: int) -> tuple[int, str, int]:
        broker = self._broker
        if self.leader_lookup is not None:
            found = self.leader_lookup(OFFSETS_TOPIC, partition)
            if found is None:
                raise CoordinatorNotAvailable(f"{OFFSETS_TOPIC}-{partition} has no leader")
            return found
        return (broker.config.node_id, *broker.own_endpoint())

    def join_group(self, header: p.RequestHeader, request: p.JoinGroupRequest) -> Any:
        def respond(result: GroupResult) -> p.JoinGroupResponse:
            assert isinstance(result, JoinGroupResult)
            return p.JoinGroupResponse(
                error_code=int(result.error),
                generation_id=result.generation_id,
                protocol_name=result.protocol_name or "",
                leader=result.leader,
                member_id=result.member_id,
                members=[
                    p.JoinGroupResponseMember(
                        member_id=m.member_id,
                        group_instance_id=m.group_instance_id,
                        metadata=m.metadata,
                    )
                    for m in result.members
                ],
            )

        try:
            step = self.coordinator.join_group(
                group_id=request.group_id,
                member_id=request.member_id,
                client_id=header.client_id or "",
                session_timeout_ms=request.session_timeout_ms,
                rebalance_timeout_ms=request.rebalance_timeout_ms,
                protocol_type=request.protocol_type,
                protocols=[(x.name, bytes(x.metadata)) for x in request.protocols],
                now_ms=_now_ms(),
                group_instance_id=request.group_instance_id,
                require_known_member_id=header.api_version >= 4,
            )
        except Exception as exc:
            return p.JoinGroupResponse(
                error_code=_code(exc, f"join group {request.group_id!r}"),
                member_id=request.member_id,
            )
        return self._answer(step, respond)

    def sync_group(self, header: p.RequestHeader, request: p.SyncGroupRequest) -> Any:
        def respond(result: GroupResult) -> p.SyncGroupResponse:
            assert isinstance(result, SyncGroupResult)
            return p.SyncGroupResponse(error_code=int(result.error), assignment=result.assignment)

        try:
            step = self.coordinator.sync_group(
                group_id=request.group_id,
                generation_id=request.generation_id,
                member_id=request.member_id,
                assignments={a.member_id: bytes(a.assignment) for a in request.assignments},
                now_ms=_now_ms(),
                group_instance_id=request.group_instance_id,
            )
        except Exception as exc:
            return p.SyncGroupResponse(error_code=_code(exc, f"sync group {request.group_id!r}"))
        return self._answer(step, respond)

    def heartbeat(self, header: p.RequestHeader, request: p.HeartbeatRequest) -> Any:
        try:
            step = self.coordinator.heartbeat(
                group_id=request.group_id,
                member_id=request.member_id,
                generation_id=request.generation_id,
                now_ms=_now_ms(),
                group_instance_id=request.group_instance_id,
            )
            if isinstance(step, Step):
                self._drive(step)
        except Exception as exc:
            return p.HeartbeatResponse(error_code=_code(exc, f"heartbeat {request.group_id!r}"))
        self._wake.set()
        return p.HeartbeatResponse(error_code=0)

    def leave_group(self, header: p.RequestHeader, request: p.LeaveGroupRequest) -> Any:
        legacy = header.api_version < 3
        if legacy:
            members = [MemberIdentity(request.member_id)]
        else:
            members = [MemberIdentity(m.member_id, m.group_instance_id) for m in request.members]

        def respond(result: GroupResult) -> p.LeaveGroupResponse:
            assert isinstance(result, LeaveGroupResult)
            if legacy:
                error = result.members[0].error if result.members else result.error
                return p.LeaveGroupResponse(error_code=int(error))
            return p.LeaveGroupResponse(
                error_code=int(result.error),
                members=[
                    p.LeaveGroupResponseMember(
                        member_id=m.member_id,
                        group_instance_id=m.group_instance_id,
                        error_code=int(m.error),
                    )
                    for m in result.members
                ],
            )

        try:
            step = self.coordinator.leave_group(
                group_id=request.group_id, members=members, now_ms=_now_ms()
            )
        except Exception as exc:
            return p.LeaveGroupResponse(error_code=_code(exc, f"leave group {request.group_id!r}"))
        return self._answer(step, respond)

    def offset_commit(self, header: p.RequestHeader, request: p.OffsetCommitRequest) -> Any:
        requested = [(t.name, x.partition_index, x) for t in request.topics for x in t.partitions]

        def answer(code_of: Callable[[TopicPartition], int]) -> p.OffsetCommitResponse:
            topics: dict[str, list[p.OffsetCommitResponsePartition]] = {}
            for topic, index, _ in requested:
                topics.setdefault(topic, []).append(
                    p.OffsetCommitResponsePartition(
                        partition_index=index, error_code=code_of(TopicPartition(topic, index))
                    )
                )
            return p.OffsetCommitResponse(
                topics=[
                    p.OffsetCommitResponseTopic(name=name, partitions=parts)
                    for name, parts in topics.items()
                ]
            )

        def respond(result: GroupResult) -> p.OffsetCommitResponse:
            assert isinstance(result, OffsetCommitResult)
            return answer(lambda tp: int(result.errors.get(tp, ErrorCode.NONE)))

        offsets = {
            TopicPartition(topic, index): OffsetAndMetadata(
                x.committed_offset,
                x.committed_metadata or "",
                leader_epoch=x.committed_leader_epoch,
            )
            for topic, index, x in requested
        }
        try:
            step = self.coordinator.commit_offsets(
                group_id=request.group_id,
                member_id=request.member_id,
                generation_id=request.generation_id,
                offsets=offsets,
                now_ms=_now_ms(),
                group_instance_id=request.group_instance_id,
                retention_time_ms=request.retention_time_ms,
            )
        except Exception as exc:
            code = _code(exc, f"commit offsets of {request.group_id!r}")
            return answer(lambda tp: code)
        return self._answer(step, respond)

    def offset_fetch(self, header: p.RequestHeader, request: p.OffsetFetchRequest) -> Any:
        wanted = (
            None
            if request.topics is None
            else [TopicPartition(t.name, i) for t in request.topics for i in t.partition_indexes]
        )
        try:
            found = self.coordinator.fetch_offsets(group_id=request.group_id, partitions=wanted)
        except Exception as exc:
            code = _code(exc, f"fetch offsets of {request.group_id!r}")
            topics: dict[str, list[p.OffsetFetchResponsePartition]] = {}
            for tp in wanted or ():
                topics.setdefault(tp.topic, []).append(
                    p.OffsetFetchResponsePartition(partition_index=tp.partition, error_code=code)
                )
            return p.OffsetFetchResponse(
                topics=[
                    p.OffsetFetchResponseTopic(name=name, partitions=parts)
                    for name, parts in topics.items()
                ],
                error_code=code,
            )
        by_topic: dict[str, list[p.OffsetFetchResponsePartition]] = {}
        for tp, value in found.items():
            by_topic.setdefault(tp.topic, []).append(
                p.OffsetFetchResponsePartition(
                    partition_index=tp.partition,
                    committed_offset=-1 if value is None else value.offset,
                    committed_leader_epoch=-1 if value is None else value.leader_epoch,
                    metadata="" if value is None else value.metadata,
                    error_code=0,
                )
            )
        return p.OffsetFetchResponse(
            topics=[
                p.OffsetFetchResponseTopic(name=name, partitions=parts)
                for name, parts in by_topic.items()
            ]
        )

    def list_groups(self, header: p.RequestHeader, request: Any) -> Any:
        result = self.coordinator.list_groups()
        return p.ListGroupsResponse(
            error_code=int(result.error),
            groups=[
                p.ListedGroup(group_id=g.group_id, protocol_type=g.protocol_type)
                for g in result.groups
            ],
        )

    def describe_groups(self, header: p.RequestHeader, request: p.DescribeGroupsRequest) -> Any:
        groups = []
        for group_id in request.groups:
            try:
                d = self.coordinator.describe_group(group_id)
            except Exception as exc:
                groups.append(
                    p.DescribedGroup(
                        error_code=_code(exc, f"describe group {group_id!r}"), group_id=group_id
                    )
                )
                continue
            groups.append(
                p.DescribedGroup(
                    error_code=0,
                    group_id=d.group_id,
                    group_state=d.state.value,
                    protocol_type=d.protocol_type,
                    protocol_data=d.protocol_name,
                    members=[
                        p.DescribedGroupMember(
                            member_id=m.member_id,
                            client_id=m.client_id,
                            client_host=m.client_host,
                            member_metadata=m.metadata,
                            member_assignment=m.assignment,
                        )
                        for m in d.members
                    ],
                )
            )
        return p.DescribeGroupsResponse(groups=groups)

    def delete_groups(self, header: p.RequestHeader, request: Any) -> Any:
        """DeleteGroups: each Empty group removed once its tombstones are written; each group
        answered alone (GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP, NOT_COORDINATOR...)."""
        answers: list[tuple[str, int | _Waiter]] = []
        for group_id in request.groups_names:
            try:
                step = self.coordinator.delete_group(group_id=group_id)
            except Exception as exc:
                answers.append((group_id, _code(exc, f"delete group {group_id!r}")))
                continue
            waiter = _Waiter()
            assert step.handle is not None
            self._waiting[step.handle] = waiter
            self._drive(step)
            answers.append((group_id, waiter))

        def respond() -> p.DeleteGroupsResponse:
            results = []
            for group_id, answer in answers:
                if isinstance(answer, _Waiter):
                    assert isinstance(answer.result, DeleteGroupResult)
                    answer = int(answer.result.error)
                results.append(p.DeletableGroupResult(group_id=group_id, error_code=answer))
            return p.DeleteGroupsResponse(results=results)

        waiters = [a for _, a in answers if isinstance(a, _Waiter)]
        if all(w.result is not None for w in waiters):
            return respond()

        async def wait() -> Any:
            for waiter in waiters:
                await waiter.done.wait()
            return respond()

        return Delayed(wait)

    def offset_delete(self, header: p.RequestHeader, request: Any) -> Any:
        """OffsetDelete (``kafka-consumer-groups --delete-offsets``): answered once the
        tombstones are written; a partition a member still subscribes to is
        GROUP_SUBSCRIBED_TO_TOPIC."""
        partitions = [
            TopicPartition(t.name, x.partition_index) for t in request.topics for x in t.partitions
        ]

        def answer(error: int, code_of: Callable[[TopicPartition], int]) -> Any:
            return p.OffsetDeleteResponse(
                error_code=error,
                topics=[
                    p.OffsetDeleteResponseTopic(
                        name=t.name,
                        partitions=[
                            p.OffsetDeleteResponsePartition(
                                partition_index=x.partition_index,
                                error_code=code_of(TopicPartition(t.name, x.partition_index)),
                            )
                            for x in t.partitions
                        ],
                    )
                    for t in request.topics
                ],
            )

        def respond(result: GroupResult) -> Any:
            assert isinstance(result, OffsetDeleteResult)
            return answer(int(result.error), lambda tp: int(result.errors.get(tp, result.error)))

        try:
            step = self.coordinator.delete_offsets(
                group_id=request.group_id, partitions=partitions, topics_of=_subscribed_topics
            )
        except Exception as exc:
            return answer(_code(exc, f"delete offsets of {request.group_id!r}"), lambda tp: 0)
        return self._answer(step, respond)


def _subscribed_topics(metadata: bytes) -> tuple[str, ...] | None:
    """The topics a consumer-protocol member subscribes to; None if its metadata does not
    parse (OffsetDelete then counts it as subscribed to everything, as Kafka does)."""
    from quorumq.client._consumer_protocol import decode_subscription

    try:
        return tuple(decode_subscription(metadata).topics)
    except Exception:
        return None


def register(broker: Broker, handlers: dict[int, Handler]) -> None:
    """Creates the broker's group coordinator shell and adds the group APIs to ``handlers``.

    FindCoordinator replaces the placeholder of ``_handlers_extra`` (registered before).
    """
    shell = GroupCoordinatorShell(broker)
    broker.groups = shell
    handlers[p.ApiKey.FIND_COORDINATOR] = shell.find_coordinator
    handlers[p.ApiKey.JOIN_GROUP] = shell.join_group
    handlers[p.ApiKey.SYNC_GROUP] = shell.sync_group
    handlers[p.ApiKey.HEARTBEAT] = shell.heartbeat
    handlers[p.ApiKey.LEAVE_GROUP] = shell.leave_group
    handlers[p.ApiKey.OFFSET_COMMIT] = shell.offset_commit
    handlers[p.ApiKey.OFFSET_FETCH] = shell.offset_fetch
    handlers[p.ApiKey.LIST_GROUPS] = shell.list_groups
    handlers[p.ApiKey.DESCRIBE_GROUPS] = shell.describe_groups
    handlers[p.ApiKey.DELETE_GROUPS] = shell.delete_groups
    handlers[p.ApiKey.OFFSET_DELETE] = shell.offset_delete


_ = UnknownTopicOrPartition  # raised by broker.partition() when the topic is missing
