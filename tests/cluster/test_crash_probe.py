"""Crash probes: a silent broker whose port refuses connections is fenced without waiting out
its session. The sessions here are 30 s long, so every bound below fails without the probe."""

from __future__ import annotations

from pathlib import Path

import trio

from quorumq.broker._cluster import ClusterBroker
from quorumq.controller._service import listener_refuses
from quorumq.controller.image import NO_LEADER
from quorumq.testing import free_ports
from tests.cluster._harness import BOTH_STRATEGIES, Cluster, open_cluster

SESSION_MS = 30_000


def _active(cluster: Cluster) -> ClusterBroker | None:
    active = [b for b in cluster.running() if b.bridge and b.bridge.is_active]
    return active[0] if active else None


async def _crash_and_wait_for_new_leaders(cluster: Cluster, victim: int) -> float:
    led = [p for p in range(3) if cluster.leader_of("events", p) == victim]
    assert led, "the victim leads nothing"
    stopped = trio.current_time()
    await cluster.stop(victim)  # its listener closes, as a killed process's does

    def replaced() -> bool:
        return all(cluster.leader_of("events", p) not in (-1, victim) for p in led)

    await cluster.wait_for(replaced, 8, "new leaders")
    took = trio.current_time() - stopped
    survivor = _active(cluster)
    assert survivor is not None and survivor.bridge is not None
    image = survivor.bridge.image
    assert image.brokers[victim].fenced
    assert all(image.topics["events"].partitions[p].leader not in (victim, NO_LEADER) for p in led)
    assert survivor.controller is not None and survivor.controller.brokers_found_gone >= 1
    return took


@BOTH_STRATEGIES
async def test_a_crashed_leader_is_replaced_long_before_its_session_ends(
    tmp_path: Path, configs: dict[str, str]
) -> None:
    async with open_cluster(
        tmp_path, session_timeout_ms=SESSION_MS, replica_lag_time_max_ms=SESSION_MS
    ) as cluster:
        await cluster.create_topic("events", 3, 3, configs)
        await cluster.wait_for(lambda: _active(cluster) is not None, 10, "a controller")
        controller = _active(cluster)
        assert controller is not None
        victim = next(
            cluster.leader_of("events", p)
            for p in range(3)
            if cluster.leader_of("events", p) != controller.config.node_id
        )
        took = await _crash_and_wait_for_new_leaders(cluster, victim)
        print(f"\nnew leaders {took:.2f} s after the crash (session {SESSION_MS / 1000:.0f} s)")


async def test_a_crashed_controller_s_partitions_are_replaced_by_its_successor(
    tmp_path: Path,
) -> None:
    """The harder case: the new controller has heard nobody yet and would give the dead
    broker a whole session from its takeover; the probe counts from the takeover too."""
    async with open_cluster(
        tmp_path, session_timeout_ms=SESSION_MS, replica_lag_time_max_ms=SESSION_MS
    ) as cluster:
        await cluster.create_topic("events", 3, 3)
        await cluster.wait_for(lambda: _active(cluster) is not None, 10, "a controller")
        controller = _active(cluster)
        assert controller is not None
        victim = controller.config.node_id
        await cluster.wait_for(
            lambda: any(cluster.leader_of("events", p) == victim for p in range(3)),
            10,
            "the controller leading a partition",
        )
        took = await _crash_and_wait_for_new_leaders(cluster, victim)
        print(f"\nnew leaders {took:.2f} s after the controller's crash")


async def test_a_probe_is_refused_only_where_nothing_listens() -> None:
    (port,) = free_ports(1)
    assert await listener_refuses("127.0.0.1", port, 2.0)
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    try:
        # Never accepted: the kernel completes the handshake for a listener that is busy or
        # paused (SIGSTOP), so such a broker is not taken for dead.
        assert not await listener_refuses("127.0.0.1", port, 2.0)
    finally:
        for listener in listeners:
            await listener.aclose()
