"""A full cluster stop and start keeps topics and their data, and consumers see all of it."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.cluster._clients import ProduceLog, consume_all, produce_confluent
from tests.cluster._harness import open_cluster


@pytest.mark.parametrize("strategy", ["quorum", "isr"])
async def test_full_restart_keeps_topics_and_data(tmp_path: Path, strategy: str) -> None:
    values = [b"r%04d" % i for i in range(300)]
    async with open_cluster(tmp_path) as cluster:
        await cluster.create_topic("kept", 3, 3, {"replication.strategy": strategy})
        produced = await trio.to_thread.run_sync(
            lambda: produce_confluent(
                cluster.bootstrap, "kept", values, partitions=3, out=ProduceLog()
            )
        )
        assert len(produced.acked) == len(values)
        for member in cluster.members:
            await cluster.stop(member.node_id)
        for member in cluster.members:
            await cluster.start(member.node_id)
        await cluster.wait_leaders("kept", 3, timeout_s=20)
        records = await trio.to_thread.run_sync(
            lambda: consume_all(cluster.bootstrap, "kept", 3, len(values))
        )
        assert sorted(r.value for r in records) == values
