"""Local clusters of broker processes: the supervisor behind ``quorumq cluster up``, chaos and
``quorumq compare``, and a flattened view of Metadata for ``cluster status``."""

from quorumq.cluster._metadata import (
    BrokerInfo,
    ClusterView,
    PartitionInfo,
    cluster_view,
    fetch_cluster_view,
    view_from_response,
)
from quorumq.cluster._supervisor import (
    RAFT_PORT_OFFSET,
    BrokerHandle,
    BrokerNetwork,
    BrokerSpec,
    ClusterError,
    Supervisor,
    broker_supports_cluster_mode,
    free_port_block,
    pid_exists,
    port_is_free,
)

__all__ = [
    "RAFT_PORT_OFFSET",
    "BrokerHandle",
    "BrokerInfo",
    "BrokerNetwork",
    "BrokerSpec",
    "ClusterError",
    "ClusterView",
    "PartitionInfo",
    "Supervisor",
    "broker_supports_cluster_mode",
    "cluster_view",
    "fetch_cluster_view",
    "free_port_block",
    "pid_exists",
    "port_is_free",
    "view_from_response",
]
