"""The active segment's in-memory tail: reads of just-appended batches skip the file, and every
read answers exactly what the file holds."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from quorumq.errors import OffsetOutOfRange
from quorumq.log import LogConfig, PartitionLog
from quorumq.log import _segment
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
    cached = PartitionLog.open(tmp_path / "cached-0", config, now_ms=0)
    plain = PartitionLog.open(tmp_path / "plain-0", config, now_ms=0)
    logs = {"cached": cached, "plain": plain}
    tail_bytes = {"cached": 2048, "plain": 0}

    def each(action):  # type: ignore[no-untyped-def]
        results = []
        for name in ("cached", "plain"):
            monkeypatch.setattr(_segment, "_TAIL_BYTES", tail_bytes[name])
            results.append(action(name))
        return results

    for _step in range(300):
        roll = rng.random()
        if roll < 0.6:
            data = batch(rng.randint(1, 8), value_size=rng.choice([5, 40, 300]))
            each(lambda name: logs[name].append(data, leader_epoch=0, now_ms=0))
        elif roll < 0.7 and cached.log_end_offset > 0:
            cut = rng.randint(max(0, cached.log_end_offset - 30), cached.log_end_offset)
            each(lambda name: logs[name].truncate_to(cut))
        elif roll < 0.75:
            each(lambda name: logs[name].roll(now_ms=0))
        elif roll < 0.78:
            for name in ("cached", "plain"):
                logs[name].close()
            logs = {
                "cached": PartitionLog.open(tmp_path / "cached-0", config, now_ms=0),
                "plain": PartitionLog.open(tmp_path / "plain-0", config, now_ms=0),
            }
            cached, plain = logs["cached"], logs["plain"]
        assert cached.log_end_offset == plain.log_end_offset
        for offset in range(max(0, cached.log_end_offset - 40), cached.log_end_offset + 1):
            max_offset = rng.choice([None, rng.randint(offset, cached.log_end_offset)])
            max_bytes = rng.choice([1, 500, 1 << 20])

            def read(name: str, offset: int = offset, max_offset=max_offset, max_bytes=max_bytes):  # type: ignore[no-untyped-def]
                try:
                    result = logs[name].read(offset, max_bytes, max_offset=max_offset)
                except OffsetOutOfRange:
                    return "out of range"
                return bytes(result.records), result.first_offset

            got, want = each(read)
            assert got == want, (seed, offset, max_offset, max_bytes)
    for log in logs.values():
        log.close()
