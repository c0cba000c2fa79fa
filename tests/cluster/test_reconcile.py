"""How a broker takes up the roles the controller's image gives it: only what changed, and
new replicas opened off the event loop."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from quorumq import protocol as p
from quorumq.broker import _cluster as cluster_module
from quorumq.broker._replica import ReplicaPartition
from quorumq.client import open_connection
from tests.cluster._harness import open_cluster


async def test_a_new_topic_is_reconciled_without_looking_at_the_others(tmp_path: Path) -> None:
    """A reconcile looks at the partitions the image change names, not at every partition the
    broker hosts: creating a one-partition topic next to a 60-partition one costs each broker a
    handful of looks (a full pass would be 61 each time the image moves)."""
    async with open_cluster(tmp_path) as cluster:
        await cluster.create_topic("wide", 60, 3)
        await cluster.wait_for(
            lambda: all(b.roles_current for b in cluster.running()), 10, "roles taken up"
        )
        looked = {b.config.node_id: b.partitions_reconciled for b in cluster.running()}
        await cluster.create_topic("one", 1, 3)
        await cluster.wait_for(
            lambda: all(b.roles_current for b in cluster.running()), 10, "roles taken up"
        )
        for broker in cluster.running():
            assert ("one", 0) in broker.partitions
            assert broker.partitions_reconciled - looked[broker.config.node_id] <= 6


async def test_a_small_topic_opens_in_the_same_step_as_the_image_names_it(
    tmp_path: Path,
) -> None:
    """A handful of new replicas open inline, in the reconcile that sees them, so a client
    that learns the leader from Metadata finds it serving (a thread round trip left a window
    in which acks=0 writes vanished); only many go to the worker thread."""
    async with open_cluster(tmp_path) as cluster:
        await cluster.create_topic("few", cluster_module.INLINE_OPENS, 3)
        for broker in cluster.running():
            assert broker.most_opened_in_one_pass == 0  # no thread batch at all
            assert sum(key[0] == "few" for key in broker.partitions) == cluster_module.INLINE_OPENS


async def test_the_broker_serves_while_new_replicas_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replicas open in a worker thread: while a slow one opens (2 s here; thousands of
    ordinary ones took seconds on the event loop), the broker still answers requests."""
    opening = threading.Event()
    began: list[float] = []
    original = ReplicaPartition.open.__func__  # type: ignore[attr-defined]

    def slow_open(cls: type[ReplicaPartition], topic: str, *args: Any, **kwargs: Any) -> Any:
        if topic == "slow":
            began.append(time.monotonic())
            opening.set()
            time.sleep(2.0)
        return original(cls, topic, *args, **kwargs)

    monkeypatch.setattr(ReplicaPartition, "open", classmethod(slow_open))
    monkeypatch.setattr(cluster_module, "INLINE_OPENS", 0)  # every replica to the thread
    async with open_cluster(tmp_path) as cluster:
        broker = cluster.broker(0)
        await cluster.create_topic("fast", 1, 3)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cluster.create_topic, "slow", 1, 3)
            assert await trio.to_thread.run_sync(opening.wait, 10)
            async with open_connection("127.0.0.1", cluster.members[0].port) as conn:
                await conn.request(p.ApiKey.API_VERSIONS, 0, p.ApiVersionsRequest())
                answered_after = time.monotonic() - began[0]
            assert answered_after < 1.0, answered_after
            assert not broker.roles_current  # still opening
        assert isinstance(broker.partitions[("slow", 0)], ReplicaPartition)
