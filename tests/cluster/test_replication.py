"""A 3-broker cluster in one trio run: produce with acks=all, read back, replicas agree."""

from __future__ import annotations

from pathlib import Path

import trio

from quorumq.broker._replica import ReplicaPartition
from tests.cluster._clients import ProduceLog, consume_all, produce_confluent
from tests.cluster._harness import Cluster, open_cluster


def log_values(cluster: Cluster, node_id: int, topic: str, index: int) -> list[tuple[int, bytes]]:
    """(offset, value) of every record in one replica's log (whole log, not just below HW)."""
    from quorumq.protocol.records import decode_batch, parse_batch_header

    replica = cluster.broker(node_id).partitions[(topic, index)]
    out = []
    offset = replica.log_start_offset
    while offset < replica.log_end_offset:
        data = bytes(replica.log.read(offset, 1 << 20).records)
        position = 0
        while position < len(data):
            header = parse_batch_header(data, position)
            _, records = decode_batch(data, position)
            if not header.is_control:
                out.extend((r.offset, r.value) for r in records)
            position += header.size
            offset = header.next_offset
    return out


async def test_six_partitions_rf3_produce_and_read_back(tmp_path: Path) -> None:
    async with open_cluster(tmp_path) as cluster:
        await cluster.create_topic("orders", 6, 3)
        assert {cluster.leader_of("orders", i) for i in range(6)} == {0, 1, 2}
        values = [b"v%05d" % i for i in range(1200)]
        produced = await trio.to_thread.run_sync(
            lambda: produce_confluent(
                cluster.bootstrap, "orders", values, partitions=6, out=ProduceLog()
            )
        )
        assert produced.errors == {}
        assert sorted(v for _, _, v in produced.acked) == values
        assert {p for p, _, _ in produced.acked} == set(range(6))
        records = await trio.to_thread.run_sync(
            lambda: consume_all(f"127.0.0.1:{cluster.members[1].port}", "orders", 6, len(values))
        )
        assert sorted(r.value for r in records) == values

        # Every replica converges on the leader's log.
        def converged() -> bool:
            for index in range(6):
                leos = {
                    b.partitions[("orders", index)].log_end_offset
                    for b in cluster.running()
                    if isinstance(b.partitions.get(("orders", index)), ReplicaPartition)
                }
                if len(leos) != 1:
                    return False
            return True

        await cluster.wait_for(converged, 10, "replicas converge")
        for index in range(6):
            logs = [log_values(cluster, n, "orders", index) for n in range(3)]
            assert logs[0] == logs[1] == logs[2]
