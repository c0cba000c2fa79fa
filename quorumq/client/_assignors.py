"""Kafka's range and round-robin partition assignors, run by the group leader.

Theory of operation: after JoinGroup, the leader receives every member's :class:`Subscription`
and computes who reads what; SyncGroup carries the result to the coordinator, which hands each
member its :class:`Assignment`. Because any member may be leader (a Java consumer, kafka-python,
or ours), every implementation of an assignor named ``"range"`` must compute the same thing, so
these follow Java's ``RangeAssignor`` and ``RoundRobinAssignor`` exactly (without rack
awareness):

* Members are ordered as Java's ``MemberInfo`` sorts them: static members (with a
  ``group.instance.id``) first, by instance id; then dynamic members by member id. Strings
  compare as Java's ``String.compareTo`` does, by UTF-16 code unit.
* ``range``: per topic, the partitions in order are cut into one contiguous run per subscribed
  member; the first ``partitions % members`` members get one extra.
* ``roundrobin``: all partitions of all subscribed topics, sorted by (topic, partition), are dealt
  in turn to the members, skipping a member not subscribed to the partition's topic.

Topics that are subscribed but absent from ``partitions_per_topic`` (no metadata yet) are
skipped, as Kafka does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import ClassVar, Protocol

import attrs

from quorumq.client._consumer_protocol import Assignment, Subscription, TopicPartitions

__all__ = [
    "MemberSubscription",
    "PartitionAssignor",
    "RangeAssignor",
    "RoundRobinAssignor",
    "range_assign",
    "round_robin_assign",
]


@attrs.frozen
class MemberSubscription:
    """One member as the leader sees it in the JoinGroup response."""

    member_id: str
    subscription: Subscription
    group_instance_id: str | None = None


class PartitionAssignor(Protocol):
    """What the consumer needs from an assignor: its protocol name, metadata and assignment."""

    name: ClassVar[str]

    def metadata(self, topics: Iterable[str]) -> Subscription: ...

    def assign(
        self, partitions_per_topic: Mapping[str, int], members: Sequence[MemberSubscription]
    ) -> dict[str, Assignment]: ...


def _java_order(text: str) -> bytes:
    """Sort key equal to Java's ``String.compareTo`` (UTF-16 code units, big-endian)."""
    return text.encode("utf-16-be", "surrogatepass")


def _member_order(member: MemberSubscription) -> tuple[int, bytes]:
    if member.group_instance_id is not None:
        return (0, _java_order(member.group_instance_id))
    return (1, _java_order(member.member_id))


def _to_assignment(per_topic: Mapping[str, list[int]]) -> Assignment:
    entries: list[TopicPartitions] = [
        (topic, tuple(per_topic[topic])) for topic in sorted(per_topic, key=_java_order)
    ]
    return Assignment(tuple(entries))


def range_assign(
    partitions_per_topic: Mapping[str, int], members: Sequence[MemberSubscription]
) -> dict[str, Assignment]:
    """Returns Kafka's ``range`` assignment: ``{member_id: Assignment}`` for every member.

    Args:
        partitions_per_topic: partition count per topic known to the leader's metadata.
        members: every member of the generation with its decoded subscription.
    """
    ordered = sorted(members, key=_member_order)
    result: dict[str, dict[str, list[int]]] = {m.member_id: {} for m in members}
    topics = {topic for m in members for topic in m.subscription.topics}
    for topic in topics:
        count = partitions_per_topic.get(topic)
        if count is None:
            continue
        consumers = [m for m in ordered if topic in m.subscription.topics]
        per_consumer, with_extra = divmod(count, len(consumers))
        for i, member in enumerate(consumers):
            start = per_consumer * i + min(i, with_extra)
            length = per_consumer + (1 if i < with_extra else 0)
            if length:
                result[member.member_id][topic] = list(range(start, start + length))
    return {member_id: _to_assignment(per_topic) for member_id, per_topic in result.items()}


def round_robin_assign(
    partitions_per_topic: Mapping[str, int], members: Sequence[MemberSubscription]
) -> dict[str, Assignment]:
    """Returns Kafka's ``roundrobin`` assignment: ``{member_id: Assignment}`` for every member.

    Args:
        partitions_per_topic: partition count per topic known to the leader's metadata.
        members: every member of the generation with its decoded subscription.
    """
    ordered = sorted(members, key=_member_order)
    result: dict[str, dict[str, list[int]]] = {m.member_id: {} for m in members}
    if not ordered:
        return {}
    topics = sorted(
        {t for m in members for t in m.subscription.topics if t in partitions_per_topic},
        key=_java_order,
    )
    subscribed = [frozenset(m.subscription.topics) for m in ordered]
    cursor = 0
    for topic in topics:
        for partition in range(partitions_per_topic[topic]):
            # Every topic here has at least one subscriber, so this loop ends.
            while topic not in subscribed[cursor]:
                cursor = (cursor + 1) % len(ordered)
            result[ordered[cursor].member_id].setdefault(topic, []).append(partition)
            cursor = (cursor + 1) % len(ordered)
    return {member_id: _to_assignment(per_topic) for member_id, per_topic in result.items()}


@attrs.frozen
class RangeAssignor:
    """Kafka's ``range`` assignor (``org.apache.kafka.clients.consumer.RangeAssignor``)."""

    name: ClassVar[str] = "range"

    def metadata(self, topics: Iterable[str]) -> Subscription:
        """Returns the v0 subscription Kafka's eager assignors send in JoinGroup."""
        return Subscription(tuple(topics))

    def assign(
        self, partitions_per_topic: Mapping[str, int], members: Sequence[MemberSubscription]
    ) -> dict[str, Assignment]:
        return range_assign(partitions_per_topic, members)


@attrs.frozen
class RoundRobinAssignor:
    """Kafka's ``roundrobin`` assignor (``...consumer.RoundRobinAssignor``)."""

    name: ClassVar[str] = "roundrobin"

    def metadata(self, topics: Iterable[str]) -> Subscription:
        """Returns the v0 subscription Kafka's eager assignors send in JoinGroup."""
        return Subscription(tuple(topics))

    def assign(
        self, partitions_per_topic: Mapping[str, int], members: Sequence[MemberSubscription]
    ) -> dict[str, Assignment]:
        return round_robin_assign(partitions_per_topic, members)
