"""MetadataImage.apply: determinism, compare-and-set rejections, broker lifecycle."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from quorumq.controller.image import (
    NO_LEADER,
    AlterPartition,
    BrokerChanged,
    BrokerHeartbeat,
    ConfigChange,
    ControllerChanged,
    ControllerEpochBump,
    CreateTopic,
    DeleteTopic,
    FenceBroker,
    HeartbeatApplied,
    MetadataImage,
    MetadataRecord,
    MetadataStateMachine,
    PartitionChange,
    RegisterBroker,
    Rejected,
    ReplicaReport,
    TopicCreated,
    UnfenceBroker,
    apply_record,
    changed_partitions,
    encode_image,
)
from quorumq.errors import ErrorCode

from ._helpers import apply_all, live_cluster


def _create(name: str = "orders", assignments=((0, 1, 2), (1, 2, 0))) -> CreateTopic:
    return CreateTopic(name=name, topic_id=f"id-{name}", assignments=assignments, configs={})


def _rejected(changes: list) -> Rejected:
    assert len(changes) == 1 and isinstance(changes[0], Rejected), changes
    return changes[0]


def test_image_register_starts_fenced_and_unfence_makes_live() -> None:
    machine = MetadataStateMachine()
    changes = machine.apply(RegisterBroker(3, "inc-a", "127.0.0.1", 9095, 500))
    assert changes == [BrokerChanged(3, 1, fenced=True, registered=True)]
    assert machine.image.live_brokers() == frozenset()
    machine.apply(UnfenceBroker(3, 1, 0))
    assert machine.image.live_brokers() == {3}
    assert machine.image.brokers[3].registered_ms == 500


def test_image_register_retry_is_idempotent_and_restart_gets_new_epoch() -> None:
    machine = MetadataStateMachine()
    machine.apply(RegisterBroker(1, "inc-a", "h", 1, 0))
    again = machine.apply(RegisterBroker(1, "inc-a", "h", 1, 5))
    assert again == [BrokerChanged(1, 1, fenced=True, registered=True)]
    restarted = machine.apply(RegisterBroker(1, "inc-b", "h", 1, 9))
    assert restarted == [BrokerChanged(1, 2, fenced=True, registered=True)]
    assert _rejected(machine.apply(BrokerHeartbeat(1, 1, 10))).code == ErrorCode.STALE_BROKER_EPOCH


def test_image_heartbeat_from_an_old_journal_changes_nothing() -> None:
    """Heartbeats are no longer Raft records; one replayed from an older journal is checked
    and otherwise ignored (the active controller's BrokerLiveness holds heartbeats)."""
    image = live_cluster()
    report = ReplicaReport("orders", 0, 3, 120, 4)
    after, changes = apply_record(image, BrokerHeartbeat(1, 2, 7_000, (report,)))
    assert changes == [HeartbeatApplied(1, 2)]
    assert after.brokers == image.brokers and after.record_count == image.record_count + 1
    _, changes = apply_record(image, BrokerHeartbeat(9, 1, 1))
    assert _rejected(changes).code == ErrorCode.BROKER_ID_NOT_REGISTERED


def test_image_create_topic_leads_with_first_live_replica() -> None:
    image = live_cluster((0, 1))  # broker 2 is not registered
    image, changes = apply_record(image, _create(assignments=((2, 0, 1), (1, 2, 0))))
    assert changes[0] == TopicCreated("orders", "id-orders")
    p0, p1 = image.partition("orders", 0), image.partition("orders", 1)
    assert p0 is not None and p1 is not None
    assert (p0.leader, p0.isr, p0.replicas) == (0, (0, 1), (2, 0, 1))
    assert (p1.leader, p1.isr) == (1, (1, 0))
    assert (p0.leader_epoch, p0.partition_epoch) == (0, 0)


def test_image_create_duplicate_and_bad_topics_are_rejected() -> None:
    image = apply_all([_create()], live_cluster())
    assert _rejected(apply_record(image, _create())[1]).code == ErrorCode.TOPIC_ALREADY_EXISTS
    bad = CreateTopic(name="a/b", topic_id="x", assignments=((0,),))
    assert _rejected(apply_record(image, bad)[1]).code == ErrorCode.INVALID_TOPIC_EXCEPTION
    empty = CreateTopic(name="empty", topic_id="y", assignments=())
    assert _rejected(apply_record(image, empty)[1]).code == ErrorCode.INVALID_PARTITIONS


def test_image_partition_change_is_compare_and_set() -> None:
    image = apply_all([_create()], live_cluster())
    elect = PartitionChange("orders", "id-orders", 0, 0, 0, 1, new_leader=1, new_isr=(1, 2))
    image, changes = apply_record(image, elect)
    p0 = image.partition("orders", 0)
    assert p0 is not None
    assert (p0.leader, p0.leader_epoch, p0.partition_epoch, p0.isr) == (1, 1, 1, (1, 2))
    assert changes[0].leader_changed  # type: ignore[union-attr]
    # The same decision again: its epochs no longer match, so it is a recorded no-op.
    again, changes = apply_record(image, elect)
    assert _rejected(changes).code == ErrorCode.FENCED_LEADER_EPOCH
    assert again.topics == image.topics and again.record_count == image.record_count + 1
    isr_only = PartitionChange("orders", "id-orders", 0, 1, 0, 1, new_leader=1, new_isr=(1,))
    assert _rejected(apply_record(image, isr_only)[1]).code == ErrorCode.INVALID_UPDATE_VERSION
    wrong_id = PartitionChange("orders", "other", 0, 1, 1, 1, new_leader=1)
    assert _rejected(apply_record(image, wrong_id)[1]).code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def test_image_decisions_from_an_older_controller_epoch_are_ignored() -> None:
    image = apply_all([_create(), ControllerEpochBump(2, 5, 2_000)], live_cluster())
    assert (image.controller_id, image.controller_epoch) == (2, 5)
    old = PartitionChange("orders", "id-orders", 0, 0, 0, 1, new_leader=1)
    assert _rejected(apply_record(image, old)[1]).code == ErrorCode.STALE_CONTROLLER_EPOCH
    assert _rejected(apply_record(image, FenceBroker(1, 2, 4))[1]).code == (
        ErrorCode.STALE_CONTROLLER_EPOCH
    )
    _, changes = apply_record(image, ControllerEpochBump(1, 5, 3_000))
    assert _rejected(changes).code == ErrorCode.STALE_CONTROLLER_EPOCH
    _, changes = apply_record(image, ControllerEpochBump(1, 6, 3_000))
    assert changes == [ControllerChanged(1, 6)]


def test_image_alter_partition_shrinks_and_expands_isr() -> None:
    image = apply_all([_create()], live_cluster())
    shrink = AlterPartition("orders", "id-orders", 0, 0, 0, 0, (0, 1))
    image, _ = apply_record(image, shrink)
    p0 = image.partition("orders", 0)
    assert p0 is not None and (p0.isr, p0.partition_epoch, p0.leader_epoch) == ((0, 1), 1, 0)
    assert _rejected(apply_record(image, shrink)[1]).code == ErrorCode.INVALID_UPDATE_VERSION
    not_leader = AlterPartition("orders", "id-orders", 0, 1, 0, 1, (1, 0))
    assert _rejected(apply_record(image, not_leader)[1]).code == ErrorCode.NOT_LEADER_OR_FOLLOWER
    image, _ = apply_record(image, FenceBroker(2, 3, 1))
    expand = AlterPartition("orders", "id-orders", 0, 0, 0, 1, (0, 1, 2))
    assert _rejected(apply_record(image, expand)[1]).code == ErrorCode.INELIGIBLE_REPLICA
    image, _ = apply_record(image, UnfenceBroker(2, 3, 1))
    image, _ = apply_record(image, expand)
    p0 = image.partition("orders", 0)
    assert p0 is not None and p0.isr == (0, 1, 2)


def test_image_config_change_and_delete_topic() -> None:
    image = apply_all([_create()], live_cluster())
    image, _ = apply_record(image, ConfigChange("orders", {"retention.ms": "1000"}, ()))
    image, _ = apply_record(image, ConfigChange("orders", {"segment.ms": "5"}, ("retention.ms",)))
    assert image.topics["orders"].configs == {"segment.ms": "5"}
    _, changes = apply_record(image, DeleteTopic("orders", "id-other"))
    assert _rejected(changes).code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    image, _ = apply_record(image, DeleteTopic("orders", "id-orders"))
    assert "orders" not in image.topics
    assert image.partition("orders", 0) is None


def test_changed_partitions_names_exactly_what_records_changed() -> None:
    """The broker's reconcile looks only at what this names, so it must name every partition
    a record changed (and only those: unchanged parts are shared between images)."""
    image = apply_all([_create(), _create("other")], live_cluster())
    assert changed_partitions(image, image) == ([], set())
    beat, _ = apply_record(image, BrokerHeartbeat(1, 2, 7_000))
    assert changed_partitions(image, beat) == ([], set())  # brokers only: topics shared
    shrink = AlterPartition("orders", "id-orders", 1, 1, 0, 0, (1, 2))
    shrunk, _ = apply_record(beat, shrink)
    touched, replaced = changed_partitions(beat, shrunk)
    assert [(t.name, [i for i, _ in parts]) for t, parts in touched] == [("orders", [1])]
    assert touched[0][1][0][1] == shrunk.partition("orders", 1) and replaced == set()
    rejected, _ = apply_record(shrunk, shrink)  # a no-op: nothing to look at
    assert changed_partitions(shrunk, rejected) == ([], set())
    configured, _ = apply_record(shrunk, ConfigChange("orders", {"retention.ms": "5"}, ()))
    touched, _ = changed_partitions(shrunk, configured)
    assert [(t.name, sorted(i for i, _ in parts)) for t, parts in touched] == [("orders", [0, 1])]
    deleted, _ = apply_record(configured, DeleteTopic("orders", "id-orders"))
    assert changed_partitions(configured, deleted) == ([], {"orders"})
    recreated, _ = apply_record(deleted, CreateTopic("orders", "id-new", ((2, 0),)))
    touched, replaced = changed_partitions(configured, recreated)
    assert [(t.topic_id, [i for i, _ in parts]) for t, parts in touched] == [("id-new", [0])]
    assert replaced == {"orders"}  # the old incarnation's replicas must go
    touched, replaced = changed_partitions(deleted, recreated)
    assert [t.topic_id for t, _ in touched] == ["id-new"] and replaced == set()


def test_image_fence_leaves_no_leader_gap_and_rejects_repeats() -> None:
    image = live_cluster()
    image, changes = apply_record(image, FenceBroker(1, 2, 1))
    assert changes == [BrokerChanged(1, 2, fenced=True)]
    assert _rejected(apply_record(image, FenceBroker(1, 2, 1))[1]).code == ErrorCode.INVALID_REQUEST
    assert image.live_brokers() == {0, 2}


_EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["reg", "hb", "fence", "unfence", "create", "elect", "isr"]),
        st.integers(0, 3),
        st.integers(0, 3),
    ),
    max_size=40,
)


def _record_for(image: MetadataImage, kind: str, a: int, b: int, step: int) -> MetadataRecord:
    epoch = image.brokers[a].broker_epoch if a in image.brokers else 1
    topic = image.topics.get("t")
    if kind == "reg":
        return RegisterBroker(a, f"inc-{a}-{b}", "127.0.0.1", 9092 + a, step)
    if kind == "hb":
        return BrokerHeartbeat(a, epoch, step, (ReplicaReport("t", 0, b, step, b),))
    if kind == "fence":
        return FenceBroker(a, epoch, image.controller_epoch)
    if kind == "unfence":
        return UnfenceBroker(a, epoch, image.controller_epoch)
    if kind == "create" or topic is None:
        return CreateTopic("t", "id-t", ((a, (a + 1) % 4), (b,)), {})
    p = topic.partitions[0]
    if kind == "elect":
        return PartitionChange(
            "t",
            "id-t",
            0,
            p.leader_epoch,
            p.partition_epoch,
            image.controller_epoch,
            new_leader=a if a in p.replicas else NO_LEADER,
        )
    return AlterPartition(
        "t", "id-t", 0, p.leader, p.leader_epoch, p.partition_epoch, (p.leader, b)
    )


@settings(max_examples=60, deadline=None)
@given(_EVENTS)
def test_image_same_record_sequence_gives_same_image_on_every_voter(events) -> None:
    # One proposer turns events into records against its own image; three voters apply the log.
    proposer = MetadataStateMachine()
    proposer.apply(ControllerEpochBump(0, 1, 0))
    log: list[MetadataRecord] = [ControllerEpochBump(0, 1, 0)]
    for step, (kind, a, b) in enumerate(events):
        record = _record_for(proposer.image, kind, a, b, step)
        proposer.apply(record)
        log.append(record)
    voters = [apply_all(log) for _ in range(3)]
    assert voters[0] == voters[1] == voters[2] == proposer.image
    assert len({encode_image(v) for v in voters}) == 1
    # Invariants the handlers keep whatever the order.
    for topic in proposer.image.topics.values():
        for p in topic.partitions.values():
            assert p.isr and set(p.isr) <= set(p.replicas)
            assert p.leader == NO_LEADER or p.leader in p.replicas


def test_acl_records_add_and_remove_one_acl_each() -> None:
    from quorumq.controller.image import CreateAcl, DeleteAcl, MetadataImage, Rejected, apply_record

    create = CreateAcl(2, "orders", 3, "User:alice", "*", 4, 3)
    image, changes = apply_record(MetadataImage(), create)
    assert len(image.acls) == 1 and not isinstance(changes[0], Rejected)
    again, changes = apply_record(image, create)
    assert again.acls == image.acls and isinstance(changes[0], Rejected)
    gone, changes = apply_record(image, DeleteAcl(2, "orders", 3, "User:alice", "*", 4, 3))
    assert not gone.acls and not isinstance(changes[0], Rejected)
    _, changes = apply_record(gone, DeleteAcl(2, "orders", 3, "User:alice", "*", 4, 3))
    assert isinstance(changes[0], Rejected)
    _, changes = apply_record(gone, CreateAcl(2, "orders", 3, "User:alice", "*", 99, 3))
    assert isinstance(changes[0], Rejected)
