"""How a broker takes up the roles the controller's image gives it: only what changed, and
new replicas opened off the event loop."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import trio

from quorumq import protocol as p
from quorumq.broker._replica import ReplicaPartition
from quorumq.client import Producer, open_connection
from quorumq.errors import ErrorCode, NotLeaderOrFollower
from quorumq.protocol.records import build_batch
from tests.broker.test_server import produce_request
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


def _slow_opens(monkeypatch: pytest.MonkeyPatch, seconds: float) -> dict[int, float]:
    """Makes every replica of topic "slow" take ``seconds`` to open; returns, per broker id,
    when its first one began (written from the worker threads)."""
    began: dict[int, float] = {}
    original = ReplicaPartition.open.__func__  # type: ignore[attr-defined]

    def slow_open(cls: type[ReplicaPartition], topic: str, *args: Any, **kwargs: Any) -> Any:
        if topic == "slow":
            began.setdefault(kwargs["broker_id"], time.monotonic())
            time.sleep(seconds)
        return original(cls, topic, *args, **kwargs)

    monkeypatch.setattr(ReplicaPartition, "open", classmethod(slow_open))
    return began


def batch(value: bytes) -> bytes:
    return build_batch([(b"k", value)], timestamp=1_700_000_000_000)


async def test_a_request_for_a_replica_still_opening_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Metadata names a new topic's leader at once, while the leader opens its files in a
    worker thread. Requests sent to it meanwhile wait for the open instead of being refused:
    acks=0 records used to vanish in that window. The wait is bounded by the request's own
    timeout, after which it is answered as it stands."""
    began = _slow_opens(monkeypatch, 3.0)
    async with open_cluster(tmp_path) as cluster:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cluster.create_topic, "slow", 1, 3)
            bridge = cluster.broker(0).bridge
            assert bridge is not None
            await cluster.wait_for(lambda: "slow" in bridge.image.topics, 10, "the topic")
            leader = bridge.image.topics["slow"].partitions[0].leader
            await cluster.wait_for(lambda: leader in began, 10, "the leader opening")
            async with open_connection("127.0.0.1", cluster.members[leader].port) as conn:
                # Shorter than the open: answered at its timeout, as it stands then.
                sent = time.monotonic()
                early = await conn.request(
                    p.ApiKey.PRODUCE, 8, produce_request("slow", batch(b"early"), 1, timeout_ms=200)
                )
                waited = time.monotonic() - sent
                assert early.topics[0].partitions[0].error_code == (
                    ErrorCode.NOT_LEADER_OR_FOLLOWER
                )
                assert 0.2 <= waited < 2.5, waited
                # Fire and forget, then one that outlasts the open: both land, in order.
                await conn.request(
                    p.ApiKey.PRODUCE,
                    8,
                    produce_request("slow", batch(b"fire-and-forget"), 0, timeout_ms=30_000),
                    expect_response=False,
                )
                later = await conn.request(
                    p.ApiKey.PRODUCE,
                    8,
                    produce_request("slow", batch(b"later"), 1, timeout_ms=30_000),
                )
                assert later.topics[0].partitions[0].error_code == 0
                assert later.topics[0].partitions[0].base_offset == 1
        assert cluster.broker(leader).partitions[("slow", 0)].log_end_offset == 2


async def test_the_broker_serves_while_new_replicas_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replicas open in a worker thread: while a slow one opens (2 s here; thousands of
    ordinary ones took seconds on the event loop), the broker still answers requests."""
    began = _slow_opens(monkeypatch, 2.0)
    async with open_cluster(tmp_path) as cluster:
        broker = cluster.broker(0)
        await cluster.create_topic("fast", 1, 3)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cluster.create_topic, "slow", 1, 3)
            await cluster.wait_for(lambda: 0 in began, 10, "broker 0 opening")
            async with open_connection("127.0.0.1", cluster.members[0].port) as conn:
                await conn.request(p.ApiKey.API_VERSIONS, 0, p.ApiVersionsRequest())
                answered_after = time.monotonic() - began[0]
            assert answered_after < 1.0, answered_after
            assert not broker.roles_current  # still opening
        assert isinstance(broker.partitions[("slow", 0)], ReplicaPartition)


async def test_a_broker_stopped_while_a_replica_opens_stops_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker stopped all at once (a cancelled scope, as the harness's stop does) while a
    replica opens in its worker thread closes its data dir meanwhile; the opened log must be
    closed, not adopted into the closed broker (that failed on an assertion and took the run
    down with it), and the broker must start again on the same data dir."""
    began = _slow_opens(monkeypatch, 1.0)
    async with open_cluster(tmp_path) as cluster:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cluster.create_topic, "slow", 1, 3)
            await cluster.wait_for(lambda: 1 in began, 10, "broker 1 opening")
            await cluster.stop(1)
        restarted = await cluster.start(1)
        await cluster.wait_for(lambda: ("slow", 0) in restarted.partitions, 20, "the replica")


async def test_a_new_topics_first_acks_all_produce_does_not_wait_out_a_long_poll(
    tmp_path: Path,
) -> None:
    """Followers that already long-poll a leader take up a new topic's partition at once.
    Two waits used to hold its first acks=all produce for a whole replica long-poll
    (``replica_fetch_max_wait_ms``, 5 s here): the follower's new request queued behind its
    abandoned long-poll, or the follower asked before the leader had taken the role, backed
    off, and long-polled without the partition meanwhile."""
    async with open_cluster(tmp_path, replica_fetch_max_wait_ms=5000) as cluster:
        # Three partitions, one led by each broker: every broker long-polls every other.
        await cluster.create_topic("first", 3, 3)
        async with Producer(cluster.bootstrap, acks="all", linger_ms=0) as producer:
            took = {}
            for i in range(6):
                name = f"new-{i}"
                strategy = "isr" if i % 2 else "quorum"
                configs = {"replication.strategy": strategy, "min.insync.replicas": "2"}
                await cluster.create_topic(name, 1, 3, configs)
                started = time.monotonic()
                await producer.send(name, b"first record")
                took[name] = round(time.monotonic() - started, 3)
    assert max(took.values()) < 1.5, took


async def test_a_follower_backing_off_a_partition_long_polls_only_until_its_back_off_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For 0.3 s the leader answers a new partition's followers as one that has not taken
    up its role yet: NOT_LEADER_OR_FOLLOWER to their first request, OffsetForLeaderEpoch
    (a 50 ms back-off each time). The followers' long-polls meanwhile leave that partition
    out, so they must end with its back-off: with the 5 s long-poll they used to run, the
    first acks=all produce waited about 5 s instead of about 0.3."""
    original = ReplicaPartition.end_offset_for
    refuse_until: dict[str, float] = {}

    def lagging(self: ReplicaPartition, *args: Any) -> tuple[int, int]:
        if time.monotonic() < refuse_until.get(self.topic, 0.0):
            raise NotLeaderOrFollower(f"{self.topic}: not taken up yet (test)")
        return original(self, *args)

    monkeypatch.setattr(ReplicaPartition, "end_offset_for", lagging)
    async with open_cluster(tmp_path, replica_fetch_max_wait_ms=5000) as cluster:
        # Three partitions, one led by each broker: every broker long-polls every other.
        await cluster.create_topic("first", 3, 3)
        async with Producer(cluster.bootstrap, acks="all", linger_ms=0) as producer:
            refuse_until["lagging"] = time.monotonic() + 1_000  # until the topic is made
            await cluster.create_topic("lagging", 1, 3, {"replication.strategy": "quorum"})
            refuse_until["lagging"] = time.monotonic() + 0.3
            started = time.monotonic()
            await producer.send("lagging", b"first record")
            took = time.monotonic() - started
    assert 0.3 <= took < 1.5, took
