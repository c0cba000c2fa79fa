"""Loading a ``__consumer_offsets`` partition does not stop the broker: the replay runs a read
at a time between other work, its groups answer COORDINATOR_LOAD_IN_PROGRESS meanwhile, and a
load whose leadership moves away is abandoned."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from quorumq import protocol as p
from quorumq.broker import Broker
from quorumq.broker import _groups as groups_module
from quorumq.client._connection import open_connection
from tests.groups_broker.conftest import wait_until
from tests.groups_broker.test_errors import GROUP, TOPIC, commit

COMMITS = 200


async def _committed_partition(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, int, int]:
    """The group's partition after COMMITS commits, read 512 bytes (a few batches) at a time
    from now on: (the group shell, the partition, loads completed so far)."""
    async with open_connection("127.0.0.1", broker.port) as conn:
        found = await conn.request(
            p.ApiKey.FIND_COORDINATOR, 2, p.FindCoordinatorRequest(key=GROUP)
        )
        assert found.error_code == 0
        for offset in range(1, COMMITS + 1):  # standalone commits: one record each
            assert await commit(conn, -1, "", offset) == 0
    shell = broker.groups  # type: ignore[attr-defined]
    monkeypatch.setattr(groups_module, "_LOAD_READ_BYTES", 512)
    return shell, shell.coordinator.partition_for(GROUP), shell.loads_completed


async def _fetch(broker: Broker) -> tuple[int, int]:
    """(error code, committed offset of partition 0) from OffsetFetch."""
    async with open_connection("127.0.0.1", broker.port) as conn:
        response = await conn.request(
            p.ApiKey.OFFSET_FETCH,
            5,
            p.OffsetFetchRequest(
                group_id=GROUP,
                topics=[p.OffsetFetchRequestTopic(name=TOPIC, partition_indexes=[0])],
            ),
        )
    offset = response.topics[0].partitions[0].committed_offset if response.topics else -1
    return int(response.error_code), int(offset)


async def test_a_large_partition_loads_a_read_at_a_time(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    shell, partition, loaded = await _committed_partition(broker, monkeypatch)
    shell.on_stop_leading(partition)
    shell.on_become_leader(partition)
    assert partition not in shell.coordinator.active_partitions  # still loading
    await wait_until(lambda: shell.loads_completed > loaded, 10, "the load")
    assert partition in shell.coordinator.active_partitions
    assert await _fetch(broker) == (0, COMMITS)


async def test_a_load_is_abandoned_when_leadership_moves_away(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    shell, partition, loaded = await _committed_partition(broker, monkeypatch)
    shell.on_stop_leading(partition)
    shell.on_become_leader(partition)
    shell.on_stop_leading(partition)
    await trio.sleep(0.5)  # many times what the load takes
    assert shell.loads_completed == loaded
    assert partition not in shell.coordinator.active_partitions
    # Leading it again loads it again, whole.
    shell.on_become_leader(partition)
    await wait_until(lambda: shell.loads_completed > loaded, 10, "the second load")
    assert await _fetch(broker) == (0, COMMITS)
