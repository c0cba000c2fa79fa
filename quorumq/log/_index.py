"""Sparse indexes of one segment: ``.index`` (offset -> position) and ``.timeindex``.

Both are append-only files of fixed-size big-endian entries, as Kafka's are, mirrored in memory
by compact ``array`` columns so a lookup is one ``bisect`` with no per-entry Python objects.

* ``.index``: ``relative_offset int32, position int32`` -- the base offset (relative to the
  segment's base offset) and byte position of a batch, one entry every ``index.interval.bytes``.
  A lookup yields the floor entry; the caller scans forward a few batches from there.
* ``.timeindex``: ``timestamp int64, relative_offset int32`` -- the segment's running maximum
  timestamp and the offset that carries it, appended only when that maximum grows.

Entries are buffered and written in bulk (on flush, roll, close, or every 64 KiB of entries):
the index is derived data. Recovery checks it and rebuilds it by scanning the segment when it
is missing or does not fit the segment, so a lost index write costs a rescan, never data.
"""

from __future__ import annotations

import os
import struct
import sys
from array import array
from bisect import bisect_right
from pathlib import Path

_OFFSET_ENTRY = struct.Struct(">ii")
_TIME_ENTRY = struct.Struct(">qi")
_PENDING_LIMIT = 65536


class IndexCorrupt(Exception):
    """An index file that does not fit its segment; internal: recovery rebuilds the index."""


def _open_fd(path: Path, *, truncate: bool) -> int:
    flags = os.O_RDWR | os.O_CREAT | (os.O_TRUNC if truncate else 0)
    return os.open(path, flags, 0o644)


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0) if size else b""


class _IndexFile:
    """The file half both indexes share: an fd, entries buffered until written, and load.

    Subclasses set ``ENTRY`` (the on-disk entry), create their columns in ``_init_columns``,
    parse the file in ``_load`` and answer ``__len__`` with their entry count.
    """

    __slots__ = ("_fd", "_on_disk", "_pending", "path")
    ENTRY: struct.Struct

    def __init__(self, path: Path, *, load: bool) -> None:
        self.path = path
        self._fd = _open_fd(path, truncate=not load)
        self._init_columns()
        self._pending = bytearray()
        self._on_disk = 0
        if load:
            try:
                self._load()
            except IndexCorrupt:
                os.close(self._fd)
                raise

    def _init_columns(self) -> None:
        raise NotImplementedError

    def _load(self) -> None:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def write_pending(self) -> None:
        """Writes buffered entries to the file (no fsync: the index is rebuildable)."""
        if self._pending:
            os.pwrite(self._fd, self._pending, self._on_disk * self.ENTRY.size)
            self._on_disk = len(self)
            self._pending.clear()

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        self.write_pending()
        os.close(self._fd)


class OffsetIndex(_IndexFile):
    """The sparse ``.index`` of a segment: floor lookups from offset or position to position.

    invariant: ``relative_offsets`` and ``positions`` are strictly increasing and equally long.
    """

    __slots__ = ("positions", "relative_offsets")
    ENTRY = _OFFSET_ENTRY

    def _init_columns(self) -> None:
        self.relative_offsets = array("i")
        self.positions = array("i")

    def _load(self) -> None:
        data = _read_all(self._fd)
        if len(data) % _OFFSET_ENTRY.size:
            raise IndexCorrupt(f"{self.path.name}: size {len(data)} is not a whole entry count")
        both = array("i", data)
        if sys.byteorder == "little":
            both.byteswap()
        self.relative_offsets = both[0::2]
        self.positions = both[1::2]
        self._on_disk = len(self.positions)

    def check(self, log_size: int, *, full: bool) -> None:
        """Raises IndexCorrupt unless the entries fit a segment of ``log_size`` bytes.

        ``full`` checks every entry is increasing (the active segment after a clean shutdown);
        otherwise only the first and last entry, as Kafka's sanity check does.
        """
        rel, pos = self.relative_offsets, self.positions
        if not pos:
            return
        if rel[0] < 0 or pos[0] < 0 or pos[-1] >= log_size:
            raise IndexCorrupt(f"{self.path.name}: entries point outside the segment")
        if full:
            for i in range(1, len(pos)):
                if rel[i] <= rel[i - 1] or pos[i] <= pos[i - 1]:
                    raise IndexCorrupt(f"{self.path.name}: entry {i} is not increasing")

    def __len__(self) -> int:
        return len(self.positions)

    def append(self, relative_offset: int, position: int) -> None:
        self.relative_offsets.append(relative_offset)
        self.positions.append(position)
        self._pending += _OFFSET_ENTRY.pack(relative_offset, position)
        if len(self._pending) >= _PENDING_LIMIT:
            self.write_pending()

    def lookup(self, relative_offset: int) -> int:
        """Position of the last indexed batch whose base offset <= ``relative_offset`` (or 0)."""
        i = bisect_right(self.relative_offsets, relative_offset) - 1
        return self.positions[i] if i >= 0 else 0

    def floor_position(self, position: int) -> int:
        """The greatest indexed batch position <= ``position`` (or 0)."""
        i = bisect_right(self.positions, position) - 1
        return self.positions[i] if i >= 0 else 0

    def last_position(self) -> int:
        return self.positions[-1] if self.positions else 0

    def truncate_entries(self, count: int) -> None:
        """Keeps the first ``count`` entries."""
        self.write_pending()
        del self.relative_offsets[count:]
        del self.positions[count:]
        os.ftruncate(self._fd, count * _OFFSET_ENTRY.size)
        self._on_disk = count

    def reset(self) -> None:
        self.truncate_entries(0)

    def size_bytes(self) -> int:
        return len(self.positions) * _OFFSET_ENTRY.size


class TimeIndex(_IndexFile):
    """The ``.timeindex`` of a segment: (running max timestamp, relative offset) entries.

    invariant: timestamps strictly increase (an entry is added only when the maximum grows).
    """

    __slots__ = ("relative_offsets", "timestamps")
    ENTRY = _TIME_ENTRY

    def _init_columns(self) -> None:
        self.timestamps = array("q")
        self.relative_offsets = array("i")

    def _load(self) -> None:
        data = _read_all(self._fd)
        if len(data) % _TIME_ENTRY.size:
            raise IndexCorrupt(f"{self.path.name}: size {len(data)} is not a whole entry count")
        for timestamp, relative_offset in _TIME_ENTRY.iter_unpack(data):
            if self.timestamps and timestamp <= self.timestamps[-1]:
                raise IndexCorrupt(f"{self.path.name}: timestamps are not increasing")
            self.timestamps.append(timestamp)
            self.relative_offsets.append(relative_offset)
        self._on_disk = len(self.timestamps)

    def __len__(self) -> int:
        return len(self.timestamps)

    def last_timestamp(self) -> int:
        return self.timestamps[-1] if self.timestamps else -1

    def append(self, timestamp: int, relative_offset: int) -> None:
        if self.timestamps and timestamp <= self.timestamps[-1]:
            return
        self.timestamps.append(timestamp)
        self.relative_offsets.append(relative_offset)
        self._pending += _TIME_ENTRY.pack(timestamp, relative_offset)
        if len(self._pending) >= _PENDING_LIMIT:
            self.write_pending()

    def floor_below(self, timestamp: int) -> int | None:
        """Relative offset of the last entry with a timestamp < ``timestamp`` (None if none).

        Every batch up to that offset has max timestamp < ``timestamp``, so a search for the
        first batch reaching ``timestamp`` may start there.
        """
        i = bisect_right(self.timestamps, timestamp - 1) - 1
        return self.relative_offsets[i] if i >= 0 else None

    def reset(self) -> None:
        self._pending.clear()
        del self.timestamps[:]
        del self.relative_offsets[:]
        os.ftruncate(self._fd, 0)
        self._on_disk = 0
