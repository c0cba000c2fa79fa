"""Failover with acks=all: stop the leader mid-stream, nothing acknowledged is lost."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from quorumq.broker._replica import ReplicaPartition
from tests.cluster._clients import ProduceLog, consume_all, produce_confluent
from tests.cluster._harness import open_cluster

log = logging.getLogger(__name__)


@pytest.mark.parametrize(
    "configs",
    [
        {"replication.strategy": "quorum"},
        {"replication.strategy": "isr", "min.insync.replicas": "2"},
    ],
    ids=["quorum", "isr-min2"],
)
async def test_leader_stopped_mid_stream_loses_no_acknowledged_record(
    tmp_path: Path, configs: dict[str, str]
) -> None:
    async with open_cluster(tmp_path) as cluster:
        await cluster.create_topic("events", 2, 3, configs)
        victim = cluster.leader_of("events", 0)
        epoch_before = cluster.broker(victim).partitions[("events", 0)].leader_epoch
        values = [b"e%05d" % i for i in range(600)]
        produced = ProduceLog()
        bootstrap = cluster.bootstrap

        async def produce() -> None:
            await trio.to_thread.run_sync(
                lambda: produce_confluent(
                    bootstrap, "events", values, partitions=2, spread_s=4.0, out=produced
                )
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            await cluster.wait_for(lambda: produced.count() >= 150, 20, "150 acks")
            started = trio.current_time()
            await cluster.stop(victim)
            await cluster.wait_for(
                lambda: cluster.leader_of("events", 0) not in (-1, victim), 20, "new leader"
            )
            log.info("new leader after %.2f s", trio.current_time() - started)
        new_leader = cluster.leader_of("events", 0)
        replica = cluster.broker(new_leader).partitions[("events", 0)]
        assert isinstance(replica, ReplicaPartition)
        assert replica.leader_epoch > epoch_before
        acked = {v for _, _, v in produced.acked}
        assert len(acked) > 150
        survivor = next(m.port for m in cluster.members if m.broker is not None)
        records = await trio.to_thread.run_sync(
            lambda: consume_all(f"127.0.0.1:{survivor}", "events", 2, len(acked))
        )
        seen = {r.value for r in records}
        lost = acked - seen
        assert not lost, f"{len(lost)} acknowledged records lost: {sorted(lost)[:10]}"
