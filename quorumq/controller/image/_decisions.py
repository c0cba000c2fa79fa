"""Controller decisions: pure functions from the image to the records to propose.

The active controller calls :func:`tick` periodically and :func:`plan_create_topic` for
CreateTopics; it proposes what they return. Each returned record is a compare-and-set against the
image it was computed from (and stamped with the controller epoch), so a decision made on a stale
image, or proposed twice, is rejected on apply instead of doing harm. Nothing here reads a clock or
a global random generator: ``now_ms`` and ``seed`` come in as arguments.

Leader election is pluggable: a :class:`LeaderElector` per ``replication.strategy`` (topic config).
The default :class:`IsrElector` is Kafka's: the first live ISR member in replica order; an unclean
election (first live replica) only with ``unclean.leader.election.enable=true``.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Collection, Mapping, Sequence, Set
from typing import Protocol

import attrs

from quorumq.errors import (
    ElectionNotNeeded,
    EligibleLeadersNotAvailable,
    InvalidPartitions,
    InvalidReplicaAssignment,
    InvalidReplicationFactor,
    InvalidRequest,
    InvalidTopic,
    PreferredLeaderNotAvailable,
    TopicAlreadyExists,
    UnknownTopicOrPartition,
)
from quorumq.protocol import ELECTION_PREFERRED, ELECTION_UNCLEAN

from ._image import BrokerState, MetadataImage, PartitionState
from ._liveness import BrokerLiveness
from ._records import (
    NO_LEADER,
    CreatePartitions,
    CreateTopic,
    FenceBroker,
    MetadataRecord,
    PartitionChange,
    UnfenceBroker,
)
from ._validation import topic_names_collide, validate_topic_configs, validate_topic_name

DEFAULT_SESSION_TIMEOUT_MS = 9000
"""Kafka's ``broker.session.timeout.ms`` default."""


class LeaderElector(Protocol):
    """Chooses a partition's new leader when its leader is gone (fenced) or absent.

    ``requires_fresh_reports``: elect in two steps. First the controller ends the dead leader's
    epoch (PartitionChange to NO_LEADER, which bumps the leader epoch). Then, on later ticks, it
    elects only from reports made under that new epoch (``ReplicaReport.current_leader_epoch``):
    votes from replicas that promised not to follow the old leader any more. ``quorum`` needs this
    (an old leader cut off from the controller may still be replicating); ``isr`` does not (the ISR
    is maintained through the controller).

    Args:
        partition: the partition as it is now (its ``leader`` is not live or is ``NO_LEADER``).
        live: ids of unfenced brokers (the leader candidates must be among them).
        reports: broker id → (last leader epoch, log end offset) of its replica, from heartbeats.
        topic_config: the topic's configs (e.g. ``unclean.leader.election.enable``).

    Returns:
        A live replica id, or None when no replica may lead (the partition stays leaderless).
    """

    requires_fresh_reports: bool

    def choose_leader(
        self,
        partition: PartitionState,
        live: Set[int],
        reports: Mapping[int, tuple[int, int]],
        topic_config: Mapping[str, str],
    ) -> int | None: ...


def _unclean_allowed(topic_config: Mapping[str, str]) -> bool:
    return topic_config.get("unclean.leader.election.enable", "false").lower() == "true"


@attrs.frozen
class IsrElector:
    """Kafka's election: the first live ISR member in replica order (clean).

    With ``unclean.leader.election.enable=true`` and no live ISR member, the first live replica
    leads (it may lack acknowledged records: that is what "unclean" means).
    """

    requires_fresh_reports: bool = False

    def choose_leader(
        self,
        partition: PartitionState,
        live: Set[int],
        reports: Mapping[int, tuple[int, int]],
        topic_config: Mapping[str, str],
    ) -> int | None:
        for broker_id in partition.replicas:
            if broker_id in partition.isr and broker_id in live:
                return broker_id
        if _unclean_allowed(topic_config):
            for broker_id in partition.replicas:
                if broker_id in live:
                    return broker_id
        return None


class ReplicationChooser(Protocol):
    """The election rule of a ``quorumq.replication`` strategy (QuorumStrategy, IsrStrategy)."""

    def choose_leader(
        self,
        replicas: Sequence[int],
        live: Collection[int],
        reports: Mapping[int, tuple[int, int]],
        isr: Collection[int],
        unclean_allowed: bool,
    ) -> int | None: ...


@attrs.frozen
class StrategyElector:
    """Adapts a replication strategy's ``choose_leader`` to :class:`LeaderElector`."""

    strategy: ReplicationChooser
    requires_fresh_reports: bool = False

    def choose_leader(
        self,
        partition: PartitionState,
        live: Set[int],
        reports: Mapping[int, tuple[int, int]],
        topic_config: Mapping[str, str],
    ) -> int | None:
        return self.strategy.choose_leader(
            replicas=partition.replicas,
            live=live,
            reports=reports,
            isr=partition.isr,
            unclean_allowed=_unclean_allowed(topic_config),
        )


def electors_for(
    strategies: Mapping[str, ReplicationChooser],
    *,
    fresh_reports_for: Collection[str] = ("quorum",),
) -> dict[str, LeaderElector]:
    """Electors for ``ControllerConfig`` from ``quorumq.replication.STRATEGIES``.

    ``fresh_reports_for`` names the strategies that elect in two steps (see
    :class:`LeaderElector`): by default ``quorum``.
    """
    return {
        name: StrategyElector(strategy, requires_fresh_reports=name in fresh_reports_for)
        for name, strategy in strategies.items()
    }


def _default_electors() -> dict[str, LeaderElector]:
    return {"isr": IsrElector()}


@attrs.frozen
class ControllerConfig:
    """What the controller's decisions depend on besides the image.

    ``electors`` maps a ``replication.strategy`` topic config value to its elector; topics without
    the config use ``default_replication_strategy``; a strategy without an elector falls back to
    :class:`IsrElector` (the integrator wires ``quorumq.replication``'s rules in here).
    """

    session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS
    electors: Mapping[str, LeaderElector] = attrs.field(factory=_default_electors)
    default_replication_strategy: str = "isr"
    auto_leader_rebalance_enable: bool = True
    """``auto.leader.rebalance.enable``: move leadership back to preferred replicas."""
    leader_imbalance_check_interval_ms: int = 300_000
    """``leader.imbalance.check.interval.seconds`` (Kafka's default, 300 s) in ms."""
    leader_imbalance_per_broker_percentage: int = 10
    """``leader.imbalance.per.broker.percentage``: the share of a broker's preferred
    partitions led elsewhere above which a check moves them back."""
    leader_rebalance_max_elections: int = 250
    """The most preferred elections one imbalance check proposes (quorumq's own limit; the
    rest wait for the next check). See :func:`plan_leader_rebalance`."""
    crash_probe_after_ms: int = 0
    """Silence after which the active controller probes a broker's listener for a crash,
    and the least time between two probes of one broker (``brokers_to_probe``, which also
    names the brokers not heard from since the takeover; a refused connection fences a
    broker without waiting out its session); 0 turns probing off. The cluster sets it to 1.5
    heartbeat intervals."""
    leader_transfer_timeout_ms: int = 5_000
    """How long a quorum preferred election waits for its leader to drain (``LeaderTransfers``)
    before it is proposed anyway. The leader hears of the transfer in its next heartbeat
    answer, so this must be well above ``broker.heartbeat.interval.ms`` (2 s by default)."""

    def elector_for(self, topic_config: Mapping[str, str]) -> LeaderElector:
        """The elector for a topic, from its ``replication.strategy`` config."""
        strategy = topic_config.get("replication.strategy", self.default_replication_strategy)
        elector = self.electors.get(strategy)
        return elector if elector is not None else IsrElector()


# --- replica assignment -------------------------------------------------------------------------


def assign_replicas(
    broker_ids: Sequence[int],
    num_partitions: int,
    replication_factor: int,
    *,
    seed: int,
    start_partition: int = 0,
) -> list[tuple[int, ...]]:
    """Kafka's rack-unaware replica assignment (AdminUtils.assignReplicasToBrokersRackUnaware).

    Brokers are sorted; partition p's first replica is broker ``(p + start) % n``, so leaders
    go round-robin. Followers are placed at a shift from the first replica that grows by one every
    ``n`` partitions, so the followers of one broker's partitions spread over all the others rather
    than always landing on its neighbour. ``start`` and the initial shift are drawn from
    ``random.Random(seed)`` (Kafka draws them at random so that topics do not all start on broker
    0); a fixed seed gives a fixed assignment.

    Raises:
        InvalidPartitions: ``num_partitions`` < 1.
        InvalidReplicationFactor: ``replication_factor`` < 1 or above ``len(broker_ids)``.
    """
    if num_partitions < 1:
        raise InvalidPartitions(f"number of partitions must be at least 1, got {num_partitions}")
    brokers = sorted(set(broker_ids))
    n = len(brokers)
    if replication_factor < 1:
        raise InvalidReplicationFactor(
            f"replication factor must be at least 1, got {replication_factor}"
        )
    if replication_factor > n:
        raise InvalidReplicationFactor(
            f"replication factor {replication_factor} larger than available brokers {n}"
        )
    rng = random.Random(seed)
    start_index = rng.randrange(n)
    next_replica_shift = rng.randrange(n)
    assignments: list[tuple[int, ...]] = []
    partition = max(0, start_partition)
    for _ in range(num_partitions):
        if partition > 0 and partition % n == 0:
            next_replica_shift += 1
        first = (partition + start_index) % n
        replicas = [brokers[first]]
        for j in range(replication_factor - 1):
            shift = 1 + (next_replica_shift + j) % (n - 1)
            replicas.append(brokers[(first + shift) % n])
        assignments.append(tuple(replicas))
        partition += 1
    return assignments


def plan_create_topic(
    image: MetadataImage,
    name: str,
    num_partitions: int,
    replication_factor: int,
    *,
    topic_id: str,
    seed: int,
    configs: Mapping[str, str] | None = None,
    assignments: Mapping[int, Sequence[int]] | None = None,
) -> CreateTopic:
    """Validates a CreateTopics entry against the image and returns the record to propose.

    Args:
        name, num_partitions, replication_factor, configs, assignments: as in CreateTopics
            (the broker maps -1 to its defaults before calling). With ``assignments`` (partition
            index → replica ids) the two counts are ignored, as in Kafka.
        topic_id: a fresh uuid string, chosen by the caller (randomness stays outside).
        seed: seeds the round-robin start (see :func:`assign_replicas`).

    Raises:
        InvalidTopic: bad name, or it collides with an existing one ('.' vs '_').
        TopicAlreadyExists, InvalidConfig, InvalidPartitions, InvalidReplicaAssignment,
        InvalidReplicationFactor: replication factor above the number of live brokers.
    """
    validate_topic_name(name)
    if name in image.topics:
        raise TopicAlreadyExists(f"topic {name!r} already exists")
    for existing in image.topics:
        if topic_names_collide(name, existing):
            raise InvalidTopic(f"topic {name!r} collides with existing topic {existing!r}")
    configs = dict(configs or {})
    validate_topic_configs(configs)
    if assignments:
        replica_lists = _check_assignments(image, assignments)
    else:
        live = sorted(image.live_brokers())
        replica_lists = assign_replicas(live, num_partitions, replication_factor, seed=seed)
    return CreateTopic(name=name, topic_id=topic_id, assignments=replica_lists, configs=configs)


def plan_create_partitions(
    image: MetadataImage,
    name: str,
    count: int,
    *,
    seed: int,
    assignments: Sequence[Sequence[int]] | None = None,
) -> CreatePartitions:
    """Validates a CreatePartitions entry (the topic's new total ``count``) against the image
    and returns the record to propose.

    Without ``assignments`` the new partitions get the topic's replication factor (its first
    partition's), placed as :func:`assign_replicas` continues the round robin; with them, one
    replica list per new partition, each as long as the topic's, on registered brokers.

    Raises:
        UnknownTopicOrPartition: no such topic.
        InvalidPartitions: ``count`` not above the current count.
        InvalidReplicaAssignment: the wrong number of lists, or bad lists.
        InvalidReplicationFactor: fewer live brokers than the topic's replication factor.
    """
    topic = image.topics.get(name)
    if topic is None:
        raise UnknownTopicOrPartition(f"no topic {name!r}")
    current = len(topic.partitions)
    if count <= current:
        raise InvalidPartitions(
            f"topic {name!r} has {current} partitions; a new count must be higher, got {count}"
        )
    rf = len(topic.partitions[0].replicas) if topic.partitions else 1
    if assignments is not None:
        if len(assignments) != count - current:
            raise InvalidReplicaAssignment(
                f"{len(assignments)} replica lists for {count - current} new partitions"
            )
        given = {index: list(replicas) for index, replicas in enumerate(assignments)}
        lists = _check_assignments(image, given) if given else []
        if any(len(replicas) != rf for replicas in lists):
            raise InvalidReplicaAssignment(f"the topic's replication factor is {rf}")
    else:
        live = sorted(image.live_brokers())
        lists = assign_replicas(live, count - current, rf, seed=seed, start_partition=current)
    return CreatePartitions(name, topic.topic_id, current, lists)


def _check_assignments(
    image: MetadataImage, assignments: Mapping[int, Sequence[int]]
) -> list[tuple[int, ...]]:
    indexes = sorted(assignments)
    if indexes != list(range(len(indexes))):
        raise InvalidReplicaAssignment(f"partition indexes must be 0..n-1, got {indexes}")
    lists = [tuple(int(b) for b in assignments[i]) for i in indexes]
    sizes = {len(r) for r in lists}
    if len(sizes) != 1 or 0 in sizes:
        raise InvalidReplicaAssignment("every partition needs the same, non-zero replica count")
    for replicas in lists:
        if len(set(replicas)) != len(replicas):
            raise InvalidReplicaAssignment(f"duplicate broker in {list(replicas)}")
        unknown = [b for b in replicas if b not in image.brokers]
        if unknown:
            raise InvalidReplicaAssignment(f"unknown brokers {unknown}")
    return lists


# --- the periodic decisions -----------------------------------------------------------------------


@attrs.define(eq=False)
class PartitionScan:
    """What :func:`tick`'s last pass over every partition found, so that the next tick can
    skip the pass when nothing it depends on has changed: the live brokers, and the image's
    topics (compared by identity: the image is persistent, and a record that touches no
    partition or topic keeps the same mapping, as heartbeats do). Only a *clean* pass is
    reused, one that proposed nothing and met no leaderless partition, since an election
    waiting for reports depends on heartbeats too.

    Why: the active controller ticks four times a second, and a pass over 2,000 partitions
    took 3.6 ms, about 15 ms of its event loop every second of an idle cluster. The caller
    (``Controller``) owns one and passes it to every tick; ``tick`` without it always scans."""

    live: frozenset[int] = frozenset()
    topics: object = None
    leaders: frozenset[int] = frozenset()
    clean: bool = False
    partitions_examined: int = 0
    """Partitions looked at by all passes so far (tests and stats)."""


def tick(
    image: MetadataImage,
    now_ms: int,
    config: ControllerConfig,
    liveness: BrokerLiveness,
    scan: PartitionScan | None = None,
) -> list[MetadataRecord]:
    """What the active controller should propose at ``now_ms`` (its wall clock, ms), given the
    heartbeats it has received (``liveness``, which holds the replica reports too).

    1. FenceBroker for each unfenced broker silent for more than ``session_timeout_ms`` (counting
       from the latest of its registration, its last heartbeat and the controller's takeover, so
       a new controller gives every broker a full session before fencing it), and for each one
       whose last heartbeat asked for a controlled shutdown (KIP-631 ``WantShutDown``): fencing
       is what moves its leaderships and ISR places away, in this same tick, through the rules
       of step 2 (see :func:`controlled_shutdown_done`); and for each one whose listener
       refused the controller's probe since its last heartbeat (``BrokerLiveness.gone``: its
       process is gone, so its session need not be waited out).
    2. PartitionChange for each partition whose leader is not live (fenced now or before): a new
       leader from the topic's elector, the ISR without the non-live members (as Kafka, the last
       ISR member stays when no one may lead, so a clean election can wait for it); and for each
       partition with a non-live ISR member, an ISR shrink. Electors with
       ``requires_fresh_reports`` first get a PartitionChange to NO_LEADER (ending the epoch) and
       an election on a later tick, from reports made under the new epoch.
    3. UnfenceBroker for each fenced broker that heartbeated within the session, and did so
       (or registered) in this controller's tenure, leads nothing
       in ``image`` (leadership moves off a fenced broker in an earlier tick, so a re-registered
       broker always gets a new leader epoch before it leads again), is not shutting down, and
       is not gone.

    Every record is stamped with ``image.controller_epoch`` and compares-and-sets the epochs it
    read, so the caller may propose them all and ignore rejections. With ``scan``, step 2 is
    skipped when the last pass was clean and nothing it depends on changed (:class:`PartitionScan`).
    """
    epoch = image.controller_epoch
    timeout = config.session_timeout_ms
    liveness = liveness.for_epoch(epoch)
    records: list[MetadataRecord] = []
    fenced_now: set[int] = set()
    for broker_id in sorted(image.brokers):
        broker = image.brokers[broker_id]
        last_seen = max(liveness.last_seen_ms(broker), image.controller_epoch_start_ms)
        silent = now_ms - last_seen > timeout
        gone = liveness.gone(broker)
        if not broker.fenced and (silent or gone or liveness.wants_shut_down(broker)):
            fenced_now.add(broker_id)
            records.append(FenceBroker(broker_id, broker.broker_epoch, epoch))
    live = image.live_brokers() - fenced_now
    leaders: Set[int]
    if scan is not None and scan.clean and scan.live == live and scan.topics is image.topics:
        leaders = scan.leaders
    else:
        leaders = set()
        clean = True
        examined = 0
        for name in sorted(image.topics):
            topic = image.topics[name]
            for index in sorted(topic.partitions):
                state = topic.partitions[index]
                examined += 1
                change = _partition_decision(image, config, liveness, name, index, state, live)
                leaders.add(state.leader)
                if change is not None or state.leader == NO_LEADER:
                    clean = False
                if change is not None:
                    records.append(change)
        if scan is not None:
            scan.live, scan.topics, scan.leaders = live, image.topics, frozenset(leaders)
            scan.clean = clean
            scan.partitions_examined += examined
    for broker_id in sorted(image.brokers):
        broker = image.brokers[broker_id]
        fresh = now_ms - liveness.last_seen_ms(broker) <= timeout
        in_tenure = (
            liveness.heard_from(broker) or broker.registered_ms >= image.controller_epoch_start_ms
        )
        if (
            broker.fenced
            and fresh
            and in_tenure
            and broker_id not in leaders
            and not liveness.wants_shut_down(broker)
            and not liveness.gone(broker)
        ):
            records.append(UnfenceBroker(broker_id, broker.broker_epoch, epoch))
    return records


def brokers_to_probe(
    image: MetadataImage, now_ms: int, liveness: BrokerLiveness, silent_after_ms: int
) -> list[BrokerState]:
    """The unfenced brokers the active controller should probe for a crash: silent for more
    than ``silent_after_ms`` (counting from their registration or their last heartbeat), or
    not heard from at all in this controller's tenure; and not already known gone. See
    ``BrokerLiveness.mark_gone``.

    Why probe at once those not heard from: after the active controller crashed, its broker
    is the one most likely dead, and the new controller hears nobody at first. A live broker
    answers the probe (it costs one connection); a dead one is fenced without waiting.

    A broker that advertises an unspecified address (``0.0.0.0``, ``::``) is never probed: a
    connection to it reaches the controller's own host, whose refusal says nothing about the
    broker."""
    liveness = liveness.for_epoch(image.controller_epoch)
    out = []
    for broker_id in sorted(image.brokers):
        broker = image.brokers[broker_id]
        silent = now_ms - liveness.last_seen_ms(broker) > silent_after_ms
        unheard = not liveness.heard_from(broker)
        if (
            not broker.fenced
            and (silent or unheard)
            and not liveness.gone(broker)
            and not _unspecified(broker.host)
        ):
            out.append(broker)
    return out


def _unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return not host  # a name: probed


def controlled_shutdown_done(
    image: MetadataImage, config: ControllerConfig, liveness: BrokerLiveness, broker_id: int
) -> bool:
    """Whether broker ``broker_id``, which asked for a controlled shutdown, may stop now
    (KIP-631's ``ShouldShutDown``): the image has it fenced, it leads no partition, and no
    partition it holds waits for the second step of a two-step (``quorum``) election that the
    live replicas can complete.

    Why fencing is the whole mechanism: a fenced broker is out of every election and every
    ISR (:func:`tick` moves both off it in the tick that fences it, and AlterPartition cannot
    add it back), and the broker itself stops leading and fetching as soon as its image shows
    it fenced. So the partitions it led get new leaders while it still runs, instead of a
    session timeout after it has gone: an ``isr`` partition in the fencing tick itself, a
    ``quorum`` one a heartbeat round later (its election ends the epoch first). The broker
    waits for that second step too: when it is the active controller, stopping earlier would
    leave those elections to the next controller, a Raft election later. A partition nobody
    else may lead (one replica, no other ISR member, no live majority) becomes leaderless, as
    when its leader dies.
    """
    broker = image.brokers.get(broker_id)
    if broker is None or not broker.fenced or not liveness.wants_shut_down(broker):
        return False
    live = image.live_brokers()
    for topic in image.topics.values():
        fresh = config.elector_for(topic.configs).requires_fresh_reports
        for state in topic.partitions.values():
            if state.leader == broker_id:
                return False
            if (
                fresh
                and state.leader == NO_LEADER
                and broker_id in state.replicas
                and 2 * sum(1 for r in state.replicas if r in live) > len(state.replicas)
            ):
                return False
    return True


# --- elections on request (ElectLeaders) and preferred-leader rebalancing ------------------------


def plan_election(
    image: MetadataImage, config: ControllerConfig, topic: str, index: int, election_type: int
) -> PartitionChange:
    """The record an ElectLeaders request (or a rebalance check) proposes for one partition.

    *Preferred* (Kafka's ``PreferredReplicaPartitionLeaderElectionStrategy``): the first replica
    of the assignment, when it is live and as complete as the rule needs. Under ``isr`` that is
    ISR membership, and the change is one step: an ISR member holds every committed record, and
    the old leader cannot commit more once the new leader stops fetching from it. Under
    ``quorum`` the old leader could still commit through the other followers until it learns of
    the change, so the election takes the same two steps as a failover: this record ends the
    epoch (``NO_LEADER``) and a later tick elects from reports made after it. The quorum elector
    takes the first replica in assignment order that is at least as up to date as a majority,
    so the preferred one wins unless it is behind both others; when it is, another replica
    leads (a leader change for nothing, but a safe one). There is no cheaper check first: the
    controller knows no quorum follower's position outside an election (a report in every
    heartbeat from each follower of a partition it is the preferred replica of was tried; its
    Raft traffic was what a large failover could least afford).

    *Unclean*: for a partition without a live leader, the first live ISR member, else the first
    live replica with an ISR of itself alone (it may lack acknowledged records: the request says
    that is acceptable). ``quorum`` topics have no unclean election: they elect from a live
    majority or not at all.

    Raises:
        UnknownTopicOrPartition: no such partition.
        ElectionNotNeeded: it is already led by the replica this election would choose (or,
            unclean, by any live replica).
        PreferredLeaderNotAvailable: the preferred replica is not live, not in the ISR, or
            behind; or the partition is between leaders (its own election is under way).
        EligibleLeadersNotAvailable: unclean, and no replica may lead.
        InvalidRequest: an unknown ``election_type``.
    """
    topic_state = image.topics.get(topic)
    state = None if topic_state is None else topic_state.partitions.get(index)
    if topic_state is None or state is None:
        raise UnknownTopicOrPartition(f"unknown partition {topic}-{index}")
    live = image.live_brokers()
    live_isr = tuple(b for b in state.replicas if b in state.isr and b in live)
    elector = config.elector_for(topic_state.configs)
    led = state.leader != NO_LEADER and state.leader in live
    if election_type == ELECTION_PREFERRED:
        preferred = state.replicas[0]
        if state.leader == preferred and led:
            raise ElectionNotNeeded(f"{topic}-{index} is led by its preferred replica")
        if preferred not in live:
            raise PreferredLeaderNotAvailable(
                f"{topic}-{index}: preferred replica {preferred} is not live"
            )
        if not led:
            raise PreferredLeaderNotAvailable(f"{topic}-{index} is between leaders")
        if elector.requires_fresh_reports:
            return _change(image, topic, index, state, NO_LEADER, live_isr or state.isr)
        if preferred not in state.isr:
            raise PreferredLeaderNotAvailable(
                f"{topic}-{index}: preferred replica {preferred} is not in the ISR"
            )
        return _change(image, topic, index, state, preferred, live_isr)
    if election_type == ELECTION_UNCLEAN:
        if led:
            raise ElectionNotNeeded(f"{topic}-{index} has a live leader")
        if elector.requires_fresh_reports:
            raise EligibleLeadersNotAvailable(
                f"{topic}-{index}: quorum topics elect from a live majority only"
            )
        if live_isr:
            return _change(image, topic, index, state, live_isr[0], live_isr)
        for broker_id in state.replicas:
            if broker_id in live:
                return _change(image, topic, index, state, broker_id, (broker_id,))
        raise EligibleLeadersNotAvailable(f"{topic}-{index}: no replica is live")
    raise InvalidRequest(f"unknown election type {election_type}")


def plan_leader_rebalance(image: MetadataImage, config: ControllerConfig) -> list[PartitionChange]:
    """Kafka's periodic leader-imbalance check (``auto.leader.rebalance.enable``): for each live
    broker whose preferred partitions are led elsewhere above
    ``leader_imbalance_per_broker_percentage``, preferred elections for those that may move
    now (:func:`plan_election`); the rest wait for the next check.

    Why: without it a broker that failed and came back leads nothing, so the survivors carry
    all the load and the next failure of one of them moves twice the partitions.

    No check runs while any partition is leaderless (a failover's or the last check's
    elections are still under way), and one check proposes at most
    ``leader_rebalance_max_elections``. Why: every election is several Raft records (two
    steps and the votes under ``quorum``), and a 2,000-partition failover traced with the
    check every 2 s showed the controller's Raft path congested by such bulk changes until
    heartbeats failed to commit and live brokers were fenced, which started more elections."""
    for topic_state in image.topics.values():
        for state in topic_state.partitions.values():
            if state.leader == NO_LEADER:
                return []
    live = image.live_brokers()
    preferred_of: dict[int, list[tuple[str, int, PartitionState]]] = {}
    for name in sorted(image.topics):
        for index, state in sorted(image.topics[name].partitions.items()):
            if state.replicas and state.replicas[0] in live:
                preferred_of.setdefault(state.replicas[0], []).append((name, index, state))
    records: list[PartitionChange] = []
    for broker_id in sorted(preferred_of):
        partitions = preferred_of[broker_id]
        elsewhere = [(n, i) for n, i, state in partitions if state.leader != broker_id]
        if len(elsewhere) * 100 <= len(partitions) * config.leader_imbalance_per_broker_percentage:
            continue
        for name, index in elsewhere:
            if len(records) >= config.leader_rebalance_max_elections:
                return records
            try:
                records.append(plan_election(image, config, name, index, ELECTION_PREFERRED))
            except (PreferredLeaderNotAvailable, ElectionNotNeeded):
                continue
    return records


def _change(
    image: MetadataImage,
    topic_name: str,
    index: int,
    state: PartitionState,
    leader: int,
    isr: tuple[int, ...],
) -> PartitionChange:
    """A compare-and-set change of one partition against ``state`` (see the module doc)."""
    return PartitionChange(
        topic=topic_name,
        topic_id=image.topics[topic_name].topic_id,
        partition=index,
        leader_epoch=state.leader_epoch,
        partition_epoch=state.partition_epoch,
        controller_epoch=image.controller_epoch,
        new_leader=leader,
        new_isr=isr,
    )


def _partition_decision(
    image: MetadataImage,
    config: ControllerConfig,
    liveness: BrokerLiveness,
    topic_name: str,
    index: int,
    state: PartitionState,
    live: Set[int],
) -> PartitionChange | None:
    topic = image.topics[topic_name]
    live_isr = tuple(b for b in state.isr if b in live)

    def change(leader: int, isr: tuple[int, ...]) -> PartitionChange:
        return _change(image, topic_name, index, state, leader, isr)

    if state.leader != NO_LEADER and state.leader in live:
        if live_isr == state.isr:
            return None
        isr = tuple(b for b in state.replicas if b == state.leader or b in live_isr)
        return change(state.leader, isr)
    elector = config.elector_for(topic.configs)
    fresh = elector.requires_fresh_reports
    if fresh and state.leader != NO_LEADER:
        # Step one: end the old leader's epoch. Replicas learn it from the image and report their
        # logs under the new epoch; a later tick elects from those reports.
        return change(NO_LEADER, live_isr or state.isr)
    reports = liveness.reports_for(
        image, topic_name, index, min_current_leader_epoch=state.leader_epoch if fresh else None
    )
    leader = elector.choose_leader(state, live, reports, topic.configs)
    if leader is None:
        isr = live_isr or state.isr
        if state.leader == NO_LEADER and isr == state.isr:
            return None  # Already leaderless with nothing to shrink: wait for a replica.
        return change(NO_LEADER, isr)
    assert leader in live and leader in state.replicas, f"elector chose {leader} for {state}"
    isr = tuple(b for b in state.replicas if b == leader or b in live_isr)
    return change(leader, isr)
