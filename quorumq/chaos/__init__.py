"""Chaos: a history checker (pure), a produce workload that records its history, the read-back,
nemeses (kill the leader, pause a follower) acting on a local cluster's processes, and a
network lab whose namespaces let a test partition brokers from each other."""

from quorumq.chaos._history import (
    HistoryReport,
    ProduceAttempt,
    ReadRecord,
    ReadReport,
    check_history,
    check_reads,
)
from quorumq.chaos._nemesis import (
    LeaderWatch,
    followers_of,
    kill_leader,
    leader_of,
    pause_follower,
)
from quorumq.chaos._netlab import NetLabError, NetworkLab, netlab_unavailable
from quorumq.chaos._workload import (
    Delivery,
    WorkloadError,
    WorkloadResult,
    percentile,
    produce_workload,
    read_back,
    tailing,
    wait_leaders_serving,
)

__all__ = [
    "Delivery",
    "HistoryReport",
    "LeaderWatch",
    "NetLabError",
    "NetworkLab",
    "ProduceAttempt",
    "ReadRecord",
    "ReadReport",
    "WorkloadError",
    "WorkloadResult",
    "check_history",
    "check_reads",
    "followers_of",
    "kill_leader",
    "leader_of",
    "netlab_unavailable",
    "pause_follower",
    "percentile",
    "produce_workload",
    "read_back",
    "tailing",
    "wait_leaders_serving",
]
