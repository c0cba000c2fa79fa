"""One partition replica in a cluster: leader, follower or idle, as the metadata image says.

Theory of operation: :class:`ReplicaPartition` is the single broker's :class:`Partition` (log,
producer state, ``appended`` event) plus the replication cores. The cluster shell
(``_cluster.py``) calls :meth:`become_leader`, :meth:`become_follower` or :meth:`become_idle`
whenever the image names a leader, a leader epoch, replicas or an ISR for this partition; those
calls are synchronous, so once the image is applied no task acts for an older epoch any more
(the promise quorum elections depend on, docs/controller.md). The broker's handlers then go
through the hooks that :class:`Partition` offers:

- ``high_watermark``: the leader's (or follower's) replication HW instead of the LEO;
- ``notify_append``: feeds the new LEO to ``LeaderReplicaState.on_append`` before waking waiters;
- ``check_acks_all``: NOT_ENOUGH_REPLICAS before an acks=all append;
- ``check_fetch``: leader-epoch fencing for consumers, follower progress for replica fetches;
- ``commit_reached``: may a parked acks=all produce be answered (NOT_ENOUGH_REPLICAS_AFTER_APPEND,
  NOT_LEADER_OR_FOLLOWER when deposed while waiting; the timeout is ``Partition.is_committed``'s)?

Every HW move and every role change sets the ``appended`` event, so long-polling fetches and
delayed produces re-check at once. The leader-epoch cache is derived from the log's batches
on open; ``leader-epoch-checkpoint`` in the partition's directory keeps the epochs before the log
start, and is rewritten (without fsync) whenever the cache changes.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import attrs

from quorumq.broker._partition import Partition, rebuild_producer_state, scan_log
from quorumq.errors import KafkaStorageError, NotLeaderOrFollower
from quorumq.log import PartitionLog, ProducerStateManager
from quorumq.protocol.records import (
    HEADER_SIZE,
    BatchHeader,
    Record,
    build_batch,
    parse_batch_header,
)
from quorumq.replication import (
    CHECKPOINT_FILE_NAME,
    DEFAULT_REPLICA_LAG_TIME_MAX_MS,
    DEFAULT_STRATEGY,
    FollowerReplicaState,
    IsrChange,
    LeaderEpochCache,
    LeaderReplicaState,
    load_checkpoint,
    rebuild_from_log,
    save_checkpoint,
    strategy_for,
)

log = logging.getLogger("quorumq.broker.replica")

LEADER = "leader"
FOLLOWER = "follower"
IDLE = "idle"

NO_LEADER = -1

HIGH_WATERMARK_FILE = "high-watermark"
"""The replica's last known HW, in its partition directory (Kafka keeps one
``replication-offset-checkpoint`` per log dir): a restarted leader starts from it, so a full
cluster restart does not hide committed records until the next write."""

LEADER_CHANGE = 2
"""KRaft's ``ControlRecordType.LEADER_CHANGE``: the epoch-start record a new quorum leader writes."""


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


clock_ms: Callable[[], int] = wall_clock_ms
"""The replication shells' clock (ISR lag, heartbeats): a seam for the deterministic simulation
(``quorumq.testing._sim``), which points it at the Trio clock so that virtual time drives them."""


def now_ms() -> int:
    return clock_ms()


TRANSFER_HOLD_S = 2.0
"""How long a leader refuses writes for a leadership transfer at most (``LeaderTransfers``):
the controller proposes the election within a tick of hearing "drained", so this only bounds
what a lost controller or a target that cannot catch up costs the producers."""


@attrs.define
class Transfer:
    """A leadership transfer this replica's leader is draining for."""

    target: int
    leader_epoch: int
    until: float
    """``time.monotonic()`` after which writes are taken again."""
    on_drained: Callable[[ReplicaPartition], None]
    drained: bool = False


@attrs.define(eq=False)
class ReplicaPartition(Partition):
    """A partition replica whose role follows the controller's image.

    invariant: exactly one of ``leader`` / ``follower`` is set for roles LEADER / FOLLOWER, none
    for IDLE; ``leader_epoch`` is the epoch of the image this replica last applied.
    """

    broker_id: int = -1
    topic_id: str = ""
    directory: Path | None = None
    epoch_cache: LeaderEpochCache = attrs.Factory(LeaderEpochCache)
    role: str = IDLE
    leader_id: int = NO_LEADER
    partition_epoch: int = 0
    replicas: tuple[int, ...] = ()
    isr: tuple[int, ...] = ()
    leader: LeaderReplicaState | None = None
    follower: FollowerReplicaState | None = None
    known_high_watermark: int = 0
    """The last HW this replica learnt (as follower or leader): a new leader starts from it."""
    strategy_name: str = DEFAULT_STRATEGY
    min_insync_replicas: int = 1
    replica_lag_time_max_ms: int = DEFAULT_REPLICA_LAG_TIME_MAX_MS
    isr_proposal: IsrChange | None = None
    """An ISR change the leader wants the controller to commit (``isr`` strategy), not yet sent."""
    on_isr_proposal: Callable[[ReplicaPartition], None] | None = None
    request_flush: Callable[[ReplicaPartition, int], None] | None = None
    lease_lost: Callable[[ReplicaPartition], bool] | None = None
    """Set by the cluster: True while this leader has heard neither the controller nor a
    majority of its replicas for a session (``ClusterBroker.lease_lost``). It then refuses
    writes and fails parked acks=all requests instead of taking what a new leader elsewhere
    never gets."""
    """Set by the cluster: fsync up to the offset, then call :meth:`notify_append` again."""
    _saved_high_watermark: int = -1
    flush_requested: set[int] = attrs.Factory(set)
    transfer: Transfer | None = None
    """A leadership transfer under way (this replica leads and refuses writes meanwhile)."""
    _expired_transfer: tuple[int, int] | None = None
    """(target, leader epoch) of the last transfer that ran out of time: not begun again."""
    fetch_generation: int = 0
    """Bumped on every role or epoch change: a fetch response sent for an older generation is
    discarded (the follower stopped following that epoch)."""
    role_changes: ClassVar[int] = 0
    """Bumped on every role or epoch change of any replica in the process: lists derived from
    roles (``ClusterBroker.followed_from``) are rebuilt only when it moves."""

    # --- construction ----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        topic: str,
        index: int,
        partition_log: PartitionLog,
        *,
        broker_id: int,
        topic_id: str,
        directory: Path | None,
    ) -> ReplicaPartition:
        """Wraps an opened log; derives the epoch cache from the log's batches, with the
        checkpoint only for epochs before the log start (``replication.rebuild_from_log``).

        An unreadable checkpoint is logged and treated as empty: the log holds every epoch
        that matters."""
        checkpoint = LeaderEpochCache()
        if directory is not None:
            try:
                checkpoint = load_checkpoint(directory / CHECKPOINT_FILE_NAME)
            except KafkaStorageError as exc:
                log.warning("%s-%d: %s; rebuilding the epochs from the log", topic, index, exc)
        producer_state, batch_epochs = scan_log(partition_log)
        cache = rebuild_from_log(
            checkpoint,
            partition_log.log_start_offset,
            batch_epochs,
        )
        replica = cls(
            topic,
            index,
            partition_log,
            producer_state,
            broker_id=broker_id,
            topic_id=topic_id,
            directory=directory,
            epoch_cache=cache,
        )
        latest = cache.latest_epoch
        if latest is not None:
            replica.leader_epoch = latest
        replica.known_high_watermark = replica.log_start_offset
        if directory is not None:
            replica.known_high_watermark = max(
                replica.log_start_offset,
                min(_load_high_watermark(directory), replica.log_end_offset),
            )
        replica._saved_high_watermark = replica.known_high_watermark
        return replica

    # --- Partition hooks ---------------------------------------------------------------------

    @property
    def high_watermark(self) -> int:
        if self.leader is not None:
            return self.leader.high_watermark
        if self.follower is not None:
            return self.follower.high_watermark
        return min(max(self.known_high_watermark, self.log_start_offset), self.log_end_offset)

    @property
    def durable(self) -> bool:
        """``flush.messages=1``: acknowledge (and replicate) only what is fsynced."""
        return bool(self.log.config.flush_messages == 1)

    @property
    def replica_read_limit(self) -> int | None:
        # With flush.messages=1 followers copy only fsynced data, so no follower's fetch offset
        # passes the leader's flushed LEO (the LEO the leader state knows).
        return self.log.flushed_offset if self.durable else None

    def notify_append(self) -> None:
        leader = self.leader
        if leader is not None:
            end = self.log.flushed_offset if self.durable else self.log_end_offset
            if end > leader.log_end_offset:
                leader.on_append(end, now_ms())
            if end < self.log_end_offset and self.request_flush is not None:
                self.request_flush(self, self.log_end_offset - 1)
        super().notify_append()

    def check_acks_all(self) -> None:
        """Raises NotEnoughReplicas (or NotLeaderOrFollower) before an acks=all append.

        The lease first: a cut-off leader also lacks caught-up followers, and clients retry
        NOT_ENOUGH_REPLICAS on the same leader, where NOT_LEADER_OR_FOLLOWER sends them to
        look for the new one."""
        self._check_lease()
        self.require_leader().acks_all_check()

    def _check_lease(self) -> None:
        if self.leader is not None and self.lease_lost is not None and self.lease_lost(self):
            raise NotLeaderOrFollower(
                f"broker {self.broker_id} has heard neither the controller nor a majority of "
                f"the replicas of {self.topic}-{self.index} for a session"
            )

    def check_writable(self) -> None:
        """Raises NotLeaderOrFollower while a leadership transfer holds writes, so the target
        can catch up, and while this leader's lease is lost (:attr:`lease_lost`); clients
        retry, and find the new leader once the election is over."""
        self._check_lease()
        transfer = self.transfer
        if transfer is None:
            return
        leader = self.leader
        if leader is not None and leader.leader_epoch == transfer.leader_epoch:
            if time.monotonic() < transfer.until:
                raise NotLeaderOrFollower(
                    f"{self.topic}-{self.index}: leadership is being handed to broker "
                    f"{transfer.target}"
                )
            if not transfer.drained:
                self._expired_transfer = (transfer.target, transfer.leader_epoch)
        self.transfer = None

    def begin_transfer(
        self, target: int, leader_epoch: int, on_drained: Callable[[ReplicaPartition], None]
    ) -> bool:
        """Starts refusing writes until follower ``target`` has this leader's whole log, then
        calls ``on_drained`` (the broker says so in its next heartbeat, sent at once). Returns
        False, doing nothing, unless this replica leads ``leader_epoch`` with ``target`` as a
        follower, or when the same transfer already ran out of time once."""
        leader = self.leader
        if (
            leader is None
            or leader.leader_epoch != leader_epoch
            or target not in leader.progress
            or self._expired_transfer == (target, leader_epoch)
        ):
            return False
        current = self.transfer
        if current is not None and (current.target, current.leader_epoch) == (target, leader_epoch):
            return True
        self.transfer = Transfer(
            target, leader_epoch, time.monotonic() + TRANSFER_HOLD_S, on_drained
        )
        self._check_drained(leader, target, leader.progress[target].log_end_offset)
        return True

    def _check_drained(
        self, leader: LeaderReplicaState, replica_id: int, fetch_offset: int
    ) -> None:
        transfer = self.transfer
        if (
            transfer is not None
            and not transfer.drained
            and replica_id == transfer.target
            and fetch_offset >= leader.log_end_offset
            and transfer.leader_epoch == leader.leader_epoch
        ):
            transfer.drained = True
            transfer.on_drained(self)

    def check_fetch(self, replica_id: int, fetch_offset: int, current_leader_epoch: int) -> None:
        """Fences a Fetch by epoch; for a follower's fetch, records its progress.

        Raises:
            NotLeaderOrFollower, FencedLeaderEpoch, UnknownLeaderEpoch, OffsetOutOfRange.
        """
        leader = self.require_leader()
        if replica_id < 0:
            leader.check_leader_epoch(current_leader_epoch)
            return
        result = leader.on_follower_fetch(replica_id, fetch_offset, current_leader_epoch, now_ms())
        if self.transfer is not None:
            self._check_drained(leader, replica_id, fetch_offset)
        if result.isr_change is not None:
            self._isr_change(result.isr_change)
        if result.advanced:
            self.known_high_watermark = result.high_watermark
            self.notify_high_watermark()

    def commit_reached(self, offset: int, leader_epoch: int) -> bool:
        """Whether the acks=all batch ending at ``offset``, appended in ``leader_epoch``, may be
        answered (``Partition.is_committed`` adds the timeout).

        Raises:
            NotEnoughReplicasAfterAppend: committed, but the ISR shrank below
                min.insync.replicas meanwhile (``isr``).
            NotLeaderOrFollower: this replica stopped leading the epoch it appended in.
        """
        leader = self.leader
        if leader is None or leader.leader_epoch != leader_epoch:
            raise NotLeaderOrFollower(
                f"{self.topic}-{self.index}: leadership of epoch {leader_epoch} ended before "
                f"offset {offset} was committed"
            )
        done = leader.acks_all_completed(offset)
        if not done and self.lease_lost is not None and self.lease_lost(self):
            raise NotLeaderOrFollower(
                f"{self.topic}-{self.index}: offset {offset} not committed, and this leader "
                "has heard neither the controller nor a majority of the replicas for a session"
            )
        return done

    # --- roles ---------------------------------------------------------------------------------

    def check_delete_leader(self) -> None:
        self.require_leader()

    def on_log_start_moved(self) -> None:
        leader = self.require_leader()
        leader.on_log_start_offset(self.log_start_offset)
        self.notify_append()

    def low_watermark(self) -> int:
        """The lowest log start offset among this leader and the followers it counts as in
        sync (Kafka's ``lowWatermarkIfLeader`` counts those on live brokers): a follower that
        has not reported one yet counts as -1, so DeleteRecords waits for it."""
        leader = self.require_leader()
        low = self.log_start_offset
        for replica in leader.maximal_isr:
            if replica != self.broker_id:
                low = min(low, self.follower_log_starts.get(replica, -1))
        return low

    def require_leader(self) -> LeaderReplicaState:
        """Raises NotLeaderOrFollower unless this replica leads now."""
        if self.leader is None:
            raise NotLeaderOrFollower(
                f"broker {self.broker_id} does not lead {self.topic}-{self.index} "
                f"(leader {self.leader_id}, epoch {self.leader_epoch})"
            )
        return self.leader

    def configure(
        self, strategy_name: str, min_insync_replicas: int, replica_lag_time_max_ms: int
    ) -> None:
        self.strategy_name = strategy_name
        self.min_insync_replicas = min_insync_replicas
        self.replica_lag_time_max_ms = replica_lag_time_max_ms
        if self.leader is not None:
            self.leader.min_insync_replicas = min_insync_replicas

    def become_leader(
        self,
        leader_epoch: int,
        partition_epoch: int,
        replicas: Sequence[int],
        isr: Sequence[int],
    ) -> None:
        """Leads ``leader_epoch``: stamps the epoch in the cache (saved), starts the HW at what
        this replica knew. Idempotent for the same epoch (an ISR update goes to
        ``on_isr_committed``)."""
        if self.leader is not None and self.leader.leader_epoch == leader_epoch:
            self._update_membership(partition_epoch, replicas, isr)
            return
        hw = self.high_watermark
        self._stop_role()
        self.leader_epoch = leader_epoch
        self.leader_id = self.broker_id
        self.partition_epoch = partition_epoch
        self.replicas = tuple(replicas)
        self.isr = tuple(isr)
        if self.epoch_cache.assign(leader_epoch, self.log_end_offset):
            self._save_epochs()
        self.leader = LeaderReplicaState.become_leader(
            strategy=strategy_for(self.strategy_name),
            broker_id=self.broker_id,
            leader_epoch=leader_epoch,
            replicas=self.replicas,
            isr=self.isr,
            log_start_offset=self.log_start_offset,
            log_end_offset=self.log_end_offset,
            high_watermark=hw,
            now_ms=now_ms(),
            partition_epoch=partition_epoch,
            min_insync_replicas=self.min_insync_replicas,
            replica_lag_time_max_ms=self.replica_lag_time_max_ms,
        )
        self.role = LEADER
        if self.leader.awaiting_epoch_record:
            self._append_epoch_record(leader_epoch)
        log.info(
            "broker %d leads %s-%d in epoch %d (replicas %s, isr %s, LEO %d, HW %d, %s)",
            self.broker_id,
            self.topic,
            self.index,
            leader_epoch,
            list(self.replicas),
            list(self.isr),
            self.log_end_offset,
            self.leader.high_watermark,
            self.strategy_name,
        )
        super().notify_append()

    def become_follower(
        self,
        leader_id: int,
        leader_epoch: int,
        partition_epoch: int,
        replicas: Sequence[int],
        isr: Sequence[int],
    ) -> bool:
        """Follows ``leader_id`` in ``leader_epoch``; returns True when the fetcher must start
        (a new leader or epoch: truncation first)."""
        self.partition_epoch = partition_epoch
        self.replicas = tuple(replicas)
        self.isr = tuple(isr)
        follower = self.follower
        if (
            follower is not None
            and follower.leader_id == leader_id
            and follower.leader_epoch == leader_epoch
        ):
            return False
        hw = self.high_watermark
        self._stop_role()
        self.leader_epoch = leader_epoch
        self.leader_id = leader_id
        self.follower = FollowerReplicaState.become_follower(
            broker_id=self.broker_id,
            leader_id=leader_id,
            leader_epoch=leader_epoch,
            log_start_offset=self.log_start_offset,
            log_end_offset=self.log_end_offset,
            high_watermark=hw,
        )
        self.role = FOLLOWER
        super().notify_append()
        return True

    def become_idle(
        self,
        leader_id: int,
        leader_epoch: int,
        partition_epoch: int,
        replicas: Sequence[int],
        isr: Sequence[int],
    ) -> None:
        """Neither leads nor fetches (no leader, a fenced self, or a stale image naming us)."""
        self.partition_epoch = partition_epoch
        self.replicas = tuple(replicas)
        self.isr = tuple(isr)
        if self.role == IDLE and self.leader_epoch == leader_epoch:
            return
        self._stop_role()
        self.leader_epoch = max(self.leader_epoch, leader_epoch)
        self.leader_id = leader_id
        super().notify_append()

    def stop(self) -> None:
        """The replica is going away (topic deleted, reassigned, broker shutting down)."""
        self._stop_role()
        self.save_high_watermark()
        super().notify_append()

    def _stop_role(self) -> None:
        self.known_high_watermark = self.high_watermark
        self.transfer = None
        self.leader = None
        self.follower = None
        self.isr_proposal = None
        self.role = IDLE
        self.fetch_generation += 1
        ReplicaPartition.role_changes += 1

    def _update_membership(
        self, partition_epoch: int, replicas: Sequence[int], isr: Sequence[int]
    ) -> None:
        leader = self.leader
        assert leader is not None
        self.replicas = tuple(replicas)
        if partition_epoch > self.partition_epoch or tuple(isr) != self.isr:
            self.partition_epoch = max(self.partition_epoch, partition_epoch)
            self.isr = tuple(isr)
            if self.broker_id in isr:
                update = leader.on_isr_committed(isr, partition_epoch)
                if update.advanced:
                    super().notify_append()

    # --- leader side ---------------------------------------------------------------------------

    def tick(self, now: int) -> None:
        """The leader's periodic ISR check (``replica.lag.time.max.ms / 2``)."""
        if self.leader is None:
            return
        change = self.leader.tick(now)
        if change is not None:
            self._isr_change(change)
        self.known_high_watermark = self.leader.high_watermark

    def _isr_change(self, change: IsrChange) -> None:
        if change.advisory:
            self.isr = tuple(r for r in self.replicas if r in change.isr)
            super().notify_append()
            return
        self.isr_proposal = change
        if self.on_isr_proposal is not None:
            self.on_isr_proposal(self)

    def _append_epoch_record(self, leader_epoch: int) -> None:
        """Appends a LEADER_CHANGE control batch: under ``quorum`` the HW passes the previous
        epochs' records only together with one of this epoch (Raft §5.4.2), so without it a tail
        that was already acknowledged would stay invisible until the next produce."""
        now = now_ms()
        batch = build_batch(
            [Record(0, now, struct.pack(">hh", 0, LEADER_CHANGE), struct.pack(">hi", 0, 0))],
            is_control=True,
            partition_leader_epoch=leader_epoch,
        )
        info = self.log.append(batch, leader_epoch=leader_epoch, now_ms=now)
        self.producer_state.on_append(parse_batch_header(batch), info.first_offset)
        self.notify_append()

    def save_high_watermark(self) -> None:
        """Writes the HW file if the HW moved (temporary file + rename, no fsync: a lost update
        only makes a restarted replica start from a lower, still safe, HW)."""
        hw = self.high_watermark
        if self.directory is None or hw == self._saved_high_watermark:
            return
        target = self.directory / HIGH_WATERMARK_FILE
        temporary = target.with_suffix(".tmp")
        try:
            temporary.write_text(f"{hw}\n")
            os.replace(temporary, target)
        except OSError as exc:
            log.warning("%s-%d: cannot save the high watermark: %s", self.topic, self.index, exc)
            return
        self._saved_high_watermark = hw

    def end_offset_for(self, requested_epoch: int, current_leader_epoch: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch on the leader.

        Raises:
            NotLeaderOrFollower, FencedLeaderEpoch, UnknownLeaderEpoch.
        """
        leader = self.require_leader()
        leader.check_leader_epoch(current_leader_epoch)
        return self.epoch_cache.end_offset_for(requested_epoch, self.log_end_offset)

    # --- follower side -------------------------------------------------------------------------

    def truncate_to(self, offset: int) -> None:
        """Cuts the log at ``offset`` (the follower's truncation), saving the epoch cache if
        that changed it.

        Why not always: every follower truncates after every leader change, nearly always at
        its own log end, and each checkpoint write is two fsyncs on the event loop; a failover
        moving 2,000 partitions made that thousands of fsyncs for nothing."""
        truncated = offset < self.log_end_offset
        if truncated:
            log.info(
                "broker %d truncates %s-%d from %d to %d",
                self.broker_id,
                self.topic,
                self.index,
                self.log_end_offset,
                offset,
            )
            self.log.truncate_to(offset)
            self.producer_state = rebuild_producer_state(self.log)
        if self.epoch_cache.truncate_from_end(self.log_end_offset) or truncated:
            self._save_epochs()

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Our log ends below the leader's log start: drop it all and restart it empty at the
        leader's log start (Kafka's ``truncateFullyAndStartAt``), with an empty epoch cache
        and producer state; the fetcher then copies the leader's log from there."""
        log.info(
            "broker %d restarts %s-%d at the leader's log start %d (its log ended at %d)",
            self.broker_id,
            self.topic,
            self.index,
            offset,
            self.log_end_offset,
        )
        self.log.truncate_fully_and_start_at(offset)
        self.producer_state = ProducerStateManager()
        if self.follower is not None:
            self.follower.truncate_fully_and_start_at(offset, self.epoch_cache)
            self.follower.truncating = False
        else:
            self.epoch_cache.clear()
        self._save_epochs()
        self.known_high_watermark = offset
        self.save_high_watermark()

    def append_as_follower(self, records: bytes | memoryview, now: int) -> int:
        """Appends whole batches from a leader's Fetch response (a trailing partial batch is
        dropped); returns the number of bytes appended."""
        view = memoryview(records)
        headers: list[BatchHeader] = []
        start = end = 0
        position = 0
        if self.log_end_offset == self.log_start_offset and len(view) >= HEADER_SIZE:
            first = parse_batch_header(view, 0)
            if first.base_offset < self.log_end_offset < first.next_offset:
                # An empty log restarted at a leader's log start that falls inside this batch
                # (Kafka's UnexpectedAppendOffset case): restart at the batch's base instead.
                self.truncate_fully_and_start_at(first.base_offset)
        while len(view) - position >= HEADER_SIZE:
            header = parse_batch_header(view, position)
            if position + header.size > len(view):
                break  # a fetch response may end with a partial batch
            if header.base_offset < self.log_end_offset:
                start = position + header.size  # already held (cannot overlap: same boundaries)
            else:
                headers.append(header)
            position += header.size
            end = position
        if not headers:
            return 0
        data = bytes(view[start:end])
        self.log.append(data, leader_epoch=self.leader_epoch, now_ms=now, assign_offsets=False)
        changed = False
        for header in headers:
            self.producer_state.on_append(header)
            if header.partition_leader_epoch >= 0:
                changed |= self.epoch_cache.assign(
                    header.partition_leader_epoch, header.base_offset
                )
        if changed:
            self._save_epochs()
        return len(data)

    def report(self) -> tuple[int, int, int]:
        """(last leader epoch, LEO, current leader epoch) for the controller's quorum elections."""
        latest = self.epoch_cache.latest_epoch
        return (-1 if latest is None else latest, self.log_end_offset, self.leader_epoch)

    def _save_epochs(self) -> None:
        if self.directory is not None:
            # No fsync: the cache is derived from the log on open (see open()).
            save_checkpoint(self.directory / CHECKPOINT_FILE_NAME, self.epoch_cache, durable=False)


def _load_high_watermark(directory: Path) -> int:
    try:
        return int((directory / HIGH_WATERMARK_FILE).read_text().strip())
    except (OSError, ValueError):
        return 0


__all__ = ["FOLLOWER", "IDLE", "LEADER", "ReplicaPartition"]
