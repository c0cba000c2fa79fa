"""quorumq's own Trio client: connection, cluster metadata, producer, consumer and admin.

- :class:`Producer`: Kafka's partitioner, batching by ``linger_ms``/``batch_size``, a bounded
  buffer, acks 0/1/all, retries and the idempotent producer, compression.
- :class:`Consumer`: ``assign``/``subscribe`` (group membership with the range and round-robin
  assignors), seek, long-poll fetch, auto and manual commit, ``async for``.
- :class:`Admin`: topics, configs, partitions, records and groups (Kafka's admin APIs).
- :class:`ClusterMetadata`: brokers and partition leaders, one connection per broker.
- :class:`Connection` / :func:`open_connection`: one pipelined Kafka connection.

See ``docs/client.md``.
"""

from quorumq.client._admin import Admin
from quorumq.client._assignors import RangeAssignor, RoundRobinAssignor
from quorumq.client._connection import Connection, SaslConfig, open_connection
from quorumq.client._consumer import Consumer, ConsumerRecord
from quorumq.client._group import GroupGeneration, GroupMember
from quorumq.client._metadata import (
    BrokerAddress,
    ClusterMetadata,
    PartitionMetadata,
    TopicMetadata,
    TopicPartition,
)
from quorumq.client._partitioner import Partitioner, murmur2, partition_for_key
from quorumq.client._producer import Producer, RecordFuture, RecordMetadata

__all__ = [
    "Admin",
    "BrokerAddress",
    "ClusterMetadata",
    "Connection",
    "Consumer",
    "ConsumerRecord",
    "GroupGeneration",
    "GroupMember",
    "PartitionMetadata",
    "Partitioner",
    "Producer",
    "RangeAssignor",
    "RecordFuture",
    "RecordMetadata",
    "RoundRobinAssignor",
    "SaslConfig",
    "TopicMetadata",
    "TopicPartition",
    "murmur2",
    "open_connection",
    "partition_for_key",
]
