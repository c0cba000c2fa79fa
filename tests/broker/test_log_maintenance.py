"""run_log_maintenance applies retention and compaction only below each log's high watermark."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import trio
import trio.testing

from quorumq.broker._flusher import run_log_maintenance
from quorumq.log import LogConfig, LogManager, PartitionLog
from quorumq.protocol.records import Record, build_batch

INTERVAL_S = 300.0  # Kafka's default log.retention.check.interval.ms, in virtual time


def _fill(log: PartitionLog, *, keyed: bool) -> None:
    for i in range(30):
        rows = [Record(j, i, b"k%d" % j if keyed else None, b"v%d" % i) for j in range(3)]
        log.append(build_batch(rows), leader_epoch=1, now_ms=i)
    assert len(log.segments) >= 4


def _files(log: PartitionLog) -> dict[int, bytes]:
    return {segment.base_offset: segment.path.read_bytes() for segment in log.segments}


async def test_log_maintenance_stops_at_each_logs_high_watermark(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    manager = LogManager(tmp_path)
    deleting_config = LogConfig(segment_bytes=500, retention_bytes=0, retention_ms=-1)
    deleting = manager.get_or_create("d", 0, deleting_config, now_ms=0)
    unreplicated = manager.get_or_create("u", 0, deleting_config, now_ms=0)
    compacted = manager.get_or_create(
        "c", 0, LogConfig(segment_bytes=500, cleanup_policy=frozenset({"compact"})), now_ms=0
    )
    _fill(deleting, keyed=False)
    _fill(unreplicated, keyed=False)
    _fill(compacted, keyed=True)
    deleting_bases = [s.base_offset for s in deleting.segments]
    compacted_bases = [s.base_offset for s in compacted.segments]
    compacted_before = _files(compacted)
    high_watermarks: dict[PartitionLog, int] = {
        deleting: deleting_bases[1] + 1,  # inside the second segment
        compacted: compacted_bases[2] + 1,  # inside the third segment
    }
    asked: list[PartitionLog] = []

    def high_watermark(partition_log: PartitionLog) -> int | None:
        asked.append(partition_log)
        return high_watermarks.get(partition_log)  # "u" has no HW: no limit

    async with trio.open_nursery() as nursery:
        await nursery.start(
            partial(
                run_log_maintenance,
                manager,
                interval_s=INTERVAL_S,
                clock_ms=lambda: 10**9,
                high_watermark=high_watermark,
            )
        )
        await trio.sleep(INTERVAL_S * 2.5)  # two passes
        assert asked.count(deleting) == 2
        assert deleting.log_start_offset == deleting_bases[1]
        assert [s.base_offset for s in deleting.segments] == deleting_bases[1:]
        assert len(unreplicated.segments) == 1
        compacted_after = _files(compacted)
        assert compacted_after[compacted_bases[0]] != compacted_before[compacted_bases[0]]
        for base in compacted_bases[2:]:
            assert compacted_after[base] == compacted_before[base]
        # The HW reaches the log end: the next pass deletes every closed segment.
        high_watermarks[deleting] = deleting.log_end_offset
        await trio.sleep(INTERVAL_S)
        assert len(deleting.segments) == 1
        assert deleting.log_start_offset == deleting.active_segment.base_offset
        nursery.cancel_scope.cancel()
    manager.close_all()
