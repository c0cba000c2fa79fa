"""Broker heartbeats go to the active controller as BrokerHeartbeat requests, not through Raft."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from quorumq import protocol as p
from quorumq.broker._replica import now_ms
from quorumq.client._connection import open_connection
from quorumq.controller.image import BrokerChanged, BrokerHeartbeat, RegisterBroker, heartbeat_mac
from quorumq.errors import ErrorCode
from tests.cluster._harness import Cluster, open_cluster


def _active(cluster: Cluster) -> int:
    for broker in cluster.running():
        if broker.bridge is not None and broker.bridge.is_active:
            return broker.config.node_id
    return -1


async def _heartbeat(port: int, broker_id: int, broker_epoch: int, **fields: Any) -> Any:
    async with open_connection("127.0.0.1", port) as conn:
        request = p.BrokerHeartbeatRequest(broker_id=broker_id, broker_epoch=broker_epoch, **fields)
        version = conn.version_for(p.ApiKey.BROKER_HEARTBEAT)
        return await conn.request(p.ApiKey.BROKER_HEARTBEAT, version, request)


async def test_an_idle_cluster_s_heartbeats_add_nothing_to_the_metadata_log(
    tmp_path: Path,
) -> None:
    """Twelve heartbeat intervals (0.25 s here) of three brokers make no Raft record: the
    active controller counts them in memory. When heartbeats were records, each one was."""
    async with open_cluster(tmp_path) as cluster:
        await cluster.wait_for(lambda: _active(cluster) >= 0, 10, "an active controller")
        controller = cluster.broker(_active(cluster)).controller
        assert controller is not None
        bridge = cluster.running()[0].bridge
        assert bridge is not None
        records, heard = bridge.image.record_count, controller.liveness.heartbeats
        await trio.sleep(3.0)
        assert controller.liveness.heartbeats - heard >= 3 * 6  # every broker, every interval
        assert bridge.image.record_count == records
        assert all(not b.fenced for b in bridge.image.brokers.values())


async def test_broker_heartbeat_on_the_wire_answers_as_kafka_s_controller(tmp_path: Path) -> None:
    """Only the active controller answers; another broker says NOT_CONTROLLER. A stale
    incarnation gets STALE_BROKER_EPOCH, an unknown id BROKER_ID_NOT_REGISTERED, a live one
    its fencing state; the replica reports ride in quorumq's tagged field."""
    async with open_cluster(tmp_path) as cluster:
        await cluster.wait_for(lambda: _active(cluster) >= 0, 10, "an active controller")
        active = _active(cluster)
        other = (active + 1) % 3
        port = cluster.members[active].port
        epoch = cluster.broker(active).bridge.image.brokers[other].broker_epoch  # type: ignore[union-attr]

        refused = await _heartbeat(cluster.members[other].port, other, epoch)
        assert refused.error_code == ErrorCode.NOT_CONTROLLER
        stale = await _heartbeat(port, other, epoch - 1)
        assert stale.error_code == ErrorCode.STALE_BROKER_EPOCH
        unknown = await _heartbeat(port, 7, 1)
        assert unknown.error_code == ErrorCode.BROKER_ID_NOT_REGISTERED

        # A broker of the test's own (no membership task to heartbeat over ours): registered
        # fenced, unfenced by the tick once heard.
        bridge = cluster.broker(active).bridge
        assert bridge is not None
        (registered,) = await bridge.propose(RegisterBroker(5, "test", "127.0.0.1", 1, 0))
        assert isinstance(registered, BrokerChanged)
        report = p.BrokerHeartbeatReplicaReport(
            topic="t",
            partition_index=0,
            last_leader_epoch=3,
            log_end_offset=42,
            current_leader_epoch=4,
        )
        five = registered.broker_epoch
        answer = await _heartbeat(port, 5, five, replica_reports=[report])
        assert (answer.error_code, answer.is_fenced) == (0, True)
        liveness = cluster.broker(active).controller.liveness  # type: ignore[union-attr]
        assert liveness.reports_for(bridge.image, "t", 0) == {5: (3, 42)}
        await cluster.wait_for(lambda: not bridge.image.brokers[5].fenced, 5, "5 unfenced")
        answer = await _heartbeat(port, 5, five)
        assert (answer.error_code, answer.is_fenced) == (0, False)
        assert liveness.reports_for(bridge.image, "t", 0) == {5: (3, 42)}  # kept: none sent


async def test_with_a_controller_password_heartbeats_must_carry_its_mac(tmp_path: Path) -> None:
    """The brokers' own heartbeats carry the MAC (they stay unfenced through several
    intervals); a bare BrokerHeartbeat, or one with another key's MAC, is refused."""
    async with open_cluster(tmp_path, password="s3cret") as cluster:
        await cluster.wait_for(lambda: _active(cluster) >= 0, 10, "an active controller")
        active = _active(cluster)
        other = (active + 1) % 3
        bridge = cluster.broker(active).bridge
        controller = cluster.broker(active).controller
        assert bridge is not None and controller is not None
        heard = controller.liveness.heartbeats
        await trio.sleep(1.0)
        assert controller.liveness.heartbeats - heard >= 4
        assert not any(b.fenced for b in bridge.image.brokers.values())
        port = cluster.members[active].port
        epoch = bridge.image.brokers[other].broker_epoch
        bare = await _heartbeat(port, other, epoch)
        assert bare.error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        sent_ms = now_ms()
        mac = heartbeat_mac("guess", BrokerHeartbeat(other, epoch, sent_ms), sent_ms)
        forged = await _heartbeat(port, other, epoch, quorumq_sent_ms=sent_ms, quorumq_mac=mac)
        assert forged.error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
