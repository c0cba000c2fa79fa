"""A follower's view of one partition, and KIP-101/KIP-279 divergence (truncation) logic.

Theory of operation: when a replica starts following a leader (a new epoch, a restart, a deposed
leader stepping down), its log may end in records the new leader never had: an uncommitted
tail written by an old leader. Before fetching, the follower asks the leader
``OffsetForLeaderEpoch(latest epoch in my cache)``; the leader answers with the epoch it has at or
below that one and where that epoch ends in *its* log. The follower truncates to the smaller of
that end offset and its own end offset for the same epoch. If the leader answered an older epoch
than the follower knows (the follower has whole epochs the leader never saw), the follower first
truncates to the end of that older epoch in its own log and asks again (KIP-279), until the
answer names an epoch both know. Then it fetches from its log end offset, appends the batches
unchanged, and learns the high watermark from each response: follower HW = min(leader HW, own
LEO).

The shell owns the log: it truncates the log where :meth:`FollowerReplicaState.on_leader_epoch_answer`
says, appends fetched batches (``cache.assign(batch.partition_leader_epoch, batch.base_offset)``
for each) and reports the new LEO with :meth:`FollowerReplicaState.on_fetch_response`.
"""

from __future__ import annotations

import attrs

from quorumq.errors import FencedLeaderEpoch, OffsetOutOfRange
from quorumq.replication._epoch_cache import (
    UNDEFINED_EPOCH,
    UNDEFINED_EPOCH_OFFSET,
    LeaderEpochCache,
)


@attrs.frozen
class Truncation:
    """Where to truncate the local log, and whether the divergence search is over.

    ``complete=False`` (KIP-279): truncate to ``offset`` and ask ``OffsetForLeaderEpoch`` again
    with the new latest epoch.
    """

    offset: int
    complete: bool


def plan_truncation(
    local_epoch_cache: LeaderEpochCache,
    leader_answer: tuple[int, int],
    *,
    log_end_offset: int,
    high_watermark: int,
) -> Truncation:
    """Kafka's ``AbstractFetcherThread.getOffsetTruncationState``, as a pure function.

    Args:
        local_epoch_cache: the follower's leader-epoch cache.
        leader_answer: ``(leader_epoch, end_offset)`` from the leader's OffsetForLeaderEpoch
            answer for the follower's latest epoch.
        log_end_offset: the follower's LEO.
        high_watermark: the follower's high watermark (the fallback when the leader knows no
            epoch at all, as in Kafka).

    Returns:
        The truncation offset (never above ``log_end_offset``) and whether it is final.
    """
    answer_epoch, answer_end_offset = leader_answer
    if local_epoch_cache.latest_epoch is None:
        # Nothing to compare against (Kafka skips the request and truncates to the HW).
        return Truncation(min(high_watermark, log_end_offset), True)
    if answer_end_offset == UNDEFINED_EPOCH_OFFSET or answer_epoch == UNDEFINED_EPOCH:
        if answer_end_offset == UNDEFINED_EPOCH_OFFSET:
            # The leader has no epoch <= ours (empty, or only newer epochs): keep what is known
            # committed and refetch the rest.
            return Truncation(min(high_watermark, log_end_offset), True)
        # An answer without epoch (OffsetForLeaderEpoch v0): trust the offset.
        return Truncation(min(answer_end_offset, log_end_offset), True)
    local_epoch, local_end_offset = local_epoch_cache.end_offset_for(answer_epoch, log_end_offset)
    if local_epoch == UNDEFINED_EPOCH:
        # We never tracked epochs that old; the leader's offset is the best we have.
        return Truncation(min(answer_end_offset, log_end_offset), True)
    if local_epoch != answer_epoch:
        # We do not know the epoch the leader answered with: cut back to the end of the
        # largest epoch we have below it, and ask again about that one (KIP-279).
        return Truncation(min(local_end_offset, log_end_offset), False)
    return Truncation(min(local_end_offset, answer_end_offset, log_end_offset), True)


@attrs.define(eq=False)
class FollowerReplicaState:
    """One partition as a follower sees it (build with :meth:`become_follower`).

    invariant: log_start_offset <= high_watermark <= log_end_offset (= the next fetch offset).
    """

    broker_id: int
    leader_id: int
    leader_epoch: int
    log_start_offset: int
    log_end_offset: int
    high_watermark: int
    truncating: bool = True
    """True until the divergence search with the current leader is complete; no fetch before."""

    @classmethod
    def become_follower(
        cls,
        *,
        broker_id: int,
        leader_id: int,
        leader_epoch: int,
        log_start_offset: int,
        log_end_offset: int,
        high_watermark: int,
    ) -> FollowerReplicaState:
        """The state of a replica that starts following ``leader_id`` in ``leader_epoch``."""
        return cls(
            broker_id=broker_id,
            leader_id=leader_id,
            leader_epoch=leader_epoch,
            log_start_offset=log_start_offset,
            log_end_offset=log_end_offset,
            high_watermark=min(max(high_watermark, log_start_offset), log_end_offset),
        )

    @property
    def fetch_offset(self) -> int:
        """The next Fetch's ``fetch_offset``: the follower's LEO."""
        return self.log_end_offset

    def on_new_leader(self, leader_id: int, leader_epoch: int) -> bool:
        """Metadata names a leader; returns True when it is a new epoch (truncate again).

        Raises:
            FencedLeaderEpoch: the metadata is older than what this follower already follows.
        """
        if leader_epoch < self.leader_epoch:
            raise FencedLeaderEpoch(
                f"leader epoch {leader_epoch} is older than the followed epoch {self.leader_epoch}"
            )
        if leader_epoch == self.leader_epoch and leader_id == self.leader_id:
            return False
        self.leader_id = leader_id
        self.leader_epoch = leader_epoch
        self.truncating = True
        return True

    def offset_for_leader_epoch_request(self, local_epoch_cache: LeaderEpochCache) -> int:
        """The ``leader_epoch`` to ask the leader about: our latest, or -1 when we have none."""
        latest = local_epoch_cache.latest_epoch
        return UNDEFINED_EPOCH if latest is None else latest

    def last_fetched_epoch(self, local_epoch_cache: LeaderEpochCache) -> int:
        """The Fetch's ``last_fetched_epoch`` (v12+): the epoch of our last batch, or -1."""
        return self.offset_for_leader_epoch_request(local_epoch_cache)

    def truncation_offset(
        self, local_epoch_cache: LeaderEpochCache, leader_answer: tuple[int, int]
    ) -> int:
        """Where the log must be cut given the leader's OffsetForLeaderEpoch answer.

        Pure: see :func:`plan_truncation` (which also says whether another round is needed).
        """
        return plan_truncation(
            local_epoch_cache,
            leader_answer,
            log_end_offset=self.log_end_offset,
            high_watermark=self.high_watermark,
        ).offset

    def on_leader_epoch_answer(
        self, local_epoch_cache: LeaderEpochCache, leader_answer: tuple[int, int]
    ) -> Truncation:
        """Applies the leader's answer: truncates the cache and this state; the shell cuts the log.

        ``leader_answer`` is an OffsetForLeaderEpoch answer, or a Fetch response's
        ``diverging_epoch`` (then, if the result is not complete, the next Fetch with the new
        ``last_fetched_epoch`` continues the search).

        After this, the shell truncates the log to ``result.offset`` (and saves the epoch cache
        checkpoint). While ``result.complete`` is False it asks again
        (:meth:`offset_for_leader_epoch_request`); once True, fetching starts at
        :attr:`fetch_offset`.
        """
        plan = plan_truncation(
            local_epoch_cache,
            leader_answer,
            log_end_offset=self.log_end_offset,
            high_watermark=self.high_watermark,
        )
        self.truncate_to(plan.offset, local_epoch_cache)
        if plan.complete:
            self.truncating = False
        return plan

    def truncate_to(self, offset: int, local_epoch_cache: LeaderEpochCache | None = None) -> None:
        """The log was cut at ``offset``: LEO and HW follow (and the epoch cache, if given)."""
        if offset < self.log_end_offset:
            self.log_end_offset = max(offset, self.log_start_offset)
        self.high_watermark = min(self.high_watermark, self.log_end_offset)
        if local_epoch_cache is not None:
            local_epoch_cache.truncate_from_end(self.log_end_offset)

    def truncate_fully_and_start_at(
        self, offset: int, local_epoch_cache: LeaderEpochCache | None = None
    ) -> None:
        """The leader's log starts past ours (Fetch answered OFFSET_OUT_OF_RANGE below its log
        start): the shell deletes the local log and restarts it empty at ``offset``.

        Kafka's ``truncateFullyAndStartAt``; the epoch cache is cleared too.
        """
        self.log_start_offset = offset
        self.log_end_offset = offset
        self.high_watermark = offset
        if local_epoch_cache is not None:
            local_epoch_cache.clear()

    def on_fetch_response(self, leader_high_watermark: int, log_end_offset: int) -> int:
        """The shell appended a fetch response's batches; returns the new follower HW.

        Args:
            leader_high_watermark: the response's ``high_watermark``.
            log_end_offset: the follower's LEO after appending.

        Raises:
            OffsetOutOfRange: a LEO that moved backwards without a truncation (a shell bug).
        """
        if log_end_offset < self.log_end_offset:
            raise OffsetOutOfRange(
                f"follower LEO cannot move back from {self.log_end_offset} to {log_end_offset} "
                "without a truncation"
            )
        self.log_end_offset = log_end_offset
        self.high_watermark = max(self.log_start_offset, min(leader_high_watermark, log_end_offset))
        return self.high_watermark

    def on_log_start_offset(self, log_start_offset: int) -> None:
        """The leader's log start moved (the response's ``log_start_offset``) or ours did."""
        self.log_start_offset = max(self.log_start_offset, log_start_offset)
        if self.log_end_offset < self.log_start_offset:
            self.log_end_offset = self.log_start_offset
        if self.high_watermark < self.log_start_offset:
            self.high_watermark = self.log_start_offset
