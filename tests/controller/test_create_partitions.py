"""CreatePartitions in the controller, pure: planning the new partitions against the image,
and applying the record as a compare-and-set on the partition count."""

from __future__ import annotations

import pytest

from quorumq.controller.image import (
    CreatePartitions,
    FenceBroker,
    MetadataStateMachine,
    PartitionChanged,
    Rejected,
    plan_create_partitions,
    plan_create_topic,
)
from quorumq.errors import (
    ErrorCode,
    InvalidPartitions,
    InvalidReplicaAssignment,
    InvalidReplicationFactor,
    UnknownTopicOrPartition,
)

from ._helpers import apply_all, live_cluster


def _image_with_topic(partitions: int = 2, rf: int = 2):
    image = live_cluster()
    return apply_all(
        [plan_create_topic(image, "t", partitions, rf, topic_id="id-t", seed=1)], image
    )


def test_new_partitions_keep_the_replication_factor_and_get_leaders() -> None:
    image = _image_with_topic()
    record = plan_create_partitions(image, "t", 5, seed=2)
    assert record.first_partition == 2 and len(record.assignments) == 3
    assert all(len(replicas) == 2 for replicas in record.assignments)
    machine = MetadataStateMachine(image)
    changes = machine.apply(record)
    assert [c.partition for c in changes if isinstance(c, PartitionChanged)] == [2, 3, 4]
    topic = machine.image.topics["t"]
    assert sorted(topic.partitions) == [0, 1, 2, 3, 4]
    for index in (2, 3, 4):
        state = topic.partitions[index]
        assert state.leader == state.replicas[0] and state.isr == state.replicas
        assert state.leader_epoch == 0
    assert topic.partitions[0] is image.topics["t"].partitions[0]  # untouched, shared


def test_the_record_is_a_compare_and_set_on_the_count() -> None:
    image = _image_with_topic()
    record = plan_create_partitions(image, "t", 3, seed=2)
    machine = MetadataStateMachine(image)
    machine.apply(record)
    (again,) = machine.apply(record)  # a retry, or a racing request planned on the old count
    assert isinstance(again, Rejected) and again.code == ErrorCode.INVALID_PARTITIONS
    assert len(machine.image.topics["t"].partitions) == 3
    stale = CreatePartitions("t", "another-id", 3, ((0,),))
    (refused,) = machine.apply(stale)
    assert isinstance(refused, Rejected) and refused.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def test_given_assignments_are_checked_as_kafka_checks_them() -> None:
    image = _image_with_topic()
    record = plan_create_partitions(image, "t", 4, seed=0, assignments=[[2, 0], [1, 2]])
    assert record.assignments == ((2, 0), (1, 2))
    for bad, message in [
        ([[2, 0]], "1 replica lists for 2"),
        ([[2, 0], [1]], "same, non-zero replica count"),
        ([[2], [1]], "replication factor is 2"),
        ([[2, 2], [1, 0]], "duplicate"),
        ([[2, 9], [1, 0]], "unknown brokers"),
    ]:
        with pytest.raises(InvalidReplicaAssignment, match=message):
            plan_create_partitions(image, "t", 4, seed=0, assignments=bad)


def test_what_cannot_grow_is_refused() -> None:
    image = _image_with_topic(rf=3)
    with pytest.raises(UnknownTopicOrPartition):
        plan_create_partitions(image, "missing", 3, seed=0)
    with pytest.raises(InvalidPartitions, match="must be higher"):
        plan_create_partitions(image, "t", 2, seed=0)
    fenced = apply_all([FenceBroker(2, 3, 1)], image)
    with pytest.raises(InvalidReplicationFactor):
        plan_create_partitions(fenced, "t", 3, seed=0)
