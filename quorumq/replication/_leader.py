"""The leader's view of one partition: follower progress, the high watermark, the ISR.

Theory of operation: the broker shell owns the log and the sockets; it tells this object what
happened (the leader appended up to a new LEO; follower F fetched at offset X in epoch E; time
passed; the controller committed a new ISR) and acts on what comes back (a new high watermark
to wake delayed produces and fetches with; an ISR change to send to the controller). The
strategy decides the rules; this object keeps the state and its invariants:

- the high watermark never moves backwards while this replica leads this epoch;
- ``log_start_offset <= high_watermark <= log_end_offset``;
- fetches from an older leader epoch are fenced (FENCED_LEADER_EPOCH) and from a newer one
  refused (UNKNOWN_LEADER_EPOCH), so a deposed leader that wakes up cannot count its old
  followers towards a commit once they have moved on.

Durability: the offsets given to :meth:`on_append` and carried by follower fetches are what the
high watermark counts. With ``flush.messages=1`` the shell passes the leader's *flushed* LEO,
and followers fetch only after flushing, so a commit means "on disk on a majority / the ISR";
otherwise it means "in the page cache of" them (see docs/replication.md).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import attrs

from quorumq.errors import (
    FencedLeaderEpoch,
    NotEnoughReplicas,
    NotEnoughReplicasAfterAppend,
    NotLeaderOrFollower,
    OffsetOutOfRange,
    UnknownLeaderEpoch,
)
from quorumq.replication._epoch_cache import (
    UNDEFINED_EPOCH,
    UNDEFINED_EPOCH_OFFSET,
    LeaderEpochCache,
)
from quorumq.replication._strategy import (
    DEFAULT_REPLICA_LAG_TIME_MAX_MS,
    ReplicaProgress,
    ReplicationStrategy,
)

NO_EPOCH_CHECK = -1
"""``current_leader_epoch = -1`` in a request means "do not check" (Kafka clients before KIP-320)."""


@attrs.frozen
class HighWatermarkUpdate:
    """The high watermark after an event, and whether the event advanced it."""

    high_watermark: int
    advanced: bool


@attrs.frozen
class IsrChange:
    """An ISR the leader proposes (an AlterPartition-style request to the controller).

    ``leader_epoch`` and ``partition_epoch`` say which state the proposal was computed from, so
    the controller can refuse a stale one (FENCED_LEADER_EPOCH / INVALID_UPDATE_VERSION).
    """

    leader_id: int
    leader_epoch: int
    partition_epoch: int
    isr: frozenset[int]
    added: frozenset[int]
    removed: frozenset[int]
    advisory: bool
    """True for ``quorum``: already applied by the leader, reported for Metadata only."""


@attrs.frozen
class FollowerFetchResult:
    """What a follower fetch changed: the high watermark to answer with, and any ISR proposal."""

    high_watermark: int
    advanced: bool
    isr_change: IsrChange | None = None


@attrs.define(eq=False)
class LeaderReplicaState:
    """One partition as its leader sees it, for one leader epoch (build with :meth:`become_leader`).

    invariant: log_start_offset <= high_watermark <= log_end_offset, and high_watermark never
    decreases during the life of this object.
    """

    strategy: ReplicationStrategy
    broker_id: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: frozenset[int]
    """The ISR as last committed by the controller (``isr``) or applied locally (``quorum``)."""
    partition_epoch: int
    log_start_offset: int
    log_end_offset: int
    high_watermark: int
    epoch_start_offset: int
    """The leader's LEO when this epoch began (Kafka's ``leaderEpochStartOffsetOpt``)."""
    min_insync_replicas: int
    replica_lag_time_max_ms: int
    progress: dict[int, ReplicaProgress] = attrs.Factory(dict)
    """Every follower in ``replicas``, by broker id."""
    pending_isr: frozenset[int] | None = None
    """An ISR proposed to the controller and not yet answered (``isr`` only)."""

    @classmethod
    def become_leader(
        cls,
        *,
        strategy: ReplicationStrategy,
        broker_id: int,
        leader_epoch: int,
        replicas: Sequence[int],
        isr: Collection[int],
        log_start_offset: int,
        log_end_offset: int,
        high_watermark: int,
        now_ms: int,
        partition_epoch: int = 0,
        min_insync_replicas: int = 1,
        replica_lag_time_max_ms: int = DEFAULT_REPLICA_LAG_TIME_MAX_MS,
    ) -> LeaderReplicaState:
        """The state of a replica that just became leader of ``leader_epoch``.

        Mirrors Kafka's ``Partition.makeLeader``: follower LEOs are unknown until they fetch,
        followers in the ISR count as caught up now, the high watermark starts at what this
        replica knew as a follower (clamped into [log_start_offset, log_end_offset]) and the
        epoch starts at the current LEO. The shell must also ``assign(leader_epoch,
        log_end_offset)`` in the replica's :class:`LeaderEpochCache`.

        Raises:
            NotLeaderOrFollower: ``broker_id`` is not in ``replicas`` (a controller bug).
        """
        replicas = tuple(replicas)
        if broker_id not in replicas:
            raise NotLeaderOrFollower(f"broker {broker_id} is not a replica of {replicas}")
        isr_set = frozenset(isr) | {broker_id}
        progress = {
            replica: ReplicaProgress(
                broker_id=replica,
                last_caught_up_ms=now_ms if replica in isr_set else 0,
            )
            for replica in replicas
            if replica != broker_id
        }
        high_watermark = min(max(high_watermark, log_start_offset), log_end_offset)
        state = cls(
            strategy=strategy,
            broker_id=broker_id,
            leader_epoch=leader_epoch,
            replicas=replicas,
            isr=isr_set,
            partition_epoch=partition_epoch,
            log_start_offset=log_start_offset,
            log_end_offset=log_end_offset,
            high_watermark=high_watermark,
            epoch_start_offset=log_end_offset,
            min_insync_replicas=min_insync_replicas,
            replica_lag_time_max_ms=replica_lag_time_max_ms,
            progress=progress,
        )
        state._maybe_advance_high_watermark()
        return state

    # --- events --------------------------------------------------------------------------------

    def on_append(self, log_end_offset: int, now_ms: int) -> HighWatermarkUpdate:
        """The leader's log now ends at ``log_end_offset`` (after an append, or a flush).

        The high watermark may advance at once (a single replica, an ISR of the leader alone).

        Raises:
            OffsetOutOfRange: a LEO below the current one (a leader never truncates: a bug).
        """
        if log_end_offset < self.log_end_offset:
            raise OffsetOutOfRange(
                f"leader LEO cannot move back from {self.log_end_offset} to {log_end_offset}"
            )
        self.log_end_offset = log_end_offset
        return self._maybe_advance_high_watermark()

    def on_log_start_offset(self, log_start_offset: int) -> None:
        """Retention or DeleteRecords moved the log start offset forward."""
        self.log_start_offset = max(self.log_start_offset, log_start_offset)
        if self.high_watermark < self.log_start_offset:
            # DeleteRecords can only delete below the HW, and retention only whole segments
            # below it; but a log start offset past the HW after recovery is possible, and the
            # invariant log_start <= HW is what readers rely on.
            self.high_watermark = min(self.log_start_offset, self.log_end_offset)

    def check_leader_epoch(self, current_leader_epoch: int) -> None:
        """Fences a request that names another leader epoch (KIP-320).

        Raises:
            FencedLeaderEpoch: the request's epoch is older than this leader's.
            UnknownLeaderEpoch: the request's epoch is newer (this leader is stale).
        """
        if current_leader_epoch == NO_EPOCH_CHECK:
            return
        if current_leader_epoch < self.leader_epoch:
            raise FencedLeaderEpoch(
                f"request epoch {current_leader_epoch} is older than leader epoch "
                f"{self.leader_epoch}"
            )
        if current_leader_epoch > self.leader_epoch:
            raise UnknownLeaderEpoch(
                f"request epoch {current_leader_epoch} is newer than leader epoch "
                f"{self.leader_epoch}"
            )

    def on_follower_fetch(
        self,
        replica_id: int,
        fetch_offset: int,
        fetch_leader_epoch: int,
        now_ms: int,
    ) -> FollowerFetchResult:
        """Follower ``replica_id`` fetched at ``fetch_offset``: its LEO is now that offset.

        Updates the follower's progress (Kafka's ``updateFetchState``), may advance the high
        watermark, and for a follower outside the ISR may propose adding it back.

        Args:
            replica_id: the Fetch request's ``replica_id``.
            fetch_offset: the partition's ``fetch_offset`` (the follower's LEO).
            fetch_leader_epoch: the partition's ``current_leader_epoch``.
            now_ms: the time the fetch arrived.

        Raises:
            FencedLeaderEpoch / UnknownLeaderEpoch: see :meth:`check_leader_epoch`.
            NotLeaderOrFollower: ``replica_id`` is not a follower of this partition.
            OffsetOutOfRange: ``fetch_offset`` outside [log_start_offset, log_end_offset].
        """
        self.check_leader_epoch(fetch_leader_epoch)
        previous = self.progress.get(replica_id)
        if previous is None:
            raise NotLeaderOrFollower(
                f"broker {replica_id} is not a follower of this partition (replicas "
                f"{self.replicas}, leader {self.broker_id})"
            )
        if fetch_offset < self.log_start_offset or fetch_offset > self.log_end_offset:
            raise OffsetOutOfRange(
                f"follower {replica_id} fetch offset {fetch_offset} outside "
                f"[{self.log_start_offset}, {self.log_end_offset}]"
            )
        leader_log_end_offset = self.log_end_offset
        if (
            fetch_offset == leader_log_end_offset
            and previous.log_end_offset == fetch_offset
            and previous.last_fetch_leader_log_end_offset == fetch_offset
            and replica_id in self._maximal_isr()
        ):
            # A caught-up follower asking again where it stood, with the leader's LEO where it
            # was then: nothing that sets the high watermark moved (every other change
            # recomputes it), and there is no ISR change to propose. Only the clocks move.
            # The common case for every idle partition of a follower's fetch session.
            self.progress[replica_id] = ReplicaProgress(
                broker_id=replica_id,
                log_end_offset=fetch_offset,
                last_fetch_ms=now_ms,
                last_caught_up_ms=max(previous.last_caught_up_ms, now_ms),
                last_fetch_leader_log_end_offset=fetch_offset,
            )
            return FollowerFetchResult(self.high_watermark, False)
        if fetch_offset >= leader_log_end_offset:
            last_caught_up_ms = max(previous.last_caught_up_ms, now_ms)
        elif fetch_offset >= previous.last_fetch_leader_log_end_offset:
            last_caught_up_ms = max(previous.last_caught_up_ms, previous.last_fetch_ms)
        else:
            last_caught_up_ms = previous.last_caught_up_ms
        self.progress[replica_id] = ReplicaProgress(
            broker_id=replica_id,
            log_end_offset=fetch_offset,
            last_fetch_ms=now_ms,
            last_caught_up_ms=last_caught_up_ms,
            last_fetch_leader_log_end_offset=leader_log_end_offset,
        )
        update = self._maybe_advance_high_watermark()
        isr_change = None
        if replica_id not in self._maximal_isr():
            # Kafka expands the ISR on the fetch path, so a follower that catches up rejoins
            # without waiting for the next tick.
            isr_change = self._propose_isr_change(now_ms)
        if isr_change is not None and isr_change.advisory:
            update = self._merge(update, self._maybe_advance_high_watermark())
        return FollowerFetchResult(update.high_watermark, update.advanced, isr_change)

    def tick(self, now_ms: int) -> IsrChange | None:
        """Periodic check (Kafka runs it every ``replica.lag.time.max.ms / 2``).

        Returns an ISR change to send to the controller (``isr``; nothing more is proposed until
        :meth:`on_isr_committed` or :meth:`on_isr_rejected`), or one already applied to report
        (``quorum``, ``advisory=True``), or None.
        """
        if self._settled():
            return None
        change = self._propose_isr_change(now_ms)
        if change is not None and change.advisory:
            self._maybe_advance_high_watermark()
        return change

    def _settled(self) -> bool:
        """Whether no tick can change the ISR, whatever the time: nothing proposed, every
        replica in the ISR, and every follower at the leader's LEO, which makes it caught up
        however long ago it fetched (Kafka's ``isCaughtUp``). Only an append, a fetch or an
        ISR change can end that. Why: a broker ticks every partition it leads four times a
        second, and with 2,000 partitions the full check was a third of an idle cluster's CPU.
        """
        if self.pending_isr is not None or len(self.isr) != len(self.replicas):
            return False
        if len(self.progress) != len(self.replicas) - 1:
            return False
        end = self.log_end_offset
        return all(state.log_end_offset == end for state in self.progress.values())

    def on_isr_committed(self, isr: Collection[int], partition_epoch: int) -> HighWatermarkUpdate:
        """The controller committed ``isr`` (our proposal, or its own change: a fenced broker).

        A smaller ISR can advance the high watermark (``isr``).

        Raises:
            NotLeaderOrFollower: an ISR without this leader (a controller bug).
        """
        isr_set = frozenset(isr)
        if self.broker_id not in isr_set:
            raise NotLeaderOrFollower(f"ISR {sorted(isr_set)} lacks its leader {self.broker_id}")
        self.isr = isr_set
        self.partition_epoch = max(self.partition_epoch, partition_epoch)
        self.pending_isr = None
        return self._maybe_advance_high_watermark()

    def on_isr_rejected(self) -> None:
        """The controller refused (or never answered) the pending proposal; recompute on tick."""
        self.pending_isr = None

    # --- acks=all ------------------------------------------------------------------------------

    def acks_all_check(self) -> None:
        """Checks an ``acks=all`` produce before append.

        Raises:
            NotEnoughReplicas: ``isr``: |ISR| < min.insync.replicas; ``quorum``: fewer than a
                majority of replicas caught up.
        """
        error = self.strategy.can_accept_acks_all(
            self.replicas, self.isr, self.min_insync_replicas, after_append=False
        )
        if error is not None:
            raise error

    def acks_all_completed(self, last_offset: int) -> bool:
        """Whether an ``acks=all`` batch ending at ``last_offset`` can be answered now.

        Kafka's ``checkEnoughReplicasReachOffset``: True once the high watermark passes
        ``last_offset``; False while waiting.

        Raises:
            NotEnoughReplicasAfterAppend: ``isr``: committed, but the ISR shrank below
                min.insync.replicas meanwhile.
        """
        if self.high_watermark <= last_offset:
            return False
        error = self.strategy.can_accept_acks_all(
            self.replicas, self.isr, self.min_insync_replicas, after_append=True
        )
        if error is not None:
            assert isinstance(error, NotEnoughReplicasAfterAppend | NotEnoughReplicas)
            raise error
        return True

    # --- views ---------------------------------------------------------------------------------

    @property
    def maximal_isr(self) -> frozenset[int]:
        """The committed ISR plus pending additions: what the high watermark must wait for."""
        return self._maximal_isr()

    @property
    def awaiting_epoch_record(self) -> bool:
        """``quorum`` with 3+ replicas: records of earlier epochs wait for one of this epoch.

        True while the high watermark is below the epoch start offset; the shell may append a
        record (a control batch) to commit the predecessors' tail sooner.
        """
        return self.strategy.isr_is_advisory and self.high_watermark < self.epoch_start_offset

    # --- internals -----------------------------------------------------------------------------

    def _maximal_isr(self) -> frozenset[int]:
        if self.pending_isr is None:
            return self.isr
        return self.isr | self.pending_isr

    def _maybe_advance_high_watermark(self) -> HighWatermarkUpdate:
        candidate = self.strategy.high_watermark(
            self.log_end_offset, self.progress, self._maximal_isr(), self.epoch_start_offset
        )
        candidate = min(candidate, self.log_end_offset)
        if candidate > self.high_watermark:
            self.high_watermark = candidate
            return HighWatermarkUpdate(candidate, True)
        return HighWatermarkUpdate(self.high_watermark, False)

    @staticmethod
    def _merge(first: HighWatermarkUpdate, second: HighWatermarkUpdate) -> HighWatermarkUpdate:
        return HighWatermarkUpdate(second.high_watermark, first.advanced or second.advanced)

    def _propose_isr_change(self, now_ms: int) -> IsrChange | None:
        advisory = self.strategy.isr_is_advisory
        if not advisory and self.pending_isr is not None:
            return None  # one AlterPartition in flight at a time, as in Kafka
        proposed = self.strategy.isr_changes(
            now_ms,
            leader_id=self.broker_id,
            leader_log_end_offset=self.log_end_offset,
            high_watermark=self.high_watermark,
            epoch_start_offset=self.epoch_start_offset,
            replicas=self.replicas,
            isr=self.isr,
            progress=self.progress,
            lag_time_max_ms=self.replica_lag_time_max_ms,
        )
        if proposed is None:
            return None
        change = IsrChange(
            leader_id=self.broker_id,
            leader_epoch=self.leader_epoch,
            partition_epoch=self.partition_epoch,
            isr=proposed,
            added=proposed - self.isr,
            removed=self.isr - proposed,
            advisory=advisory,
        )
        if advisory:
            self.isr = proposed
        else:
            self.pending_isr = proposed
        return change


def diverging_epoch(
    leader_epoch_cache: LeaderEpochCache,
    *,
    log_start_offset: int,
    log_end_offset: int,
    fetch_offset: int,
    last_fetched_epoch: int,
) -> tuple[int, int] | None:
    """The Fetch response's ``diverging_epoch`` for a follower's position (Fetch v12+, KIP-595).

    The same question as OffsetForLeaderEpoch, asked inside the Fetch: where does the epoch of
    the follower's last fetched batch end in the leader's log? If the leader has only an older
    epoch, or that epoch ends before ``fetch_offset``, the follower's tail diverges and the
    answer ``(epoch, end_offset)`` goes back instead of records; the follower applies it with
    :meth:`FollowerReplicaState.on_leader_epoch_answer`. None means the position is consistent.
    Kafka's ``Partition.validateFetchOffsetAndMaybeGetDivergingEpoch``.

    Args:
        last_fetched_epoch: the request's ``last_fetched_epoch``; ``-1`` skips the check.

    Raises:
        OffsetOutOfRange: the epoch's end is unknown here, or ``fetch_offset`` is below the log
            start offset (the follower must reset from the leader's log start).
    """
    if last_fetched_epoch == UNDEFINED_EPOCH:
        return None
    epoch, end_offset = leader_epoch_cache.end_offset_for(last_fetched_epoch, log_end_offset)
    if epoch == UNDEFINED_EPOCH or end_offset == UNDEFINED_EPOCH_OFFSET:
        raise OffsetOutOfRange(
            f"cannot find the end of last fetched epoch {last_fetched_epoch} in the leader's log"
        )
    if fetch_offset < log_start_offset:
        raise OffsetOutOfRange(
            f"fetch offset {fetch_offset} is below the log start offset {log_start_offset}"
        )
    if epoch < last_fetched_epoch or end_offset < fetch_offset:
        return epoch, end_offset
    return None
