"""A follower whose log ends below the leader's log start restarts at it and catches up."""

from __future__ import annotations

from pathlib import Path

import trio

from quorumq.broker._replica import ReplicaPartition
from quorumq.log import PartitionLog
from quorumq.protocol.records import iter_batch_headers
from tests.cluster._clients import ProduceLog, produce_confluent
from tests.cluster._harness import open_cluster


async def test_follower_behind_the_leaders_log_start_restarts_there(tmp_path: Path) -> None:
    async with open_cluster(tmp_path) as cluster:
        await cluster.create_topic("t", 1, 3, {"segment.bytes": "4096"})
        leader_id = cluster.leader_of("t", 0)
        lagger = next(i for i in range(3) if i != leader_id)
        await cluster.stop(lagger)

        values = [b"v%05d" % i for i in range(400)]
        produced = ProduceLog()
        bootstrap = cluster.bootstrap
        await trio.to_thread.run_sync(
            lambda: produce_confluent(bootstrap, "t", values, partition=0, out=produced)
        )
        assert len(produced.acked) == len(values)
        leader = cluster.broker(leader_id).partitions[("t", 0)]
        assert isinstance(leader, ReplicaPartition)
        # What retention or DeleteRecords does on the leader: everything below 300 is gone,
        # including all the stopped follower still needs.
        leader.log.advance_log_start_offset(300)
        start = leader.log_start_offset
        assert 0 < start <= 300

        restarted = await cluster.start(lagger)
        await cluster.wait_for(lambda: ("t", 0) in restarted.partitions, 20, "the replica")
        follower = restarted.partitions[("t", 0)]
        assert isinstance(follower, ReplicaPartition)

        def caught_up() -> bool:
            # The follower starts at the base of the batch holding the leader's log start.
            return (
                0 < follower.log_start_offset <= start
                and follower.log_end_offset == leader.log_end_offset
            )

        await cluster.wait_for(caught_up, 20, "the lagging follower to catch up")
        # Every batch from the log start on, across segments: the two logs roll their segments
        # at different offsets (the follower's first segment starts at the batch holding
        # ``start``, the leader's earlier), and one read returns one segment only.
        assert _batches_from(follower.log, start) == _batches_from(leader.log, start)
        assert follower.epoch_cache.latest_epoch == leader.epoch_cache.latest_epoch


def _batches_from(log: PartitionLog, offset: int) -> bytes:
    out = bytearray()
    while offset < log.log_end_offset:
        records = bytes(log.read(offset, 1 << 20).records)
        assert records, f"nothing read at {offset}"
        out += records
        last = list(iter_batch_headers(records))[-1]
        offset = last.base_offset + last.last_offset_delta + 1
    return bytes(out)
