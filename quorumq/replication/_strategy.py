"""Replication strategies: the one small interface where ``quorum`` and ``isr`` differ.

Theory of operation: everything else in replication (followers fetching with Kafka's Fetch,
leader epochs, truncation) is shared. A strategy answers four questions for a partition leader
and the controller, as pure functions of what they know:

- ``high_watermark``: up to which offset is the log committed?
- ``can_accept_acks_all``: may an ``acks=all`` produce be appended (or, after append, answered)?
- ``isr_changes``: which replicas does the leader report as in sync now?
- ``choose_leader``: which replica leads the next epoch?

``quorum`` commits what a majority of replicas hold and elects the most complete log among a
live majority (Raft's rules on Kafka's data). ``isr`` is Kafka's primary-backup: it commits what
every in-sync replica holds, drops laggards from the ISR through the controller, and elects only
from the ISR. ``docs/replication.md`` compares them; :data:`DEFAULT_STRATEGY` is ``quorum``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import ClassVar, Protocol, runtime_checkable

import attrs

from quorumq.errors import (
    InvalidConfig,
    NotEnoughReplicas,
    NotEnoughReplicasAfterAppend,
    QuorumqError,
)

DEFAULT_STRATEGY = "quorum"
"""The default ``replication.strategy`` (justified in docs/replication.md)."""

DEFAULT_REPLICA_LAG_TIME_MAX_MS = 30_000
"""Kafka's ``replica.lag.time.max.ms`` default."""

UNKNOWN_OFFSET = -1
"""A follower's log end offset before its first fetch in this leader epoch (Kafka's UnknownOffset)."""


@attrs.frozen
class ReplicaProgress:
    """What the leader knows of one follower's log, updated on each of its fetches.

    Kafka's ``ReplicaState``. ``last_caught_up_ms`` follows Kafka's rule: a fetch at or past the
    leader's current log end offset means caught up *now*; a fetch at or past the log end offset
    the leader had at the *previous* fetch means caught up as of that previous fetch.
    """

    broker_id: int
    log_end_offset: int = UNKNOWN_OFFSET
    last_fetch_ms: int = 0
    last_caught_up_ms: int = 0
    last_fetch_leader_log_end_offset: int = UNKNOWN_OFFSET
    """The leader's log end offset when this follower last fetched."""

    def is_caught_up(self, leader_log_end_offset: int, now_ms: int, lag_time_max_ms: int) -> bool:
        """Kafka's ``isCaughtUp``: at the leader's LEO, or caught up within the lag time."""
        return (
            self.log_end_offset == leader_log_end_offset
            or now_ms - self.last_caught_up_ms <= lag_time_max_ms
        )


def majority(replica_count: int) -> int:
    """The smallest number of replicas that is more than half of ``replica_count``."""
    return replica_count // 2 + 1


@runtime_checkable
class ReplicationStrategy(Protocol):
    """What differs between ``quorum`` and ``isr``: commit, admission, ISR and election rules.

    Every method is pure; arguments are what the leader (or the controller, for
    ``choose_leader``) knows at the moment of the call.
    """

    name: ClassVar[str]
    isr_is_advisory: ClassVar[bool]
    """True when the ISR does not gate commits or elections: the leader applies its own ISR
    changes at once and only reports them (for Metadata); False when every change must be
    committed by the controller first (an AlterPartition-style record)."""

    def high_watermark(
        self,
        leader_log_end_offset: int,
        progress: Mapping[int, ReplicaProgress],
        isr: Collection[int],
        epoch_start_offset: int = 0,
    ) -> int:
        """The offset below which the log is committed, by this strategy's rule.

        The caller keeps the high watermark monotonic; this is only the rule's candidate.

        Args:
            leader_log_end_offset: the leader's own LEO.
            progress: every follower in the assignment (leader excluded) by broker id.
            isr: the ISR the leader must honour (for ``isr``, the committed ISR plus any
                pending additions; the leader is a member).
            epoch_start_offset: the leader's LEO when its epoch began.
        """
        ...

    def can_accept_acks_all(
        self,
        replicas: Sequence[int],
        isr: Collection[int],
        min_insync_replicas: int,
        *,
        after_append: bool = False,
    ) -> QuorumqError | None:
        """The error to answer an ``acks=all`` produce with, or None to accept it.

        ``after_append=False`` is Kafka's check before appending (NOT_ENOUGH_REPLICAS);
        ``after_append=True`` is the check when the high watermark has passed the batch
        (NOT_ENOUGH_REPLICAS_AFTER_APPEND).
        """
        ...

    def isr_changes(
        self,
        now_ms: int,
        *,
        leader_id: int,
        leader_log_end_offset: int,
        high_watermark: int,
        epoch_start_offset: int,
        replicas: Sequence[int],
        isr: Collection[int],
        progress: Mapping[int, ReplicaProgress],
        lag_time_max_ms: int,
    ) -> frozenset[int] | None:
        """The ISR the leader should propose now, or None when it is unchanged."""
        ...

    def choose_leader(
        self,
        replicas: Sequence[int],
        live: Collection[int],
        reports: Mapping[int, tuple[int, int]],
        isr: Collection[int],
        unclean_allowed: bool,
    ) -> int | None:
        """The leader of the next epoch, or None when no replica may lead.

        Args:
            replicas: the assignment, in preference order.
            live: brokers the controller considers alive (registered, not fenced).
            reports: ``broker_id -> (last_leader_epoch, log_end_offset)`` as replicas reported
                them *after* learning that the previous epoch is over (a report is a promise
                not to follow an older leader; ``quorum`` relies on it).
            isr: the controller's ISR.
            unclean_allowed: ``unclean.leader.election.enable``.
        """
        ...


def _caught_up_set(
    now_ms: int,
    leader_id: int,
    leader_log_end_offset: int,
    progress: Mapping[int, ReplicaProgress],
    lag_time_max_ms: int,
) -> set[int]:
    caught_up = {leader_id}
    for broker_id, state in progress.items():
        if state.is_caught_up(leader_log_end_offset, now_ms, lag_time_max_ms):
            caught_up.add(broker_id)
    return caught_up


@attrs.frozen
class QuorumStrategy:
    """``quorum``: commit on a majority of replicas, elect the most complete log of a majority.

    - High watermark: the majority-th highest LEO among all replicas, leader included, as in
      Raft. With three or more replicas it may only pass offsets of earlier epochs together with
      an offset of the current epoch (KRaft's rule, Raft §5.4.2): otherwise a record copied to a
      majority by a later leader could still be overwritten by a replica whose last epoch is
      newer but whose log lacks the record. A new leader therefore commits its predecessors'
      tail with its first own record.
    - The ISR is advisory: the replicas caught up within ``replica.lag.time.max.ms`` (Kafka's
      rule), reported for Metadata and used to refuse ``acks=all`` early when fewer than a
      majority are caught up (the write could not commit in time anyway). It never gates the
      high watermark or elections, so a slow or dead follower of three stalls nothing.
    - Election: only with reports from a live majority; the first replica in assignment order
      whose (last leader epoch, LEO) is at least that of a majority of the replicas (itself
      included) wins: Raft's vote rule, where a candidate needs a majority of voters whose logs
      are no more up to date than its own. Any committed record is on a majority, which
      intersects the majority the winner is at least as complete as, so the winner holds it.
      The most complete reporter always qualifies; the assignment order lets the preferred
      replica win a planned election (ElectLeaders, the rebalance check) when it is close
      behind a leader whose uncommitted tail is longer, instead of only on an exact tie.
    """

    name: ClassVar[str] = "quorum"
    isr_is_advisory: ClassVar[bool] = True

    def high_watermark(
        self,
        leader_log_end_offset: int,
        progress: Mapping[int, ReplicaProgress],
        isr: Collection[int],
        epoch_start_offset: int = 0,
    ) -> int:
        """The majority-th highest LEO, held back until it passes ``epoch_start_offset``."""
        if not progress:
            return leader_log_end_offset
        log_end_offsets = [state.log_end_offset for state in progress.values()]
        log_end_offsets.append(leader_log_end_offset)
        log_end_offsets.sort(reverse=True)
        candidate = log_end_offsets[len(log_end_offsets) // 2]
        if len(log_end_offsets) >= 3 and candidate <= epoch_start_offset:
            # Nothing of the current epoch is on a majority yet: earlier-epoch records are not
            # safe to commit by counting copies (see the class docstring). With two replicas a
            # majority is both, and every later election needs both, so counting is safe.
            return UNKNOWN_OFFSET
        return candidate

    def can_accept_acks_all(
        self,
        replicas: Sequence[int],
        isr: Collection[int],
        min_insync_replicas: int,
        *,
        after_append: bool = False,
    ) -> QuorumqError | None:
        """Refuses when fewer than a majority are caught up; ``min.insync.replicas`` is unused.

        After append there is nothing left to check: a high watermark past the batch means a
        majority holds it, which is the whole promise.
        """
        if after_append:
            return None
        needed = majority(len(replicas))
        if len(isr) < needed:
            return NotEnoughReplicas(
                f"only {len(isr)} of {len(replicas)} replicas are caught up; "
                f"quorum needs a majority of {needed}"
            )
        return None

    def isr_changes(
        self,
        now_ms: int,
        *,
        leader_id: int,
        leader_log_end_offset: int,
        high_watermark: int,
        epoch_start_offset: int,
        replicas: Sequence[int],
        isr: Collection[int],
        progress: Mapping[int, ReplicaProgress],
        lag_time_max_ms: int,
    ) -> frozenset[int] | None:
        """The replicas caught up within the lag time (Kafka's rule), if that set changed."""
        proposed = frozenset(
            _caught_up_set(now_ms, leader_id, leader_log_end_offset, progress, lag_time_max_ms)
        )
        return None if proposed == frozenset(isr) else proposed

    def choose_leader(
        self,
        replicas: Sequence[int],
        live: Collection[int],
        reports: Mapping[int, tuple[int, int]],
        isr: Collection[int],
        unclean_allowed: bool,
    ) -> int | None:
        """The first live reporter, in assignment order, at least as up to date as a majority
        of the replicas (itself included), given a live majority of reporters."""
        voters = [r for r in replicas if r in live and r in reports]
        needed = majority(len(replicas))
        if len(voters) < needed:
            return None
        keys = [tuple(reports[v]) for v in voters]
        for candidate, key in zip(voters, keys, strict=True):
            if sum(1 for other in keys if key >= other) >= needed:
                return candidate
        raise AssertionError("the most complete reporter always qualifies")  # pragma: no cover


@attrs.frozen
class IsrStrategy:
    """``isr``: Kafka's primary-backup replication.

    - High watermark: the lowest LEO across the ISR (the caller passes the *maximal* ISR: the
      committed one plus additions it has proposed, as Kafka does, so a replica about to join
      never lacks a committed record).
    - ``acks=all`` needs ``|ISR| >= min.insync.replicas``, checked before append
      (NOT_ENOUGH_REPLICAS) and again when the high watermark passes the batch
      (NOT_ENOUGH_REPLICAS_AFTER_APPEND).
    - ISR: a follower not caught up for ``replica.lag.time.max.ms`` is dropped; one whose LEO
      reaches the high watermark and the leader's epoch start offset is added back (Kafka's
      ``isFollowerInSync``). Changes take effect only once the controller commits them.
    - Election: the first live replica (assignment order) in the ISR; with
      ``unclean.leader.election.enable`` the first live replica; otherwise none.
    """

    name: ClassVar[str] = "isr"
    isr_is_advisory: ClassVar[bool] = False

    def high_watermark(
        self,
        leader_log_end_offset: int,
        progress: Mapping[int, ReplicaProgress],
        isr: Collection[int],
        epoch_start_offset: int = 0,
    ) -> int:
        """The lowest LEO across the ISR (unknown follower LEOs count as -1)."""
        lowest = leader_log_end_offset
        for broker_id in isr:
            state = progress.get(broker_id)
            if state is not None and state.log_end_offset < lowest:
                lowest = state.log_end_offset
        return lowest

    def can_accept_acks_all(
        self,
        replicas: Sequence[int],
        isr: Collection[int],
        min_insync_replicas: int,
        *,
        after_append: bool = False,
    ) -> QuorumqError | None:
        """NOT_ENOUGH_REPLICAS(_AFTER_APPEND) when ``|ISR| < min.insync.replicas``."""
        if len(isr) >= min_insync_replicas:
            return None
        message = (
            f"the ISR has {len(isr)} replicas, fewer than min.insync.replicas={min_insync_replicas}"
        )
        if after_append:
            return NotEnoughReplicasAfterAppend(message)
        return NotEnoughReplicas(message)

    def isr_changes(
        self,
        now_ms: int,
        *,
        leader_id: int,
        leader_log_end_offset: int,
        high_watermark: int,
        epoch_start_offset: int,
        replicas: Sequence[int],
        isr: Collection[int],
        progress: Mapping[int, ReplicaProgress],
        lag_time_max_ms: int,
    ) -> frozenset[int] | None:
        """Shrinks laggards, expands followers at the HW and epoch start (Kafka's rules)."""
        current = frozenset(isr)
        proposed = {leader_id}
        for broker_id in replicas:
            if broker_id == leader_id:
                continue
            state = progress.get(broker_id)
            if state is None:
                continue
            if broker_id in current:
                if state.is_caught_up(leader_log_end_offset, now_ms, lag_time_max_ms):
                    proposed.add(broker_id)
            elif (
                state.log_end_offset >= high_watermark
                and state.log_end_offset >= epoch_start_offset
            ):
                proposed.add(broker_id)
        result = frozenset(proposed)
        return None if result == current else result

    def choose_leader(
        self,
        replicas: Sequence[int],
        live: Collection[int],
        reports: Mapping[int, tuple[int, int]],
        isr: Collection[int],
        unclean_allowed: bool,
    ) -> int | None:
        """First live ISR member; else, if allowed, the first live replica; else None."""
        for broker_id in replicas:
            if broker_id in live and broker_id in isr:
                return broker_id
        if unclean_allowed:
            for broker_id in replicas:
                if broker_id in live:
                    return broker_id
        return None


STRATEGIES: Mapping[str, ReplicationStrategy] = {
    QuorumStrategy.name: QuorumStrategy(),
    IsrStrategy.name: IsrStrategy(),
}
"""Every ``replication.strategy`` value quorumq accepts, by name."""


def strategy_for(name: str) -> ReplicationStrategy:
    """The strategy for a ``replication.strategy`` topic config value.

    Raises:
        InvalidConfig: any value other than ``quorum`` or ``isr``.
    """
    strategy = STRATEGIES.get(name)
    if strategy is None:
        raise InvalidConfig(
            f"invalid value {name!r} for replication.strategy: expected one of "
            f"{', '.join(sorted(STRATEGIES))}"
        )
    return strategy
