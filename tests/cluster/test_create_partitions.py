"""Adding partitions in a cluster: one CreatePartitions record through the controller, every
broker opens its new replicas, and the new partitions replicate acks=all writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from confluent_kafka import Producer

from quorumq import protocol as p
from quorumq.broker._replica import ReplicaPartition
from quorumq.client._connection import open_connection
from quorumq.errors import ErrorCode
from tests.cluster._harness import BOTH_STRATEGIES, open_cluster


def _produce(bootstrap: str, partition: int, count: int) -> list[Any]:
    errors: list[Any] = []
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": 10000}
    )
    for i in range(count):
        producer.produce(
            "t", b"%d" % i, partition=partition, on_delivery=lambda e, m: errors.append(e)
        )
    producer.flush(15)
    return errors


@BOTH_STRATEGIES
async def test_new_partitions_open_everywhere_and_replicate(
    tmp_path: Path, configs: dict[str, str]
) -> None:
    async with open_cluster(tmp_path) as cluster:
        await cluster.create_topic("t", 2, 3, configs)
        broker = cluster.running()[2]
        request = p.CreatePartitionsRequest(
            topics=[
                p.CreatePartitionsTopic(name="t", count=4),
                p.CreatePartitionsTopic(name="missing", count=4),
            ],
            timeout_ms=10000,
        )
        async with open_connection("127.0.0.1", broker.port or 0) as conn:
            answer = await conn.request(p.ApiKey.CREATE_PARTITIONS, 3, request)
        assert [r.error_code for r in answer.results] == [
            0,
            ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ]
        await cluster.wait_leaders("t", 4)
        # A replication factor other than the topic's is refused.
        wrong = p.CreatePartitionsRequest(
            topics=[
                p.CreatePartitionsTopic(
                    name="t",
                    count=5,
                    assignments=[p.CreatePartitionsAssignment(broker_ids=[0])],
                )
            ]
        )
        async with open_connection("127.0.0.1", broker.port or 0) as conn:
            answer = await conn.request(p.ApiKey.CREATE_PARTITIONS, 3, wrong)
        assert [r.error_code for r in answer.results] == [ErrorCode.INVALID_REPLICA_ASSIGNMENT]
        for b in cluster.running():
            for index in (2, 3):
                assert isinstance(b.partitions.get(("t", index)), ReplicaPartition)
        errors = await trio.to_thread.run_sync(_produce, cluster.bootstrap, 3, 50)
        assert errors == [None] * 50
        for b in cluster.running():
            replica = b.partitions[("t", 3)]
            await cluster.wait_for(lambda r=replica: r.log_end_offset == 50, 10, "replicated")
