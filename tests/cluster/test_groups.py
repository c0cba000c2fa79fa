"""Consumer groups in a cluster: ``__consumer_offsets`` is created through the controller and the
group coordinator follows its partitions' leaders."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.cluster._clients import ProduceLog, produce_confluent
from tests.cluster._harness import open_cluster


def _group_consume(bootstrap: str, topic: str, expected: int) -> tuple[list[Any], Any]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id="readers",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    try:
        records: list[Any] = []
        deadline = time.monotonic() + 30
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        consumer.commit()
        committed = consumer.committed(TopicPartition(topic, 0))
        return records, committed
    finally:
        consumer.close()


async def test_consumer_group_in_a_cluster(tmp_path: Path) -> None:
    async with open_cluster(tmp_path) as cluster:
        if getattr(cluster.broker(0), "groups", None) is None:
            pytest.skip("the broker has no group coordinator")
        await cluster.create_topic("g", 2, 3)
        values = [b"g%03d" % i for i in range(100)]
        await trio.to_thread.run_sync(
            lambda: produce_confluent(
                cluster.bootstrap, "g", values, partitions=2, out=ProduceLog()
            )
        )
        records, committed = await trio.to_thread.run_sync(
            lambda: _group_consume(cluster.bootstrap, "g", len(values))
        )
        assert sorted(r.value for r in records) == values
        assert committed == 50
        image = cluster.broker(0).bridge.image  # type: ignore[union-attr]
        offsets = image.topics["__consumer_offsets"]
        assert len(next(iter(offsets.partitions.values())).replicas) == 3
