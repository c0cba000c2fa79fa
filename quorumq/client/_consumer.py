"""quorumq's Trio consumer: assign or subscribe, seek, long-poll fetch, commits.

Theory of operation: the consumer keeps, per assigned partition, a **position** (the next offset
it hands to the application) and a **fetch position** (the next offset to ask the leader for;
ahead of the position while fetched records wait in the buffer). :meth:`Consumer.getmany`
serves buffered records first; when the buffer is dry it resolves missing positions (the
group's committed offset, else ``auto_offset_reset`` via ListOffsets), then sends one Fetch per
partition leader (concurrently), long-polling up to ``fetch_max_wait_ms`` for ``fetch_min_bytes``.

A fetch answer is a run of stored batches and may end with a partial batch (the broker cuts at
``max_partition_fetch_bytes``): decoding stops at the first batch that is not whole. A batch can
start before the fetch offset (offsets are per batch) and, after compaction, have gaps or no
records at all: records below the position are skipped, and the fetch position moves to the
batch's ``next_offset`` (its last offset + 1), never just past its last record. Control batches
(transaction markers) advance the position and yield nothing.

``OFFSET_OUT_OF_RANGE`` resets the partition to ``auto_offset_reset`` (``"earliest"`` or
``"latest"``; ``"none"`` raises :class:`~quorumq.errors.OffsetOutOfRange`). Leader errors and
lost connections refresh metadata and retry on the next round.

Groups: :meth:`Consumer.subscribe` makes the consumer a member (``_group.py``); each
``getmany`` first makes sure it has a generation (joining when needed), and a heartbeat task
flips it to rejoin when the coordinator says the group rebalances. With
``enable_auto_commit`` the positions are committed every ``auto_commit_interval_ms`` (from
``getmany``), before a rejoin and on close; :meth:`Consumer.commit` commits now.

One task at a time may call ``getmany``/iterate; the consumer is not shared between tasks.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import trio

from quorumq import protocol as p
from quorumq.client._assignors import PartitionAssignor
from quorumq.client._connection import SaslConfig
from quorumq.client._fetch_session import FINAL_EPOCH, INVALID_SESSION_ID, FetchSessionBuilder
from quorumq.client._group import GroupMember, assignor_for
from quorumq.client._metadata import (
    RETRIABLE_LEADER_ERRORS,
    ClusterMetadata,
    TopicPartition,
    raise_for_code,
)
from quorumq.errors import (
    ErrorCode,
    OffsetOutOfRange,
    QuorumqError,
    RequestTimedOut,
)
from quorumq.protocol.records import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    decode_batch,
    peek_offset_and_length,
)

__all__ = ["Consumer", "ConsumerRecord"]

log = logging.getLogger(__name__)

Header = tuple[str, bytes | None]
_RESET_TIMESTAMPS = {"earliest": p.EARLIEST_TIMESTAMP, "latest": p.LATEST_TIMESTAMP}


@attrs.frozen
class ConsumerRecord:
    """One record as the consumer hands it out (Kafka's ``ConsumerRecord``)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()


@attrs.define(eq=False)
class _PartitionState:
    """What the consumer knows of one assigned partition.

    invariant: ``position <= fetch_position`` when both are known; the buffered records are
    exactly those with offsets in ``[position, fetch_position)``.
    """

    position: int | None = None
    fetch_position: int | None = None
    reset: int | None = None  # a pending ListOffsets timestamp (earliest/latest)
    buffer: deque[ConsumerRecord] = attrs.Factory(deque)
    high_watermark: int = -1


class Consumer:
    """A Trio Kafka consumer. Use ``async with Consumer(bootstrap=...) as consumer:``.

    Args:
        bootstrap: ``"host:port[,host:port]"`` of one or more brokers.
        sasl: the SASL login (``SaslConfig(mechanism, username, password)``) for a
            SASL_PLAINTEXT or SASL_SSL listener.
        ssl_context: TLS (``ssl.SSLContext``) for an SSL or SASL_SSL listener.
        group_id: the group for commits (and for :meth:`subscribe`); None: no commits.
        auto_offset_reset: ``"earliest"``, ``"latest"`` or ``"none"`` (raise) for partitions
            without a valid position.
        enable_auto_commit: commit positions every ``auto_commit_interval_ms`` (groups only).
        fetch_max_wait_ms: the longest a Fetch waits at the broker for ``fetch_min_bytes``.
        max_partition_fetch_bytes: ``partition_max_bytes`` of each partition in a Fetch.
        session_timeout_ms, heartbeat_interval_ms, rebalance_timeout_ms: group timing.
    """

    def __init__(
        self,
        bootstrap: str | Sequence[str] = "127.0.0.1:9092",
        *,
        group_id: str | None = None,
        client_id: str = "quorumq-consumer",
        auto_offset_reset: str = "latest",
        enable_auto_commit: bool = True,
        auto_commit_interval_ms: int = 5_000,
        fetch_max_wait_ms: int = 500,
        fetch_min_bytes: int = 1,
        fetch_max_bytes: int = 50 * 1024 * 1024,
        max_partition_fetch_bytes: int = 1024 * 1024,
        request_timeout_ms: int = 30_000,
        retry_backoff_ms: int = 100,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        rebalance_timeout_ms: int = 30_000,
        group_instance_id: str | None = None,
        sasl: SaslConfig | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if auto_offset_reset not in ("earliest", "latest", "none"):
            raise ValueError("auto_offset_reset must be 'earliest', 'latest' or 'none'")
        self.group_id = group_id
        self.auto_offset_reset = auto_offset_reset
        self.enable_auto_commit = enable_auto_commit
        self.auto_commit_interval_s = auto_commit_interval_ms / 1000
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.fetch_min_bytes = fetch_min_bytes
        self.fetch_max_bytes = fetch_max_bytes
        self.max_partition_fetch_bytes = max_partition_fetch_bytes
        self.request_timeout_ms = request_timeout_ms
        self.retry_backoff_s = retry_backoff_ms / 1000
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.group_instance_id = group_instance_id
        self.metadata = ClusterMetadata(
            bootstrap,
            client_id=client_id,
            request_timeout_ms=request_timeout_ms,
            retry_backoff_ms=retry_backoff_ms,
            allow_auto_topic_creation=False,
            sasl=sasl,
            ssl_context=ssl_context,
        )
        self._partitions: dict[TopicPartition, _PartitionState] = {}
        self._fetch_sessions: dict[int, tuple[Any, FetchSessionBuilder]] = {}
        self._subscription: tuple[str, ...] = ()
        self._group: GroupMember | None = None
        self._needs_join = False
        self._next_auto_commit = 0.0
        self._nursery: trio.Nursery | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._heartbeat_scope: trio.CancelScope | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Consumer:
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            await stack.enter_async_context(self.metadata)
            self._nursery = await stack.enter_async_context(trio.open_nursery())
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Commits (auto commit), leaves the group and closes every connection."""
        try:
            group = self._group
            if group is not None and self._subscription and group.member_id:
                with trio.move_on_after(self.request_timeout_ms / 1000):
                    if self.enable_auto_commit and group.generation is not None:
                        await self._commit_quietly()
                    await group.leave()
            with trio.move_on_after(min(1.0, self.request_timeout_ms / 1000)):
                await self._close_fetch_sessions()
        finally:
            if self._nursery is not None:
                self._nursery.cancel_scope.cancel()
            stack, self._stack = self._stack, None
            self._nursery = None
            if stack is not None:
                await stack.aclose()

    # --- assignment --------------------------------------------------------------------------

    def assign(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> None:
        """Reads exactly these partitions (no group management); positions of partitions kept
        from the previous assignment are kept."""
        wanted = [TopicPartition(*tp) for tp in partitions]
        self._set_assignment(wanted)
        self.metadata.add_topics({tp.topic for tp in wanted})

    def _set_assignment(self, partitions: Iterable[TopicPartition]) -> None:
        old = self._partitions
        self._partitions = {tp: old.get(tp) or _PartitionState() for tp in partitions}

    def assignment(self) -> set[TopicPartition]:
        """The partitions this consumer reads now."""
        return set(self._partitions)

    def subscribe(
        self,
        topics: Iterable[str],
        *,
        group_id: str | None = None,
        assignor: str | PartitionAssignor | Sequence[str | PartitionAssignor] = "range",
    ) -> None:
        """Joins ``group_id`` (or the constructor's) subscribed to ``topics``; the group's
        assignor decides which partitions this consumer reads. The join happens on the next
        :meth:`getmany` (or iteration).

        Raises:
            ValueError: no group id.
        """
        group_id = group_id or self.group_id
        if not group_id:
            raise ValueError("subscribe needs a group_id")
        self.group_id = group_id
        names = (
            [assignor]
            if isinstance(assignor, str) or not isinstance(assignor, Sequence)
            else assignor
        )
        self._subscription = tuple(sorted(set(topics)))
        self.metadata.add_topics(self._subscription)
        self._group = GroupMember(
            self.metadata,
            group_id,
            assignors=[assignor_for(a) for a in names],
            session_timeout_ms=self.session_timeout_ms,
            rebalance_timeout_ms=self.rebalance_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            group_instance_id=self.group_instance_id,
            retry_backoff_ms=int(self.retry_backoff_s * 1000),
            request_timeout_ms=self.request_timeout_ms,
        )
        self._set_assignment([])
        self._needs_join = True

    # --- positions ---------------------------------------------------------------------------

    def _state(self, tp: TopicPartition | tuple[str, int]) -> _PartitionState:
        state = self._partitions.get(TopicPartition(*tp))
        if state is None:
            raise ValueError(f"{tp} is not assigned to this consumer")
        return state

    def seek(self, tp: TopicPartition | tuple[str, int], offset: int) -> None:
        """Makes ``offset`` the next offset handed out for ``tp`` (buffered records dropped).

        Raises:
            ValueError: ``tp`` is not assigned, or a negative offset.
        """
        if offset < 0:
            raise ValueError(f"offset {offset} is negative")
        state = self._state(tp)
        state.position = state.fetch_position = offset
        state.reset = None
        state.buffer.clear()

    def seek_to_beginning(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        """Moves ``partitions`` (all assigned if none) to the log start offset, looked up lazily."""
        self._seek_reset(partitions, p.EARLIEST_TIMESTAMP)

    def seek_to_end(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        """Moves ``partitions`` (all assigned if none) to the high watermark, looked up lazily."""
        self._seek_reset(partitions, p.LATEST_TIMESTAMP)

    def _seek_reset(self, partitions: Sequence[TopicPartition | tuple[str, int]], ts: int) -> None:
        for tp in partitions or list(self._partitions):
            state = self._state(tp)
            state.position = state.fetch_position = None
            state.reset = ts
            state.buffer.clear()

    async def position(self, tp: TopicPartition | tuple[str, int]) -> int:
        """The next offset the consumer hands out for ``tp`` (resolving it if need be).

        Raises:
            ValueError: ``tp`` is not assigned.
            OffsetOutOfRange: no committed offset and ``auto_offset_reset="none"``.
        """
        state = self._state(tp)
        if state.position is None:
            await self._resolve_positions()
        assert state.position is not None
        return state.position

    def highwater(self, tp: TopicPartition | tuple[str, int]) -> int:
        """The high watermark the last fetch of ``tp`` reported (-1 before any)."""
        return self._state(tp).high_watermark

    async def committed(self, tp: TopicPartition | tuple[str, int]) -> int | None:
        """The group's committed offset of ``tp`` (None if none, or without a group id)."""
        group = self._offsets_group()
        if group is None:
            return None
        tp = TopicPartition(*tp)
        return (await group.fetch_committed([tp])).get(tp)

    def _offsets_group(self) -> GroupMember | None:
        if self._group is None and self.group_id:
            self._group = GroupMember(
                self.metadata,
                self.group_id,
                retry_backoff_ms=int(self.retry_backoff_s * 1000),
                request_timeout_ms=self.request_timeout_ms,
            )
        return self._group

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commits ``offsets`` (default: every current position) to the group.

        Raises:
            ValueError: the consumer has no group id.
            RebalanceInProgress, IllegalGeneration, UnknownMemberId: the generation ended
                (the consumer rejoins on its next fetch).
        """
        group = self._offsets_group()
        if group is None:
            raise ValueError("commit needs a group_id")
        if offsets is None:
            offsets = {
                tp: s.position for tp, s in self._partitions.items() if s.position is not None
            }
        try:
            await group.commit(offsets, in_group=bool(self._subscription))
        except QuorumqError:
            if self._subscription and group.needs_rejoin:
                self._needs_join = True  # the next getmany rejoins
            raise

    async def _commit_quietly(self) -> None:
        try:
            await self.commit()
        except (ConnectionError, QuorumqError) as exc:
            log.warning("auto commit for group %s failed: %s", self.group_id, exc)

    async def _resolve_positions(self) -> None:
        """Gives every assigned partition a position: committed offset, else the reset."""
        missing = [tp for tp, s in self._partitions.items() if s.position is None]
        if not missing:
            return
        unreset = [tp for tp in missing if self._partitions[tp].reset is None]
        if unreset and self.group_id:
            group = self._offsets_group()
            assert group is not None
            committed = await group.fetch_committed(unreset)
            for tp in unreset:
                offset = committed.get(tp)
                if offset is not None:
                    state = self._partitions[tp]
                    state.position = state.fetch_position = offset
        for tp in missing:
            state = self._partitions[tp]
            if state.position is None and state.reset is None:
                if self.auto_offset_reset == "none":
                    raise OffsetOutOfRange(f"{tp.topic}-{tp.partition} has no position to start at")
                state.reset = _RESET_TIMESTAMPS[self.auto_offset_reset]
        await self._list_offsets([tp for tp in missing if self._partitions[tp].reset is not None])

    async def _list_offsets(self, partitions: list[TopicPartition]) -> None:
        by_leader: dict[int, list[TopicPartition]] = {}
        for tp in partitions:
            by_leader.setdefault(await self.metadata.leader_for(tp), []).append(tp)
        for node_id, tps in by_leader.items():
            by_topic: dict[str, list[p.ListOffsetsRequestPartition]] = {}
            for tp in tps:
                state = self._partitions[tp]
                assert state.reset is not None
                by_topic.setdefault(tp.topic, []).append(
                    p.ListOffsetsRequestPartition(
                        partition_index=tp.partition, timestamp=state.reset
                    )
                )
            request = p.ListOffsetsRequest(
                topics=[
                    p.ListOffsetsRequestTopic(name=t, partitions=ps) for t, ps in by_topic.items()
                ]
            )
            try:
                conn = await self.metadata.connection(node_id)
                response = await conn.request(
                    p.ApiKey.LIST_OFFSETS,
                    conn.version_for(p.ApiKey.LIST_OFFSETS),
                    request,
                    timeout_s=self.request_timeout_ms / 1000,
                )
            except ConnectionError:
                self.metadata.close_connection(node_id)
                self.metadata.invalidate()
                continue  # positions stay unresolved; the next round asks again
            for topic in response.topics:
                for part in topic.partitions:
                    tp = TopicPartition(topic.name, part.partition_index)
                    state = self._partitions.get(tp)
                    if state is None or state.reset is None:
                        continue
                    if part.error_code in RETRIABLE_LEADER_ERRORS:
                        self.metadata.invalidate()
                        continue
                    raise_for_code(part.error_code, f"ListOffsets {tp.topic}-{tp.partition}")
                    state.position = state.fetch_position = part.offset
                    state.reset = None

    # --- consuming ---------------------------------------------------------------------------

    async def _maintain_group(self) -> None:
        await _maintain_group_impl(self)

    async def getmany(
        self, timeout_ms: float = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Returns records fetched from the assigned partitions, waiting up to ``timeout_ms``
        for the first ones (an empty dict when none came).

        Raises:
            OffsetOutOfRange: out of range with ``auto_offset_reset="none"``.
            QuorumqError: a non-retriable fetch or group error, typed.
        """
        deadline = trio.current_time() + timeout_ms / 1000
        while True:
            await self._maintain_group()
            taken = self._take(max_records)
            if taken:
                return taken
            await self._resolve_positions()
            remaining_ms = max(0, int((deadline - trio.current_time()) * 1000))
            got = await self._fetch_round(min(self.fetch_max_wait_ms, remaining_ms))
            taken = self._take(max_records)
            if taken:
                return taken
            if trio.current_time() >= deadline:
                return {}
            if not got:
                # Nothing assigned, or errors: do not spin.
                await trio.sleep(
                    min(self.retry_backoff_s, max(0.0, deadline - trio.current_time()))
                )

    async def getone(self) -> ConsumerRecord:
        """Waits for and returns the next record."""
        while True:
            batch = await self.getmany(timeout_ms=self.fetch_max_wait_ms, max_records=1)
            for records in batch.values():
                return records[0]

    def __aiter__(self) -> Consumer:
        return self

    async def __anext__(self) -> ConsumerRecord:
        return await self.getone()

    def _take(self, max_records: int | None) -> dict[TopicPartition, list[ConsumerRecord]]:
        out: dict[TopicPartition, list[ConsumerRecord]] = {}
        budget = max_records if max_records is not None else 1 << 62
        for tp, state in self._partitions.items():
            if budget <= 0:
                break
            buffer = state.buffer
            if not buffer:
                continue
            count = min(budget, len(buffer))
            records = [buffer.popleft() for _ in range(count)]
            budget -= count
            out[tp] = records
            state.position = records[-1].offset + 1
            if not buffer:
                state.position = state.fetch_position
        if out:
            # Rotate so a partition with a deep buffer cannot starve the others.
            first = next(iter(out))
            state = self._partitions.pop(first)
            self._partitions[first] = state
        return out

    async def _fetch_round(self, max_wait_ms: int) -> bool:
        """One Fetch per leader for partitions with a position and an empty buffer; returns
        whether every broker answered without a leader error."""
        by_leader: dict[int, list[TopicPartition]] = {}
        for tp, state in self._partitions.items():
            if state.fetch_position is None or state.buffer:
                continue
            leader = self.metadata.cached_leader(tp)
            if leader is None:
                try:
                    leader = await self.metadata.leader_for(tp)
                except (ConnectionError, QuorumqError) as exc:
                    if isinstance(exc, QuorumqError) and not exc.retriable:
                        raise
                    log.debug("no leader for %s: %s", tp, exc)
                    continue
            by_leader.setdefault(leader, []).append(tp)
        if not by_leader:
            return False
        errors: list[QuorumqError] = []
        answered: list[bool] = []

        async def fetch_from(node_id: int, tps: list[TopicPartition]) -> None:
            try:
                answered.append(await self._fetch_from(node_id, tps, max_wait_ms))
            except QuorumqError as exc:
                errors.append(exc)  # raised below, as itself rather than in an ExceptionGroup

        async with trio.open_nursery() as nursery:
            for node_id, tps in by_leader.items():
                nursery.start_soon(fetch_from, node_id, tps)
        if errors:
            raise errors[0]
        return bool(answered) and all(answered)

    async def _fetch_from(self, node_id: int, tps: list[TopicPartition], max_wait_ms: int) -> bool:
        """One Fetch to ``node_id``; False when the broker could not be reached or answered a
        leader error (the caller backs off before the next round, e.g. while a dead leader is
        being replaced).

        Fetches go through an incremental fetch session per connection (KIP-227, Fetch v7+),
        as Kafka's Java consumer does: a request names only partitions whose position moved
        (or that rejoin after their buffer drained), and an answer carries only partitions
        with records or news, so idle partitions cost neither side anything per round."""
        asked: dict[TopicPartition, int] = {}
        try:
            conn = await self.metadata.connection(node_id)
            version = conn.version_for(p.ApiKey.FETCH)
            session = self._fetch_session(node_id, conn, version)
            for tp in tps:
                offset = self._partitions[tp].fetch_position
                assert offset is not None
                asked[tp] = offset
                held = session.wanted.get((tp.topic, tp.partition))
                if held is None or held.fetch_offset != offset:
                    session.want(
                        tp.topic,
                        p.FetchRequestPartition(
                            partition_index=tp.partition,
                            current_leader_epoch=-1,
                            fetch_offset=offset,
                            partition_max_bytes=self.max_partition_fetch_bytes,
                        ),
                    )
            session.keep_only({(tp.topic, tp.partition) for tp in tps})
            session_id, session_epoch, topics, forgotten = session.build()
            request = p.FetchRequest(
                max_wait_ms=max_wait_ms,
                min_bytes=self.fetch_min_bytes,
                max_bytes=self.fetch_max_bytes,
                session_id=session_id,
                session_epoch=session_epoch,
                topics=topics,
                forgotten_topics_data=forgotten,
            )
            try:
                response = await conn.request(
                    p.ApiKey.FETCH,
                    version,
                    request,
                    timeout_s=(self.request_timeout_ms + max_wait_ms) / 1000,
                )
            except BaseException:
                session.reset()  # failed or abandoned: the broker's view is unknown
                raise
        except (ConnectionError, RequestTimedOut) as exc:
            log.debug("fetch from broker %d failed: %s", node_id, exc)
            self.metadata.close_connection(node_id)
            self.metadata.invalidate()
            return False
        if not session.on_response(response):
            return True  # the broker lost the session: the next round is a full fetch
        healthy = True
        for topic in response.topics:
            for part in topic.partitions:
                tp = TopicPartition(topic.name, part.partition_index)
                state = self._partitions.get(tp)
                if state is None or state.fetch_position != asked.get(tp):
                    continue  # unassigned or sought while the fetch was out: drop the answer
                healthy = self._on_fetched(tp, state, part) and healthy
        return healthy

    async def _close_fetch_sessions(self) -> None:
        """Tells each broker to drop this consumer's fetch session (epoch -1), as Kafka's
        consumer does on close, so it does not hold one of the broker's 1,000 slots until it
        ages out. Best effort: a broker that cannot be reached keeps it until then."""
        sessions, self._fetch_sessions = self._fetch_sessions, {}
        for conn, session in sessions.values():
            if session.session_id == INVALID_SESSION_ID:
                continue
            request = p.FetchRequest(
                max_wait_ms=0,
                min_bytes=0,
                max_bytes=self.fetch_max_bytes,
                session_id=session.session_id,
                session_epoch=FINAL_EPOCH,
                topics=[],
            )
            try:
                await conn.request(p.ApiKey.FETCH, conn.version_for(p.ApiKey.FETCH), request)
            except (ConnectionError, QuorumqError) as exc:
                log.debug("closing fetch session %d: %s", session.session_id, exc)

    def _fetch_session(self, node_id: int, conn: Any, version: int) -> FetchSessionBuilder:
        """The session builder of the current connection to ``node_id`` (a new connection
        starts with a full fetch, as after any doubt)."""
        held = self._fetch_sessions.get(node_id)
        if held is None or held[0] is not conn:
            held = (conn, FetchSessionBuilder(sessions=version >= 7))
            self._fetch_sessions[node_id] = held
        return held[1]

    def _on_fetched(
        self, tp: TopicPartition, state: _PartitionState, part: p.FetchResponsePartition
    ) -> bool:
        """Applies one partition's answer; False for a retriable leader error (back off)."""
        code = part.error_code
        if code == ErrorCode.OFFSET_OUT_OF_RANGE:
            if self.auto_offset_reset == "none":
                raise OffsetOutOfRange(
                    f"{tp.topic}-{tp.partition}: offset {state.fetch_position} is out of range"
                )
            log.info("%s-%d offset %s out of range: reset to %s", tp.topic, tp.partition,
                     state.fetch_position, self.auto_offset_reset)  # fmt: skip
            state.position = state.fetch_position = None
            state.reset = _RESET_TIMESTAMPS[self.auto_offset_reset]
            return True
        if code in RETRIABLE_LEADER_ERRORS or code == ErrorCode.REQUEST_TIMED_OUT:
            self.metadata.invalidate()
            return False
        raise_for_code(code, f"fetch {tp.topic}-{tp.partition}")
        state.high_watermark = part.high_watermark
        if part.records is not None and len(part.records):
            assert state.fetch_position is not None
            records, next_offset = decode_fetched(tp, part.records, state.fetch_position)
            state.buffer.extend(records)
            state.fetch_position = next_offset
            if not state.buffer:
                state.position = next_offset
        return True


def decode_fetched(
    tp: TopicPartition, data: p.Buffer, fetch_offset: int
) -> tuple[list[ConsumerRecord], int]:
    """Decodes the whole batches of a fetch answer; returns the records at or above
    ``fetch_offset`` and the next offset to fetch.

    A trailing partial batch (cut by the broker's byte limit) is left for the next fetch.

    Raises:
        CorruptRecord: a whole batch fails its CRC or does not parse.
    """
    view = memoryview(data)
    end = len(view)
    position = 0
    next_offset = fetch_offset
    out: list[ConsumerRecord] = []
    topic, partition = tp.topic, tp.partition
    while end - position >= LOG_OVERHEAD:
        _base, size = peek_offset_and_length(view, position)
        if size < HEADER_SIZE or position + size > end:
            break  # a partial batch: the rest comes with the next fetch
        header, records = decode_batch(view, position)
        position += size
        if header.next_offset <= next_offset:
            continue
        if not header.is_control:
            for r in records:
                if r.offset >= next_offset:
                    out.append(
                        ConsumerRecord(
                            topic, partition, r.offset, r.timestamp, r.key, r.value, r.headers
                        )
                    )
        next_offset = header.next_offset
    return out, next_offset


async def _maintain_group_impl(consumer: Consumer) -> None:
    """Joins when needed, commits when due; the body of :meth:`Consumer._maintain_group`."""
    group = consumer._group
    if group is None or not consumer._subscription:
        return
    if consumer._needs_join or group.needs_rejoin or group.generation is None:
        if consumer._heartbeat_scope is not None:
            consumer._heartbeat_scope.cancel()
            consumer._heartbeat_scope = None
        if group.generation is not None and consumer.enable_auto_commit:
            await consumer._commit_quietly()
        generation = await group.join(consumer._subscription)
        consumer._set_assignment([])  # positions come from the group's commits
        consumer._set_assignment(generation.assignment)
        consumer._needs_join = False
        consumer._next_auto_commit = trio.current_time() + consumer.auto_commit_interval_s
        assert consumer._nursery is not None
        consumer._heartbeat_scope = await consumer._nursery.start(_heartbeat_loop, consumer)
        return
    if consumer.enable_auto_commit and trio.current_time() >= consumer._next_auto_commit:
        consumer._next_auto_commit = trio.current_time() + consumer.auto_commit_interval_s
        await consumer._commit_quietly()


async def _heartbeat_loop(
    consumer: Consumer, *, task_status: trio.TaskStatus[trio.CancelScope]
) -> None:
    group = consumer._group
    assert group is not None
    with trio.CancelScope() as scope:
        task_status.started(scope)
        while True:
            await trio.sleep(group.heartbeat_interval_ms / 1000)
            try:
                await group.heartbeat()
            except (ConnectionError, QuorumqError) as exc:
                if group.needs_rejoin:
                    log.info("group %s rebalances: %s", group.group_id, exc)
                    consumer._needs_join = True
                    return
                log.debug("heartbeat failed: %s", exc)
