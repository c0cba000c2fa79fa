"""Committed offsets survive a consumer restart and a broker restart (the coordinator reloads
``__consumer_offsets``), seen through kafka-python's group consumer."""

from __future__ import annotations

import time
from pathlib import Path

import trio

from quorumq.broker import Broker
from quorumq.groups import partition_for_group
from tests.groups_broker._members import (
    KAFKA_PYTHON_POLL_MS,
    SESSION_TIMEOUT_MS,
    produce,
    subscribe_after_metadata,
)
from tests.groups_broker.conftest import OFFSETS_PARTITIONS, group_config

TOPIC = "payments"
PARTITIONS = 3
RECORDS = 60


def consume_and_commit(address: str, group: str, count: int) -> tuple[list[bytes], dict[int, int]]:
    """Reads exactly ``count`` records as a member of ``group``, commits, closes (LeaveGroup).

    Returns the values read and the committed offset per partition after the commit.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=address,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=500,
        retry_backoff_ms=50,
    )
    try:
        subscribe_after_metadata(consumer, TOPIC)
        values: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(values) < count and time.monotonic() < deadline:
            batches = consumer.poll(
                timeout_ms=KAFKA_PYTHON_POLL_MS, max_records=count - len(values)
            )
            values.extend(r.value for records in batches.values() for r in records)
        consumer.commit()
        committed = {
            i: consumer.committed(TopicPartition(TOPIC, i)) or 0 for i in range(PARTITIONS)
        }
        return values, committed
    finally:
        consumer.close()


async def test_committed_offsets_survive_consumer_and_broker_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    group = "billing"
    expected = {f"v{i}".encode() for i in range(RECORDS)}

    async with trio.open_nursery() as nursery:
        first = Broker(group_config(data_dir))
        await nursery.start(first.serve)
        first.create_topic(TOPIC, PARTITIONS)
        address = f"127.0.0.1:{first.port}"
        await trio.to_thread.run_sync(produce, address, TOPIC, RECORDS)

        read_a, committed_a = await trio.to_thread.run_sync(consume_and_commit, address, group, 20)
        assert len(read_a) == 20 and sum(committed_a.values()) == 20
        # A restarted consumer goes on from the committed offsets: nothing twice.
        read_b, committed_b = await trio.to_thread.run_sync(consume_and_commit, address, group, 20)
        assert len(read_b) == 20 and not set(read_a) & set(read_b)
        assert sum(committed_b.values()) == 40
        first.shutdown()

    async with trio.open_nursery() as nursery:
        second = Broker(group_config(data_dir))
        await nursery.start(second.serve)
        # The coordinator reloaded the group's partition of __consumer_offsets at startup.
        coordinator = second.groups.coordinator
        assert partition_for_group(group, OFFSETS_PARTITIONS) in coordinator.active_partitions
        assert group in coordinator.group_ids()
        address = f"127.0.0.1:{second.port}"
        read_c, committed_c = await trio.to_thread.run_sync(consume_and_commit, address, group, 20)
        assert committed_c == {i: second.partition(TOPIC, i).log_end_offset for i in range(3)}
        assert set(read_a) | set(read_b) | set(read_c) == expected
        assert len(read_a) + len(read_b) + len(read_c) == RECORDS  # nothing read twice
        second.shutdown()
