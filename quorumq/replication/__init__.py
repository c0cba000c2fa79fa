"""Replication, sans I/O: strategies (``quorum``, ``isr``), leader and follower state, epochs.

- :class:`ReplicationStrategy` and its two implementations, :class:`QuorumStrategy` and
  :class:`IsrStrategy`, picked by the ``replication.strategy`` topic config via
  :func:`strategy_for` (default :data:`DEFAULT_STRATEGY`).
- :class:`LeaderReplicaState`: a leader's follower progress, high watermark and ISR.
- :class:`FollowerReplicaState`: a follower's fetch position, learnt HW and KIP-101 truncation.
- :class:`LeaderEpochCache`: epoch → start offset, ``OffsetForLeaderEpoch`` answers, and the
  ``leader-epoch-checkpoint`` file (:func:`save_checkpoint`, :func:`load_checkpoint`).

Never imports trio, socket or time: the broker shell feeds events and ``now_ms`` in.
"""

from quorumq.replication._epoch_cache import (
    CHECKPOINT_FILE_NAME,
    CHECKPOINT_VERSION,
    UNDEFINED_EPOCH,
    UNDEFINED_EPOCH_OFFSET,
    EpochEntry,
    LeaderEpochCache,
    load_checkpoint,
    rebuild_from_log,
    save_checkpoint,
)
from quorumq.replication._follower import FollowerReplicaState, Truncation, plan_truncation
from quorumq.replication._leader import (
    NO_EPOCH_CHECK,
    FollowerFetchResult,
    HighWatermarkUpdate,
    IsrChange,
    LeaderReplicaState,
    diverging_epoch,
)
from quorumq.replication._strategy import (
    DEFAULT_REPLICA_LAG_TIME_MAX_MS,
    DEFAULT_STRATEGY,
    STRATEGIES,
    UNKNOWN_OFFSET,
    IsrStrategy,
    QuorumStrategy,
    ReplicaProgress,
    ReplicationStrategy,
    majority,
    strategy_for,
)

__all__ = [
    "CHECKPOINT_FILE_NAME",
    "CHECKPOINT_VERSION",
    "DEFAULT_REPLICA_LAG_TIME_MAX_MS",
    "DEFAULT_STRATEGY",
    "NO_EPOCH_CHECK",
    "STRATEGIES",
    "UNDEFINED_EPOCH",
    "UNDEFINED_EPOCH_OFFSET",
    "UNKNOWN_OFFSET",
    "EpochEntry",
    "FollowerFetchResult",
    "FollowerReplicaState",
    "HighWatermarkUpdate",
    "IsrChange",
    "IsrStrategy",
    "LeaderEpochCache",
    "LeaderReplicaState",
    "QuorumStrategy",
    "ReplicaProgress",
    "ReplicationStrategy",
    "Truncation",
    "diverging_epoch",
    "load_checkpoint",
    "majority",
    "plan_truncation",
    "rebuild_from_log",
    "save_checkpoint",
    "strategy_for",
]
