"""The follower fetcher: one task per leader broker, copying its partitions with Kafka's Fetch.

Theory of operation: :class:`FollowerFetcher` keeps one connection to one leader broker. Each
round it takes the partitions this broker follows from that leader (the replica manager decides,
from the metadata image): partitions that just started following (``truncating``) first ask
OffsetForLeaderEpoch and cut their divergent tail (KIP-101/279); the others are fetched together
in one long-poll Fetch (``replica_id`` = this broker, ``current_leader_epoch`` = the epoch
followed, ``fetch_offset`` = the LEO). The leader answers as soon as it appends (its Fetch
handler waits on the partition's append event), so replication costs about one round trip.

Role changes win over responses: every request remembers each partition's ``fetch_generation``
and a response for an older generation is dropped, so after the image moves a partition to a new
epoch nothing from the old epoch is appended. :meth:`FollowerFetcher.wake` cancels the
in-flight request when the partition set changes. Errors back off per partition (the leader may
not have seen the new image yet); connection errors back off the whole fetcher. The task ends
when it follows no partition from its leader.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import trio

from quorumq import protocol as p
from quorumq.broker._replica import FOLLOWER, ReplicaPartition, now_ms
from quorumq.client._connection import open_connection
from quorumq.client._fetch_session import FetchSessionBuilder
from quorumq.errors import ErrorCode, QuorumqError, RequestTimedOut

log = logging.getLogger("quorumq.broker.fetcher")

_ERROR_BACKOFF_S = {
    ErrorCode.UNKNOWN_LEADER_EPOCH: 0.02,
    ErrorCode.FENCED_LEADER_EPOCH: 0.05,
    ErrorCode.NOT_LEADER_OR_FOLLOWER: 0.05,
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION: 0.1,
}
_DEFAULT_ERROR_BACKOFF_S = 0.5
FULL_CHECK_S = 1.0
"""How often a round looks at every followed partition's position, not only at those the
last response or a truncation moved (see ``FollowerFetcher._update_wanted``)."""


class ReplicaSource(Protocol):
    """What the fetcher needs from the replica manager (``_cluster.py``)."""

    broker_id: int
    flusher: Any  # LogFlusher | None: flush.messages=1 followers fsync before fetching on

    def leader_address(self, leader_id: int) -> tuple[str, int] | None: ...

    def followed_from(self, leader_id: int) -> list[ReplicaPartition]: ...


class FollowerFetcher:
    """Copies every partition this broker follows from one leader.

    Args:
        source: the replica manager.
        leader_id: the leader broker.
        max_wait_ms: the long-poll's ``max_wait_ms``.
        partition_max_bytes: per partition per response.
    """

    def __init__(
        self,
        source: ReplicaSource,
        leader_id: int,
        *,
        max_wait_ms: int = 500,
        partition_max_bytes: int = 1 << 20,
        on_progress: Callable[[ReplicaPartition], None] | None = None,
        connect: Callable[..., AbstractAsyncContextManager[Any]] = open_connection,
    ) -> None:
        self.source = source
        self.leader_id = leader_id
        self.max_wait_ms = max_wait_ms
        self.partition_max_bytes = partition_max_bytes
        self._on_progress = on_progress
        self._connect = connect
        """``open_connection``'s shape; the simulation passes its in-memory network's."""
        self._retry_at: dict[tuple[str, int], float] = {}
        self._scope: trio.CancelScope | None = None
        self._in_request = False
        self._wake = trio.Event()
        self._fetch_session = FetchSessionBuilder()
        self._followed: list[ReplicaPartition] | None = None
        """The partition list the session's wanted set was last matched to."""
        self._sent: dict[tuple[str, int], tuple[ReplicaPartition, int]] = {}
        """Each fetched partition with its ``fetch_generation`` (see :meth:`_current`)."""
        self._positions: dict[tuple[str, int], tuple[int, int, int]] = {}
        """(leader epoch, fetch offset, log start offset) last handed to the session."""
        self._held: set[tuple[str, int]] = set()
        """Followed partitions left out of the session while they back off (``_retry_at``)."""
        self._dirty: dict[tuple[str, int], None] | None = None
        """Partitions whose position may have moved since the last request (None: any)."""
        self._full_check_at = -math.inf
        self.fetches = 0
        """Fetch responses processed (tests and stats)."""
        self.positions_checked = 0
        """Partition positions looked at while building requests (tests and stats)."""

    def wake(self) -> None:
        """The partition set changed: abandon the in-flight request and start a new round
        (between requests the next round reads the new set anyway)."""
        self._wake.set()
        if self._scope is not None and self._in_request:
            self._scope.cancel()

    async def run(self) -> None:
        """Fetches until this broker follows nothing from the leader (or cancelled)."""
        backoff = 0.05
        while self.source.followed_from(self.leader_id):
            address = self.source.leader_address(self.leader_id)
            if address is None:
                await self._back_off_whole(0.1)
                continue
            host, port = address
            error: Exception | None = None
            try:
                async with self._connect(
                    host,
                    port,
                    client_id=f"quorumq-replica-{self.source.broker_id}",
                    connect_timeout_s=2.0,
                    inline=True,  # one fetch at a time: no reader task, one switch less
                ) as conn:
                    backoff = 0.05
                    await self._session(conn)
            except* (ConnectionError, OSError, QuorumqError) as group:
                # Errors come out of the connection's nursery as a group (or bare, on connect).
                error = group.exceptions[0]  # type: ignore[assignment]
            if error is not None:
                log.info(
                    "broker %d: fetcher from %d: %s (retry in %.2f s)",
                    self.source.broker_id,
                    self.leader_id,
                    error,
                    backoff,
                )
                await self._back_off_whole(backoff)
                backoff = min(backoff * 2, 1.0)

    async def _back_off_whole(self, seconds: float) -> None:
        """Waits ``seconds`` before reconnecting, or until this broker follows nothing from
        the leader. A :meth:`wake` (the partition set changed) ends the wait only for that
        check: during a failover every image change wakes the fetchers, and each wake used to
        be an immediate reconnect to the dead leader (and a log line), dozens a second."""
        deadline = trio.current_time() + seconds
        while self.source.followed_from(self.leader_id):
            left = deadline - trio.current_time()
            if left <= 0:
                return
            await self._sleep(left)

    async def _sleep(self, seconds: float) -> None:
        with trio.move_on_after(seconds):
            await self._wake.wait()
        self._wake = trio.Event()

    async def _session(self, conn: Any) -> None:
        """Rounds of requests under one cancel scope, which :meth:`wake` cancels (abandoning
        the request in flight: the inline connection skips its late answer) and whose deadline
        is the request timeout (see :meth:`_request`). A scope per request cost about 58
        Python calls to enter and leave, on every replicated produce."""
        fetch_version = conn.version_for(p.ApiKey.FETCH)
        epoch_version = conn.version_for(p.ApiKey.OFFSET_FOR_LEADER_EPOCH)
        # A fetch session per connection (v7+): the leader keeps it across connections, but
        # a new connection starts with a full fetch, as after any doubt about its state.
        self._fetch_session = FetchSessionBuilder(sessions=fetch_version >= 7)
        self._followed = None
        self._positions.clear()
        while True:
            if self._wake.is_set():
                self._wake = trio.Event()
            with trio.CancelScope() as scope:
                self._scope = scope
                try:
                    await self._rounds(conn, scope, fetch_version, epoch_version)
                    return
                finally:
                    self._scope = None
            if not self._wake.is_set():
                raise RequestTimedOut(
                    f"request to leader {self.leader_id}: no response within "
                    f"{self._request_timeout_s} s"
                )

    @property
    def _request_timeout_s(self) -> float:
        return self.max_wait_ms / 1000 + 10.0

    async def _rounds(
        self, conn: Any, scope: trio.CancelScope, fetch_version: int, epoch_version: int
    ) -> None:
        while True:
            followed = self.source.followed_from(self.leader_id)
            if not followed:
                return
            retry_at = self._retry_at
            if retry_at:
                now = trio.current_time()
                for key in [key for key, at in retry_at.items() if at <= now]:
                    del retry_at[key]
                if retry_at and all((r.topic, r.index) in retry_at for r in followed):
                    soonest = min(retry_at.values())
                    scope.deadline = math.inf  # the request timeout is for requests only
                    await self._sleep(max(soonest - now, 0.001))
                    continue
            truncating = [
                r
                for r in followed
                if r.follower is not None
                and r.follower.truncating
                and (not retry_at or (r.topic, r.index) not in retry_at)
            ]
            if truncating:
                await self._truncate(conn, epoch_version, truncating)
            else:
                await self._fetch(conn, fetch_version, followed)

    async def _request(self, conn: Any, api_key: p.ApiKey, version: int, request: Any) -> Any:
        """One request under the session's scope (see :meth:`_session`), with its timeout."""
        scope = self._scope
        assert scope is not None
        # The timeout is a safety net (the leader answers within max_wait_ms), so it need not
        # be exact: the deadline moves only when under a second beyond max_wait_ms is left (or
        # none is set), about once per 9 s instead of on every request.
        now = trio.current_time()
        left = scope.deadline - now
        if left < self.max_wait_ms / 1000 + 1.0 or left > self._request_timeout_s:
            scope.deadline = now + self._request_timeout_s
        if self._wake.is_set():
            self._wake = trio.Event()  # this round already reads the new partition set
        self._in_request = True
        try:
            return await conn.request(api_key, version, request, timeout_s=None)
        finally:
            self._in_request = False

    def _back_off(self, replica: ReplicaPartition, code: int) -> None:
        delay = _ERROR_BACKOFF_S.get(ErrorCode(code), _DEFAULT_ERROR_BACKOFF_S)
        self._retry_at[(replica.topic, replica.index)] = trio.current_time() + delay
        log.debug(
            "broker %d: %s-%d from leader %d: %s",
            self.source.broker_id,
            replica.topic,
            replica.index,
            self.leader_id,
            ErrorCode(code).name,
        )

    @staticmethod
    def _snapshot(replicas: list[ReplicaPartition]) -> dict[tuple[str, int], tuple[Any, int]]:
        return {(r.topic, r.index): (r, r.fetch_generation) for r in replicas}

    def _current(
        self, sent: dict[tuple[str, int], tuple[Any, int]], topic: str, index: int
    ) -> ReplicaPartition | None:
        """The replica if it still follows the epoch the request was sent for."""
        entry = sent.get((topic, index))
        if entry is None:
            return None
        replica, generation = entry
        if (
            replica.fetch_generation != generation
            or replica.role != FOLLOWER
            or replica.follower is None
        ):
            return None
        return replica

    def _update_wanted(self, replicas: list[ReplicaPartition]) -> None:
        """Hands the session the partitions whose fetch position moved. Only partitions in the
        last response or truncated since can have moved, and only those are looked at; every
        partition is looked at when the list changes (a role change makes a new list, see
        ``ClusterBroker.followed_from``) and once per :data:`FULL_CHECK_S`, for positions
        that move outside the fetcher (the log start offset, by retention on this broker).

        A partition backing off (``_retry_at``) leaves the session until its back-off ends, as
        Kafka's fetcher leaves delayed partitions out of its fetch: kept in, its error would
        come back in every answer and turn the long-poll into a busy loop. Entering and leaving
        touches only that partition; the list itself stays the same, so a back-off is not a
        reason to look at everything."""
        session = self._fetch_session
        now = trio.current_time()
        positions = self._positions
        check: list[ReplicaPartition]
        if replicas is not self._followed:
            self._followed = replicas
            self._sent = self._snapshot(replicas)
            session.keep_only(self._sent)
            for key in [key for key in positions if key not in self._sent]:
                del positions[key]
            self._held = {key for key in self._held if key in self._sent}
            check = replicas
        elif self._dirty is None or now >= self._full_check_at:
            check = replicas
        else:
            sent = self._sent
            check = [sent[key][0] for key in self._dirty if key in sent]
        if check is replicas:
            self._full_check_at = now + FULL_CHECK_S
        retry_at = self._retry_at
        held = self._held
        if held or retry_at:
            for key in [key for key in held if key not in retry_at]:
                held.discard(key)  # back-off over: fetch it again from where it stands
                if check is not replicas:
                    check.append(self._sent[key][0])
            for key in retry_at:
                if key not in held and key in self._sent:
                    held.add(key)
                    session.forget(key)
                    positions.pop(key, None)
        self.positions_checked += len(check)
        for replica in check:
            key = (replica.topic, replica.index)
            if held and key in held:
                continue
            follower = replica.follower
            assert follower is not None
            position = (follower.leader_epoch, follower.fetch_offset, replica.log_start_offset)
            if positions.get(key) != position:
                positions[key] = position
                session.want(
                    replica.topic,
                    p.FetchRequestPartition(
                        partition_index=replica.index,
                        current_leader_epoch=position[0],
                        fetch_offset=position[1],
                        log_start_offset=position[2],
                        partition_max_bytes=self.partition_max_bytes,
                    ),
                )
        self._dirty = {}

    async def _truncate(self, conn: Any, version: int, replicas: list[ReplicaPartition]) -> None:
        sent = self._snapshot(replicas)
        by_topic: dict[str, list[p.OffsetForLeaderPartition]] = {}
        for replica in replicas:
            follower = replica.follower
            assert follower is not None
            by_topic.setdefault(replica.topic, []).append(
                p.OffsetForLeaderPartition(
                    partition_index=replica.index,
                    current_leader_epoch=follower.leader_epoch,
                    leader_epoch=follower.offset_for_leader_epoch_request(replica.epoch_cache),
                )
            )
        request = p.OffsetForLeaderEpochRequest(
            replica_id=self.source.broker_id,
            topics=[
                p.OffsetForLeaderTopic(name=name, partitions=parts)
                for name, parts in by_topic.items()
            ],
        )
        response = await self._request(conn, p.ApiKey.OFFSET_FOR_LEADER_EPOCH, version, request)
        for topic in response.topics:
            for answer in topic.partitions:
                replica = self._current(sent, topic.name, answer.partition_index)
                if replica is None:
                    continue
                if answer.error_code:
                    self._back_off(replica, answer.error_code)
                    continue
                follower = replica.follower
                assert follower is not None
                plan = follower.on_leader_epoch_answer(
                    replica.epoch_cache, (answer.leader_epoch, answer.end_offset)
                )
                replica.truncate_to(plan.offset)
                if self._dirty is not None:
                    self._dirty[(replica.topic, replica.index)] = None

    async def _fetch(self, conn: Any, version: int, replicas: list[ReplicaPartition]) -> None:
        session = self._fetch_session
        self._update_wanted(replicas)
        sent = self._sent
        session_id, session_epoch, topics, forgotten = session.build()
        max_wait_ms = self.max_wait_ms
        if self._retry_at:
            # A partition backing off is left out of this request, so the long-poll must end
            # when its back-off does, not up to max_wait_ms later. A new topic's follower that
            # asked before its leader had taken the role (NOT_LEADER_OR_FOLLOWER, 50 ms back-
            # off) used to wait out a whole long-poll, and every acks=all produce with it.
            left = min(self._retry_at.values()) - trio.current_time()
            max_wait_ms = max(0, min(max_wait_ms, math.ceil(left * 1000)))
        request = p.FetchRequest(
            replica_id=self.source.broker_id,
            max_wait_ms=max_wait_ms,
            min_bytes=1,
            max_bytes=0x7FFFFFFF,
            session_id=session_id,
            session_epoch=session_epoch,
            topics=topics,
            forgotten_topics_data=forgotten,
        )
        try:
            response = await self._request(conn, p.ApiKey.FETCH, version, request)
        except BaseException:
            session.reset()  # abandoned or failed: the leader's view is unknown
            raise
        if not session.on_response(response):
            return  # the leader lost the session: the next round is a full fetch
        self.fetches += 1
        now = now_ms()
        durable: list[ReplicaPartition] = []
        dirty = self._dirty
        for topic in response.topics:
            for part in topic.partitions:
                replica = self._current(sent, topic.name, part.partition_index)
                if replica is None:
                    continue
                if dirty is not None:
                    dirty[(topic.name, part.partition_index)] = None
                if part.error_code:
                    if part.error_code == ErrorCode.OFFSET_OUT_OF_RANGE:
                        follower = replica.follower
                        assert follower is not None
                        if part.log_start_offset > follower.fetch_offset:
                            # Below the leader's log start (retention, DeleteRecords): what
                            # we lack is gone there, so restart empty at its log start.
                            replica.truncate_fully_and_start_at(part.log_start_offset)
                            continue
                        # Past the leader's log end: truncate by leader epoch first.
                        follower.truncating = True
                    self._back_off(replica, part.error_code)
                    continue
                records = part.records
                if records is not None and not isinstance(records, bytes | bytearray | memoryview):
                    records = b"".join(bytes(chunk) for chunk in records)
                if records and replica.append_as_follower(records, now) and replica.durable:
                    durable.append(replica)
                follower = replica.follower
                assert follower is not None
                follower.on_fetch_response(part.high_watermark, replica.log_end_offset)
                if part.log_start_offset > replica.log_start_offset:
                    # DeleteRecords / retention on the leader: follow its log start.
                    replica.log.advance_log_start_offset(
                        min(part.log_start_offset, replica.log_end_offset)
                    )
                    follower.on_log_start_offset(replica.log_start_offset)
                if self._on_progress is not None:
                    self._on_progress(replica)
        flusher = self.source.flusher
        for replica in durable:
            # flush.messages=1: the next fetch offset tells the leader these are on disk.
            if flusher is not None and replica.log.flushed_offset < replica.log_end_offset:
                # Not a wait to abandon (wake() cancels requests only) or to time out: the
                # next fetch offset must not pass what is on disk.
                if self._scope is not None:
                    self._scope.deadline = math.inf
                try:
                    await flusher.wait_flushed(replica.log, replica.log_end_offset - 1)
                except QuorumqError as exc:
                    log.warning("%s-%d: flush failed: %s", replica.topic, replica.index, exc)
