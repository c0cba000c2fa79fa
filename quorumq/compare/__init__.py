"""``quorumq compare``: the two replication strategies under acks 0/1/all, measured under faults."""

from quorumq.compare._runner import (
    ACKS,
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
