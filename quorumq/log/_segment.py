"""One segment of a partition log: ``<base_offset:020d>.log`` with its ``.index``/``.timeindex``.

Theory of operation: a segment is a file of whole RecordBatch v2 batches, appended with one
``os.write`` per produce request. The segment keeps in memory what the log needs without
reading the file: its size (the committed end: bytes past it are never served), the offset after
its last batch, its largest timestamp, and the sparse indexes. Lookups bisect the index and then
walk a few batch headers with ``os.pread`` (only the 43 leading bytes of each header matter), so
no lookup costs more than about ``index.interval.bytes`` of scanning.

Recovery (:meth:`LogSegment.load`) scans with ``mmap``: every batch is parsed (and
CRC-checked when asked), offsets must increase, and the file is cut at the first batch that
fails; what remains is exactly the valid prefix.
"""

from __future__ import annotations

import contextlib
import mmap
import operator
import os
import struct
from bisect import bisect_left
from collections.abc import Iterator
from pathlib import Path

from quorumq.errors import KafkaStorageError, QuorumqError
from quorumq.log._config import INT_MAX, LogConfig
from quorumq.log._index import IndexCorrupt, OffsetIndex, TimeIndex
from quorumq.protocol.records import LOG_OVERHEAD, parse_batch_header, validate_batch

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"

# baseOffset, batchLength, (partitionLeaderEpoch, magic, crc skipped), attributes,
# lastOffsetDelta, baseTimestamp, maxTimestamp: the 43 leading bytes of a v2 header.
_SCAN = struct.Struct(">qi9xhiqq")
_WALK_CHUNK = 4096
_TAIL_BYTES = 64 * 1024  # per active segment; see LogSegment._remember
_LAST = operator.itemgetter(2)
_BASE = operator.itemgetter(1)

# (position in the record set, base offset, last offset, max timestamp, size) of one batch.
BatchEntry = tuple[int, int, int, int, int]


def segment_file_name(base_offset: int, suffix: str = LOG_SUFFIX) -> str:
    return f"{base_offset:020d}{suffix}"


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class LogSegment:
    """A ``.log`` file and its indexes, plus the few facts about it the log keeps in memory.

    invariant: ``0 <= size`` == bytes of whole valid batches in the file;
    ``base_offset <= next_offset``; batches' base offsets strictly increase.
    """

    __slots__ = (
        "_fd",
        "_flushed_writes",
        "_index_interval_bytes",
        "_tail",
        "_tail_batches",
        "_tail_start",
        "_writes",
        "base_offset",
        "bytes_since_last_index_entry",
        "directory",
        "index",
        "max_timestamp",
        "next_offset",
        "offset_of_max_timestamp",
        "rolling_timestamp_ms",
        "size",
        "time_index",
    )

    def __init__(self, directory: Path, base_offset: int, config: LogConfig, *, new: bool) -> None:
        self.directory = directory
        self.base_offset = base_offset
        self._index_interval_bytes = config.index_interval_bytes
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if new else 0)
        self._fd = os.open(self.path, flags, 0o644)
        self.size = 0 if new else os.fstat(self._fd).st_size
        self.next_offset = base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = base_offset
        self.bytes_since_last_index_entry = 0
        self.rolling_timestamp_ms: int | None = None
        self._writes = 0
        self._flushed_writes = 0
        self._tail = bytearray()
        self._tail_start = self.size
        self._tail_batches: list[BatchEntry] = []
        self.index: OffsetIndex
        self.time_index: TimeIndex
        if new:
            self.index = OffsetIndex(self.index_path, load=False)
            self.time_index = TimeIndex(self.time_index_path, load=False)

    # --- files -----------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self.directory / segment_file_name(self.base_offset)

    @property
    def index_path(self) -> Path:
        return self.directory / segment_file_name(self.base_offset, INDEX_SUFFIX)

    @property
    def time_index_path(self) -> Path:
        return self.directory / segment_file_name(self.base_offset, TIME_INDEX_SUFFIX)

    @classmethod
    def create(cls, directory: Path, base_offset: int, config: LogConfig) -> LogSegment:
        """A new, empty segment (any old files of that name are truncated)."""
        return cls(directory, base_offset, config, new=True)

    @classmethod
    def load(
        cls, directory: Path, base_offset: int, config: LogConfig, *, full_recovery: bool
    ) -> tuple[LogSegment, int]:
        """Opens an existing segment, recovering it as far as needed.

        Args:
            full_recovery: rescan and CRC-check every batch and rebuild the indexes (the active
                segment after an unclean shutdown). Otherwise trust the batches the index
                covers and scan only the tail after its last entry (CRC-checked too: cheap).

        Returns:
            The segment and the number of bytes cut off its end (0 when it was intact).
        """
        segment = cls(directory, base_offset, config, new=False)
        rebuild = full_recovery
        if not segment.index_path.exists() or not segment.time_index_path.exists():
            rebuild = True
        try:
            segment.index = OffsetIndex(segment.index_path, load=True)
        except IndexCorrupt:
            segment.index = OffsetIndex(segment.index_path, load=False)
            rebuild = True
        try:
            segment.time_index = TimeIndex(segment.time_index_path, load=True)
        except IndexCorrupt:
            segment.time_index = TimeIndex(segment.time_index_path, load=False)
            rebuild = True
        if not rebuild:
            try:
                segment.index.check(segment.size, full=True)
            except IndexCorrupt:
                rebuild = True
        if rebuild or not segment.index:
            cut = segment._scan(0, validate=True)
        else:
            cut = segment._scan(segment.index.last_position(), validate=True)
        return segment, cut

    # --- scanning --------------------------------------------------------------------------

    def _scan(self, start: int, *, validate: bool) -> int:
        """Walks the batches from ``start`` to the end of the file, tracking each one.

        ``start == 0`` resets the indexes; otherwise ``start`` must be the position of the
        last index entry (whose batch is already indexed). Stops at the first batch that does
        not parse, fails its CRC (``validate``) or does not continue the offsets, and cuts the
        file there. Returns the number of bytes cut.
        """
        file_size = os.fstat(self._fd).st_size
        if start == 0:
            self.index.reset()
            self.time_index.reset()
            self.next_offset = self.base_offset
            self.max_timestamp = -1
            self.offset_of_max_timestamp = self.base_offset
        else:
            self.next_offset = self.base_offset + self.index.relative_offsets[-1]
            self.max_timestamp = self.time_index.last_timestamp()
            self.offset_of_max_timestamp = self.base_offset + (
                self.time_index.relative_offsets[-1] if self.time_index else 0
            )
        self.bytes_since_last_index_entry = 0
        position = start
        if file_size > start:
            parse = validate_batch if validate else parse_batch_header
            with mmap.mmap(self._fd, file_size, access=mmap.ACCESS_READ) as mm:
                while position < file_size:
                    try:
                        header = parse(mm, position)
                    except QuorumqError:
                        break
                    last = header.base_offset + header.last_offset_delta
                    if header.base_offset < self.next_offset or last - self.base_offset > INT_MAX:
                        break
                    self._track(
                        position, header.base_offset, last, header.max_timestamp, header.size
                    )
                    position += header.size
        if position < file_size:
            os.ftruncate(self._fd, position)
            self._writes += 1
        self.size = position
        self.forget_tail()
        return file_size - position

    def _track(self, position: int, base: int, last: int, max_timestamp: int, size: int) -> None:
        if max_timestamp > self.max_timestamp:
            self.max_timestamp = max_timestamp
            self.offset_of_max_timestamp = last
        if self.bytes_since_last_index_entry >= self._index_interval_bytes:
            self.index.append(base - self.base_offset, position)
            if self.max_timestamp >= 0:
                self.time_index.append(
                    self.max_timestamp, self.offset_of_max_timestamp - self.base_offset
                )
            self.bytes_since_last_index_entry = 0
        self.bytes_since_last_index_entry += size
        self.next_offset = last + 1

    def walk(self, position: int, end: int | None = None) -> Iterator[BatchEntry]:
        """Yields ``(position, base, last, max_timestamp, size)`` of batches from ``position``.

        ``position`` must be a batch boundary inside the committed region.
        """
        stop = self.size if end is None else end
        chunk = b""
        chunk_start = 0
        while position < stop:
            rel = position - chunk_start
            if rel + _SCAN.size > len(chunk):
                chunk = os.pread(self._fd, _WALK_CHUNK, position)
                chunk_start = position
                rel = 0
                if len(chunk) < _SCAN.size:
                    raise KafkaStorageError(f"{self.path.name}: short read at {position}")
            base, length, _attributes, delta, _base_ts, max_ts = _SCAN.unpack_from(chunk, rel)
            size = LOG_OVERHEAD + length
            yield position, base, base + delta, max_ts, size
            position += size

    # --- append ----------------------------------------------------------------------------

    def append(self, data: bytes | bytearray, batches: list[BatchEntry], now_ms: int) -> None:
        """Writes a validated record set (one ``os.write``) and indexes its batches.

        Raises:
            KafkaStorageError: the write failed; the segment is cut back to where it was.
        """
        start = self.size
        try:
            _write_all(self._fd, data)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            raise KafkaStorageError(f"{self.path.name}: write failed: {exc}") from exc
        if self.rolling_timestamp_ms is None:
            self.rolling_timestamp_ms = now_ms
        # _track, inlined with locals: this loop runs once per batch on the produce path.
        max_timestamp = self.max_timestamp
        offset_of_max = self.offset_of_max_timestamp
        since = self.bytes_since_last_index_entry
        interval = self._index_interval_bytes
        segment_base = self.base_offset
        for position, base, last, batch_max_timestamp, size in batches:
            if batch_max_timestamp > max_timestamp:
                max_timestamp = batch_max_timestamp
                offset_of_max = last
            if since >= interval:
                self.index.append(base - segment_base, start + position)
                if max_timestamp >= 0:
                    self.time_index.append(max_timestamp, offset_of_max - segment_base)
                since = 0
            since += size
        self.max_timestamp = max_timestamp
        self.offset_of_max_timestamp = offset_of_max
        self.bytes_since_last_index_entry = since
        if batches:
            self.next_offset = batches[-1][2] + 1
        self.size = start + len(data)
        self._writes += 1
        self._remember(start, data, batches)

    # --- the tail in memory ----------------------------------------------------------------

    def _remember(self, start: int, data: bytes | bytearray, batches: list[BatchEntry]) -> None:
        """Keeps the segment's last few KiB (and their batch positions) in memory.

        Why: replication reads what was just appended, once per follower, and a lookup plus a
        read from the file are two ``pread`` calls per follower fetch; on the VM the benchmarks
        run on a syscall costs 15–40 µs. Kafka leaves this to the page cache; the cache here
        saves the calls, not the disk. Appends larger than the cache are read from the file.
        """
        if len(data) > _TAIL_BYTES:
            self.forget_tail()
            return
        if self._tail_start + len(self._tail) != start:
            self._tail = bytearray()
            self._tail_batches = []
            self._tail_start = start
        tail = self._tail
        tail += data
        entries = self._tail_batches
        entries.extend((start + pos, base, last, ts, size) for pos, base, last, ts, size in batches)
        excess = len(tail) - _TAIL_BYTES
        if excess > 0:
            cut = 0
            dropped = 0
            while cut < excess:
                cut += entries[dropped][4]
                dropped += 1
            del entries[:dropped]
            del tail[:cut]
            self._tail_start += cut

    def forget_tail(self) -> None:
        """Drops the in-memory tail (the file changed under it, or the segment stopped being
        the active one)."""
        self._tail = bytearray()
        self._tail_batches = []
        self._tail_start = self.size

    # --- lookups ---------------------------------------------------------------------------

    def locate(self, offset: int) -> tuple[int, int] | None:
        """``(position, base_offset)`` of the first batch whose last offset >= ``offset``."""
        if offset >= self.next_offset:
            return None
        entries = self._tail_batches
        if entries and offset >= entries[0][1]:
            entry = entries[bisect_left(entries, offset, key=_LAST)]
            return entry[0], entry[1]
        start = self.index.lookup(offset - self.base_offset) if offset > self.base_offset else 0
        for position, base, last, _ts, _size in self.walk(start):
            if last >= offset:
                return position, base
        return None

    def position_of_base(self, offset: int) -> int:
        """Position of the first batch whose base offset >= ``offset`` (``size`` if none)."""
        if offset >= self.next_offset:
            return self.size
        entries = self._tail_batches
        if entries and offset >= entries[0][1]:
            i = bisect_left(entries, offset, key=_BASE)
            return entries[i][0] if i < len(entries) else self.size
        start = self.index.lookup(offset - self.base_offset) if offset > self.base_offset else 0
        for position, base, _last, _ts, _size in self.walk(start):
            if base >= offset:
                return position
        return self.size

    def end_within(self, start: int, max_bytes: int) -> int:
        """End of the longest run of whole batches from ``start`` that fits ``max_bytes``;
        at least one batch."""
        limit = start + max_bytes
        if limit >= self.size:
            return self.size
        position = max(start, self.index.floor_position(limit))
        end = position
        for batch_position, _base, _last, _ts, size in self.walk(position):
            if batch_position + size > limit and batch_position > start:
                break
            end = batch_position + size
            if end >= limit:
                break
        return end

    def batches_reaching(self, timestamp: int) -> Iterator[BatchEntry]:
        """The batches from the first whose max timestamp >= ``timestamp`` on (time index
        lookup, then a header walk); nothing if the segment is older than ``timestamp``."""
        if self.max_timestamp < timestamp:
            return
        relative = self.time_index.floor_below(timestamp)
        start = self.index.lookup(relative) if relative is not None else 0
        for entry in self.walk(start):
            if entry[3] >= timestamp:
                yield entry

    def read(self, position: int, length: int) -> bytes:
        """``length`` bytes at ``position``: from the in-memory tail, else one ``os.pread``; no
        per-record work."""
        relative = position - self._tail_start
        if relative >= 0 and relative + length <= len(self._tail):
            return bytes(self._tail[relative : relative + length])
        data = os.pread(self._fd, length, position)
        if len(data) != length:
            raise KafkaStorageError(f"{self.path.name}: short read at {position}")
        return data

    def largest_timestamp_ms(self) -> int:
        """The newest timestamp in the segment (retention.ms); the file's mtime if none."""
        if self.max_timestamp >= 0:
            return self.max_timestamp
        return os.fstat(self._fd).st_mtime_ns // 1_000_000

    # --- truncation, flush, close ----------------------------------------------------------

    def truncate_to(self, offset: int) -> int | None:
        """Drops every batch whose last offset >= ``offset`` (a straddling batch goes whole).

        Returns the base offset of the first batch dropped, None if none was.
        """
        found = self.locate(offset)
        if found is None:
            return None
        os.ftruncate(self._fd, found[0])
        self._writes += 1
        self._scan(0, validate=False)  # forgets the tail
        return found[1]

    def index_full(self, segment_index_bytes: int) -> bool:
        return self.index.size_bytes() + 8 > segment_index_bytes

    @property
    def dirty(self) -> bool:
        return self._writes != self._flushed_writes

    def flush_handles(self, *, with_indexes: bool) -> tuple[list[int], int]:
        """Duplicated file descriptors to fsync off the event loop, and the write count they
        cover (duplicates stay valid even if the segment is closed meanwhile)."""
        self.index.write_pending()
        self.time_index.write_pending()
        fds = [os.dup(self._fd)]
        if with_indexes:
            fds += [os.dup(self.index.fileno()), os.dup(self.time_index.fileno())]
        return fds, self._writes

    def mark_dirty(self) -> None:
        self._writes += 1

    def mark_flushed(self, writes: int) -> None:
        self._flushed_writes = max(self._flushed_writes, writes)

    def write_indexes(self) -> None:
        self.index.write_pending()
        self.time_index.write_pending()

    def close(self) -> None:
        self.index.close()
        self.time_index.close()
        os.close(self._fd)

    def delete(self) -> None:
        """Closes and removes the segment's files."""
        self.close()
        for path in (self.path, self.index_path, self.time_index_path):
            path.unlink(missing_ok=True)
