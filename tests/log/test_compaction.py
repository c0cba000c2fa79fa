"""Compaction: latest record per key, offsets kept, tombstones, lag, never the active segment."""

from __future__ import annotations

from pathlib import Path

from quorumq.log import LogConfig, PartitionLog
from quorumq.protocol.records import Record, build_batch, decode_batch, iter_batch_headers

COMPACT = LogConfig(
    segment_bytes=600,
    index_interval_bytes=100,
    cleanup_policy=frozenset({"compact"}),
    delete_retention_ms=1000,
)


def _put(log: PartitionLog, pairs: list[tuple[bytes | None, bytes | None]], ts: int) -> None:
    rows = [Record(i, ts, key, value) for i, (key, value) in enumerate(pairs)]
    log.append(build_batch(rows), leader_epoch=3, now_ms=ts)


def _records(log: PartitionLog) -> list[tuple[int, bytes | None, bytes | None]]:
    out = []
    for segment in log.segments:
        data = segment.read(0, segment.size)
        position = 0
        for header in iter_batch_headers(data):
            out += [(r.offset, r.key, r.value) for r in decode_batch(data, position)[1]]
            position += header.size
    return out


def test_compaction_keeps_the_latest_record_per_key_with_its_offset(tmp_path: Path) -> None:
    log = PartitionLog.open(tmp_path, COMPACT, now_ms=0)
    for i in range(40):
        _put(log, [(b"k%d" % (i % 3), b"v%d" % i), (None, b"unkeyed")], ts=i)
    before = _records(log)
    active_before = log.active_segment.read(0, log.active_segment.size)
    result = log.compact(now_ms=100)
    after = _records(log)
    assert result.segments_cleaned > 0 and result.records_after < result.records_before
    assert set(after) <= set(before)
    assert log.active_segment.read(0, log.active_segment.size) == active_before
    uncleanable = result.first_uncleanable_offset
    for offset, key, _value in before:
        if offset >= uncleanable or key is None:
            assert (offset, key, _value) in after
        else:
            later = [o for o, k, _v in before if k == key and o < uncleanable]
            assert ((offset, key, _value) in after) == (offset == max(later))
    offsets = [o for o, _k, _v in after]
    assert offsets == sorted(offsets)
    # Batches keep their offset ranges, leader epoch and CRC; reads walk the gaps.
    data = log.read(0, 1 << 20).records
    assert {h.partition_leader_epoch for h in iter_batch_headers(data)} == {3}
    seen, offset = [], 0
    while offset < log.log_end_offset:
        got = log.read(offset, 1 << 20).records
        headers = list(iter_batch_headers(got))
        seen += [r.offset for r in decode_batch(got, 0)[1]] if headers else []
        offset = headers[-1].next_offset
    assert log.log_end_offset == 80
    # Idempotent: a second pass changes nothing.
    assert log.compact(now_ms=100).segments_cleaned == 0
    assert _records(log) == after
    log.close()
    log = PartitionLog.open(tmp_path, COMPACT, now_ms=0)
    assert _records(log) == after


def test_tombstones_go_only_after_delete_retention(tmp_path: Path) -> None:
    log = PartitionLog.open(tmp_path, COMPACT, now_ms=0)
    _put(log, [(b"a", b"1"), (b"b", b"1")], ts=0)
    _put(log, [(b"a", None)], ts=10)
    for i in range(30):
        _put(log, [(b"c", b"%d" % i)], ts=20 + i)
    log.compact(now_ms=500)
    keys = [(k, v) for _o, k, v in _records(log)]
    assert (b"a", None) in keys and (b"a", b"1") not in keys and (b"b", b"1") in keys
    result = log.compact(now_ms=1011)
    assert result.tombstones_dropped == 1
    keys = [(k, v) for _o, k, v in _records(log)]
    assert (b"a", None) not in keys and (b"b", b"1") in keys


def test_min_compaction_lag_protects_recent_segments(tmp_path: Path) -> None:
    config = LogConfig(
        segment_bytes=600, cleanup_policy=frozenset({"compact"}), min_compaction_lag_ms=1000
    )
    log = PartitionLog.open(tmp_path, config, now_ms=0)
    for i in range(40):
        _put(log, [(b"k", b"%d" % i)], ts=i * 100)
    before = _records(log)
    assert log.compact(now_ms=1000).segments_cleaned == 0 or _records(log) != before
    result = log.compact(now_ms=2500)
    protected = [r for r in before if r[0] >= result.first_uncleanable_offset]
    assert all(r in _records(log) for r in protected)
    for segment in log.segments:
        if segment.base_offset < result.first_uncleanable_offset:
            assert segment.max_timestamp <= 2500 - 1000


def test_compaction_is_a_no_op_under_delete_policy(tmp_path: Path) -> None:
    log = PartitionLog.open(tmp_path, LogConfig(segment_bytes=600), now_ms=0)
    for i in range(40):
        _put(log, [(b"k", b"%d" % i)], ts=i)
    before = _records(log)
    assert log.compact(now_ms=10**9).segments_cleaned == 0
    assert _records(log) == before


def test_an_emptied_idempotent_batch_stays_to_keep_producer_state(tmp_path: Path) -> None:
    log = PartitionLog.open(tmp_path, COMPACT, now_ms=0)
    rows = [Record(0, 0, b"k", b"old")]
    log.append(
        build_batch(rows, producer_id=42, producer_epoch=0, base_sequence=0),
        leader_epoch=1,
        now_ms=0,
    )
    for i in range(30):
        _put(log, [(b"k", b"%d" % i)], ts=i)
    log.compact(now_ms=100)
    data = log.segments[0].read(0, log.segments[0].size)
    first = next(iter_batch_headers(data))
    assert (first.producer_id, first.base_offset, first.record_count) == (42, 0, 0)
