"""PartitionLog: the segmented, append-only log of one partition replica.

Theory of operation: the log is a list of :class:`LogSegment` sorted by base offset; the last is
the *active* segment, the only one written. Offsets are dense per batch and strictly increasing
(compaction may leave gaps between batches, never reuse an offset).

* **Append (leader)**: the produce request's bytes are copied once into a ``bytearray``; each
  batch is validated (header + CRC-32C, no record decoding), its ``baseOffset`` and
  ``partitionLeaderEpoch`` patched in place (outside the CRC'd range), then the whole record set
  is written with one ``os.write``. The index gets an entry every ``index.interval.bytes``.
* **Append (follower)**: batches keep the leader's offsets; they are CRC-checked and must not go
  back before the log end offset.
* **Read**: the batch containing ``fetch_offset`` is found by index bisection plus a short
  header walk; the answer is a single ``os.pread`` of whole batches from one segment.
* **Recovery**: a clean shutdown leaves a marker file; without it the active segment is fully
  rescanned and cut at the first torn or corrupt batch. Half-done compaction swaps are finished
  (``.swap``) or discarded (``.cleaned``).
* **Durability**: appends are not fsynced; :meth:`PartitionLog.prepare_flush` /
  :meth:`FlushJob.run` / :meth:`PartitionLog.complete_flush` split a flush so the fsync can run
  in a worker thread (``quorumq.broker._flusher``) while the event loop keeps appending.

This module is sans-I/O in the project's sense: no clock (time arrives as ``now_ms``), no
threads, no trio; only files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from bisect import bisect_right
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs

from quorumq.errors import InvalidRecord, KafkaStorageError, MessageTooLarge, OffsetOutOfRange
from quorumq.log._cleaner import CLEANED_SUFFIX, SWAP_SUFFIX, CompactionResult, compact_log
from quorumq.log._config import INT_MAX, LONG_MAX, LogConfig
from quorumq.log._segment import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
    BatchEntry,
    LogSegment,
)
from quorumq.protocol.records import BatchHeader, decode_batch, patch_batch, validate_batch

CLEAN_SHUTDOWN_FILE = ".clean_shutdown"
"""Written by :meth:`PartitionLog.close`, removed on open: its absence means "recover"."""

LOG_START_OFFSET_FILE = "log-start-offset"
"""The log start offset when it is above the first segment's base (DeleteRecords)."""

RECOVERY_POINT_FILE = "recovery-point"
"""The flushed offset (Kafka's recovery point): after a crash, segments from the one holding it
on are rescanned; those before it were fsynced and are trusted."""


@attrs.frozen
class AppendInfo:
    """What one append did (the Produce response's ``base_offset`` etc.).

    invariant: ``first_offset <= last_offset``; offsets ``first_offset..last_offset`` are the
    ones assigned (leader) or accepted (follower).
    """

    first_offset: int
    last_offset: int
    max_timestamp: int
    offset_of_max_timestamp: int
    batch_count: int
    size_bytes: int
    log_start_offset: int
    log_end_offset: int
    rolled: bool = False


@attrs.frozen
class ReadResult:
    """Whole batches read from one segment (possibly empty), as Fetch returns them.

    ``records`` came from one ``os.pread`` (or the active segment's in-memory tail): no
    per-batch or per-record Python work.
    """

    records: bytes
    first_offset: int  # base offset of the first batch returned (the fetch offset when empty)
    log_start_offset: int
    log_end_offset: int


@attrs.define(eq=False)
class FlushJob:
    """An fsync to run off the event loop; duplicated fds stay valid whatever the log does."""

    fds: list[int]
    marks: list[tuple[LogSegment, int]]
    log_end_offset: int

    def run(self) -> None:
        """Fsyncs and closes the duplicated fds (blocking: call in a worker thread).

        Raises:
            KafkaStorageError: an fsync failed (the data may not be durable).
        """
        error: OSError | None = None
        for fd in self.fds:
            try:
                if error is None:
                    os.fsync(fd)
            except OSError as exc:
                error = exc
            finally:
                os.close(fd)
        self.fds = []
        if error is not None:
            raise KafkaStorageError(f"fsync failed: {error}") from error


def validate_records(
    records: bytes | bytearray | memoryview, *, max_message_bytes: int, dense: bool = True
) -> list[tuple[int, BatchHeader]]:
    """Validates every batch of a produce request's record set, without decoding records.

    Returns ``(position, header)`` per batch; a broker that must look at headers before the
    append (idempotent producer state) may pass the result to :meth:`PartitionLog.append`.

    Raises:
        CorruptRecord: bad CRC, lengths, magic, or trailing bytes.
        InvalidRecord: ``dense`` and a batch whose record count disagrees with its offsets; or
            an empty record set.
        MessageTooLarge: a batch larger than ``max.message.bytes``.
    """
    out: list[tuple[int, BatchHeader]] = []
    position = 0
    end = len(records)
    if end == 0:
        raise InvalidRecord("empty record set")
    while position < end:
        header = validate_batch(records, position, dense=dense)
        if header.size > max_message_bytes:
            raise MessageTooLarge(
                f"record batch of {header.size} bytes exceeds max.message.bytes {max_message_bytes}"
            )
        out.append((position, header))
        position += header.size
    return out


class PartitionLog:
    """The log of one partition replica in one directory.

    invariant: ``log_start_offset <= log_end_offset``; segments' base offsets strictly increase;
    the active segment's base offset <= ``log_end_offset``.
    """

    def __init__(self, directory: Path, config: LogConfig, *, now_ms: int) -> None:
        # Use PartitionLog.open: this only sets fields.
        self.directory = directory
        self.config = config
        self._segments: list[LogSegment] = []
        self._bases: list[int] = []
        self._log_start_offset = 0
        self._log_end_offset = 0
        self._flushed_offset = 0
        self._last_flush_ms = now_ms
        self._closed = False
        self.write_listener: Callable[[PartitionLog], None] | None = None
        """Told once after a write (append, truncation, recovery, new config) that may make
        the log due for an fsync, then not again until :meth:`rearm_write_listener`: so the
        flusher looks only at logs written since it last found them settled, not at every
        log every round (``LogManager.listen_writes``)."""
        self._write_told = False
        self.recovered_bytes_truncated = 0
        """Bytes cut off torn or corrupt tails when the log was opened."""

    # --- open / recovery -------------------------------------------------------------------

    @classmethod
    def open(cls, directory: Path, config: LogConfig, *, now_ms: int) -> PartitionLog:
        """Opens (creating if needed) the log in ``directory`` and recovers it.

        Raises:
            KafkaStorageError: the directory cannot be read or written.
        """
        log = cls(directory, config, now_ms=now_ms)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            log._recover()
        except OSError as exc:
            log._close_segments()
            raise KafkaStorageError(f"cannot open log {directory}: {exc}") from exc
        return log

    def _recover(self) -> None:
        directory = self.directory
        marker = directory / CLEAN_SHUTDOWN_FILE
        clean = marker.exists()
        marker.unlink(missing_ok=True)
        names = os.listdir(directory)
        # A compaction that died before its output was complete: the originals are intact.
        for name in names:
            if name.endswith(CLEANED_SUFFIX) or name.endswith(".deleted"):
                (directory / name).unlink(missing_ok=True)
        # A compaction whose output was complete (renamed to .swap): finish the swap. The swap
        # replaces exactly the segment with its base offset.
        for name in names:
            if name.endswith(LOG_SUFFIX + SWAP_SUFFIX):
                stem = name[: -len(LOG_SUFFIX + SWAP_SUFFIX)]
                for suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX):
                    (directory / (stem + suffix)).unlink(missing_ok=True)
                os.replace(directory / name, directory / (stem + LOG_SUFFIX))
        bases = sorted(
            int(name[: -len(LOG_SUFFIX)])
            for name in os.listdir(directory)
            if name.endswith(LOG_SUFFIX) and name[: -len(LOG_SUFFIX)].isdigit()
        )
        # Indexes without a log are leftovers of a deleted segment.
        known = {f"{base:020d}" for base in bases}
        for name in os.listdir(directory):
            stem, _, suffix = name.partition(".")
            if ("." + suffix) in (INDEX_SUFFIX, TIME_INDEX_SUFFIX) and stem not in known:
                (directory / name).unlink(missing_ok=True)
        recovery_point = 0
        if not clean:
            recovery_point = self._read_offset_file(RECOVERY_POINT_FILE) or 0
        # The segment holding the recovery point and all later ones may hold unflushed bytes.
        first_unflushed = max(
            (i for i, base in enumerate(bases) if base <= recovery_point), default=0
        )
        for i, base in enumerate(bases):
            active = i == len(bases) - 1
            unflushed = not clean and i >= first_unflushed
            segment, cut = LogSegment.load(directory, base, self.config, full_recovery=unflushed)
            if unflushed:
                segment.mark_dirty()  # recovered from the page cache, maybe not on disk yet
            self.recovered_bytes_truncated += cut
            if self._segments and segment.base_offset < self._segments[-1].next_offset:
                # Overlapping segments can only come from outside tampering; keep the prefix.
                segment.delete()
                continue
            self._segments.append(segment)
            if cut and not active:
                # A closed segment with a bad tail: everything after it is not a valid prefix.
                for later in bases[i + 1 :]:
                    for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX):
                        (directory / f"{later:020d}{suffix}").unlink(missing_ok=True)
                break
        if not self._segments:
            self._segments.append(LogSegment.create(directory, 0, self.config))
        self._bases = [segment.base_offset for segment in self._segments]
        active = self._segments[-1]
        if active.size:
            # segment.ms counts from the restart: the first append's time was not persisted.
            active.rolling_timestamp_ms = self._last_flush_ms
        self._log_end_offset = max(active.next_offset, active.base_offset)
        self._log_start_offset = self._segments[0].base_offset
        checkpoint = self._read_offset_file(LOG_START_OFFSET_FILE)
        if checkpoint is not None and self._log_start_offset < checkpoint <= self._log_end_offset:
            self._log_start_offset = checkpoint
        if clean:
            self._flushed_offset = self._log_end_offset
        else:
            self._flushed_offset = max(
                self._log_start_offset, min(recovery_point, self._log_end_offset)
            )

    def _read_offset_file(self, name: str) -> int | None:
        try:
            text = (self.directory / name).read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    def _write_offset_file(self, name: str, offset: int) -> None:
        """Persists an offset (write a temp file, then rename: never half-written)."""
        path = self.directory / name
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(f"{offset}\n")
        os.replace(temporary, path)

    def _write_log_start_checkpoint(self) -> None:
        self._write_offset_file(LOG_START_OFFSET_FILE, self._log_start_offset)

    def _set_flushed_offset(self, offset: int) -> None:
        if offset != self._flushed_offset:
            self._flushed_offset = offset
            self._write_offset_file(RECOVERY_POINT_FILE, offset)

    # --- offsets ---------------------------------------------------------------------------

    @property
    def log_start_offset(self) -> int:
        """The first offset the log may serve (Kafka's logStartOffset)."""
        return self._log_start_offset

    @property
    def log_end_offset(self) -> int:
        """The offset the next appended record gets (LEO)."""
        return self._log_end_offset

    @property
    def flushed_offset(self) -> int:
        """Every offset below this is fsynced (Kafka's recovery point)."""
        return self._flushed_offset

    @property
    def segments(self) -> Sequence[LogSegment]:
        return tuple(self._segments)

    @property
    def active_segment(self) -> LogSegment:
        return self._segments[-1]

    def size_bytes(self) -> int:
        return sum(segment.size for segment in self._segments)

    # --- append ----------------------------------------------------------------------------

    def append(
        self,
        records: bytes | bytearray | memoryview,
        *,
        leader_epoch: int,
        now_ms: int,
        assign_offsets: bool = True,
        validated: list[tuple[int, BatchHeader]] | None = None,
    ) -> AppendInfo:
        """Appends a record set (one or more RecordBatch v2) at the log end offset.

        Args:
            records: the batches as received; not modified (the leader path copies them once).
            leader_epoch: stamped into each batch's ``partitionLeaderEpoch`` (leader path).
            assign_offsets: True on the leader (Produce); False on a follower, whose batches
                carry the leader's offsets.
            validated: the result of :func:`validate_records` on ``records`` if the caller
                already ran it (avoids a second CRC pass).

        Raises:
            CorruptRecord, InvalidRecord, UnsupportedCompressionType: a bad batch; nothing
                was written.
            MessageTooLarge: a batch over ``max.message.bytes``.
            InvalidRecord: (follower) a batch whose offsets go back before the log end offset.
            KafkaStorageError: the write failed.
        """
        self._check_open()
        if assign_offsets:
            if validated is None:
                validated = validate_records(
                    records, max_message_bytes=self.config.max_message_bytes
                )
            data = bytearray(records)
        else:
            if validated is None:
                validated = validate_records(records, max_message_bytes=INT_MAX, dense=False)
            data = records if isinstance(records, (bytes, bytearray)) else bytes(records)
        if not validated:
            raise InvalidRecord("empty record set")
        first_offset = self._log_end_offset
        next_offset = first_offset
        if not assign_offsets and validated[0][1].base_offset < next_offset:
            raise InvalidRecord(
                f"follower append at offset {validated[0][1].base_offset} is below the log end "
                f"offset {next_offset}"
            )
        if not assign_offsets:
            first_offset = validated[0][1].base_offset
        batches: list[BatchEntry] = []
        max_timestamp = -1
        offset_of_max = first_offset
        for position, header in validated:
            if assign_offsets:
                patch_batch(
                    data, position, base_offset=next_offset, partition_leader_epoch=leader_epoch
                )
                base = next_offset
            else:
                base = header.base_offset
                if base < next_offset:
                    raise InvalidRecord(
                        f"follower batch at offset {base} overlaps the previous batch "
                        f"(expected >= {next_offset})"
                    )
            last = base + header.last_offset_delta
            if header.max_timestamp > max_timestamp:
                max_timestamp = header.max_timestamp
                offset_of_max = last
            batches.append((position, base, last, header.max_timestamp, header.size))
            next_offset = last + 1
        rolled = self._maybe_roll(len(data), first_offset, next_offset, now_ms)
        self._segments[-1].append(data, batches, now_ms)
        self._log_end_offset = next_offset
        if not self._write_told:
            self.note_write()
        return AppendInfo(
            first_offset=first_offset,
            last_offset=next_offset - 1,
            max_timestamp=max_timestamp,
            offset_of_max_timestamp=offset_of_max,
            batch_count=len(batches),
            size_bytes=len(data),
            log_start_offset=self._log_start_offset,
            log_end_offset=next_offset,
            rolled=rolled,
        )

    def _maybe_roll(self, size: int, first_offset: int, next_offset: int, now_ms: int) -> bool:
        """Rolls before an append that would overflow segment.bytes, outlive segment.ms, fill
        the index, or not fit relative offsets in 32 bits (Kafka's ``maybeRoll``)."""
        active = self._segments[-1]
        if active.size == 0 and next_offset - 1 - active.base_offset <= INT_MAX:
            return False
        config = self.config
        if not (
            active.size + size > config.segment_bytes
            or (
                active.rolling_timestamp_ms is not None
                and now_ms - active.rolling_timestamp_ms > config.segment_ms
            )
            or active.index_full(config.segment_index_bytes)
            or next_offset - 1 - active.base_offset > INT_MAX
        ):
            return False
        self._roll_at(first_offset)
        return True

    def roll(self, *, now_ms: int) -> None:
        """Closes the active segment and starts a new one at the log end offset (if the
        active segment holds anything)."""
        self._check_open()
        if self._segments[-1].size > 0:
            self._roll_at(self._log_end_offset)
            self.note_write()

    def _roll_at(self, base_offset: int) -> None:
        active = self._segments[-1]
        active.write_indexes()
        active.forget_tail()
        if active.size == 0 and len(self._segments) > 1:
            # An empty active segment is simply replaced (its base would be wrong). The first
            # segment stays even when empty: its base offset is the log start offset.
            active.delete()
            self._segments.pop()
            self._bases.pop()
        self._segments.append(LogSegment.create(self.directory, base_offset, self.config))
        self._bases.append(base_offset)
        if len(self._segments) == 1:
            self._log_start_offset = max(self._log_start_offset, base_offset)

    # --- read ------------------------------------------------------------------------------

    def read(
        self, fetch_offset: int, max_bytes: int, *, max_offset: int | None = None
    ) -> ReadResult:
        """Whole batches starting with the one that contains ``fetch_offset`` (Fetch).

        Returns at least one whole batch even if it exceeds ``max_bytes`` (KIP-74), never a
        batch whose base offset >= ``max_offset`` (the high watermark, for consumers), and
        reads from one segment only.

        Raises:
            OffsetOutOfRange: ``fetch_offset`` below the log start offset or above the LEO.
        """
        self._check_open()
        leo = self._log_end_offset
        if fetch_offset < self._log_start_offset or fetch_offset > leo:
            raise OffsetOutOfRange(
                f"fetch offset {fetch_offset} is outside [{self._log_start_offset}, {leo}]"
            )
        limit_offset = leo if max_offset is None else min(max_offset, leo)
        empty = ReadResult(b"", fetch_offset, self._log_start_offset, leo)
        if fetch_offset >= limit_offset:
            return empty
        i = max(bisect_right(self._bases, fetch_offset) - 1, 0)
        segments = self._segments
        while i < len(segments):
            segment = segments[i]
            found = segment.locate(fetch_offset)
            if found is None:
                i += 1
                continue
            start, base = found
            if base >= limit_offset:
                return empty
            end = segment.end_within(start, max(max_bytes, 1))
            if limit_offset < segment.next_offset:
                end = min(end, segment.position_of_base(limit_offset))
            return ReadResult(segment.read(start, end - start), base, self._log_start_offset, leo)
        return empty

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """``(offset, timestamp)`` of the first record at or after the log start offset whose
        timestamp >= ``timestamp_ms`` (ListOffsets by time); None when there is none.

        Batches are found by their max timestamp through the time index; only the batch that
        holds the answer is decoded.
        """
        self._check_open()
        log_start = self._log_start_offset
        for segment in self._segments:
            for position, _base, last, _max_ts, size in segment.batches_reaching(timestamp_ms):
                if last < log_start:
                    continue
                for record in decode_batch(segment.read(position, size))[1]:
                    if record.timestamp >= timestamp_ms and record.offset >= log_start:
                        return record.offset, record.timestamp
        return None

    def offset_of_max_timestamp(self) -> tuple[int, int] | None:
        """``(offset, timestamp)`` of the first record with the largest timestamp at or
        after the log start offset (ListOffsets' MAX_TIMESTAMP, KIP-734); None for an empty
        log.

        Each segment knows its largest timestamp; only the first segment can hold records
        below the log start (DeleteRecords), and only its batch headers are read to find what
        is left there. Then only the batch holding the answer is decoded.
        """
        self._check_open()
        log_start = self._log_start_offset
        best: tuple[int, LogSegment, int] | None = None  # (timestamp, segment, from position)
        for segment in self._segments:
            if segment.next_offset <= log_start:
                continue
            if segment.base_offset < log_start:
                found = self._largest_from(segment, log_start)
                if found is None:
                    continue
                timestamp, position = found
            else:
                timestamp, position = segment.max_timestamp, 0
            if timestamp >= 0 and (best is None or timestamp > best[0]):
                best = (timestamp, segment, position)
        if best is None:
            return None
        target, segment, start = best
        for position, _base, last, max_ts, size in segment.walk(start):
            if last < log_start or max_ts < target:
                continue
            for record in decode_batch(segment.read(position, size))[1]:
                if record.timestamp == target and record.offset >= log_start:
                    return record.offset, record.timestamp
        return None

    @staticmethod
    def _largest_from(segment: LogSegment, log_start: int) -> tuple[int, int] | None:
        """(largest timestamp at or after ``log_start``, position of the first batch holding
        records there) in a segment that starts below ``log_start``; None if none is left."""
        largest, first = -1, None
        for position, base, last, max_ts, size in segment.walk(0):
            if last < log_start:
                continue
            if first is None:
                first = position
            if base < log_start:  # straddles the log start: only its live records count
                records = decode_batch(segment.read(position, size))[1]
                max_ts = max((r.timestamp for r in records if r.offset >= log_start), default=-1)
            largest = max(largest, max_ts)
        return None if first is None else (largest, first)

    # --- truncation ------------------------------------------------------------------------

    def truncate_to(self, offset: int) -> None:
        """Drops every offset >= ``offset`` (a follower whose log diverged, KIP-101).

        A batch straddling ``offset`` goes whole. An offset below the log start offset empties
        the log and restarts it at ``offset``. The LEO becomes ``offset`` (or the base of the
        straddling batch); a new empty active segment records it across restarts.
        """
        self._check_open()
        if offset >= self._log_end_offset:
            return
        self.note_write()
        if offset <= self._segments[0].base_offset or offset < self._log_start_offset:
            for segment in self._segments:
                segment.delete()
            self._segments = [LogSegment.create(self.directory, offset, self.config)]
            self._bases = [offset]
            self._log_start_offset = offset
            self._log_end_offset = offset
            self._set_flushed_offset(min(self._flushed_offset, offset))
            self._write_log_start_checkpoint()
            return
        while self._segments[-1].base_offset >= offset:
            self._segments.pop().delete()
            self._bases.pop()
        active = self._segments[-1]
        cut_base = active.truncate_to(offset)
        new_end = offset if cut_base is None else min(offset, cut_base)
        # A batch straddling the log start offset may go, but the LEO never drops below the
        # log start: the offsets in between were already deleted (DeleteRecords).
        new_end = max(new_end, self._log_start_offset)
        self._log_end_offset = new_end
        self._set_flushed_offset(min(self._flushed_offset, new_end))
        if active.next_offset != new_end:
            # A gap (compaction, or an empty segment) before the new LEO: persist the LEO as
            # the base of a fresh active segment.
            self._roll_at(new_end)

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Empties the log and restarts it at ``offset``, which may lie beyond the LEO.

        Kafka's ``truncateFullyAndStartAt``: a follower whose log ends below the leader's log
        start (the leader deleted what it still needs) cannot fetch its way forward, so it
        drops everything and copies the leader's log from its start.
        """
        self._check_open()
        if offset < 0:
            raise OffsetOutOfRange(f"cannot restart a log at negative offset {offset}")
        self.note_write()
        for segment in self._segments:
            segment.delete()
        self._segments = [LogSegment.create(self.directory, offset, self.config)]
        self._bases = [offset]
        self._log_start_offset = offset
        self._log_end_offset = offset
        self._set_flushed_offset(offset)
        self._write_log_start_checkpoint()

    def advance_log_start_offset(self, offset: int) -> None:
        """Raises the log start offset (DeleteRecords) and drops segments wholly below it.

        Raises:
            OffsetOutOfRange: ``offset`` above the log end offset.
        """
        self._check_open()
        if offset > self._log_end_offset:
            raise OffsetOutOfRange(f"log start offset {offset} beyond LEO {self._log_end_offset}")
        if offset <= self._log_start_offset:
            return
        self._log_start_offset = offset
        self._write_log_start_checkpoint()
        while len(self._segments) > 1 and self._segments[1].base_offset <= offset:
            self._segments.pop(0).delete()
            self._bases.pop(0)

    # --- retention -------------------------------------------------------------------------

    def delete_old_segments(self, *, now_ms: int, high_watermark: int | None = None) -> int:
        """Deletes closed segments past ``retention.ms`` or beyond ``retention.bytes``.

        Only with ``delete`` in cleanup.policy; never the active segment; oldest first, stopping
        at the first segment that must stay. Advances the log start offset.

        A segment is deleted only when it lies wholly below ``high_watermark``: the next
        segment's base offset must be <= the HW (Kafka's ``deletableSegments``), whichever
        limit (time or size) asks for it. Records at or above the HW are not committed yet: a
        leader change may still truncate them, and a consumer has not been allowed to read
        them. Deleting them would let this replica's log start pass offsets its leader or
        followers still hold or will rewrite, so replicas would disagree below the HW, and
        records would vanish before any consumer could see them.

        Args:
            now_ms: the clock ``retention.ms`` is measured against.
            high_watermark: the partition's HW; None sets no limit (a standalone log with no
                replication, as before the limit existed).

        Returns:
            The number of segments deleted.
        """
        self._check_open()
        if not self.config.delete:
            return 0
        closed = self._segments[:-1]
        if high_watermark is not None:
            # Only the leading segments whose successor starts at or below the HW.
            committed = 0
            while committed < len(closed) and self._bases[committed + 1] <= high_watermark:
                committed += 1
            closed = closed[:committed]
        count = 0
        retention_ms = self.config.retention_ms
        if retention_ms >= 0:
            for segment in closed:
                if now_ms - segment.largest_timestamp_ms() > retention_ms:
                    count += 1
                else:
                    break
        retention_bytes = self.config.retention_bytes
        if retention_bytes >= 0:
            excess = self.size_bytes() - retention_bytes
            by_size = 0
            for segment in closed:
                if excess - segment.size >= 0:
                    excess -= segment.size
                    by_size += 1
                else:
                    break
            count = max(count, by_size)
        for _ in range(count):
            self._segments.pop(0).delete()
            self._bases.pop(0)
        if count:
            self._log_start_offset = max(self._log_start_offset, self._segments[0].base_offset)
        return count

    # --- compaction ------------------------------------------------------------------------

    def compact(self, *, now_ms: int, high_watermark: int | None = None) -> CompactionResult:
        """Keeps the latest record per key in the closed segments (cleanup.policy=compact).

        See :mod:`quorumq.log._cleaner`; a no-op unless ``compact`` is in cleanup.policy.

        Args:
            now_ms: the clock ``min.compaction.lag.ms`` and ``delete.retention.ms`` use.
            high_watermark: the partition's HW: only segments wholly below it (the next
                segment's base offset <= HW) are read or rewritten, as Kafka's cleaner stops at
                the first uncleanable offset, never above the HW. The uncommitted tail may still
                be truncated on a leader change; compacting it (or letting it supersede committed
                records) would make replicas diverge and drop records no consumer has been
                allowed to see. None sets no limit (a standalone log).
        """
        self._check_open()
        if not self.config.compact:
            return CompactionResult(first_uncleanable_offset=self._segments[0].base_offset)
        return compact_log(self, now_ms=now_ms, high_watermark=high_watermark)

    def _replace_segment(self, old: LogSegment, new: LogSegment) -> None:
        position = self._segments.index(old)
        self._segments[position] = new

    def _remove_segment(self, segment: LogSegment) -> None:
        """Deletes a closed segment other than the first (compaction emptied it)."""
        position = self._segments.index(segment)
        assert 0 < position < len(self._segments) - 1, "only a middle segment can be dropped"
        del self._segments[position]
        del self._bases[position]
        segment.delete()

    # --- flush -----------------------------------------------------------------------------

    @property
    def unflushed_messages(self) -> int:
        """Offsets appended since the last completed flush (flush.messages)."""
        return self._log_end_offset - self._flushed_offset

    def note_write(self) -> None:
        """Tells the write listener (once until re-armed) that this log may need an fsync."""
        if not self._write_told and self.write_listener is not None:
            self._write_told = True
            self.write_listener(self)

    def rearm_write_listener(self) -> None:
        """The listener has found the log settled: tell it again at the next write."""
        self._write_told = False

    def flush_settled(self) -> bool:
        """True when only a write can make this log due for an fsync: nothing is unflushed,
        or something is but ``flush.ms`` is off (then only ``flush.messages`` or a segment
        roll, both from appends, can make it due). Closed logs are settled too."""
        if self._closed:
            return True
        if self.config.flush_ms < LONG_MAX:
            return self._log_end_offset == self._flushed_offset and not any(
                segment.dirty for segment in self._segments
            )
        return True

    def needs_flush(self, now_ms: int) -> bool:
        """True when flush.messages or flush.ms says this log is due for an fsync."""
        if self._closed:
            return False
        unflushed = self._log_end_offset - self._flushed_offset
        if len(self._segments) > 1 and self._segments[-2].dirty:
            return True  # a rolled segment is flushed at once, as Kafka does on roll
        if unflushed <= 0 and not any(segment.dirty for segment in self._segments):
            return False
        return (
            unflushed >= self.config.flush_messages
            or now_ms - self._last_flush_ms >= self.config.flush_ms
        )

    def prepare_flush(self) -> FlushJob:
        """On the event loop: writes buffered index entries and duplicates the fds of every
        segment written since its last flush. Run the job (in a thread), then
        :meth:`complete_flush`."""
        fds: list[int] = []
        marks: list[tuple[LogSegment, int]] = []
        if not self._closed:
            active = self._segments[-1]
            for segment in self._segments:
                if segment.dirty:
                    handles, writes = segment.flush_handles(with_indexes=segment is not active)
                    fds += handles
                    marks.append((segment, writes))
        return FlushJob(fds, marks, self._log_end_offset)

    def complete_flush(self, job: FlushJob, *, now_ms: int) -> None:
        """On the event loop, after ``job.run()`` succeeded: everything below the job's LEO is
        durable (unless truncated meanwhile)."""
        for segment, writes in job.marks:
            segment.mark_flushed(writes)
        if not self._closed:
            self._set_flushed_offset(
                max(self._flushed_offset, min(job.log_end_offset, self._log_end_offset))
            )
        self._last_flush_ms = now_ms

    def flush(self, *, now_ms: int | None = None) -> None:
        """Fsyncs everything appended so far (blocking)."""
        job = self.prepare_flush()
        job.run()
        self.complete_flush(job, now_ms=self._last_flush_ms if now_ms is None else now_ms)

    # --- close / delete --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise KafkaStorageError(f"log {self.directory.name} is closed")

    def _close_segments(self) -> None:
        for segment in self._segments:
            with contextlib.suppress(OSError):
                segment.close()
        self._segments = []
        self._bases = []

    def close(self, *, clean: bool = True) -> None:
        """Flushes, closes the files and leaves the clean-shutdown marker (fast reopen).

        ``clean=False`` closes the files without flushing or leaving the marker, as a killed
        process would: the next open runs full recovery (tests and the demo use it).
        """
        if self._closed:
            return
        if clean:
            self.flush()
        self._close_segments()
        self._closed = True
        if clean:
            (self.directory / CLEAN_SHUTDOWN_FILE).touch()

    def delete(self) -> None:
        """Closes the log (without flushing) and removes its directory."""
        if not self._closed:
            self._close_segments()
            self._closed = True
        shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return (
            f"PartitionLog({self.directory.name}, start={self._log_start_offset}, "
            f"end={self._log_end_offset}, segments={len(self._segments)})"
        )
