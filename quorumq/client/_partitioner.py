"""Kafka's default partitioner: murmur2 of the serialized key, so keys land where Kafka puts them.

Theory of operation: a keyed record goes to ``to_positive(murmur2(key)) % num_partitions``
exactly as Java's ``BuiltInPartitioner.partitionForKey`` (and kafka-python's
``DefaultPartitioner``) computes it, over *all* partitions of the topic, available or not, so a
key keeps its partition while a leader is down. Agreeing byte for byte with Kafka matters: a
topic written by a Java producer and by ours must keep each key in one partition, or per-key
order breaks.

Records without a key have no natural home. Two strategies, chosen per :class:`Partitioner`:

* ``"sticky"`` (the default, Kafka's since KIP-480): stay on one partition until the producer
  starts a new batch for it (:meth:`Partitioner.on_new_batch`), then move to another one chosen
  at random among the available partitions. Fewer, fuller batches, which is the point.
* ``"round_robin"``: each null-key record goes to the next partition in turn (Kafka's
  ``RoundRobinPartitioner``), spreading single records evenly at the cost of small batches.

Randomness comes from an injected :class:`random.Random`, so tests are deterministic.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence
from typing import Literal

import attrs

from quorumq.errors import InvalidPartitions

__all__ = ["NullKeyStrategy", "Partitioner", "murmur2", "partition_for_key", "to_positive"]

NullKeyStrategy = Literal["sticky", "round_robin"]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Returns Kafka's ``Utils.murmur2(data)``: MurmurHash2, 32-bit, seed ``0x9747b28c``.

    The result is a *signed* 32-bit int, as Java returns it; apply :func:`to_positive` before
    taking a modulus. (kafka-python's ``murmur2`` returns the same bits as an unsigned int.)
    """
    length = len(data)
    h = (_SEED ^ length) & _MASK32
    length4 = length // 4
    for (k,) in struct.iter_unpack("<I", data[: length4 * 4]):
        k = (k * _M) & _MASK32
        k ^= k >> 24
        k = (k * _M) & _MASK32
        h = ((h * _M) & _MASK32) ^ k
    tail = length4 * 4
    extra = length & 3
    # Java's switch falls through: case 3 also does 2 and 1.
    if extra >= 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK32
    h ^= h >> 13
    h = (h * _M) & _MASK32
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def to_positive(number: int) -> int:
    """Returns Kafka's ``Utils.toPositive``: the low 31 bits (not ``abs``, which fails on MIN)."""
    return number & 0x7FFFFFFF


def partition_for_key(key: bytes, num_partitions: int) -> int:
    """Returns the partition Kafka's default partitioner picks for a non-null serialized key.

    Raises:
        InvalidPartitions: ``num_partitions`` below one (a topic always has at least one).
    """
    if num_partitions < 1:
        raise InvalidPartitions(f"a topic has at least one partition, not {num_partitions}")
    return to_positive(murmur2(key)) % num_partitions


@attrs.define(eq=False)
class Partitioner:
    """Chooses a partition per record: murmur2 for keys, sticky or round-robin for null keys.

    One instance per producer; it keeps per-topic state for null keys (the sticky partition or
    the round-robin counter). Not thread-safe; the producer calls it from one task.
    """

    null_key_strategy: NullKeyStrategy = "sticky"
    rng: random.Random = attrs.field(factory=random.Random)
    _sticky: dict[str, int] = attrs.field(factory=dict, init=False)
    _counters: dict[str, int] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        if self.null_key_strategy not in ("sticky", "round_robin"):
            raise ValueError(f"unknown null key strategy {self.null_key_strategy!r}")

    def partition(
        self,
        topic: str,
        key: bytes | None,
        num_partitions: int,
        available: Sequence[int] | None = None,
    ) -> int:
        """Returns the partition for one record.

        Args:
            topic: the topic, for per-topic null-key state.
            key: the serialized key, or None.
            num_partitions: partitions of the topic (keys hash over all of them).
            available: partitions that have a leader now; null keys prefer these (Kafka does
                too). None or empty means "all".

        Raises:
            InvalidPartitions: ``num_partitions`` below one.
        """
        if key is not None:
            return partition_for_key(key, num_partitions)
        if num_partitions < 1:
            raise InvalidPartitions(f"a topic has at least one partition, not {num_partitions}")
        pool = _pool(num_partitions, available)
        if self.null_key_strategy == "round_robin":
            counter = self._counters.get(topic, 0)
            self._counters[topic] = counter + 1
            return pool[counter % len(pool)]
        sticky = self._sticky.get(topic)
        if sticky is None or sticky >= num_partitions:
            sticky = self._choose_sticky(topic, num_partitions, available, previous=None)
        return sticky

    def on_new_batch(
        self,
        topic: str,
        num_partitions: int,
        previous_partition: int,
        available: Sequence[int] | None = None,
    ) -> int:
        """Moves the sticky partition of ``topic`` when a batch for it filled up (KIP-480).

        Mirrors Kafka's ``StickyPartitionCache.nextPartition``: only a batch on the *current*
        sticky partition moves it, and the new one differs from the old when there is a choice.

        Returns:
            The sticky partition now in force for ``topic``.
        """
        current = self._sticky.get(topic)
        if current is not None and current != previous_partition:
            return current
        return self._choose_sticky(topic, num_partitions, available, previous=previous_partition)

    def _choose_sticky(
        self,
        topic: str,
        num_partitions: int,
        available: Sequence[int] | None,
        previous: int | None,
    ) -> int:
        pool = _pool(num_partitions, available)
        candidates = [p for p in pool if p != previous] or pool
        chosen = candidates[self.rng.randrange(len(candidates))]
        self._sticky[topic] = chosen
        return chosen


def _pool(num_partitions: int, available: Sequence[int] | None) -> list[int]:
    if available:
        pool = sorted(p for p in available if 0 <= p < num_partitions)
        if pool:
            return pool
    return list(range(num_partitions))
