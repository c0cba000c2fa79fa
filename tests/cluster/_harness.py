"""In-process clusters for the tests: N ClusterBrokers in one trio run, real sockets on 127.0.0.1.

Each broker runs in its own cancel scope, so a test can stop one (as a crash of its process
would, minus the page cache) and start it again on the same data dir and ports.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from quorumq.broker import BrokerConfig
from quorumq.broker._cluster import ClusterBroker, ClusterConfig
from quorumq.broker._replica import ReplicaPartition
from quorumq.testing import free_ports

BOTH_STRATEGIES = pytest.mark.parametrize(
    "configs",
    [
        {"replication.strategy": "quorum"},
        {"replication.strategy": "isr", "min.insync.replicas": "2"},
    ],
    ids=["quorum", "isr-min2"],
)
"""Runs a test once per replication strategy (``configs``: the topic's), isr with
``min.insync.replicas=2`` as its promise needs."""


@attrs.define(eq=False)
class Member:
    node_id: int
    port: int
    raft_port: int
    data_dir: Path
    broker: ClusterBroker | None = None
    scope: trio.CancelScope | None = None
    done: trio.Event | None = None


@attrs.define(eq=False)
class Cluster:
    root: Path
    members: list[Member]
    voters: str
    nursery: trio.Nursery
    cluster_config: ClusterConfig
    broker_options: dict[str, Any] = attrs.Factory(dict)
    """Further :class:`BrokerConfig` fields of every broker; a callable value is called with
    the :class:`Member` (a field that differs per broker, such as its listeners)."""

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{m.port}" for m in self.members if m.broker is not None)

    def broker(self, node_id: int) -> ClusterBroker:
        broker = self.members[node_id].broker
        assert broker is not None
        return broker

    def running(self) -> list[ClusterBroker]:
        return [m.broker for m in self.members if m.broker is not None]

    async def start(self, node_id: int) -> ClusterBroker:
        member = self.members[node_id]
        config = BrokerConfig(
            data_dir=member.data_dir,
            node_id=node_id,
            port=member.port,
            auto_create_topics_enable=False,
        )
        fields = attrs.fields_dict(BrokerConfig)
        if "offsets_topic_num_partitions" in fields:  # small and fast groups in tests
            config = attrs.evolve(
                config, offsets_topic_num_partitions=4, group_initial_rebalance_delay_ms=0
            )
        if self.broker_options:
            options = {
                key: value(member) if callable(value) else value
                for key, value in self.broker_options.items()
            }
            config = attrs.evolve(config, **options)
        broker = ClusterBroker(config, self.cluster_config)
        member.done = trio.Event()
        done = member.done

        async def run(*, task_status: trio.TaskStatus[None]) -> None:
            try:
                with trio.CancelScope() as scope:
                    member.scope = scope
                    await broker.serve(task_status=task_status)
            finally:
                done.set()

        await self.nursery.start(run)
        member.broker = broker
        return broker

    async def stop(self, node_id: int) -> None:
        member = self.members[node_id]
        assert member.scope is not None and member.done is not None
        member.scope.cancel()
        await member.done.wait()
        member.broker = None

    async def wait_for(
        self, predicate: Callable[[], bool], timeout_s: float = 15.0, what: str = ""
    ) -> None:
        """Polls ``predicate`` (state spread over several brokers has no single event)."""
        with trio.move_on_after(timeout_s):
            while not predicate():  # noqa: ASYNC110
                await trio.sleep(0.05)
            return
        raise AssertionError(f"timed out waiting for {what or predicate}")

    def leader_of(self, topic: str, index: int) -> int:
        """The broker that actually serves as leader now (-1 if none does)."""
        for broker in self.running():
            replica = broker.partitions.get((topic, index))
            if isinstance(replica, ReplicaPartition) and replica.leader is not None:
                return broker.config.node_id
        return -1

    async def wait_leaders(self, topic: str, partitions: int, timeout_s: float = 15.0) -> None:
        """Every partition has a serving leader that every running broker's image agrees on."""

        def ready() -> bool:
            for index in range(partitions):
                leader = self.leader_of(topic, index)
                if leader < 0:
                    return False
                for broker in self.running():
                    assert broker.bridge is not None
                    state = broker.bridge.image.topics.get(topic)
                    if state is None or state.partitions[index].leader != leader:
                        return False
                    if (
                        leader not in broker.bridge.image.brokers
                        or broker.bridge.image.brokers[leader].fenced
                    ):
                        return False
            return True

        await self.wait_for(ready, timeout_s, f"leaders of {topic}")

    async def create_topic(
        self, name: str, partitions: int, rf: int, configs: dict[str, str] | None = None
    ) -> None:
        broker = self.running()[0]
        assert broker.controller is not None
        for _ in range(50):
            try:
                await broker.controller.create_topic(name, partitions, rf, configs=configs or {})
                break
            except Exception as exc:  # elections, not yet enough live brokers
                last = exc
                await trio.sleep(0.1)
        else:
            raise AssertionError(f"create_topic failed: {last}")
        await self.wait_leaders(name, partitions)


@asynccontextmanager
async def open_cluster(
    root: Path,
    brokers: int = 3,
    *,
    session_timeout_ms: int = 1500,
    heartbeat_interval_s: float = 0.25,
    replica_lag_time_max_ms: int = 2000,
    broker_options: dict[str, Any] | None = None,
    **cluster_options: Any,
) -> AsyncIterator[Cluster]:
    """``cluster_options``: further :class:`ClusterConfig` fields; ``broker_options``:
    further :class:`BrokerConfig` fields."""
    ports = free_ports(brokers * 2)
    members = [
        Member(i, ports[2 * i], ports[2 * i + 1], root / f"broker-{i}") for i in range(brokers)
    ]
    voters = ",".join(f"{m.node_id}@127.0.0.1:{m.raft_port}" for m in members)
    cluster_config = ClusterConfig(
        voters=voters,
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_s=heartbeat_interval_s,
        replica_lag_time_max_ms=replica_lag_time_max_ms,
        controller_tick_s=0.1,
        replica_tick_s=0.1,
        **cluster_options,
    )
    async with trio.open_nursery() as nursery:
        cluster = Cluster(root, members, voters, nursery, cluster_config, broker_options or {})
        for member in members:
            await cluster.start(member.node_id)
        for broker in cluster.running():
            with trio.fail_after(15):
                await broker.wait_registered()

        def all_unfenced() -> bool:
            image = cluster.running()[0].bridge.image  # type: ignore[union-attr]
            return len(image.brokers) == brokers and not any(
                b.fenced for b in image.brokers.values()
            )

        await cluster.wait_for(all_unfenced, 15, "all brokers unfenced")
        try:
            yield cluster
        finally:
            nursery.cancel_scope.cancel()
