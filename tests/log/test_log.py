"""Unit tests of PartitionLog: append, read, roll, truncate, reopen, retention, flush policy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from quorumq.errors import (
    CorruptRecord,
    InvalidConfig,
    InvalidRecord,
    KafkaStorageError,
    MessageTooLarge,
    OffsetOutOfRange,
)
from quorumq.log import (
    CLEAN_SHUTDOWN_FILE,
    LogConfig,
    LogManager,
    PartitionLog,
    parse_partition_dir_name,
    validate_records,
)
from quorumq.protocol.records import iter_batch_headers
from tests.log._helpers import batch, batch_ranges, offsets_in

SMALL = LogConfig(segment_bytes=1000, index_interval_bytes=100)


def _open(path: Path, config: LogConfig = SMALL, now_ms: int = 0) -> PartitionLog:
    return PartitionLog.open(path, config, now_ms=now_ms)


def _fill(log: PartitionLog, batches: int, records: int = 3, now_ms: int = 0) -> None:
    for _ in range(batches):
        log.append(batch(records), leader_epoch=5, now_ms=now_ms)


def test_append_assigns_dense_offsets_and_stamps_the_leader_epoch(tmp_path: Path) -> None:
    log = _open(tmp_path)
    first = log.append(batch(3), leader_epoch=7, now_ms=0)
    second = log.append(batch(2) + batch(4), leader_epoch=7, now_ms=0)
    assert (first.first_offset, first.last_offset) == (0, 2)
    assert (second.first_offset, second.last_offset, second.batch_count) == (3, 8, 2)
    assert log.log_end_offset == 9
    records = log.read(0, 10_000).records
    assert batch_ranges(records) == [(0, 2), (3, 4), (5, 8)]
    assert offsets_in(records) == list(range(9))
    assert {h.partition_leader_epoch for h in iter_batch_headers(records)} == {7}


def test_append_does_not_modify_the_callers_bytes(tmp_path: Path) -> None:
    log = _open(tmp_path)
    log.append(batch(1), leader_epoch=1, now_ms=0)
    request = bytearray(batch(2))
    before = bytes(request)
    log.append(request, leader_epoch=1, now_ms=0)
    assert bytes(request) == before


def test_append_refuses_a_corrupt_batch_and_writes_nothing(tmp_path: Path) -> None:
    log = _open(tmp_path)
    good = batch(2)
    bad = bytearray(batch(2))
    bad[-1] ^= 0xFF
    with pytest.raises(CorruptRecord):
        log.append(good + bytes(bad), leader_epoch=1, now_ms=0)
    with pytest.raises(CorruptRecord):
        log.append(good[:-3], leader_epoch=1, now_ms=0)
    with pytest.raises(InvalidRecord):
        log.append(b"", leader_epoch=1, now_ms=0)
    assert log.log_end_offset == 0
    assert log.active_segment.size == 0


def test_append_refuses_a_batch_over_max_message_bytes(tmp_path: Path) -> None:
    log = _open(tmp_path, LogConfig(max_message_bytes=200))
    with pytest.raises(MessageTooLarge):
        log.append(batch(1, value_size=300), leader_epoch=1, now_ms=0)
    log.append(batch(1, value_size=50), leader_epoch=1, now_ms=0)
    assert log.log_end_offset == 1


def test_follower_append_keeps_offsets_and_refuses_to_go_back(tmp_path: Path) -> None:
    leader = _open(tmp_path / "leader")
    _fill(leader, 4)
    follower = _open(tmp_path / "follower")
    data = leader.read(0, 100_000).records
    info = follower.append(data, leader_epoch=0, now_ms=0, assign_offsets=False)
    assert (info.first_offset, info.last_offset) == (0, 11)
    assert follower.read(0, 100_000).records == data
    with pytest.raises(InvalidRecord):
        follower.append(
            leader.read(9, 100_000).records, leader_epoch=0, now_ms=0, assign_offsets=False
        )
    bad = bytearray(leader.read(9, 100_000).records)
    bad[-1] ^= 1
    with pytest.raises(CorruptRecord):
        follower.append(bytes(bad), leader_epoch=0, now_ms=0, assign_offsets=False)
    assert follower.log_end_offset == 12


def test_read_returns_whole_batches_from_the_one_containing_the_offset(tmp_path: Path) -> None:
    log = _open(tmp_path, LogConfig(index_interval_bytes=50))
    _fill(log, 20)
    assert batch_ranges(log.read(4, 1).records) == [(3, 5)]  # one whole batch even if too big
    size = len(batch(3))
    assert batch_ranges(log.read(31, 2 * size + 5).records) == [(30, 32), (33, 35)]
    assert batch_ranges(log.read(59, 10_000).records) == [(57, 59)]
    for records in (log.read(0, 10_000).records, log.read(13, 700).records):
        assert list(iter_batch_headers(records))  # whole batches, every CRC valid


def test_read_stops_before_max_offset_and_at_the_log_end(tmp_path: Path) -> None:
    log = _open(tmp_path)
    _fill(log, 5)
    assert batch_ranges(log.read(0, 10_000, max_offset=6).records) == [(0, 2), (3, 5)]
    assert batch_ranges(log.read(0, 10_000, max_offset=7).records) == [(0, 2), (3, 5), (6, 8)]
    assert log.read(6, 10_000, max_offset=6).records == b""
    assert log.read(15, 10_000).records == b""
    with pytest.raises(OffsetOutOfRange):
        log.read(16, 10_000)
    with pytest.raises(OffsetOutOfRange):
        log.read(-1, 10_000)


def test_segments_roll_by_size_and_reads_span_them(tmp_path: Path) -> None:
    log = _open(tmp_path)
    _fill(log, 40)
    names = sorted(p.name for p in tmp_path.glob("*.log"))
    assert len(names) > 3
    assert names[0] == "00000000000000000000.log"
    assert all(p.stat().st_size <= SMALL.segment_bytes for p in tmp_path.glob("*.log"))
    offset, seen = 0, []
    while offset < log.log_end_offset:
        got = batch_ranges(log.read(offset, 10_000).records)
        seen += got
        offset = got[-1][1] + 1
    assert seen == [(3 * i, 3 * i + 2) for i in range(40)]


def test_segments_roll_by_time(tmp_path: Path) -> None:
    log = _open(tmp_path, LogConfig(segment_ms=1000))
    log.append(batch(1), leader_epoch=0, now_ms=0)
    assert not log.append(batch(1), leader_epoch=0, now_ms=1000).rolled
    assert log.append(batch(1), leader_epoch=0, now_ms=1001).rolled
    assert [s.base_offset for s in log.segments] == [0, 2]
    log.close()
    log = _open(tmp_path, LogConfig(segment_ms=1000), now_ms=5000)  # the clock restarts on open
    assert not log.append(batch(1), leader_epoch=0, now_ms=6000).rolled
    assert log.append(batch(1), leader_epoch=0, now_ms=6001).rolled


def test_explicit_roll_skips_an_empty_active_segment(tmp_path: Path) -> None:
    log = _open(tmp_path)
    log.roll(now_ms=0)
    assert len(log.segments) == 1
    _fill(log, 1)
    log.roll(now_ms=0)
    log.roll(now_ms=0)
    assert [s.base_offset for s in log.segments] == [0, 3]


def test_reopen_after_clean_close_keeps_everything(tmp_path: Path) -> None:
    log = _open(tmp_path)
    _fill(log, 30)
    before = log.read(0, 100_000).records
    log.close()
    assert (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    with pytest.raises(KafkaStorageError):
        log.append(batch(1), leader_epoch=0, now_ms=0)
    log = _open(tmp_path)
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    assert log.log_end_offset == 90
    assert log.read(0, 100_000).records == before
    assert log.append(batch(1), leader_epoch=0, now_ms=0).first_offset == 90


def test_missing_or_corrupt_index_is_rebuilt(tmp_path: Path) -> None:
    log = _open(tmp_path, LogConfig(index_interval_bytes=50))
    _fill(log, 30)
    log.roll(now_ms=0)
    expected = [log.read(o, 300).records for o in range(90)]
    log.close()
    (tmp_path / "00000000000000000000.index").unlink()
    with open(tmp_path / "00000000000000000000.timeindex", "ab") as f:
        f.write(b"xx")
    log = _open(tmp_path, LogConfig(index_interval_bytes=50))
    assert len(log.segments[0].index) > 5
    assert [log.read(o, 300).records for o in range(90)] == expected


def test_truncate_to_drops_the_straddling_batch_and_continues(tmp_path: Path) -> None:
    log = _open(tmp_path)
    _fill(log, 40)
    log.truncate_to(100)  # inside batch 99..101
    assert log.log_end_offset == 99
    assert batch_ranges(log.read(96, 10_000).records)[-1] == (96, 98)
    assert log.append(batch(2), leader_epoch=9, now_ms=0).first_offset == 99
    log.truncate_to(30)
    assert log.log_end_offset == 30
    log.close()
    log = _open(tmp_path)
    assert log.log_end_offset == 30
    assert offsets_in(log.read(27, 100_000).records)[-1] == 29


def test_truncate_below_log_start_restarts_the_log(tmp_path: Path) -> None:
    log = _open(tmp_path, LogConfig(segment_bytes=1000, retention_bytes=0))
    _fill(log, 40)
    log.delete_old_segments(now_ms=0)
    start = log.log_start_offset
    assert start > 0
    log.truncate_to(start - 5)
    assert (log.log_start_offset, log.log_end_offset) == (start - 5, start - 5)
    assert log.append(batch(1), leader_epoch=0, now_ms=0).first_offset == start - 5


def test_retention_by_time_deletes_old_closed_segments_only(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=1000, retention_ms=10_000)
    log = _open(tmp_path, config)
    for i in range(30):
        log.append(batch(3, timestamp=i * 1000), leader_epoch=0, now_ms=i * 1000)
    segments = len(log.segments)
    assert log.delete_old_segments(now_ms=10_000) == 0
    deleted = log.delete_old_segments(now_ms=25_000)
    assert 0 < deleted < segments
    assert log.log_start_offset == log.segments[0].base_offset > 0
    with pytest.raises(OffsetOutOfRange):
        log.read(0, 100)
    closed = len(log.segments) - 1
    assert log.delete_old_segments(now_ms=10**9) == closed
    assert len(log.segments) == 1  # the active segment stays
    assert log.log_end_offset == 90


def test_retention_by_size_keeps_at_most_retention_bytes(tmp_path: Path) -> None:
    log = _open(tmp_path, LogConfig(segment_bytes=1000, retention_bytes=2500, retention_ms=-1))
    _fill(log, 60)
    log.delete_old_segments(now_ms=0)
    assert log.size_bytes() <= 2500 + 1000
    assert sum(s.size for s in log.segments[1:]) <= 2500


def test_retention_does_nothing_under_compact_only(tmp_path: Path) -> None:
    log = _open(
        tmp_path,
        LogConfig(segment_bytes=1000, retention_bytes=0, cleanup_policy=frozenset({"compact"})),
    )
    _fill(log, 30)
    assert log.delete_old_segments(now_ms=10**12) == 0


def test_offset_for_timestamp_finds_the_first_batch_reaching_it(tmp_path: Path) -> None:
    log = _open(tmp_path, LogConfig(segment_bytes=1000, index_interval_bytes=50))
    for i in range(40):
        log.append(batch(2, timestamp=100 * i), leader_epoch=0, now_ms=0)
    assert log.offset_for_timestamp(0) == (0, 0)
    assert log.offset_for_timestamp(1001) == (21, 1001)
    assert log.offset_for_timestamp(1050) == (22, 1100)
    assert log.offset_for_timestamp(3901) == (79, 3901)
    assert log.offset_for_timestamp(3902) is None
    log.advance_log_start_offset(31)
    assert log.offset_for_timestamp(0) == (31, 1501)
    log.close()
    log = _open(tmp_path, LogConfig(segment_bytes=1000, index_interval_bytes=50))
    assert log.log_start_offset == 31  # DeleteRecords survives a restart
    assert log.offset_for_timestamp(2500) == (50, 2500)


def test_offset_of_max_timestamp_finds_the_first_record_holding_it(tmp_path: Path) -> None:
    log = _open(tmp_path, LogConfig(segment_bytes=1000, index_interval_bytes=50))
    assert log.offset_of_max_timestamp() is None
    stamps = [100 * i for i in range(30)]
    stamps[7] = 90_000  # out of order: the largest is early, and repeated later
    stamps[25] = 90_000
    for stamp in stamps:
        log.append(batch(2, timestamp=stamp), leader_epoch=0, now_ms=0)
    assert len(log.segments) > 2
    assert log.offset_of_max_timestamp() == (15, 90_001)  # batch 7's second record
    log.advance_log_start_offset(15)  # inside batch 7: its live record still holds it
    assert log.offset_of_max_timestamp() == (15, 90_001)
    log.advance_log_start_offset(16)  # the first holder deleted: the later one answers
    assert log.offset_of_max_timestamp() == (51, 90_001)


def test_flush_policy_by_messages_and_time(tmp_path: Path) -> None:
    log = _open(tmp_path, LogConfig(flush_messages=5, flush_ms=1000), now_ms=0)
    assert not log.needs_flush(0)
    _fill(log, 1)
    assert log.unflushed_messages == 3 and not log.needs_flush(10)
    _fill(log, 1)
    assert log.needs_flush(10)
    job = log.prepare_flush()
    _fill(log, 1)  # appends continue while the fsync runs
    job.run()
    log.complete_flush(job, now_ms=10)
    assert log.flushed_offset == 6 and log.unflushed_messages == 3
    assert not log.needs_flush(1009)
    assert log.needs_flush(1010)
    log.flush(now_ms=1010)
    assert log.flushed_offset == 9 and not log.needs_flush(5000)


def test_config_from_topic_config_uses_kafka_names_and_defaults() -> None:
    config = LogConfig.from_topic_config(
        {"retention.ms": "60000", "cleanup.policy": "compact,delete", "min.insync.replicas": "2"}
    )
    assert config.retention_ms == 60000 and config.compact and config.delete
    assert config.segment_bytes == 1073741824 and config.max_message_bytes == 1048588
    assert LogConfig.from_topic_config(config.to_topic_config()) == config
    for bad in (
        {"segment.bytes": "x"},
        {"segment.bytes": "10"},
        {"cleanup.policy": "zip"},
        {"retention.ms": "-2"},
    ):
        with pytest.raises(InvalidConfig):
            LogConfig.from_topic_config(bad)


def test_log_manager_names_dirs_like_kafka_and_reloads(tmp_path: Path) -> None:
    manager = LogManager(tmp_path, default_config=SMALL)
    log = manager.get_or_create("orders-eu", 3, None, now_ms=0)
    _fill(log, 2)
    assert manager.get_or_create("orders-eu", 3, None, now_ms=0) is log
    manager.get_or_create("t", 0, None, now_ms=0)
    assert (tmp_path / "orders-eu-3").is_dir()
    assert parse_partition_dir_name("orders-eu-3") == ("orders-eu", 3)
    manager.close_all()
    manager = LogManager(tmp_path, default_config=SMALL)
    assert manager.existing_partitions() == [("orders-eu", 3), ("t", 0)]
    manager.load_all(now_ms=0)
    assert manager.get("orders-eu", 3).log_end_offset == 6  # type: ignore[union-attr]
    manager.delete("t", 0)
    assert not (tmp_path / "t-0").exists() and manager.get("t", 0) is None
    assert len(manager.all_logs()) == 1
    manager.close_all()


def test_delete_removes_the_directory(tmp_path: Path) -> None:
    log = _open(tmp_path / "x-0")
    _fill(log, 3)
    log.delete()
    assert not os.path.exists(tmp_path / "x-0")


def test_follower_append_accepts_a_gap_left_by_compaction(tmp_path: Path) -> None:
    log = _open(tmp_path)
    data = bytearray(batch(2))
    data[:8] = (10).to_bytes(8, "big")  # the leader's batch 10..11 (offsets 0..9 compacted away)
    info = log.append(bytes(data), leader_epoch=0, now_ms=0, assign_offsets=False)
    assert (info.first_offset, info.last_offset, log.log_end_offset) == (10, 11, 12)
    assert log.read(0, 1000).first_offset == 10
    log.close()
    assert _open(tmp_path).log_end_offset == 12


def test_append_with_prevalidated_batches_skips_the_second_check(tmp_path: Path) -> None:
    log = _open(tmp_path)
    records = batch(2) + batch(3)
    validated = validate_records(records, max_message_bytes=SMALL.max_message_bytes)
    info = log.append(records, leader_epoch=4, now_ms=0, validated=validated)
    assert (info.first_offset, info.last_offset, info.batch_count) == (0, 4, 2)


def test_a_full_index_rolls_the_segment(tmp_path: Path) -> None:
    log = _open(tmp_path, LogConfig(index_interval_bytes=0, segment_index_bytes=8 * 4))
    _fill(log, 12)
    assert len(log.segments) >= 2
    assert all(len(s.index) <= 4 for s in log.segments)


def test_a_damaged_closed_segment_drops_everything_after_it(tmp_path: Path) -> None:
    log = _open(tmp_path)
    _fill(log, 40)
    second = log.segments[1]
    cut_offset = second.base_offset
    path = second.path
    log.close()
    with open(path, "r+b") as f:  # flip a bit in the last batch of a closed segment
        f.seek(-5, os.SEEK_END)
        byte = f.read(1)[0]
        f.seek(-5, os.SEEK_END)
        f.write(bytes([byte ^ 0x10]))
    log = _open(tmp_path)
    assert len(log.segments) == 2
    assert cut_offset < log.log_end_offset < 120
    assert log.append(batch(1), leader_epoch=0, now_ms=0).first_offset == log.log_end_offset - 1
