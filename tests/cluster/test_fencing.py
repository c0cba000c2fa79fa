"""Who may serve what: leaders only, epochs fenced, NOT_ENOUGH_REPLICAS, divergent tails cut."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from quorumq import protocol as p
from quorumq.broker._replica import ReplicaPartition
from quorumq.client._connection import open_connection
from quorumq.errors import ErrorCode
from quorumq.protocol.records import build_batch
from tests.cluster._harness import Cluster, open_cluster


async def _produce(
    port: int, topic: str, index: int, value: bytes, acks: int, timeout_ms: int = 2000
) -> Any:
    async with open_connection("127.0.0.1", port) as conn:
        request = p.ProduceRequest(
            acks=acks,
            timeout_ms=timeout_ms,
            topics=[
                p.ProduceRequestTopic(
                    name=topic,
                    partitions=[
                        p.ProduceRequestPartition(
                            partition_index=index,
                            records=build_batch([(None, value)], timestamp=1_700_000_000_000),
                        )
                    ],
                )
            ],
        )
        response = await conn.request(p.ApiKey.PRODUCE, conn.version_for(p.ApiKey.PRODUCE), request)
        return response.topics[0].partitions[0]


async def _fetch(port: int, topic: str, index: int, epoch: int) -> Any:
    async with open_connection("127.0.0.1", port) as conn:
        request = p.FetchRequest(
            max_wait_ms=0,
            min_bytes=0,
            topics=[
                p.FetchRequestTopic(
                    name=topic,
                    partitions=[
                        p.FetchRequestPartition(
                            partition_index=index,
                            current_leader_epoch=epoch,
                            fetch_offset=0,
                            partition_max_bytes=1 << 20,
                        )
                    ],
                )
            ],
        )
        response = await conn.request(p.ApiKey.FETCH, conn.version_for(p.ApiKey.FETCH), request)
        return response.topics[0].partitions[0]


async def _metadata(port: int, topic: str) -> Any:
    async with open_connection("127.0.0.1", port) as conn:
        request = p.MetadataRequest(topics=[p.MetadataRequestTopic(name=topic)])
        version = conn.version_for(p.ApiKey.METADATA)
        return await conn.request(p.ApiKey.METADATA, version, request)


async def test_only_the_leader_serves_and_epochs_are_fenced(tmp_path: Path) -> None:
    async with open_cluster(tmp_path) as cluster:
        await cluster.create_topic("t", 1, 3)
        leader = cluster.leader_of("t", 0)
        follower = (leader + 1) % 3
        epoch = cluster.broker(leader).partitions[("t", 0)].leader_epoch

        ok = await _produce(cluster.members[leader].port, "t", 0, b"x", -1)
        assert ok.error_code == 0
        refused = await _produce(cluster.members[follower].port, "t", 0, b"x", -1)
        assert refused.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
        if epoch > 0:  # -1 means "no check" (KIP-320); the deposed-leader test covers more
            stale = await _fetch(cluster.members[leader].port, "t", 0, epoch - 1)
            assert stale.error_code == ErrorCode.FENCED_LEADER_EPOCH
        newer = await _fetch(cluster.members[leader].port, "t", 0, epoch + 1)
        assert newer.error_code == ErrorCode.UNKNOWN_LEADER_EPOCH
        current = await _fetch(cluster.members[leader].port, "t", 0, epoch)
        assert current.error_code == 0 and current.high_watermark == 1
        elsewhere = await _fetch(cluster.members[follower].port, "t", 0, epoch)
        assert elsewhere.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER

        # Metadata from any broker: every broker, the controller, the partition's leader.
        for member in cluster.members:
            metadata = await _metadata(member.port, "t")
            assert sorted(b.node_id for b in metadata.brokers) == [0, 1, 2]
            assert metadata.controller_id in (0, 1, 2)
            (partition,) = metadata.topics[0].partitions
            assert partition.leader_id == leader
            assert partition.leader_epoch == epoch
            assert sorted(partition.replica_nodes) == [0, 1, 2]
            assert sorted(partition.isr_nodes) == [0, 1, 2]


async def test_isr_min_insync_2_with_two_brokers_down_refuses_acks_all(tmp_path: Path) -> None:
    # Five voters, so that the controller keeps a majority with two brokers down.
    async with open_cluster(tmp_path, brokers=5) as cluster:
        controller = cluster.broker(0).controller
        assert controller is not None
        await controller.create_topic(
            "strict",
            1,
            3,
            configs={"replication.strategy": "isr", "min.insync.replicas": "2"},
            assignments={0: [0, 1, 2]},
        )
        await cluster.wait_leaders("strict", 1)
        assert cluster.leader_of("strict", 0) == 0
        port = cluster.members[0].port
        assert (await _produce(port, "strict", 0, b"a", -1)).error_code == 0
        await cluster.stop(1)
        await cluster.stop(2)
        replica = cluster.broker(0).partitions[("strict", 0)]
        assert isinstance(replica, ReplicaPartition)
        await cluster.wait_for(lambda: replica.isr == (0,), 20, "ISR shrinks to the leader")
        refused = await _produce(port, "strict", 0, b"b", -1)
        assert refused.error_code == ErrorCode.NOT_ENOUGH_REPLICAS
        # acks=1 still works: only acks=all needs min.insync.replicas.
        assert (await _produce(port, "strict", 0, b"c", 1)).error_code == 0


async def test_deposed_leader_truncates_its_uncommitted_tail(tmp_path: Path) -> None:
    async with open_cluster(tmp_path) as cluster:
        await cluster.create_topic("d", 1, 3)
        old = cluster.leader_of("d", 0)
        others = [n for n in range(3) if n != old]
        port = cluster.members[old].port
        for i in range(3):
            assert (await _produce(port, "d", 0, b"committed-%d" % i, -1)).error_code == 0
        await _wait_converged(cluster, "d")

        # Cut the followers off from the old leader: its acks=1 writes stay on it alone.
        originals = {}
        for n in others:
            broker = cluster.broker(n)
            originals[n] = broker.followed_from
            broker.followed_from = lambda leader_id, f=broker.followed_from: (  # type: ignore[method-assign]
                [] if leader_id == old else f(leader_id)
            )
            for fetcher in list(broker.fetchers.values()):
                fetcher.wake()
        await trio.sleep(0.3)
        for i in range(4):
            assert (await _produce(port, "d", 0, b"tail-%d" % i, 1)).error_code == 0
        old_replica = cluster.broker(old).partitions[("d", 0)]
        assert _values(cluster, old, "d")[-4:] == [b"tail-%d" % i for i in range(4)]
        old_epoch = old_replica.leader_epoch
        await cluster.stop(old)
        for n in others:
            del cluster.broker(n).followed_from  # back to the class's method
        await cluster.wait_for(
            lambda: cluster.leader_of("d", 0) in others, 20, "a new leader among the others"
        )
        new = cluster.leader_of("d", 0)
        new_port = cluster.members[new].port
        stale = await _fetch(new_port, "d", 0, old_epoch)
        assert stale.error_code == ErrorCode.FENCED_LEADER_EPOCH
        for i in range(2):
            response = await _produce(new_port, "d", 0, b"new-%d" % i, -1)
            assert response.error_code == 0

        await cluster.start(old)
        await _wait_converged(cluster, "d")
        logs = [_values(cluster, n, "d") for n in range(3)]
        assert logs[0] == logs[1] == logs[2]
        assert [v for v in logs[old] if v.startswith(b"tail")] == []
        assert logs[old] == [b"committed-0", b"committed-1", b"committed-2", b"new-0", b"new-1"]


async def _wait_converged(cluster: Cluster, topic: str) -> None:
    def converged() -> bool:
        replicas = [b.partitions.get((topic, 0)) for b in cluster.running()]
        return (
            len(replicas) == 3
            and all(isinstance(r, ReplicaPartition) for r in replicas)
            and len({r.log_end_offset for r in replicas}) == 1
            and len({r.high_watermark for r in replicas}) == 1
        )

    await cluster.wait_for(converged, 20, f"every replica of {topic} at one LEO and HW")


def _values(cluster: Cluster, node_id: int, topic: str) -> list[bytes]:
    from quorumq.protocol.records import decode_batch, parse_batch_header

    replica = cluster.broker(node_id).partitions[(topic, 0)]
    data = bytes(replica.log.read(0, 1 << 20).records)
    out: list[bytes] = []
    position = 0
    while position < len(data):
        header = parse_batch_header(data, position)
        if not header.is_control:
            out.extend(r.value for r in decode_batch(data, position)[1] if r.value is not None)
        position += header.size
    return out


async def test_acks_all_waits_for_the_high_watermark_and_consumers_see_only_below_it(
    tmp_path: Path,
) -> None:
    async with open_cluster(tmp_path, replica_lag_time_max_ms=60_000) as cluster:
        await cluster.create_topic("hw", 1, 3, {"replication.strategy": "isr"})
        leader = cluster.leader_of("hw", 0)
        port = cluster.members[leader].port
        epoch = cluster.broker(leader).partitions[("hw", 0)].leader_epoch
        assert (await _produce(port, "hw", 0, b"one", -1)).error_code == 0
        _cut_off(cluster, leader)
        await trio.sleep(0.3)
        timed_out = await _produce(port, "hw", 0, b"two", -1, timeout_ms=300)
        assert timed_out.error_code == ErrorCode.REQUEST_TIMED_OUT
        # The record is in the leader's log but above the HW: a consumer does not see it.
        fetched = await _fetch(port, "hw", 0, epoch)
        assert fetched.error_code == 0 and fetched.high_watermark == 1
        assert _record_values(fetched.records) == [b"one"]
        _restore(cluster, leader)
        replica = cluster.broker(leader).partitions[("hw", 0)]
        await cluster.wait_for(lambda: replica.high_watermark == 2, 10, "HW reaches 2")
        fetched = await _fetch(port, "hw", 0, epoch)
        assert _record_values(fetched.records) == [b"one", b"two"]


def _cut_off(cluster: Cluster, leader: int) -> None:
    """The other brokers stop fetching from ``leader`` (a network partition, one way)."""
    for broker in cluster.running():
        if broker.config.node_id == leader:
            continue
        original = broker.followed_from
        broker.followed_from = lambda leader_id, f=original: (  # type: ignore[method-assign]
            [] if leader_id == leader else f(leader_id)
        )
        for fetcher in list(broker.fetchers.values()):
            fetcher.wake()


def _restore(cluster: Cluster, leader: int) -> None:
    for broker in cluster.running():
        if "followed_from" in vars(broker):
            del broker.followed_from
            broker._reconcile(full=True)  # starts the fetchers again


def _record_values(records: Any) -> list[bytes]:
    from quorumq.protocol.records import decode_batch, parse_batch_header

    data = bytes(records or b"")
    out: list[bytes] = []
    position = 0
    while position < len(data):
        header = parse_batch_header(data, position)
        if not header.is_control:
            out.extend(r.value for r in decode_batch(data, position)[1] if r.value is not None)
        position += header.size
    return out
