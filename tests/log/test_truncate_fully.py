"""truncate_fully_and_start_at: a follower's log restarted at the leader's log start."""

from __future__ import annotations

from pathlib import Path

import pytest

from quorumq.errors import OffsetOutOfRange
from quorumq.log import LogConfig, PartitionLog
from tests.log._helpers import batch

CONFIG = LogConfig(segment_bytes=1000)


def test_restart_beyond_the_log_end_survives_reopen(tmp_path: Path) -> None:
    log = PartitionLog.open(tmp_path, CONFIG, now_ms=0)
    for i in range(20):
        log.append(batch(3), leader_epoch=1, now_ms=i)
    assert len(log.segments) > 1 and log.log_end_offset == 60

    log.truncate_fully_and_start_at(500)
    assert (log.log_start_offset, log.log_end_offset) == (500, 500)
    assert len(log.segments) == 1
    assert log.read(500, 1 << 20).records == b""
    info = log.append(batch(2), leader_epoch=2, now_ms=30)
    assert (info.first_offset, info.last_offset) == (500, 501)
    log.close()

    reopened = PartitionLog.open(tmp_path, CONFIG, now_ms=40)
    assert (reopened.log_start_offset, reopened.log_end_offset) == (500, 502)
    with pytest.raises(OffsetOutOfRange):
        reopened.read(10, 1 << 20)
    reopened.close()


def test_restart_after_a_crash_without_flush(tmp_path: Path) -> None:
    log = PartitionLog.open(tmp_path, CONFIG, now_ms=0)
    for i in range(10):
        log.append(batch(3), leader_epoch=1, now_ms=i)
    log.truncate_fully_and_start_at(100)
    log.append(batch(1), leader_epoch=2, now_ms=20)
    log.close(clean=False)
    reopened = PartitionLog.open(tmp_path, CONFIG, now_ms=30)
    assert reopened.log_start_offset == 100
    assert reopened.log_end_offset in (100, 101)  # the unflushed batch may or may not survive
    reopened.close()


def test_negative_offset_is_refused(tmp_path: Path) -> None:
    log = PartitionLog.open(tmp_path, CONFIG, now_ms=0)
    with pytest.raises(OffsetOutOfRange):
        log.truncate_fully_and_start_at(-1)
    log.close()
