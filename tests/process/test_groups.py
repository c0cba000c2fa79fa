"""Issue 6 with real processes: committed offsets survive the SIGKILL of the coordinator."""

from __future__ import annotations

import time

import trio

from quorumq import protocol as p
from quorumq.client._connection import open_connection, split_host_port
from quorumq.cluster import Supervisor
from tests.process._procs import create_topic, wait_for, wait_leaders


def find_coordinator(address: str, group: str) -> int:
    """The node id a FindCoordinator (key type 0, a group) names, as a Kafka client asks it."""

    async def ask() -> int:
        host, port = split_host_port(address)
        async with open_connection(host, port, client_id="test") as conn:
            version = conn.version_for(p.ApiKey.FIND_COORDINATOR, (1, 2))
            response = await conn.request(
                p.ApiKey.FIND_COORDINATOR, version, p.FindCoordinatorRequest(key=group),
                timeout_s=10,
            )  # fmt: skip
            assert response.error_code == 0, response
            return int(response.node_id)

    return trio.run(ask)


def test_committed_offsets_survive_sigkill_of_the_coordinator(cluster3: Supervisor) -> None:
    from confluent_kafka import Producer
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    topic, group = "grouped", f"g-{time.monotonic_ns()}"
    create_topic(cluster3.bootstrap, topic, 3, 3)
    wait_leaders(cluster3, topic, 3)
    producer = Producer({"bootstrap.servers": cluster3.bootstrap, "log_level": 0})
    for i in range(30):
        producer.produce(topic, b"r%02d" % i, partition=i % 3)
    assert producer.flush(30) == 0

    tps = [TopicPartition(topic, i) for i in range(3)]
    consumer = KafkaConsumer(bootstrap_servers=cluster3.bootstrap, group_id=group,
                             enable_auto_commit=False)  # fmt: skip
    consumer.assign(tps)
    committed = {tp: 3 + tp.partition for tp in tps}
    consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in committed.items()})
    consumer.close(autocommit=False)
    coordinator = find_coordinator(cluster3.address(0), group)
    assert coordinator in (0, 1, 2)

    cluster3.kill(coordinator)
    survivors = ",".join(cluster3.address(i) for i in range(3) if i != coordinator)
    after = KafkaConsumer(bootstrap_servers=survivors, group_id=group, enable_auto_commit=False,
                          request_timeout_ms=10000)  # fmt: skip
    try:

        def read_committed() -> dict[TopicPartition, int | None] | None:
            try:
                got = {tp: after.committed(tp) for tp in tps}
            except Exception:  # coordinator moving: NOT_COORDINATOR, load in progress
                return None
            return got if got == committed else None

        assert wait_for(read_committed, 40, "the committed offsets from a new coordinator")
        others = [i for i in range(3) if i != coordinator]
        assert find_coordinator(cluster3.address(others[0]), group) in others
        # And consumption resumes from them.
        after.assign(tps)
        got: list[tuple[int, int]] = []
        deadline = time.monotonic() + 20
        while len(got) < 30 - sum(committed.values()) and time.monotonic() < deadline:
            for batch in after.poll(timeout_ms=500).values():
                got.extend((r.partition, r.offset) for r in batch)
        assert min(off for part, off in got if part == 0) == committed[tps[0]]
    finally:
        after.close(autocommit=False)
