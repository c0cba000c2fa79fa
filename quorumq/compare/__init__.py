"""``quorumq compare``: the two replication strategies under acks 0/1/all, measured under faults."""

from quorumq.compare._runner import (
    ACKS,
    CLUSTER_BROKER_ARGS,
    SCENARIOS,
    STRATEGIES,
    CompareError,
    CompareOptions,
    CompareReport,
    Row,
    explain,
    plot,
    run_compare,
    write_outputs,
)

__all__ = [
    "ACKS",
    "CLUSTER_BROKER_ARGS",
    "SCENARIOS",
    "STRATEGIES",
    "CompareError",
    "CompareOptions",
    "CompareReport",
    "Row",
    "explain",
    "plot",
    "run_compare",
    "write_outputs",
]
