"""Retention and compaction stop at the high watermark: only segments wholly below it go.

Kafka deletes a segment only when the next segment's base offset is <= the HW, and its cleaner
never cleans at or above the first uncleanable offset (<= HW). The uncommitted tail may still be
truncated on a leader change, so touching it would let replicas diverge.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumq.log import LogConfig, PartitionLog
from quorumq.protocol.records import Record, build_batch, decode_batch, iter_batch_headers
from tests.log._helpers import batch, offsets_in

BY_TIME = LogConfig(segment_bytes=1000, retention_ms=10_000, retention_bytes=-1)
BY_SIZE = LogConfig(segment_bytes=1000, retention_ms=-1, retention_bytes=0)
COMPACT = LogConfig(
    segment_bytes=600,
    index_interval_bytes=100,
    cleanup_policy=frozenset({"compact"}),
    delete_retention_ms=1000,
)


def _filled(path: Path, config: LogConfig, batches: int = 40) -> PartitionLog:
    """A log of several closed segments, records stamped at time 0..batches-1 s."""
    log = PartitionLog.open(path, config, now_ms=0)
    for i in range(batches):
        log.append(batch(3, timestamp=i * 1000), leader_epoch=1, now_ms=i * 1000)
    assert len(log.segments) >= 4
    return log


def _bases(log: PartitionLog) -> list[int]:
    return [segment.base_offset for segment in log.segments]


def _keyed(path: Path, batches: int = 40) -> PartitionLog:
    """A compacted log where every key is overwritten in every segment."""
    log = PartitionLog.open(path, COMPACT, now_ms=0)
    for i in range(batches):
        rows = [Record(j, i, b"k%d" % ((i + j) % 3), b"v%d" % i) for j in range(2)]
        log.append(build_batch(rows), leader_epoch=2, now_ms=i)
    assert len(log.segments) >= 4
    return log


def _keys_and_offsets(log: PartitionLog) -> list[tuple[bytes | None, int]]:
    out: list[tuple[bytes | None, int]] = []
    for segment in log.segments:
        data = segment.read(0, segment.size)
        position = 0
        for header in iter_batch_headers(data):
            out += [(record.key, record.offset) for record in decode_batch(data, position)[1]]
            position += header.size
    return out


def _files(log: PartitionLog) -> dict[int, bytes]:
    return {segment.base_offset: segment.path.read_bytes() for segment in log.segments}


@pytest.mark.parametrize("config", [BY_TIME, BY_SIZE], ids=["retention.ms", "retention.bytes"])
def test_retention_deletes_only_segments_wholly_below_the_high_watermark(
    tmp_path: Path, config: LogConfig
) -> None:
    log = _filled(tmp_path, config)
    bases = _bases(log)
    assert bases[2] - bases[1] > 1
    high_watermark = bases[1] + 1  # inside the second segment
    assert log.delete_old_segments(now_ms=10**9, high_watermark=high_watermark) == 1
    assert log.log_start_offset == bases[1]
    assert _bases(log) == bases[1:]
    # Nothing more goes until the HW moves, and then exactly up to it.
    assert log.delete_old_segments(now_ms=10**9, high_watermark=high_watermark) == 0
    assert log.delete_old_segments(now_ms=10**9, high_watermark=bases[3]) == 2
    assert log.log_start_offset == bases[3]
    assert offsets_in(log.read(bases[3], 1 << 20).records)[0] == bases[3]


@pytest.mark.parametrize("config", [BY_TIME, BY_SIZE], ids=["retention.ms", "retention.bytes"])
def test_retention_at_the_log_start_high_watermark_deletes_nothing(
    tmp_path: Path, config: LogConfig
) -> None:
    log = _filled(tmp_path, config)
    bases = _bases(log)
    files = _files(log)
    assert log.delete_old_segments(now_ms=10**9, high_watermark=log.log_start_offset) == 0
    # The first segment ends where the second begins: just below that is still too low.
    assert log.delete_old_segments(now_ms=10**9, high_watermark=bases[1] - 1) == 0
    assert _bases(log) == bases and _files(log) == files
    assert log.log_start_offset == 0


@pytest.mark.parametrize("config", [BY_TIME, BY_SIZE], ids=["retention.ms", "retention.bytes"])
def test_retention_without_a_high_watermark_keeps_the_old_behaviour(
    tmp_path: Path, config: LogConfig
) -> None:
    log = _filled(tmp_path, config)
    closed = len(log.segments) - 1
    assert log.delete_old_segments(now_ms=10**9) == closed
    assert len(log.segments) == 1
    assert log.log_start_offset == log.active_segment.base_offset


def test_retention_at_the_log_end_still_keeps_the_active_segment(tmp_path: Path) -> None:
    log = _filled(tmp_path, BY_SIZE)
    closed = len(log.segments) - 1
    assert log.delete_old_segments(now_ms=0, high_watermark=log.log_end_offset) == closed
    assert len(log.segments) == 1 and log.log_end_offset == 120


def test_retention_by_time_still_stops_at_a_young_segment_below_the_hw(tmp_path: Path) -> None:
    log = _filled(tmp_path / "limited", BY_TIME)
    bases = _bases(log)
    # At 25 s only the segments whose newest record is older than 15 s are expired.
    expected = _filled(tmp_path / "unlimited", BY_TIME).delete_old_segments(now_ms=25_000)
    assert 0 < expected < len(bases) - 1
    assert log.delete_old_segments(now_ms=25_000, high_watermark=log.log_end_offset) == expected


def test_compaction_leaves_segments_at_or_above_the_hw_untouched(tmp_path: Path) -> None:
    log = _keyed(tmp_path)
    bases = _bases(log)
    high_watermark = bases[2] + 1  # inside the third segment
    before = _files(log)
    records_before = _keys_and_offsets(log)
    result = log.compact(now_ms=100, high_watermark=high_watermark)
    assert result.first_uncleanable_offset == bases[2]
    assert result.segments_scanned == 2 and result.segments_cleaned >= 1
    after = _files(log)
    for base in bases[2:]:
        assert after[base] == before[base], f"segment {base} at/above the HW was rewritten"
    assert after.get(bases[0]) != before[bases[0]]  # below the HW: compacted
    # Records at or above the HW did not supersede committed ones: every key keeps its latest
    # record below the first uncleanable offset, though later ones of it exist.
    records_after = _keys_and_offsets(log)
    for key in {b"k0", b"k1", b"k2"}:
        latest = max(o for k, o in records_before if k == key and o < bases[2])
        assert (key, latest) in records_after
        assert [o for k, o in records_after if k == key and o < bases[2]] == [latest]
    assert [r for r in records_after if r[1] >= bases[2]] == [
        r for r in records_before if r[1] >= bases[2]
    ]
    assert log.log_start_offset == 0 and _bases(log)[2:] == bases[2:]


def test_compaction_at_the_log_start_high_watermark_does_nothing(tmp_path: Path) -> None:
    log = _keyed(tmp_path)
    before = _files(log)
    result = log.compact(now_ms=100, high_watermark=0)
    assert (result.segments_scanned, result.segments_cleaned) == (0, 0)
    assert result.first_uncleanable_offset == 0
    assert _files(log) == before


def test_compaction_without_a_high_watermark_keeps_the_old_behaviour(tmp_path: Path) -> None:
    log = _keyed(tmp_path / "unlimited")
    closed = len(log.segments) - 1
    active = log.active_segment.base_offset
    result = log.compact(now_ms=100)
    assert result.segments_scanned == closed
    assert result.first_uncleanable_offset == active
    limited = _keyed(tmp_path / "limited")
    same = limited.compact(now_ms=100, high_watermark=limited.log_end_offset)
    assert same == result


@settings(max_examples=15, deadline=None)
@given(
    compact=st.booleans(),
    fraction=st.floats(min_value=0.0, max_value=1.0),
)
def test_nothing_at_or_above_the_high_watermark_changes(compact: bool, fraction: float) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory)
        log = _keyed(path, batches=30) if compact else _filled(path, BY_SIZE, batches=30)
        high_watermark = round(fraction * log.log_end_offset)
        before = {
            segment.base_offset: segment.path.read_bytes()
            for i, segment in enumerate(log.segments)
            if i + 1 == len(log.segments) or log.segments[i + 1].base_offset > high_watermark
        }
        if compact:
            log.compact(now_ms=100, high_watermark=high_watermark)
        else:
            log.delete_old_segments(now_ms=0, high_watermark=high_watermark)
        assert log.log_start_offset <= high_watermark
        for segment in log.segments:
            if segment.base_offset in before:
                assert segment.path.read_bytes() == before[segment.base_offset]
        assert set(before) <= set(_bases(log))
        log.close()
