"""The Trio broker: connections, request dispatch, handlers, delayed produce and fetch."""

from quorumq.broker._broker import Broker, error_code_for
from quorumq.broker._cluster import ClusterBroker, ClusterConfig
from quorumq.broker._config import BrokerConfig
from quorumq.broker._partition import Partition
from quorumq.broker._topics import (
    TOPIC_CONFIG_DEFS,
    ProducerIdStore,
    TopicSpec,
    TopicStore,
    validate_topic_configs,
    validate_topic_name,
)

__all__ = [
    "TOPIC_CONFIG_DEFS",
    "Broker",
    "BrokerConfig",
    "ClusterBroker",
    "ClusterConfig",
    "Partition",
    "ProducerIdStore",
    "TopicSpec",
    "TopicStore",
    "error_code_for",
    "validate_topic_configs",
    "validate_topic_name",
]
