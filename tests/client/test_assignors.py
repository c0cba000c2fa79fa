"""Range and round-robin assignments equal Kafka's (kafka-python's ports of the Java assignors)."""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.protocol.consumer.metadata import ConsumerProtocolSubscription

from quorumq.client._assignors import (
    MemberSubscription,
    RangeAssignor,
    RoundRobinAssignor,
    range_assign,
    round_robin_assign,
)
from quorumq.client._consumer_protocol import Assignment, Subscription


@attrs.frozen
class _KafkaMember:
    """The fields of kafka-python's JoinGroupResponseMember its assignors read."""

    member_id: str
    group_instance_id: str | None
    metadata: Any


class _Cluster:
    def __init__(self, partitions_per_topic: dict[str, int]) -> None:
        self._counts = partitions_per_topic

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        count = self._counts.get(topic)
        return None if count is None else set(range(count))


def _as_sets(assignments: dict[str, Assignment]) -> dict[str, set[tuple[str, int]]]:
    return {member: set(a.partitions()) for member, a in assignments.items()}


def _kafka_assign(
    assignor: Any, counts: dict[str, int], members: list[MemberSubscription]
) -> dict[str, set[tuple[str, int]]]:
    kafka_members = [
        _KafkaMember(
            m.member_id,
            m.group_instance_id,
            ConsumerProtocolSubscription(version=0, topics=list(m.subscription.topics)),
        )
        for m in members
    ]
    result = assignor.assign(_Cluster(counts), kafka_members)
    return {member: set(a.partitions()) for member, a in result.items()}


TOPICS = ["alpha", "beta", "gamma", "delta"]


@st.composite
def groups(draw: st.DrawFn) -> tuple[dict[str, int], list[MemberSubscription]]:
    counts = {t: draw(st.integers(min_value=1, max_value=9)) for t in TOPICS[:3]}  # delta: unknown
    member_ids = draw(
        st.lists(
            st.text(alphabet="abcxyz-0123", min_size=1, max_size=6),
            min_size=1,
            max_size=6,
            unique=True,
        )
    )
    static_count = draw(st.integers(min_value=0, max_value=len(member_ids)))
    members = []
    for i, member_id in enumerate(member_ids):
        subscribed = draw(st.lists(st.sampled_from(TOPICS), min_size=1, max_size=4, unique=True))
        # kafka-python groups static members with itertools.groupby, which only works when they
        # come first; Java sorts them regardless. Give it input it handles.
        instance = f"instance-{member_id}" if i < static_count else None
        members.append(MemberSubscription(member_id, Subscription(tuple(subscribed)), instance))
    return counts, members


@settings(max_examples=200, deadline=None)
@given(groups())
def test_range_equals_kafka_python(group: tuple[dict[str, int], list[MemberSubscription]]) -> None:
    counts, members = group
    assert _as_sets(range_assign(counts, members)) == _kafka_assign(
        RangePartitionAssignor, counts, members
    )


@settings(max_examples=200, deadline=None)
@given(groups())
def test_round_robin_equals_kafka_python(
    group: tuple[dict[str, int], list[MemberSubscription]],
) -> None:
    counts, members = group
    # kafka-python's round robin crashes when it must skip a member (it rebinds member_id to a
    # tuple in its skip loop), so compare only identical subscriptions; the unequal case is
    # checked against Java's documented example below.
    topics = members[0].subscription.topics
    members = [attrs.evolve(m, subscription=Subscription(topics)) for m in members]
    assert _as_sets(round_robin_assign(counts, members)) == _kafka_assign(
        RoundRobinPartitionAssignor, counts, members
    )


@settings(max_examples=100, deadline=None)
@given(groups())
def test_assignments_are_disjoint_and_cover_every_known_subscribed_partition(
    group: tuple[dict[str, int], list[MemberSubscription]],
) -> None:
    counts, members = group
    wanted = {
        (t, p)
        for m in members
        for t in m.subscription.topics
        if t in counts
        for p in range(counts[t])
    }
    for assign in (range_assign, round_robin_assign):
        result = assign(counts, members)
        assert set(result) == {m.member_id for m in members}
        seen: list[tuple[str, int]] = [tp for a in result.values() for tp in a.partitions()]
        assert len(seen) == len(set(seen))
        assert set(seen) == wanted
        for m in members:
            assert {t for t, _ in result[m.member_id].partitions()} <= set(m.subscription.topics)


def test_range_docstring_example() -> None:
    members = [
        MemberSubscription("C1", Subscription(("t0", "t1"))),
        MemberSubscription("C0", Subscription(("t0", "t1"))),
    ]
    result = RangeAssignor().assign({"t0": 3, "t1": 3}, members)
    assert result["C0"].assigned_partitions == (("t0", (0, 1)), ("t1", (0, 1)))
    assert result["C1"].assigned_partitions == (("t0", (2,)), ("t1", (2,)))


def test_round_robin_docstring_example() -> None:
    members = [
        MemberSubscription("C0", Subscription(("t0", "t1"))),
        MemberSubscription("C1", Subscription(("t0", "t1"))),
    ]
    result = RoundRobinAssignor().assign({"t0": 3, "t1": 3}, members)
    assert result["C0"].partitions() == [("t0", 0), ("t0", 2), ("t1", 1)]
    assert result["C1"].partitions() == [("t0", 1), ("t1", 0), ("t1", 2)]


def test_round_robin_skips_members_not_subscribed_as_javas_example() -> None:
    members = [
        MemberSubscription("C0", Subscription(("t0",))),
        MemberSubscription("C1", Subscription(("t0", "t1"))),
        MemberSubscription("C2", Subscription(("t0", "t1", "t2"))),
    ]
    result = round_robin_assign({"t0": 1, "t1": 2, "t2": 3}, members)
    assert result["C0"].partitions() == [("t0", 0)]
    assert result["C1"].partitions() == [("t1", 0)]
    assert result["C2"].partitions() == [("t1", 1), ("t2", 0), ("t2", 1), ("t2", 2)]


def test_static_members_sort_before_dynamic_ones_whatever_their_ids() -> None:
    members = [
        MemberSubscription("a-dynamic", Subscription(("t",))),
        MemberSubscription("z-static", Subscription(("t",)), group_instance_id="host-1"),
    ]
    result = range_assign({"t": 3}, members)
    assert result["z-static"].partitions() == [("t", 0), ("t", 1)]
    assert result["a-dynamic"].partitions() == [("t", 2)]


def test_member_ids_sort_by_utf16_code_unit_as_java_does() -> None:
    # Java compares UTF-16 code units: U+1F600 is the surrogate 0xD83D..., below U+FF21,
    # although Python orders the code points the other way round.
    members = [
        MemberSubscription("\uff21", Subscription(("t",))),
        MemberSubscription("\U0001f600", Subscription(("t",))),
    ]
    result = range_assign({"t": 2}, members)
    assert result["\U0001f600"].partitions() == [("t", 0)]
    assert result["\uff21"].partitions() == [("t", 1)]


def test_metadata_is_a_v0_subscription() -> None:
    assert RangeAssignor().metadata(["a", "b"]) == Subscription(("a", "b"))
    assert RoundRobinAssignor.name == "roundrobin"
    assert RangeAssignor.name == "range"


def test_no_members_no_assignment() -> None:
    assert range_assign({"t": 3}, []) == {}
    assert round_robin_assign({"t": 3}, []) == {}
