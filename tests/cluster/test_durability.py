"""flush.messages=1: an acks=all answer means fsynced on a majority (quorum) / the ISR (isr)."""

from __future__ import annotations

from pathlib import Path

import pytest

from quorumq.broker._replica import ReplicaPartition
from tests.cluster._harness import open_cluster
from tests.cluster.test_fencing import _produce


@pytest.mark.parametrize("strategy", ["quorum", "isr"])
async def test_flush_messages_1_acks_only_fsynced_records(tmp_path: Path, strategy: str) -> None:
    async with open_cluster(tmp_path) as cluster:
        await cluster.create_topic(
            "durable", 1, 3, {"replication.strategy": strategy, "flush.messages": "1"}
        )
        leader = cluster.leader_of("durable", 0)
        port = cluster.members[leader].port
        for i in range(5):
            response = await _produce(port, "durable", 0, b"d%d" % i, -1)
            assert response.error_code == 0
            acked_end = response.base_offset + 1
            flushed = sorted(
                (
                    r.log.flushed_offset
                    for b in cluster.running()
                    if isinstance(r := b.partitions.get(("durable", 0)), ReplicaPartition)
                ),
                reverse=True,
            )
            needed = 2 if strategy == "quorum" else 3  # a majority / every ISR member
            assert flushed[needed - 1] >= acked_end, (flushed, acked_end)
