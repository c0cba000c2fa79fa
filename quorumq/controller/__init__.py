"""The Raft controller: cluster metadata replicated by pysyncobj, seen from Trio.

Layers (docs/controller.md):

* :mod:`quorumq.controller.image` — the pure core: ``MetadataImage``, records, ``apply_record``,
  the versioned codec and the decisions (``plan_create_topic``, ``tick``, ``LeaderElector``).
* ``_raft`` — ``MetadataRaft``: the pysyncobj voter applying record batches (tick thread).
* ``_bridge`` — ``open_controller_bridge`` / ``ControllerBridge``: the only code crossing threads.
* ``_service`` — ``Controller`` (tick loop on the active controller, broker heartbeats kept in
  memory, admin writes) and ``BrokerMembership`` (register through Raft, heartbeat to the active
  controller through a ``HeartbeatSender``).
"""

from ._bridge import (
    ControllerBridge,
    ImageSubscription,
    ImageUpdate,
    Voter,
    open_controller_bridge,
    parse_voters,
    wall_clock_ms,
)
from ._raft import MetadataRaft, RaftConfig
from ._service import BrokerMembership, Controller, HeartbeatSender
from .image import (
    ControllerConfig,
    IsrElector,
    LeaderElector,
    MetadataImage,
    PartitionState,
    ReplicaReport,
    StrategyElector,
    electors_for,
)

__all__ = [
    "BrokerMembership",
    "Controller",
    "ControllerBridge",
    "ControllerConfig",
    "HeartbeatSender",
    "ImageSubscription",
    "ImageUpdate",
    "IsrElector",
    "LeaderElector",
    "MetadataImage",
    "MetadataRaft",
    "PartitionState",
    "RaftConfig",
    "ReplicaReport",
    "StrategyElector",
    "Voter",
    "electors_for",
    "open_controller_bridge",
    "parse_voters",
    "wall_clock_ms",
]
