"""One partition replica on this broker: its log, its append event, its high watermark.

The log is the sans-I/O core; this shell adds what waits need: a ``trio.Event`` that is set and
replaced on every append (Fetch with ``min_bytes``/``max_wait_ms`` and acks=all wait on it instead
of polling), and the high watermark. With a single replica the high watermark is the log end
offset; replication (issue 4) will move it with follower progress and wake the same event.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import trio

from quorumq.broker._expiry import Waker, wait_until
from quorumq.errors import (
    FencedLeaderEpoch,
    OffsetOutOfRange,
    PolicyViolation,
    RequestTimedOut,
    UnknownLeaderEpoch,
)
from quorumq.log import PartitionLog, ProducerStateManager
from quorumq.protocol.records import HEADER_SIZE, BatchHeader, parse_batch_header


@attrs.define(eq=False)
class Partition:
    """A partition this broker leads (the only role a single broker has)."""

    topic: str
    index: int
    log: PartitionLog
    producer_state: ProducerStateManager = attrs.Factory(ProducerStateManager)
    leader_epoch: int = 0
    appended: trio.Event = attrs.Factory(trio.Event)
    """Set and replaced whenever the log end offset moves (or the role changes): what a
    follower's long-poll fetch waits for."""
    committed: trio.Event = attrs.Factory(trio.Event)
    """Set and replaced whenever the high watermark moves (and on every ``appended``): what
    consumer fetches and acks=all produces wait for. Separate from ``appended`` so that each HW
    advance, which a follower's fetch causes, does not wake the other followers' fetches only
    for them to find nothing new."""

    @property
    def log_end_offset(self) -> int:
        return int(self.log.log_end_offset)

    @property
    def log_start_offset(self) -> int:
        return int(self.log.log_start_offset)

    @property
    def high_watermark(self) -> int:
        # invariant: log_start_offset <= high_watermark <= log_end_offset. A single replica
        # commits what it appends.
        return self.log_end_offset

    append_watchers: set[Waker] = attrs.Factory(set)
    """Parked requests waiting for this partition to grow: followers' fetches (one waker per
    fetch, however many partitions it names: a follower's fetch names every partition it
    follows from this leader, ``__consumer_offsets``' among them)."""
    commit_watchers: set[Waker] = attrs.Factory(set)
    """Parked requests waiting for the HW to move: consumers' fetches and acks=all produces."""
    follower_log_starts: dict[int, int] = attrs.Factory(dict)
    """Each follower's log start offset, as its last fetch reported it: DeleteRecords' low
    watermark waits for the followers to drop what it deleted."""
    log_start_reported: trio.Event = attrs.Factory(trio.Event)
    """Set and replaced whenever a follower reports a new log start offset."""
    fetch_sessions: set[Any] = attrs.Factory(set)
    """Fetch sessions holding this partition (``_fetch_session.py``): every move marks it
    changed in each, and wakes their parked fetches, so a session's reads and waits cost
    nothing per idle partition. Registered by the reads that look at it."""

    def notify_append(self) -> None:
        """Wakes everything waiting for this partition to grow (fetch, acks=all)."""
        sessions = self.fetch_sessions
        if sessions:
            self._mark_changed()  # before any waiter looks
        event = self.appended
        self.appended = trio.Event()
        event.set()
        if self.append_watchers:
            # A copy: a parked request re-checks inside set() and may leave the set then.
            for watcher in tuple(self.append_watchers):
                watcher.set()
        if sessions:
            for session in tuple(sessions):
                if session.append_waiters:
                    for watcher in tuple(session.append_waiters):
                        watcher.set()
        self._notify_commit(mark=False)

    def notify_high_watermark(self) -> None:
        """Wakes consumer fetches and acks=all produces, not follower fetches."""
        self._notify_commit(mark=True)

    def _notify_commit(self, *, mark: bool) -> None:
        sessions = self.fetch_sessions
        if sessions and mark:
            self._mark_changed()
        event = self.committed
        self.committed = trio.Event()
        event.set()
        if self.commit_watchers:
            for watcher in tuple(self.commit_watchers):
                watcher.set()
        if sessions:
            for session in tuple(sessions):
                if session.commit_waiters:
                    for watcher in tuple(session.commit_waiters):
                        watcher.set()

    def _mark_changed(self) -> None:
        key = (self.topic, self.index)
        for session in self.fetch_sessions:
            session.changed[key] = None

    @property
    def replica_read_limit(self) -> int | None:
        """The offset follower fetches read up to (exclusive); None: the log end. A replica
        with ``flush.messages=1`` serves followers only fsynced data (``_replica.py``)."""
        return None

    def check_leader_epoch(self, current_leader_epoch: int) -> None:
        """Kafka's leader-epoch fencing (KIP-320) of a client's request; -1 means "not known to
        the client".

        Raises:
            FencedLeaderEpoch, UnknownLeaderEpoch.
        """
        if current_leader_epoch < 0:
            return
        if current_leader_epoch < self.leader_epoch:
            raise FencedLeaderEpoch(
                f"leader epoch {current_leader_epoch} is older than {self.leader_epoch}"
            )
        if current_leader_epoch > self.leader_epoch:
            raise UnknownLeaderEpoch(
                f"leader epoch {current_leader_epoch} is newer than {self.leader_epoch}"
            )

    def end_offset_for(self, requested_epoch: int, current_leader_epoch: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch: ``(epoch, end offset)`` of ``requested_epoch``. A single broker
        wrote every batch in its one leader epoch, so its end is the LEO; an epoch newer than
        any known has none (UNDEFINED, as Kafka answers). A replica answers from its epoch
        cache (``_replica.py``).

        Raises:
            FencedLeaderEpoch, UnknownLeaderEpoch.
        """
        self.check_leader_epoch(current_leader_epoch)
        if requested_epoch > self.leader_epoch:
            return -1, -1
        return self.leader_epoch, self.log_end_offset

    def check_acks_all(self) -> None:
        """Refuses an acks=all produce before append (a replica: NOT_ENOUGH_REPLICAS)."""

    def check_writable(self) -> None:
        """Refuses a produce before append (a replica leader handing over its leadership:
        NOT_LEADER_OR_FOLLOWER); a single broker always takes writes."""

    def check_fetch(self, replica_id: int, fetch_offset: int, current_leader_epoch: int) -> None:
        """Fences a Fetch by leader epoch and records a follower's progress (a replica, in
        ``_replica.py``); a single broker has nothing to check."""

    def note_follower_log_start(self, replica_id: int, log_start_offset: int) -> None:
        """A follower's fetch reported its log start offset (cheap when it did not move)."""
        if self.follower_log_starts.get(replica_id) != log_start_offset:
            self.follower_log_starts[replica_id] = log_start_offset
            event = self.log_start_reported
            self.log_start_reported = trio.Event()
            event.set()

    def delete_records(self, offset: int) -> int:
        """DeleteRecords on the leader: moves the log start offset up to ``offset`` (-1: the
        high watermark) and drops the segments wholly below it. Returns the offset asked for.

        Raises:
            NotLeaderOrFollower: not the leader (a replica).
            PolicyViolation: the topic does not delete (``cleanup.policy=compact``), as Kafka.
            OffsetOutOfRange: ``offset`` above the high watermark, or below -1.
        """
        self.check_delete_leader()
        if not self.log.config.delete:
            raise PolicyViolation(
                f"{self.topic}-{self.index}: records of a compacted topic cannot be deleted"
            )
        high_watermark = self.high_watermark
        if offset == -1:
            offset = high_watermark
        if offset < 0 or offset > high_watermark:
            raise OffsetOutOfRange(
                f"{self.topic}-{self.index}: cannot delete below {offset}, the high watermark "
                f"is {high_watermark}"
            )
        if offset > self.log_start_offset:
            self.log.advance_log_start_offset(offset)
            self.on_log_start_moved()
        return offset

    def check_delete_leader(self) -> None:
        """Refuses DeleteRecords where this broker does not lead (a replica)."""

    def on_log_start_moved(self) -> None:
        """The leader deleted records: followers learn the new log start from their next
        fetch answers, woken now."""
        self.notify_append()

    def low_watermark(self) -> int:
        """DeleteRecords' low watermark: the lowest log start offset among the replicas that
        matter (a single broker: its own)."""
        return self.log_start_offset

    async def wait_for_high_watermark(self, offset: int, timeout_ms: int) -> None:
        """Returns once the high watermark passes ``offset`` (acks=all); raises as
        :meth:`is_committed` does."""
        epoch = self.leader_epoch
        deadline = trio.current_time() + max(timeout_ms, 0) / 1000
        while not self.is_committed(offset, epoch, deadline, timeout_ms):
            await self.wait_for_commit_until(deadline)

    def is_committed(
        self, offset: int, leader_epoch: int, deadline: float, timeout_ms: int
    ) -> bool:
        """Whether an acks=all produce appended up to ``offset`` in ``leader_epoch`` may be
        answered: True once the high watermark passes it, False while it may still get there.

        Raises:
            RequestTimedOut: not committed by ``deadline`` (trio clock), ``timeout_ms`` after
                the append; and whatever :meth:`commit_reached` raises.
        """
        if self.commit_reached(offset, leader_epoch):
            return True
        if trio.current_time() >= deadline:
            raise RequestTimedOut(
                f"{self.topic}-{self.index}: offset {offset} not committed within {timeout_ms} ms"
            )
        return False

    def commit_reached(self, offset: int, leader_epoch: int) -> bool:
        """Whether the batch ending at ``offset`` is committed. A single replica: the HW (the
        LEO) has passed it. A replica adds its leadership and ISR rules (``_replica.py``)."""
        return self.high_watermark > offset

    async def wait_for_commit_until(self, deadline: float) -> None:
        """Returns after the next HW move (or a leadership change), or at ``deadline``: a
        private event in ``commit_watchers`` and the shared expiry instead of a cancel scope
        per wait (``_expiry.py``)."""
        event = trio.Event()
        self.commit_watchers.add(event)
        try:
            await wait_until(event, deadline)
        finally:
            self.commit_watchers.discard(event)


def rebuild_producer_state(partition_log: PartitionLog) -> ProducerStateManager:
    """Rebuilds a partition's idempotent-producer state from the batch headers of its log.

    Reads the log front to back in 1 MiB chunks and parses only the 61-byte headers, so a
    restarted broker still recognises a retried batch (and a sequence gap) from before the
    restart.
    """
    return scan_log(partition_log)[0]


def scan_log(partition_log: PartitionLog) -> tuple[ProducerStateManager, list[tuple[int, int]]]:
    """One pass over the log's batch headers for both things a replica rebuilds on open: the
    producer state (:func:`rebuild_producer_state`) and (``partitionLeaderEpoch``, base offset)
    wherever the epoch changes, for ``replication.rebuild_from_log``."""
    epochs: list[tuple[int, int]] = []

    def headers() -> Iterator[BatchHeader]:
        last = None
        for header in _iter_headers(partition_log):
            if header.partition_leader_epoch != last:
                last = header.partition_leader_epoch
                epochs.append((last, header.base_offset))
            yield header

    state = ProducerStateManager()
    state.load_from_batches(headers())
    return state, epochs


def _iter_headers(partition_log: PartitionLog) -> Iterator[BatchHeader]:
    offset = int(partition_log.log_start_offset)
    end = int(partition_log.log_end_offset)
    while offset < end:
        records = partition_log.read(offset, 1 << 20).records
        position = 0
        advanced = False
        while len(records) - position >= HEADER_SIZE:
            header = parse_batch_header(records, position)
            yield header
            position += header.size
            if header.next_offset > offset:
                offset = header.next_offset
                advanced = True
        if not advanced:
            return
