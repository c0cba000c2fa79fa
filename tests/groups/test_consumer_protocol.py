"""ConsumerProtocol bytes (the opaque metadata the coordinator carries) equal kafka-python's."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.protocol.consumer.metadata import (
    ConsumerProtocolAssignment,
    ConsumerProtocolSubscription,
)

from quorumq.client._consumer_protocol import (
    Assignment,
    Subscription,
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
)
from quorumq.errors import InvalidRequest

topics = st.text(alphabet="abcdefghijklmnopqrstuvwxyz._-0123456789", min_size=1, max_size=12)
partition_lists = st.lists(st.integers(min_value=0, max_value=2**31 - 1), max_size=6).map(tuple)
topic_partitions = st.lists(st.tuples(topics, partition_lists), max_size=4).map(tuple)
user_data = st.one_of(st.none(), st.binary(max_size=20))


def _kafka_subscription(sub: Subscription) -> bytes:
    owned = [
        ConsumerProtocolSubscription.TopicPartition(topic=t, partitions=list(p))
        for t, p in sub.owned_partitions
    ]
    data = ConsumerProtocolSubscription(
        version=sub.version,
        topics=list(sub.topics),
        user_data=sub.user_data,
        owned_partitions=owned,
        generation_id=sub.generation_id,
        rack_id=sub.rack_id,
    )
    return bytes(data.encode())


def _kafka_assignment(assignment: Assignment) -> bytes:
    entries = [
        ConsumerProtocolAssignment.TopicPartition(topic=t, partitions=list(p))
        for t, p in assignment.assigned_partitions
    ]
    data = ConsumerProtocolAssignment(
        version=assignment.version, assigned_partitions=entries, user_data=assignment.user_data
    )
    return bytes(data.encode())


subscriptions = st.builds(
    Subscription,
    topics=st.lists(topics, max_size=5).map(tuple),
    user_data=user_data,
    owned_partitions=topic_partitions,
    generation_id=st.integers(min_value=-1, max_value=2**31 - 1),
    rack_id=st.one_of(st.none(), topics),
    version=st.integers(min_value=0, max_value=3),
)
assignments = st.builds(
    Assignment,
    assigned_partitions=topic_partitions,
    user_data=user_data,
    version=st.integers(min_value=0, max_value=3),
)


def _drop_newer_fields(sub: Subscription) -> Subscription:
    """What survives encoding at ``sub.version``."""
    return Subscription(
        sub.topics,
        sub.user_data,
        sub.owned_partitions if sub.version >= 1 else (),
        sub.generation_id if sub.version >= 2 else -1,
        sub.rack_id if sub.version >= 3 else None,
        sub.version,
    )


@settings(max_examples=150, deadline=None)
@given(subscriptions)
def test_subscription_bytes_equal_kafka_python(sub: Subscription) -> None:
    assert encode_subscription(sub) == _kafka_subscription(sub)


@settings(max_examples=150, deadline=None)
@given(subscriptions)
def test_subscription_round_trips(sub: Subscription) -> None:
    assert decode_subscription(encode_subscription(sub)) == _drop_newer_fields(sub)


@settings(max_examples=150, deadline=None)
@given(assignments)
def test_assignment_bytes_equal_kafka_python_and_round_trip(assignment: Assignment) -> None:
    raw = encode_assignment(assignment)
    assert raw == _kafka_assignment(assignment)
    assert decode_assignment(raw) == assignment


def test_decode_reads_kafka_python_bytes() -> None:
    raw = ConsumerProtocolSubscription(version=1, topics=["a", "b"], user_data=b"u").encode()
    assert decode_subscription(raw) == Subscription(("a", "b"), b"u", (), -1, None, 1)
    raw = ConsumerProtocolAssignment(
        version=0,
        assigned_partitions=[ConsumerProtocolAssignment.TopicPartition(topic="a", partitions=[2])],
        user_data=b"",
    ).encode()
    decoded = decode_assignment(raw)
    assert decoded.partitions() == [("a", 2)]
    assert decoded.user_data == b""


def test_newer_version_is_read_with_the_newest_layout_ignoring_trailing_bytes() -> None:
    raw = encode_subscription(Subscription(("t",), None, (("t", (0,)),), 5, "r1", version=3))
    future = b"\x00\x07" + raw[2:] + b"extra-fields-of-v7"
    decoded = decode_subscription(future)
    assert decoded.version == 7
    assert decoded.topics == ("t",)
    assert decoded.rack_id == "r1"


def test_empty_assignment_bytes_mean_no_partitions() -> None:
    assert decode_assignment(b"").partitions() == []


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00",
        b"\xff\xff\x00\x00\x00\x00",
        b"\x00\x00\x00\x00\x00\x05\x00",
        b"\x00\x00\x7f\xff\xff\xff",
    ],
)
def test_garbage_raises_invalid_request(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        decode_subscription(raw)
    with pytest.raises(InvalidRequest):
        decode_assignment(raw)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_random_bytes_never_raise_anything_but_invalid_request(raw: bytes) -> None:
    for decode in (decode_subscription, decode_assignment):
        with contextlib.suppress(InvalidRequest):
            decode(raw)
