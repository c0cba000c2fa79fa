"""The grouped-fsync task (quorumq.broker._flusher) under pytest-trio."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import pytest
import trio

from quorumq.broker._flusher import LogFlusher, run_flusher, run_log_maintenance
from quorumq.errors import KafkaStorageError
from quorumq.log import FlushJob, LogConfig, LogManager, PartitionLog
from tests.log._helpers import batch


def _slow_fsync(monkeypatch: pytest.MonkeyPatch, seconds: float) -> list[int]:
    """Makes every flush job take ``seconds`` in its thread; returns the list of job LEOs."""
    runs: list[int] = []
    original = FlushJob.run

    def run(job: FlushJob) -> None:
        time.sleep(seconds)
        runs.append(job.log_end_offset)
        original(job)

    monkeypatch.setattr(FlushJob, "run", run)
    return runs


async def test_concurrent_waiters_share_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _slow_fsync(monkeypatch, 0.05)
    log = PartitionLog.open(tmp_path, LogConfig(), now_ms=0)
    flusher = LogFlusher(None, check_interval_s=10)
    durable: list[int] = []

    async def produce() -> None:
        info = log.append(batch(2), leader_epoch=0, now_ms=0)
        await flusher.wait_flushed(log, info.last_offset)
        assert log.flushed_offset > info.last_offset
        durable.append(info.last_offset)

    async with trio.open_nursery() as nursery:
        await nursery.start(flusher.run)
        with trio.fail_after(10):
            async with trio.open_nursery() as producers:
                for _ in range(20):
                    producers.start_soon(produce)
                    await trio.sleep(0.005)
        nursery.cancel_scope.cancel()
    assert len(durable) == 20
    assert log.flushed_offset == log.log_end_offset == 40
    assert len(runs) < 10, f"20 waiters needed {len(runs)} fsyncs: no grouping"


async def test_wait_flushed_returns_at_once_when_already_durable(tmp_path: Path) -> None:
    log = PartitionLog.open(tmp_path, LogConfig(), now_ms=0)
    log.append(batch(3), leader_epoch=0, now_ms=0)
    log.flush()
    flusher = LogFlusher()  # not even running
    with trio.fail_after(1):
        await flusher.wait_flushed(log, 2)


async def test_flush_messages_policy_flushes_without_waiters(tmp_path: Path) -> None:
    manager = LogManager(tmp_path, default_config=LogConfig(flush_messages=5))
    log = manager.get_or_create("t", 0, None, now_ms=0)
    async with trio.open_nursery() as nursery:
        flusher = LogFlusher(manager, clock_ms=lambda: 0, check_interval_s=0.01)
        await nursery.start(partial(run_flusher, manager, flusher=flusher))
        log.append(batch(3), leader_epoch=0, now_ms=0)
        await trio.sleep(0.05)
        assert log.flushed_offset == 0  # 3 < flush.messages
        log.append(batch(3), leader_epoch=0, now_ms=0)
        with trio.fail_after(5):
            while log.flushed_offset < 6:  # noqa: ASYNC110 - polls the log, no event to wait on
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    manager.close_all()


async def test_rounds_look_only_at_logs_written_since_they_settled(tmp_path: Path) -> None:
    """40 logs written once and then idle cost a round nothing once it has seen them settle;
    a log that a new config makes due is still found (and flushed)."""
    manager = LogManager(tmp_path)
    logs = [manager.get_or_create("t", i, None, now_ms=0) for i in range(40)]
    for log in logs:
        log.append(batch(1), leader_epoch=0, now_ms=0)
    flusher = LogFlusher(manager, clock_ms=lambda: 0, check_interval_s=0.01)
    async with trio.open_nursery() as nursery:
        await nursery.start(flusher.run)
        await trio.sleep(0.1)
        settled = flusher.logs_checked
        assert settled >= 40
        await trio.sleep(0.2)  # about 20 rounds
        assert flusher.logs_checked == settled, "idle logs were looked at again"
        assert all(log.flushed_offset == 0 for log in logs)  # nothing was due
        manager.get_or_create("t", 7, LogConfig(flush_messages=1), now_ms=0)
        with trio.fail_after(5):
            while logs[7].flushed_offset < 1:  # noqa: ASYNC110 - polls the log, no event to wait on
                await trio.sleep(0.01)
        assert all(log.flushed_offset == 0 for i, log in enumerate(logs) if i != 7)
        await trio.sleep(0.1)
        assert flusher.logs_checked - settled <= 3, "more than the reconfigured log was checked"
        nursery.cancel_scope.cancel()
    manager.close_all()


async def test_flush_ms_uses_the_given_clock_and_keeps_the_log_watched(tmp_path: Path) -> None:
    """Time alone (the flusher's clock) makes a log with flush.ms due: the log must stay
    watched with no further write."""
    clock = [0]
    manager = LogManager(tmp_path, default_config=LogConfig(flush_ms=1000))
    log = manager.get_or_create("t", 0, None, now_ms=0)
    async with trio.open_nursery() as nursery:
        flusher = LogFlusher(manager, clock_ms=lambda: clock[0], check_interval_s=0.01)
        await nursery.start(flusher.run)
        log.append(batch(1), leader_epoch=0, now_ms=0)
        await trio.sleep(0.05)
        assert log.flushed_offset == 0
        clock[0] = 1000
        with trio.fail_after(5):
            while log.flushed_offset < 1:  # noqa: ASYNC110 - polls the log, no event to wait on
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    manager.close_all()


async def test_a_roll_outside_an_append_is_a_write_too(tmp_path: Path) -> None:
    """A roll outside an append (segment.ms) leaves a dirty closed segment, which is flushed
    at once as Kafka does on roll; the log must be looked at again for it."""
    manager = LogManager(tmp_path)
    log = manager.get_or_create("t", 0, None, now_ms=0)
    log.append(batch(2), leader_epoch=0, now_ms=0)
    flusher = LogFlusher(manager, clock_ms=lambda: 0, check_interval_s=0.01)
    async with trio.open_nursery() as nursery:
        await nursery.start(flusher.run)
        await trio.sleep(0.05)
        assert log.flushed_offset == 0  # settled: default policy, no roll yet
        log.roll(now_ms=0)
        with trio.fail_after(5):
            while log.flushed_offset < 2:  # noqa: ASYNC110 - polls the log, no event to wait on
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    manager.close_all()


async def test_a_failed_fsync_fails_the_waiters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(job: FlushJob) -> None:
        for fd in job.fds:
            import os

            os.close(fd)
        raise KafkaStorageError("disk on fire")

    monkeypatch.setattr(FlushJob, "run", broken)
    log = PartitionLog.open(tmp_path, LogConfig(), now_ms=0)
    info = log.append(batch(2), leader_epoch=0, now_ms=0)
    async with trio.open_nursery() as nursery:
        flusher = LogFlusher(check_interval_s=10)
        await nursery.start(flusher.run)
        with trio.fail_after(5), pytest.raises(KafkaStorageError):
            await flusher.wait_flushed(log, info.last_offset)
        assert log.flushed_offset == 0
        nursery.cancel_scope.cancel()


async def test_log_maintenance_applies_retention_and_compaction(tmp_path: Path) -> None:
    manager = LogManager(tmp_path)
    deleting = manager.get_or_create(
        "d", 0, LogConfig(segment_bytes=500, retention_bytes=0, retention_ms=-1), now_ms=0
    )
    compacted = manager.get_or_create(
        "c", 0, LogConfig(segment_bytes=500, cleanup_policy=frozenset({"compact"})), now_ms=0
    )
    for _ in range(20):
        deleting.append(batch(3), leader_epoch=0, now_ms=0)
        compacted.append(batch(3, keys=[b"k", b"k", b"k"]), leader_epoch=0, now_ms=0)
    size_before = compacted.size_bytes()
    async with trio.open_nursery() as nursery:
        await nursery.start(
            partial(run_log_maintenance, manager, interval_s=0.01, clock_ms=lambda: 10**6)
        )
        with trio.fail_after(5):
            while deleting.log_start_offset == 0 or compacted.size_bytes() == size_before:  # noqa: ASYNC110
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert len(deleting.segments) == 1
    manager.close_all()
