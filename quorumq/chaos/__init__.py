"""Chaos: a history checker (pure), a produce workload that records its history, the read-back,
and nemeses (kill the leader, pause a follower) acting on a local cluster's processes."""

from quorumq.chaos._history import HistoryReport, ProduceAttempt, ReadRecord, check_history
from quorumq.chaos._nemesis import (
    LeaderWatch,
    followers_of,
    kill_leader,
    leader_of,
    pause_follower,
)
from quorumq.chaos._workload import (
    Delivery,
    WorkloadError,
    WorkloadResult,
    percentile,
    produce_workload,
    read_back,
    wait_leaders_serving,
)

__all__ = [
    "Delivery",
    "HistoryReport",
    "LeaderWatch",
    "ProduceAttempt",
    "ReadRecord",
    "WorkloadError",
    "WorkloadResult",
    "check_history",
    "followers_of",
    "kill_leader",
    "leader_of",
    "pause_follower",
    "percentile",
    "produce_workload",
    "read_back",
    "wait_leaders_serving",
]
