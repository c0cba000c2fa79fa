"""Builders shared by the controller tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import trio

from quorumq.controller import Controller, HeartbeatSender
from quorumq.controller.image import (
    BrokerHeartbeat,
    ControllerEpochBump,
    MetadataImage,
    MetadataRecord,
    MetadataStateMachine,
    RegisterBroker,
    UnfenceBroker,
)
from quorumq.errors import NotController


def apply_all(
    records: Iterable[MetadataRecord], image: MetadataImage | None = None
) -> MetadataImage:
    machine = MetadataStateMachine(image if image is not None else MetadataImage())
    for record in records:
        machine.apply(record)
    return machine.image


def cluster_records(broker_ids: Iterable[int], now_ms: int = 1_000) -> list[MetadataRecord]:
    """A controller epoch 1 on broker 0, and the brokers registered and unfenced."""
    records: list[MetadataRecord] = [ControllerEpochBump(0, 1, now_ms)]
    for epoch, broker_id in enumerate(broker_ids, start=1):
        records.append(
            RegisterBroker(broker_id, f"inc-{broker_id}", "127.0.0.1", 9092 + broker_id, now_ms)
        )
        records.append(UnfenceBroker(broker_id, epoch, 1))
    return records


def live_cluster(broker_ids: Iterable[int] = (0, 1, 2), now_ms: int = 1_000) -> MetadataImage:
    return apply_all(cluster_records(broker_ids, now_ms))


def send_to_active(controllers: Callable[[], Iterable[Controller]]) -> HeartbeatSender:
    """A BrokerMembership's way to the active controller for tests without brokers' listeners:
    a call on whichever of ``controllers()`` is active (the cluster tests use the real
    BrokerHeartbeat request)."""

    async def send(heartbeat: BrokerHeartbeat) -> bool:
        await trio.lowlevel.checkpoint()
        for controller in controllers():
            if controller.bridge.is_active:
                return controller.record_heartbeat(heartbeat).fenced
        raise NotController("no active controller")

    return send
