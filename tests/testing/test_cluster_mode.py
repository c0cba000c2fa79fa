"""quorumq.testing.Cluster with three brokers: a replicated cluster, a real leader failover."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import trio

from quorumq.client import Consumer, Producer
from quorumq.testing import Cluster


def port_is_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    # Idempotence off: producer ids are allocated per broker for now (see docs/testing.md), so
    # two producers that meet two brokers could be handed the same id.
    async with Producer(bootstrap, acks="all", linger_ms=0, enable_idempotence=False) as producer:
        for i, value in enumerate(values):
            await producer.send(topic, value, partition=i % 3)


async def consume_all(bootstrap: str, topic: str, count: int) -> list[bytes]:
    values: list[bytes] = []
    async with Consumer(bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=100) as c:
        c.assign([(topic, i) for i in range(3)])
        with trio.fail_after(15):
            while len(values) < count:
                for records in (await c.getmany(timeout_ms=200)).values():
                    values.extend(r.value or b"" for r in records)
    return values


async def test_three_brokers_survive_the_leader_kill_and_restart(tmp_path: Path) -> None:
    async with Cluster(brokers=3, tmp_path=tmp_path) as cluster:
        assert cluster.running == [0, 1, 2] and len(cluster.bootstrap.split(",")) == 3
        await cluster.create_topic("orders", partitions=3)
        image = cluster.broker(0).bridge.image  # type: ignore[attr-defined]
        assert image.topics["orders"].configs["replication.strategy"] == "quorum"
        assert all(len(p.replicas) == 3 for p in image.topics["orders"].partitions.values())
        before = [b"before-%d" % i for i in range(6)]
        await produce(cluster.bootstrap, "orders", before)

        victim = await cluster.leader("orders", 0)
        await cluster.kill_broker(victim)
        await cluster.wait_ready()  # the controller fenced it and moved its leaderships
        assert await cluster.leader("orders", 0) != victim
        after = [b"after-%d" % i for i in range(6)]
        await produce(cluster.bootstrap, "orders", after)

        await cluster.restart_broker(victim)
        await cluster.wait_ready()
        assert sorted(await consume_all(cluster.bootstrap, "orders", 12)) == sorted(before + after)
        ports = cluster.ports
    for port in ports:
        assert port_is_closed(port)
    # The Raft voters' threads ended too (trio's idle worker cache may linger, by design).
    alive = [t.name for t in threading.enumerate() if not t.name.startswith("Trio thread")]
    assert alive == [threading.main_thread().name], alive


async def test_isr_replication_is_the_topics_default(tmp_path: Path) -> None:
    async with Cluster(brokers=3, replication="isr", tmp_path=tmp_path) as cluster:
        await cluster.create_topic("isr-topic", partitions=3, config={"min.insync.replicas": "2"})
        image = cluster.broker(1).bridge.image  # type: ignore[attr-defined]
        configs = image.topics["isr-topic"].configs
        assert configs["replication.strategy"] == "isr" and configs["min.insync.replicas"] == "2"
        await produce(cluster.bootstrap, "isr-topic", [b"a", b"b", b"c"])
        assert sorted(await consume_all(cluster.bootstrap, "isr-topic", 3)) == [b"a", b"b", b"c"]


async def test_idempotent_producers_that_ask_different_brokers_both_land(tmp_path: Path) -> None:
    async with Cluster(brokers=3, tmp_path=tmp_path) as cluster:
        await cluster.create_topic("ids", partitions=1)
        first, second = (f"127.0.0.1:{port}" for port in cluster.ports[:2])
        async with Producer(first, acks="all") as producer:
            await producer.send("ids", b"from-first", partition=0)
        async with Producer(second, acks="all") as producer:
            await producer.send("ids", b"from-second", partition=0)
        async with Consumer(cluster.bootstrap, auto_offset_reset="earliest") as consumer:
            consumer.assign([("ids", 0)])
            values: list[bytes] = []
            with trio.move_on_after(5):
                while len(values) < 2:
                    for records in (await consumer.getmany(timeout_ms=200)).values():
                        values.extend(r.value or b"" for r in records)
        assert values == [b"from-first", b"from-second"]
