"""DeleteRecords in a cluster: the answer comes once every in-sync follower has dropped the
deleted records too (the low watermark), so a failover cannot bring them back."""

from __future__ import annotations

from pathlib import Path

import trio
from confluent_kafka import Producer

from quorumq import protocol as p
from quorumq.broker._replica import ReplicaPartition
from quorumq.client._connection import open_connection
from quorumq.errors import ErrorCode
from tests.cluster._harness import BOTH_STRATEGIES, open_cluster


def _fill(servers: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": servers, "acks": "all"})
    for i in range(count):
        producer.produce("t", b"%d" % i, partition=0)
    producer.flush(15)


def _request(offset: int) -> p.DeleteRecordsRequest:
    return p.DeleteRecordsRequest(
        topics=[
            p.DeleteRecordsTopic(
                name="t", partitions=[p.DeleteRecordsPartition(partition_index=0, offset=offset)]
            )
        ],
        timeout_ms=10000,
    )


@BOTH_STRATEGIES
async def test_the_low_watermark_waits_for_the_followers(
    tmp_path: Path, configs: dict[str, str]
) -> None:
    async with open_cluster(tmp_path) as cluster:
        await cluster.create_topic("t", 1, 3, configs)
        await trio.to_thread.run_sync(_fill, cluster.bootstrap, 200)
        leader = cluster.broker(cluster.leader_of("t", 0))
        async with open_connection("127.0.0.1", leader.port or 0) as conn:
            answer = await conn.request(p.ApiKey.DELETE_RECORDS, 2, _request(120))
        (result,) = answer.topics[0].partitions
        assert (result.error_code, result.low_watermark) == (0, 120)
        # Answered: every replica has dropped them already.
        for broker in cluster.running():
            replica = broker.partitions[("t", 0)]
            assert isinstance(replica, ReplicaPartition)
            assert replica.log_start_offset == 120, broker.config.node_id
        # A follower refuses: only the leader deletes.
        follower = next(b for b in cluster.running() if b is not leader)
        async with open_connection("127.0.0.1", follower.port or 0) as conn:
            answer = await conn.request(p.ApiKey.DELETE_RECORDS, 2, _request(150))
        assert answer.topics[0].partitions[0].error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
        # The new leader after a failover starts at 120.
        await cluster.stop(leader.config.node_id)
        await cluster.wait_for(lambda: cluster.leader_of("t", 0) >= 0, 15, "a new leader")
        successor = cluster.broker(cluster.leader_of("t", 0))
        assert successor.partitions[("t", 0)].log_start_offset == 120
