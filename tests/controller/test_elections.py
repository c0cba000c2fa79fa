"""Elections on request (ElectLeaders) and the preferred-leader rebalance: pure decisions."""

from __future__ import annotations

import pytest

from quorumq.controller.image import (
    NO_LEADER,
    BrokerHeartbeat,
    BrokerLiveness,
    ControllerConfig,
    FenceBroker,
    MetadataImage,
    PartitionChange,
    ReplicaReport,
    UnfenceBroker,
    electors_for,
    plan_create_topic,
    plan_election,
    plan_leader_rebalance,
    tick,
)
from quorumq.errors import (
    ElectionNotNeeded,
    EligibleLeadersNotAvailable,
    InvalidRequest,
    PreferredLeaderNotAvailable,
    UnknownTopicOrPartition,
)
from quorumq.protocol import ELECTION_PREFERRED, ELECTION_UNCLEAN
from quorumq.replication import STRATEGIES

from ._helpers import apply_all, live_cluster

CONFIG = ControllerConfig(electors=electors_for(STRATEGIES), default_replication_strategy="isr")


def _topic(strategy: str, partitions: int = 3) -> MetadataImage:
    image = live_cluster()
    record = plan_create_topic(
        image,
        "t",
        partitions,
        3,
        topic_id="id-t",
        seed=1,
        configs={"replication.strategy": strategy},
    )
    return apply_all([record], image)


def _changed(image: MetadataImage, index: int, leader: int, isr: tuple[int, ...]) -> MetadataImage:
    """``t-index`` with a new leader and ISR, committed."""
    state = image.topics["t"].partitions[index]
    change = PartitionChange(
        topic="t",
        topic_id="id-t",
        partition=index,
        leader_epoch=state.leader_epoch,
        partition_epoch=state.partition_epoch,
        controller_epoch=image.controller_epoch,
        new_leader=leader,
        new_isr=isr,
    )
    return apply_all([change], image)


def _moved_off_preferred(image: MetadataImage, index: int = 0) -> tuple[MetadataImage, int]:
    """Leadership of ``t-index`` moved to its second replica, as a failover leaves it."""
    state = image.topics["t"].partitions[index]
    return _changed(image, index, state.replicas[1], state.isr), state.replicas[1]


def test_a_preferred_election_under_isr_moves_leadership_back_in_one_step() -> None:
    image, second = _moved_off_preferred(_topic("isr"))
    state = image.topics["t"].partitions[0]
    change = plan_election(image, CONFIG, "t", 0, ELECTION_PREFERRED)
    assert change.new_leader == state.replicas[0] != second
    assert set(change.new_isr) == set(state.isr)
    image = apply_all([change], image)
    assert image.topics["t"].partitions[0].leader == state.replicas[0]
    with pytest.raises(ElectionNotNeeded):
        plan_election(image, CONFIG, "t", 0, ELECTION_PREFERRED)


def test_a_preferred_replica_that_is_not_live_or_not_in_sync_is_not_elected() -> None:
    image, _ = _moved_off_preferred(_topic("isr"))
    state = image.topics["t"].partitions[0]
    preferred = state.replicas[0]
    shrunk = _changed(image, 0, state.leader, tuple(b for b in state.isr if b != preferred))
    with pytest.raises(PreferredLeaderNotAvailable, match="not in the ISR"):
        plan_election(shrunk, CONFIG, "t", 0, ELECTION_PREFERRED)
    fenced = apply_all([FenceBroker(preferred, preferred + 1, 1)], image)
    with pytest.raises(PreferredLeaderNotAvailable, match="not live"):
        plan_election(fenced, CONFIG, "t", 0, ELECTION_PREFERRED)
    with pytest.raises(UnknownTopicOrPartition):
        plan_election(image, CONFIG, "t", 9, ELECTION_PREFERRED)
    with pytest.raises(InvalidRequest):
        plan_election(image, CONFIG, "t", 0, 7)


def _quorum_preferred_election(log_end_offsets: list[int]) -> tuple[int, tuple[int, ...]]:
    """A quorum partition moved off its preferred replica, then a preferred election: the
    epoch ends, the replicas (in assignment order) report these LEOs under the new epoch, and
    a tick elects. Returns (the new leader, the assignment)."""
    image, _ = _moved_off_preferred(_topic("quorum"))
    state = image.topics["t"].partitions[0]
    change = plan_election(image, CONFIG, "t", 0, ELECTION_PREFERRED)
    assert change.new_leader == NO_LEADER  # step one, as a failover's
    image = apply_all([change], image)
    new_epoch = image.topics["t"].partitions[0].leader_epoch
    liveness = BrokerLiveness().for_epoch(image.controller_epoch)
    for b, leo in zip(state.replicas, log_end_offsets, strict=True):
        report = ReplicaReport("t", 0, state.leader_epoch, leo, new_epoch)
        liveness.record(image, BrokerHeartbeat(b, b + 1, 2_001, (report,)), 2_001)
    image = apply_all(tick(image, 2_001, CONFIG, liveness), image)
    return image.topics["t"].partitions[0].leader, state.replicas


def test_a_preferred_election_under_quorum_takes_two_steps_and_raft_s_vote_rule() -> None:
    """The preferred replica wins when it is at least as up to date as a majority, even one
    record behind the old leader's uncommitted tail; behind both others, another one leads."""
    leader, replicas = _quorum_preferred_election([6, 7, 6])
    assert leader == replicas[0]
    leader, replicas = _quorum_preferred_election([5, 7, 6])
    assert leader == replicas[1]


def test_an_unclean_election_picks_a_live_replica_only_when_no_in_sync_one_is_left() -> None:
    image = _topic("isr", partitions=1)
    state = image.topics["t"].partitions[0]
    with pytest.raises(ElectionNotNeeded):
        plan_election(image, CONFIG, "t", 0, ELECTION_UNCLEAN)
    # The ISR shrank to the leader alone, and then the leader died.
    last = state.leader
    others = [b for b in state.replicas if b != last]
    image = apply_all([FenceBroker(last, last + 1, 1)], _changed(image, 0, last, (last,)))
    image = apply_all(tick(image, 1_001, CONFIG, BrokerLiveness()), image)
    assert image.topics["t"].partitions[0].leader == NO_LEADER  # clean: waits for `last`
    change = plan_election(image, CONFIG, "t", 0, ELECTION_UNCLEAN)
    assert (change.new_leader, change.new_isr) == (others[0], (others[0],))
    image = apply_all([change], image)
    assert image.topics["t"].partitions[0].leader == others[0]
    # No unclean election for quorum topics.
    quorum = _topic("quorum", partitions=1)
    leader = quorum.topics["t"].partitions[0].leader
    quorum = apply_all([FenceBroker(leader, leader + 1, 1)], quorum)
    quorum = apply_all(tick(quorum, 1_001, CONFIG, BrokerLiveness()), quorum)
    with pytest.raises(EligibleLeadersNotAvailable, match="majority"):
        plan_election(quorum, CONFIG, "t", 0, ELECTION_UNCLEAN)


def test_the_rebalance_check_moves_leadership_back_only_above_the_imbalance_threshold() -> None:
    image = _topic("isr", partitions=30)
    assert plan_leader_rebalance(image, CONFIG) == []  # created balanced
    # One of broker b's ten preferred partitions led elsewhere: 10%, not above it.
    by_preferred: dict[int, list[int]] = {}
    for index, state in image.topics["t"].partitions.items():
        by_preferred.setdefault(state.replicas[0], []).append(index)
    broker, indexes = next(iter(sorted(by_preferred.items())))
    image, _ = _moved_off_preferred(image, indexes[0])
    assert plan_leader_rebalance(image, CONFIG) == []
    image, _ = _moved_off_preferred(image, indexes[1])
    records = plan_leader_rebalance(image, CONFIG)
    assert sorted(r.partition for r in records) == sorted(indexes[:2])
    assert all(r.new_leader == broker for r in records)
    image = apply_all(records, image)
    assert plan_leader_rebalance(image, CONFIG) == []
    # A broker that is not live gets nothing moved to it.
    image, _ = _moved_off_preferred(image, indexes[0])
    image, _ = _moved_off_preferred(image, indexes[1])
    image = apply_all([FenceBroker(broker, broker + 1, 1)], image)
    assert plan_leader_rebalance(image, CONFIG) == []
    image = apply_all([UnfenceBroker(broker, broker + 1, 1)], image)
    assert len(plan_leader_rebalance(image, CONFIG)) == 2


def test_the_rebalance_check_waits_for_elections_under_way_and_moves_a_bounded_batch() -> None:
    image = _topic("isr", partitions=30)
    by_preferred: dict[int, list[int]] = {}
    for index, state in image.topics["t"].partitions.items():
        by_preferred.setdefault(state.replicas[0], []).append(index)
    moved = [i for indexes in by_preferred.values() for i in indexes[:5]]  # 50% each
    for index in moved:
        image, _ = _moved_off_preferred(image, index)
    bounded = ControllerConfig(
        electors=CONFIG.electors,
        default_replication_strategy="isr",
        leader_rebalance_max_elections=4,
    )
    assert len(plan_leader_rebalance(image, bounded)) == 4
    assert len(plan_leader_rebalance(image, CONFIG)) == 15
    # One partition between leaders: no check until it has one.
    state = image.topics["t"].partitions[moved[0]]
    image = _changed(image, moved[0], NO_LEADER, state.isr)
    assert plan_leader_rebalance(image, CONFIG) == []
