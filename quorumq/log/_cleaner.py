"""Log compaction (``cleanup.policy=compact``): keep the latest record per key.

Theory of operation (Kafka's LogCleaner, simplified to one pass over a partition):

1. The *cleanable* segments are the closed segments, oldest first, up to the first one holding a
   record newer than ``min.compaction.lag.ms`` or reaching the high watermark (a segment is
   cleanable only if the next segment's base offset is <= the HW); the active segment is never
   touched. Kafka's cleaner likewise stops at the first uncleanable offset, which is never above
   the HW: records at or above it are uncommitted, may still be truncated on a leader change,
   and no consumer has been allowed to read them, so they are neither rewritten nor allowed to
   supersede committed records.
2. Pass one decodes their batches and maps each key to the offset of its latest record.
3. Pass two rewrites each cleanable segment: a record stays if it has no key, or if it is the
   latest of its key -- unless it is a tombstone (null value) older than
   ``delete.retention.ms``, which goes. Offsets are preserved: a rebuilt batch keeps its base
   offset, ``lastOffsetDelta``, producer fields and leader epoch; a batch whose records all stay
   is copied byte for byte; an emptied batch is dropped unless it carries a producer id (it then
   stays, empty, so the producer's last sequence survives, as Kafka does). Control batches are
   kept as they are. A segment left with nothing is deleted (unless it is the first one).
4. Crash-safe swap: the new segment is written to ``<base>.log.cleaned`` and fsynced, renamed
   to ``<base>.log.swap``, the old segment's indexes are removed and the swap file renamed over
   ``<base>.log``. On open, a ``.cleaned`` file is discarded (the original is intact) and a
   ``.swap`` file finishes its rename (the original may already be gone); indexes are rebuilt.

Records in segments that are not cleanable are not in the key map, so a key updated in the
active segment keeps its latest cleanable record too (as in Kafka): compaction only ever
removes records that a later record of the same key supersedes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from quorumq.log._segment import LogSegment, segment_file_name
from quorumq.protocol.records import (
    NO_PRODUCER_ID,
    BatchHeader,
    Record,
    build_batch,
    decode_batch,
    parse_batch_header,
)

if TYPE_CHECKING:
    from quorumq.log._log import PartitionLog

CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"


@attrs.frozen
class CompactionResult:
    """What one compaction pass did."""

    segments_cleaned: int = 0  # segments rewritten
    segments_scanned: int = 0  # cleanable segments examined
    records_before: int = 0
    records_after: int = 0
    tombstones_dropped: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    first_uncleanable_offset: int = 0  # compaction looked only below this offset


def _batches(data: bytes) -> list[tuple[BatchHeader, list[Record], int, int]]:
    """``(header, records, start, end)`` of every batch of a segment's bytes."""
    out = []
    position = 0
    while position < len(data):
        header = parse_batch_header(data, position)
        end = position + header.size
        if header.is_control:
            records: list[Record] = []
        else:
            records = decode_batch(data, position)[1]
        out.append((header, records, position, end))
        position = end
    return out


def compact_log(
    log: PartitionLog, *, now_ms: int, high_watermark: int | None = None
) -> CompactionResult:
    """Compacts the cleanable closed segments of ``log`` (see the module docstring).

    Args:
        now_ms: the clock ``min.compaction.lag.ms`` and ``delete.retention.ms`` use.
        high_watermark: the partition's HW; only segments wholly below it are cleanable.
            None sets no limit (a standalone log).

    Raises:
        KafkaStorageError: a file operation failed (the swap protocol leaves the log
            recoverable on reopen).
    """
    config = log.config
    segments = list(log.segments)
    closed = segments[:-1]
    cleanable: list[LogSegment] = []
    for position, segment in enumerate(closed):
        if high_watermark is not None and segments[position + 1].base_offset > high_watermark:
            break  # this segment holds offsets at or above the HW: uncommitted
        if config.min_compaction_lag_ms > 0 and (
            segment.max_timestamp < 0
            or segment.max_timestamp > now_ms - config.min_compaction_lag_ms
        ):
            break
        cleanable.append(segment)
    first_uncleanable = (
        segments[len(cleanable)].base_offset if len(cleanable) < len(segments) else 0
    )
    if not cleanable:
        return CompactionResult(first_uncleanable_offset=first_uncleanable)
    # Pass one: the latest offset of every key.
    decoded: list[list[tuple[BatchHeader, list[Record], int, int]]] = []
    contents: list[bytes] = []
    latest: dict[bytes, int] = {}
    for segment in cleanable:
        data = segment.read(0, segment.size) if segment.size else b""
        batches = _batches(data)
        contents.append(data)
        decoded.append(batches)
        for _header, records, _start, _end in batches:
            for record in records:
                if record.key is not None:
                    latest[record.key] = record.offset
    # Pass two: rewrite what changes.
    horizon = now_ms - config.delete_retention_ms
    cleaned = scanned = before = after = dropped_tombstones = bytes_before = bytes_after = 0
    for index, segment in enumerate(cleanable):
        scanned += 1
        data = contents[index]
        out = bytearray()
        changed = False
        for header, records, start, end in decoded[index]:
            before += len(records)
            if header.is_control:
                out += data[start:end]
                continue
            kept = []
            for record in records:
                if record.key is None:
                    kept.append(record)
                elif latest[record.key] == record.offset:
                    if record.value is None and record.timestamp < horizon:
                        dropped_tombstones += 1
                    else:
                        kept.append(record)
            after += len(kept)
            if len(kept) == len(records):
                out += data[start:end]
                continue
            changed = True
            if not kept and header.producer_id == NO_PRODUCER_ID:
                continue
            out += build_batch(
                kept,
                base_offset=header.base_offset,
                compression=header.compression,
                timestamp_type=header.timestamp_type,
                producer_id=header.producer_id,
                producer_epoch=header.producer_epoch,
                base_sequence=header.base_sequence,
                partition_leader_epoch=header.partition_leader_epoch,
                is_transactional=header.is_transactional,
                last_offset_delta=header.last_offset_delta,
                max_timestamp=header.max_timestamp,
            )
        bytes_before += len(data)
        bytes_after += len(out) if changed else len(data)
        if changed:
            if not out and segment is not segments[0]:
                # Nothing left: drop the file (one unlink, atomic). The first segment stays,
                # empty, because its base offset is the log start offset.
                log._remove_segment(segment)
            else:
                log._replace_segment(segment, _swap_in(segment, bytes(out), log))
            cleaned += 1
    return CompactionResult(
        segments_cleaned=cleaned,
        segments_scanned=scanned,
        records_before=before,
        records_after=after,
        tombstones_dropped=dropped_tombstones,
        bytes_before=bytes_before,
        bytes_after=bytes_after,
        first_uncleanable_offset=first_uncleanable,
    )


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_in(old: LogSegment, data: bytes, log: PartitionLog) -> LogSegment:
    """Replaces ``old`` on disk by a segment holding ``data`` (same base offset), crash-safely."""
    directory = old.directory
    name = segment_file_name(old.base_offset)
    cleaned = directory / (name + CLEANED_SUFFIX)
    swap = directory / (name + SWAP_SUFFIX)
    fd = os.open(cleaned, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(cleaned, swap)
    _fsync_dir(directory)
    # From here on, recovery finishes the swap whatever happens.
    old.close()
    old.index_path.unlink(missing_ok=True)
    old.time_index_path.unlink(missing_ok=True)
    os.replace(swap, old.path)
    _fsync_dir(directory)
    segment, _cut = LogSegment.load(directory, old.base_offset, log.config, full_recovery=False)
    return segment
