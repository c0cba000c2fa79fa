"""The partitioner agrees with Kafka's (kafka-python's port of Utils.murmur2) key for key."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.partitioner.default import DefaultPartitioner
from kafka.partitioner.default import murmur2 as kafka_murmur2

from quorumq.client._partitioner import Partitioner, murmur2, partition_for_key, to_positive
from quorumq.errors import InvalidPartitions


class _Cluster:
    """The slice of kafka-python's ClusterMetadata that DefaultPartitioner reads."""

    def __init__(self, topic: str, num_partitions: int) -> None:
        self._topic = topic
        self._partitions = set(range(num_partitions))

    def topics(self) -> set[str]:
        return {self._topic}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions


# Known answers from Kafka's own tests (UtilsTest.testMurmur2 / DefaultPartitionerTest).
KNOWN = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("key", "expected"), KNOWN)
def test_murmur2_matches_kafka_known_answers(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64))
def test_murmur2_equals_kafka_python(key: bytes) -> None:
    assert murmur2(key) & 0xFFFFFFFF == kafka_murmur2(key)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), st.integers(min_value=1, max_value=200))
def test_partition_for_key_equals_kafka_python_default_partitioner(
    key: bytes, num_partitions: int
) -> None:
    kafka = DefaultPartitioner().partition("t", key, key, b"v", b"v", _Cluster("t", num_partitions))
    assert partition_for_key(key, num_partitions) == kafka
    assert Partitioner().partition("t", key, num_partitions) == kafka


def test_many_string_keys_land_where_kafka_python_puts_them() -> None:
    cluster = _Cluster("orders", 12)
    kafka = DefaultPartitioner()
    for i in range(2000):
        key = f"customer-{i}".encode()
        assert partition_for_key(key, 12) == kafka.partition(
            "orders", key, key, None, None, cluster
        )


def test_to_positive_keeps_low_31_bits() -> None:
    assert to_positive(-1) == 0x7FFFFFFF
    assert to_positive(-(2**31)) == 0
    assert to_positive(5) == 5


def test_partition_for_key_refuses_zero_partitions() -> None:
    with pytest.raises(InvalidPartitions):
        partition_for_key(b"k", 0)


def test_round_robin_spreads_null_keys_evenly() -> None:
    partitioner = Partitioner(null_key_strategy="round_robin")
    chosen = [partitioner.partition("t", None, 4) for _ in range(12)]
    assert chosen == [0, 1, 2, 3] * 3


def test_round_robin_uses_only_available_partitions() -> None:
    partitioner = Partitioner(null_key_strategy="round_robin")
    chosen = {partitioner.partition("t", None, 4, available=[1, 3]) for _ in range(10)}
    assert chosen == {1, 3}


def test_sticky_stays_until_a_new_batch_then_moves() -> None:
    partitioner = Partitioner(rng=random.Random(7))
    first = partitioner.partition("t", None, 5)
    assert all(partitioner.partition("t", None, 5) == first for _ in range(20))
    moved = partitioner.on_new_batch("t", 5, first)
    assert moved != first
    assert partitioner.partition("t", None, 5) == moved
    # A batch completing on another partition does not move the sticky one.
    assert partitioner.on_new_batch("t", 5, (moved + 1) % 5) == moved


def test_sticky_spreads_over_batches() -> None:
    partitioner = Partitioner(rng=random.Random(1))
    counts: Counter[int] = Counter()
    partition = partitioner.partition("t", None, 3)
    for _ in range(300):
        counts[partition] += 1
        partition = partitioner.on_new_batch("t", 3, partition)
    assert set(counts) == {0, 1, 2}


def test_sticky_with_one_partition_stays_there() -> None:
    partitioner = Partitioner()
    assert partitioner.partition("t", None, 1) == 0
    assert partitioner.on_new_batch("t", 1, 0) == 0


def test_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError):
        Partitioner(null_key_strategy="random")  # type: ignore[arg-type]
