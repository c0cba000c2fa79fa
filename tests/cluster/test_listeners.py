"""A cluster whose brokers talk to each other on a PLAINTEXT listener and to clients on a
SASL one: clients are told every broker's address on their own listener (Metadata and
FindCoordinator), and replication never leaves the inside one."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import trio
from confluent_kafka import Consumer, Producer

from quorumq import protocol as p
from quorumq.broker._listeners import parse_listeners
from quorumq.client._connection import SaslConfig, open_connection
from quorumq.errors import ErrorCode
from tests.cluster._harness import Member, open_cluster

ADMIN = SaslConfig("SCRAM-SHA-512", "admin", "admin-secret")
PROTOCOLS = "INSIDE:PLAINTEXT,OUTSIDE:SASL_PLAINTEXT"


def _listeners(member: Member) -> Any:
    return parse_listeners(f"INSIDE://127.0.0.1:{member.port},OUTSIDE://127.0.0.1:0", PROTOCOLS)


OPTIONS = {
    "listeners": _listeners,
    "sasl_mechanisms": ("SCRAM-SHA-512",),
    "sasl_users": {"admin": "admin-secret"},
}
OUTSIDE = {
    "security.protocol": "SASL_PLAINTEXT",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "admin",
    "sasl.password": "admin-secret",
}


def _produce_and_consume(bootstrap: str, count: int) -> tuple[int, list[bytes]]:
    delivered: list[int] = []
    producer = Producer({"bootstrap.servers": bootstrap, **OUTSIDE, "acks": "all"})
    for i in range(count):
        producer.produce(
            "r", value=b"%d" % i, on_delivery=lambda e, m: e is None and delivered.append(1)
        )
    producer.flush(20)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            **OUTSIDE,
            "group.id": "outside",
            "auto.offset.reset": "earliest",
        }
    )
    got: list[bytes] = []
    try:
        consumer.subscribe(["r"])
        deadline = time.monotonic() + 30
        while len(got) < count and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=count, timeout=0.2):
                assert message.error() is None, message.error()
                got.append(message.value())
    finally:
        consumer.close()
    return len(delivered), got


async def _metadata(port: int, sasl: SaslConfig | None) -> Any:
    async with open_connection("127.0.0.1", port, sasl=sasl) as conn:
        return await conn.request(p.ApiKey.METADATA, 8, p.MetadataRequest(topics=None))


async def test_clients_stay_on_their_listener_and_brokers_replicate_on_theirs(
    tmp_path: Path,
) -> None:
    async with open_cluster(tmp_path, broker_options=OPTIONS) as cluster:
        await cluster.create_topic("r", 3, 3, {"replication.strategy": "quorum"})
        brokers = cluster.running()
        inside = {b.config.node_id: b.ports["INSIDE"] for b in brokers}
        outside = {b.config.node_id: b.ports["OUTSIDE"] for b in brokers}
        first = brokers[0]
        answer = await _metadata(outside[0], ADMIN)
        assert {b.node_id: b.port for b in answer.brokers} == outside
        answer = await _metadata(inside[0], None)
        assert {b.node_id: b.port for b in answer.brokers} == inside
        # The registration (host, port) is the inter-broker listener's.
        assert first.bridge is not None
        registered = first.bridge.image.brokers
        assert {i: b.port for i, b in registered.items()} == inside
        delivered, got = await trio.to_thread.run_sync(
            _produce_and_consume, f"127.0.0.1:{outside[1]}", 100
        )
        assert delivered == 100
        assert sorted(got) == sorted(b"%d" % i for i in range(100))
        for broker in brokers:
            for index in range(3):
                replica = broker.partitions[("r", index)]
                await cluster.wait_for(
                    lambda r=replica, i=index: (
                        r.log_end_offset == brokers[0].partitions[("r", i)].log_end_offset
                    ),
                    10,
                    "replicated",
                )


async def test_a_broker_without_the_clients_listener_is_left_out(tmp_path: Path) -> None:
    def listeners(member: Member) -> Any:
        if member.node_id == 2:
            return parse_listeners(f"INSIDE://127.0.0.1:{member.port}", "INSIDE:PLAINTEXT")
        return _listeners(member)

    async with open_cluster(
        tmp_path, broker_options={**OPTIONS, "listeners": listeners}
    ) as cluster:
        await cluster.create_topic("r", 3, 3, {"replication.strategy": "quorum"})
        first = cluster.broker(0)
        answer = await _metadata(first.ports["OUTSIDE"], ADMIN)
        assert sorted(b.node_id for b in answer.brokers) == [0, 1]
        (topic,) = answer.topics
        for partition in topic.partitions:
            expected = ErrorCode.LISTENER_NOT_FOUND if partition.leader_id == 2 else 0
            assert partition.error_code == expected, partition
        assert any(x.leader_id == 2 for x in topic.partitions)
        answer = await _metadata(first.ports["INSIDE"], None)
        assert sorted(b.node_id for b in answer.brokers) == [0, 1, 2]


async def test_brokers_log_in_on_a_sasl_inter_broker_listener(tmp_path: Path) -> None:
    """The inter-broker listener's security is what replication uses: here brokers log in on
    a SASL listener (their own user, the cluster secret), while clients use a plain one."""

    def listeners(member: Member) -> Any:
        return parse_listeners(
            f"PEERS://127.0.0.1:{member.port},CLIENTS://127.0.0.1:0",
            "PEERS:SASL_PLAINTEXT,CLIENTS:PLAINTEXT",
        )

    options = {
        "listeners": listeners,
        "sasl_mechanisms": ("SCRAM-SHA-512",),
        "sasl_users": {"admin": "admin-secret"},
    }
    async with open_cluster(tmp_path, password="cluster-secret", broker_options=options) as cluster:
        await cluster.create_topic("r", 1, 3, {"replication.strategy": "isr"})
        brokers = cluster.running()
        clients = {b.config.node_id: b.ports["CLIENTS"] for b in brokers}
        answer = await _metadata(clients[0], None)
        assert {b.node_id: b.port for b in answer.brokers} == clients

        def produce() -> list[Any]:
            errors: list[Any] = []
            producer = Producer({"bootstrap.servers": f"127.0.0.1:{clients[1]}", "acks": "all"})
            for i in range(30):
                producer.produce("r", b"%d" % i, on_delivery=lambda e, m: errors.append(e))
            producer.flush(15)
            return errors

        assert await trio.to_thread.run_sync(produce) == [None] * 30
        for broker in brokers:
            replica = broker.partitions[("r", 0)]
            await cluster.wait_for(lambda r=replica: r.log_end_offset == 30, 10, "replicated")
        # The peers' listener refuses a client that does not log in.
        refused = False
        try:
            await _metadata(brokers[0].ports["PEERS"], None)
        except* ConnectionError:
            refused = True
        assert refused
