"""The active segment's in-memory tail: reads of just-appended batches skip the file, and every
read answers exactly what the file holds."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from quorumq.errors import OffsetOutOfRange
from quorumq.log import LogConfig, PartitionLog, _segment
from tests.log._helpers import batch


def _count_preads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.pread

    def counting(fd: int, length: int, position: int) -> bytes:
        calls.append(length)
        return real(fd, length, position)

    monkeypatch.setattr(_segment.os, "pread", counting)
    return calls


def test_a_follower_read_of_the_last_append_does_not_touch_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(index_interval_bytes=100), now_ms=0)
    for _ in range(50):
        log.append(batch(5), leader_epoch=0, now_ms=0)
    preads = _count_preads(monkeypatch)
    fetch_offset = log.log_end_offset
    log.append(batch(5), leader_epoch=0, now_ms=0)
    result = log.read(fetch_offset, 1 << 20)
    assert result.first_offset == fetch_offset
    assert preads == []


def test_reads_older_than_the_tail_come_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_segment, "_TAIL_BYTES", 1024)
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(index_interval_bytes=100), now_ms=0)
    for _ in range(40):
        log.append(batch(5, value_size=20), leader_epoch=0, now_ms=0)
    preads = _count_preads(monkeypatch)
    assert log.read(0, 1 << 20).first_offset == 0
    assert preads  # the first batches left the 1 KiB tail long ago


@pytest.mark.parametrize("seed", range(6))
def test_the_tail_answers_exactly_what_the_file_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Random appends (some larger than the tail), truncations, rolls and reopens, done to two
    logs: one with a 2 KiB tail, one with none. Every read must agree."""
    rng = random.Random(seed)
    config = LogConfig(segment_bytes=16 * 1024, index_interval_bytes=300)
    tail_bytes = {"cached": 2048, "plain": 0}
    logs = {
        name: PartitionLog.open(tmp_path / f"{name}-0", config, now_ms=0) for name in tail_bytes
    }

    def each(method: str, *args: object, **kwargs: object) -> list[object]:
        """Calls ``method`` on both logs, each with its own tail size in force."""
        results = []
        for name, log in logs.items():
            monkeypatch.setattr(_segment, "_TAIL_BYTES", tail_bytes[name])
            try:
                result = getattr(log, method)(*args, **kwargs)
            except OffsetOutOfRange:
                result = "out of range"
            if method == "read" and result != "out of range":
                result = (bytes(result.records), result.first_offset)
            results.append(result)
        return results

    for _step in range(300):
        roll = rng.random()
        end = logs["cached"].log_end_offset
        if roll < 0.6:
            data = batch(rng.randint(1, 8), value_size=rng.choice([5, 40, 300]))
            each("append", data, leader_epoch=0, now_ms=0)
        elif roll < 0.7 and end > 0:
            each("truncate_to", rng.randint(max(0, end - 30), end))
        elif roll < 0.75:
            each("roll", now_ms=0)
        elif roll < 0.78:
            for log in logs.values():
                log.close()
            logs = {
                name: PartitionLog.open(tmp_path / f"{name}-0", config, now_ms=0)
                for name in tail_bytes
            }
        end = logs["cached"].log_end_offset
        assert end == logs["plain"].log_end_offset
        for offset in range(max(0, end - 40), end + 1):
            max_offset = rng.choice([None, rng.randint(offset, end)])
            max_bytes = rng.choice([1, 500, 1 << 20])
            got, want = each("read", offset, max_bytes, max_offset=max_offset)
            assert got == want, (seed, offset, max_offset, max_bytes)
    for log in logs.values():
        log.close()
