"""Small values shared by the group coordinator, its record codecs and the client."""

from __future__ import annotations

from typing import NamedTuple


class TopicPartition(NamedTuple):
    """A partition of a topic. A NamedTuple so it sorts as Kafka's ``(topic, partition)`` does and
    compares equal to kafka-python's ``TopicPartition`` and to a plain ``(topic, partition)``."""

    topic: str
    partition: int
