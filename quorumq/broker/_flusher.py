"""The grouped-fsync task: the Trio shell of the log's flush policy.

Theory of operation: appends never fsync. A log becomes due for an fsync when its topic's
``flush.messages`` / ``flush.ms`` say so (:meth:`PartitionLog.needs_flush`, checked every
``check_interval_s``), or when a task asks for durability with
``await flusher.wait_flushed(log, offset)``. Each round collects every due log and fsyncs them in
worker threads (``trio.to_thread.run_sync``), so the event loop keeps serving while the disk
works; requests that arrive during a round are served together by the next one, which is what
groups many appends into one fsync.

Which logs a round looks at: only those of its :class:`LogManager` written (appended,
truncated, recovered, reconfigured) since a round last found them *settled*, that is unable to
become due without another write (``PartitionLog.flush_settled``); each log tells the flusher
once per write after that (``LogManager.listen_writes``). Why: a round used to call
``needs_flush`` on every log, ten times a second, which with 2,000 idle partitions was a fifth
of an idle broker's event-loop CPU (docs/benchmarks.md).

A flush is split in three (see :class:`quorumq.log.FlushJob`): ``prepare_flush`` on the loop
(duplicates the fds and notes the LEO it covers), ``job.run`` in a thread (the fsyncs), then
``complete_flush`` back on the loop (advances ``flushed_offset``). The log core thus never sees a
thread, and a segment closed or deleted meanwhile cannot make the fsync touch a reused fd.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import attrs
import trio

from quorumq.errors import KafkaStorageError, OffsetOutOfRange
from quorumq.log import LogManager, PartitionLog

log = logging.getLogger(__name__)

offload: Callable[[Callable[[], None]], Awaitable[None]] = trio.to_thread.run_sync
"""Runs a flush job's fsyncs; a worker thread, so the event loop keeps serving. The simulation
(``quorumq.testing.sim_cluster``) swaps in an inline runner: a real thread finishes in real
time, which a MockClock run cannot replay."""

LogSource = Callable[[], Sequence[PartitionLog]]


def wall_clock_ms() -> int:
    """Milliseconds since the epoch: the clock the broker stamps appends with."""
    return time.time_ns() // 1_000_000


@attrs.define(eq=False)
class _Waiter:
    offset: int
    event: trio.Event = attrs.Factory(trio.Event)
    error: KafkaStorageError | None = None


class LogFlusher:
    """Runs fsyncs for many logs off the event loop, grouping concurrent requests.

    Args:
        logs: the logs whose flush policy to enforce; None enforces nothing and serves only
            explicit requests.
        clock_ms: the clock ``flush.ms`` is measured with; it must be the one the logs were
            opened and appended with (wall clock by default, as the broker's).
        check_interval_s: how often the policy is checked when nothing asks for a flush.
    """

    def __init__(
        self,
        logs: LogManager | None = None,
        *,
        clock_ms: Callable[[], int] = wall_clock_ms,
        check_interval_s: float = 0.1,
    ) -> None:
        self._written: dict[PartitionLog, None] = {}  # an ordered set
        if logs is not None:
            logs.listen_writes(self._note_written)
        self._clock_ms = clock_ms
        self._check_interval_s = check_interval_s
        self._requested: dict[PartitionLog, None] = {}  # an ordered set
        self._waiters: dict[PartitionLog, list[_Waiter]] = {}
        self._wakeup = trio.Event()
        self.fsync_rounds = 0
        """Completed log flushes (one per log per round): a measure of the grouping."""
        self.logs_checked = 0
        """Logs whose flush policy rounds have checked: idle logs should add nothing."""

    def _note_written(self, partition_log: PartitionLog) -> None:
        self._written[partition_log] = None

    def request_flush(self, partition_log: PartitionLog) -> None:
        """Asks for an fsync of ``partition_log`` in the next round (does not wait)."""
        self._requested[partition_log] = None
        self._wakeup.set()

    async def wait_flushed(self, partition_log: PartitionLog, offset: int) -> None:
        """Returns once ``offset`` (and everything before it) of ``partition_log`` is fsynced.

        Raises:
            OffsetOutOfRange: ``offset`` is not in the log (nothing to wait for).
            KafkaStorageError: the fsync failed, or the log was closed or deleted meanwhile.
        """
        while partition_log.flushed_offset <= offset:
            if partition_log.closed:
                raise KafkaStorageError(f"{partition_log!r} closed before offset {offset} flushed")
            if offset >= partition_log.log_end_offset:
                raise OffsetOutOfRange(
                    f"offset {offset} is beyond the log end {partition_log.log_end_offset}"
                )
            waiter = _Waiter(offset)
            self._waiters.setdefault(partition_log, []).append(waiter)
            self.request_flush(partition_log)
            await waiter.event.wait()
            if waiter.error is not None:
                raise waiter.error

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serves flush rounds until cancelled."""
        task_status.started()
        while True:
            with trio.move_on_after(self._check_interval_s):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            now_ms = self._clock_ms()
            due = dict(self._requested)
            self._requested.clear()
            written = self._written
            candidates = list(written)
            self.logs_checked += len(candidates)
            for partition_log in candidates:
                if partition_log not in due and partition_log.needs_flush(now_ms):
                    due[partition_log] = None
                elif partition_log.flush_settled():
                    # Only a write can make it due now; it tells us then.
                    del written[partition_log]
                    partition_log.rearm_write_listener()
            if not due:
                continue
            async with trio.open_nursery() as nursery:
                for partition_log in due:
                    nursery.start_soon(self._flush_one, partition_log)

    async def _flush_one(self, partition_log: PartitionLog) -> None:
        error: KafkaStorageError | None = None
        if partition_log.closed:
            error = KafkaStorageError(f"{partition_log!r} is closed")
        else:
            job = partition_log.prepare_flush()
            try:
                await offload(job.run)
            except KafkaStorageError as exc:
                log.error("fsync of %r failed: %s", partition_log, exc)
                error = exc
            else:
                partition_log.complete_flush(job, now_ms=self._clock_ms())
                self.fsync_rounds += 1
        # Wake everyone waiting on this log; those whose offset is still not durable (appended
        # after this round began) re-register for the next round.
        for waiter in self._waiters.pop(partition_log, []):
            waiter.error = error
            waiter.event.set()


async def run_flusher(
    logs: LogManager | None,
    *,
    flusher: LogFlusher | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Runs a :class:`LogFlusher` over ``logs`` (the broker's data dir) until cancelled."""
    if flusher is None:
        flusher = LogFlusher(logs)
    await flusher.run(task_status=task_status)


async def run_log_maintenance(
    logs: LogManager | LogSource,
    *,
    interval_s: float = 300.0,
    clock_ms: Callable[[], int] = wall_clock_ms,
    high_watermark: Callable[[PartitionLog], int | None] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Applies retention and compaction to every log every ``interval_s`` seconds.

    Kafka's ``log.retention.check.interval.ms`` defaults to 5 minutes. Both run on the event
    loop (the log core is not thread-safe); a pass over a large compacted log blocks it for as
    long as decoding its closed segments takes, so keep the interval generous.

    Args:
        high_watermark: gives each log's partition high watermark, read once per log per pass;
            retention and compaction touch only segments wholly below it, since the tail above
            it may still be truncated on a leader change and no consumer has seen it. None (or
            a None answer) sets no limit, which is right only for an unreplicated log.
    """
    source: LogSource = logs.all_logs if isinstance(logs, LogManager) else logs
    task_status.started()
    while True:
        await trio.sleep(interval_s)
        now_ms = clock_ms()
        for partition_log in list(source()):
            if partition_log.closed:
                continue
            hw = None if high_watermark is None else high_watermark(partition_log)
            try:
                if partition_log.config.delete:
                    partition_log.delete_old_segments(now_ms=now_ms, high_watermark=hw)
                if partition_log.config.compact:
                    partition_log.compact(now_ms=now_ms, high_watermark=hw)
            except KafkaStorageError as exc:
                log.error("maintenance of %r failed: %s", partition_log, exc)
            await trio.lowlevel.checkpoint()
