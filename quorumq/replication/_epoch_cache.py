"""The leader-epoch cache: which leader epoch started at which offset (KIP-101).

Theory of operation: every batch a leader appends is stamped with its ``partitionLeaderEpoch``.
Each replica remembers, per epoch, the first offset written in it. That is enough to answer
``OffsetForLeaderEpoch`` ("where does epoch E end in your log?") and so to find where a
follower's log diverges from the leader's: the follower asks about its latest epoch, the leader
answers with the end offset of that epoch in *its* log, and the follower truncates there. This
module mirrors Kafka's ``LeaderEpochFileCache`` method for method (``assign``,
``endOffsetFor``, ``truncateFromEnd``, ``truncateFromStart``) and its on-disk format (the
``leader-epoch-checkpoint`` file), so behaviour can be checked against Kafka's own tests.

The cache is pure: no locks, no files. :func:`save_checkpoint` / :func:`load_checkpoint` are the
only functions touching the disk, with plain ``os`` calls (write a temporary file, fsync it,
rename it over the old one, fsync the directory), so a crash leaves either the old or the new
checkpoint, never half of one. A broker replica re-derives its cache from its log's batches on
open (:func:`rebuild_from_log`) and so writes the checkpoint without the fsyncs.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterable

import attrs

from quorumq.errors import KafkaStorageError

UNDEFINED_EPOCH = -1
"""Kafka's ``RecordBatch.NO_PARTITION_LEADER_EPOCH``: no epoch known."""

UNDEFINED_EPOCH_OFFSET = -1
"""Kafka's ``UNDEFINED_EPOCH_OFFSET``: no end offset known for the requested epoch."""

CHECKPOINT_VERSION = 0
"""The version line of Kafka's ``leader-epoch-checkpoint`` file."""

CHECKPOINT_FILE_NAME = "leader-epoch-checkpoint"


@attrs.frozen
class EpochEntry:
    """One cache entry: ``leader_epoch`` started at ``start_offset`` (Kafka's ``EpochEntry``)."""

    leader_epoch: int
    start_offset: int


@attrs.define(eq=False)
class LeaderEpochCache:
    """Leader epoch → start offset, for one partition replica.

    invariant: entries are strictly increasing in epoch and non-decreasing in start offset
    (Kafka keeps them monotonic by dropping non-monotonic entries on ``assign``).
    """

    _epochs: list[int] = attrs.field(factory=list, init=False)
    _start_offsets: list[int] = attrs.field(factory=list, init=False)

    @classmethod
    def from_entries(cls, entries: Iterable[tuple[int, int] | EpochEntry]) -> LeaderEpochCache:
        """A cache holding ``entries`` ((epoch, start_offset) pairs), applied via :meth:`assign`."""
        cache = cls()
        for entry in entries:
            if isinstance(entry, EpochEntry):
                cache.assign(entry.leader_epoch, entry.start_offset)
            else:
                cache.assign(entry[0], entry[1])
        return cache

    # --- reading -------------------------------------------------------------------------------

    @property
    def entries(self) -> tuple[EpochEntry, ...]:
        """All entries, oldest epoch first."""
        return tuple(
            EpochEntry(e, o) for e, o in zip(self._epochs, self._start_offsets, strict=True)
        )

    @property
    def latest_epoch(self) -> int | None:
        """The newest epoch in the cache, or None when empty (Kafka's ``latestEpoch()``)."""
        return self._epochs[-1] if self._epochs else None

    @property
    def latest_entry(self) -> EpochEntry | None:
        """The newest entry, or None when empty."""
        if not self._epochs:
            return None
        return EpochEntry(self._epochs[-1], self._start_offsets[-1])

    @property
    def earliest_entry(self) -> EpochEntry | None:
        """The oldest entry, or None when empty."""
        if not self._epochs:
            return None
        return EpochEntry(self._epochs[0], self._start_offsets[0])

    def __len__(self) -> int:
        return len(self._epochs)

    def end_offset_for(self, requested_epoch: int, log_end_offset: int) -> tuple[int, int]:
        """Answers ``OffsetForLeaderEpoch`` for ``requested_epoch`` (Kafka's ``endOffsetFor``).

        Returns ``(leader_epoch, end_offset)``: the largest epoch ``<= requested_epoch`` that
        this replica knows and the offset where it ended, i.e. the start offset of the next
        known epoch, or ``log_end_offset`` when ``requested_epoch`` is the latest epoch. The
        ``(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)`` pair comes back when the request names
        ``UNDEFINED_EPOCH`` or an epoch newer than any known (which includes an empty cache).
        An epoch older than every entry answers ``(requested_epoch, first start offset)``: the
        data is gone (retention), and the follower must replicate from there.

        Args:
            requested_epoch: the follower's latest epoch (``-1`` when it has none).
            log_end_offset: this replica's log end offset.
        """
        epochs = self._epochs
        if requested_epoch == UNDEFINED_EPOCH:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if epochs and epochs[-1] == requested_epoch:
            # The leader's latest epoch is the one still being written to: it ends at the LEO.
            return requested_epoch, log_end_offset
        higher = bisect.bisect_right(epochs, requested_epoch)
        if higher == len(epochs):
            # Newer than anything known (or the cache is empty).
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if higher == 0:
            # Older than every known epoch: answer the start of the first known one.
            return requested_epoch, self._start_offsets[0]
        return epochs[higher - 1], self._start_offsets[higher]

    def epoch_for_offset(self, offset: int) -> int | None:
        """The epoch an offset was written in (Kafka's ``epochForOffset``), or None if unknown."""
        index = bisect.bisect_right(self._start_offsets, offset)
        if index == 0:
            return None
        return self._epochs[index - 1]

    # --- writing -------------------------------------------------------------------------------

    def assign(self, leader_epoch: int, start_offset: int) -> bool:
        """Records that ``leader_epoch`` starts at ``start_offset``; returns whether it changed.

        A leader calls this when it takes over (at its log end offset); a follower calls it for
        each appended batch's ``partitionLeaderEpoch`` (a no-op unless the epoch is new). As in
        Kafka, entries that the new one makes non-monotonic (an epoch ``>=`` it, or a start offset
        ``>=`` it) are removed from the end first.

        Raises:
            KafkaStorageError: a negative epoch or offset (Kafka's IllegalArgumentException);
                only a corrupt checkpoint or batch can produce one.
        """
        if leader_epoch < 0 or start_offset < 0:
            raise KafkaStorageError(
                f"invalid leader epoch entry: epoch {leader_epoch}, start offset {start_offset}"
            )
        epochs, offsets = self._epochs, self._start_offsets
        if epochs and leader_epoch == epochs[-1] and start_offset >= offsets[-1]:
            return False  # the common case: one more batch of the current epoch
        while epochs and (epochs[-1] >= leader_epoch or offsets[-1] >= start_offset):
            epochs.pop()
            offsets.pop()
        epochs.append(leader_epoch)
        offsets.append(start_offset)
        return True

    def truncate_from_end(self, end_offset: int) -> bool:
        """Removes entries starting at or after ``end_offset`` (the log was truncated there);
        returns whether any was removed (the checkpoint needs writing only then).

        Kafka's ``truncateFromEnd``: a negative ``end_offset`` is ignored.
        """
        if end_offset < 0:
            return False
        epochs, offsets = self._epochs, self._start_offsets
        removed = False
        while offsets and offsets[-1] >= end_offset:
            epochs.pop()
            offsets.pop()
            removed = True
        return removed

    def truncate_from_start(self, start_offset: int) -> None:
        """Drops entries wholly before ``start_offset`` (retention moved the log start).

        Kafka's ``truncateFromStart``: the last entry starting at or before ``start_offset`` is
        kept, moved to start at ``start_offset``; so ``truncate_from_start(6)`` keeps an entry
        at 6.
        """
        index = bisect.bisect_right(self._start_offsets, start_offset)
        if index == 0:
            return
        kept_epoch = self._epochs[index - 1]
        del self._epochs[: index - 1]
        del self._start_offsets[: index - 1]
        self._epochs[0] = kept_epoch
        self._start_offsets[0] = start_offset

    def clear(self) -> None:
        """Removes every entry (the log was deleted or fully truncated)."""
        self._epochs.clear()
        self._start_offsets.clear()

    # --- checkpoint text -----------------------------------------------------------------------

    def to_checkpoint(self) -> str:
        """The ``leader-epoch-checkpoint`` text: version line, count line, "epoch offset" lines."""
        lines = [str(CHECKPOINT_VERSION), str(len(self._epochs))]
        lines.extend(f"{e} {o}" for e, o in zip(self._epochs, self._start_offsets, strict=True))
        return "\n".join(lines) + "\n"

    @classmethod
    def from_checkpoint(cls, text: str) -> LeaderEpochCache:
        """Parses ``leader-epoch-checkpoint`` text as Kafka's ``CheckpointFile`` reader does.

        Empty text (or a file with only the version line) is an empty cache, as in Kafka.
        Entries are re-applied through :meth:`assign`, so non-monotonic files are repaired the
        same way Kafka repairs them.

        Raises:
            KafkaStorageError: unknown version, malformed line, a count that does not match the
                lines, or a negative epoch/offset.
        """
        lines = text.splitlines()
        if not lines:
            return cls()
        version = _parse_int(lines[0], "version")
        if version != CHECKPOINT_VERSION:
            raise KafkaStorageError(f"unrecognized leader-epoch-checkpoint version {version}")
        if len(lines) == 1:
            return cls()
        expected = _parse_int(lines[1], "entry count")
        cache = cls()
        body = lines[2:]
        for line in body:
            fields = line.split()
            if len(fields) != 2:
                raise KafkaStorageError(f"malformed line in leader-epoch-checkpoint: {line!r}")
            cache.assign(_parse_int(fields[0], "epoch"), _parse_int(fields[1], "offset"))
        if len(body) != expected:
            raise KafkaStorageError(
                f"expected {expected} entries in leader-epoch-checkpoint, found {len(body)}"
            )
        return cache


def rebuild_from_log(
    checkpoint: LeaderEpochCache,
    log_start_offset: int,
    batch_epochs: Iterable[tuple[int, int]],
) -> LeaderEpochCache:
    """The cache of a log, from the epochs stamped on its own batches, and from the checkpoint
    only for what lies before the log start.

    Args:
        checkpoint: the ``leader-epoch-checkpoint`` as loaded (possibly stale, or empty).
        log_start_offset: the log's start offset.
        batch_epochs: (``partitionLeaderEpoch``, base offset) of the log's batches in offset
            order (only where the epoch changes is enough); negative epochs are skipped.

    Why: every batch carries its epoch, so the log itself says which epoch starts where, and a
    replica scans every batch header on open anyway (for the producer state). Deriving the
    cache there makes the checkpoint a record of history only: entries of epochs that wrote
    nothing are lost with it, which answers no OffsetForLeaderEpoch differently (such an
    epoch ends where it starts). So the checkpoint needs no fsync, and a leader change no
    longer costs two on the event loop per partition. Kafka's recovery likewise re-assigns
    epochs from the batches of the segments it recovers. A checkpoint entry inside the log
    that the log contradicts (a truncation whose rewrite was lost) is thereby dropped too.
    """
    history = [e for e in checkpoint.entries if e.start_offset < log_start_offset]
    cache = LeaderEpochCache()
    first = True
    for epoch, base_offset in batch_epochs:
        if epoch < 0:
            continue
        if first:
            # History must not claim an epoch newer than the log's first batch.
            for entry in history:
                if entry.leader_epoch <= epoch:
                    cache.assign(entry.leader_epoch, entry.start_offset)
            first = False
        latest = cache.latest_epoch
        if latest is None or epoch > latest:
            cache.assign(epoch, max(base_offset, 0))
    if first:  # no batch: the history is all there is
        for entry in history:
            cache.assign(entry.leader_epoch, entry.start_offset)
    return cache


def _parse_int(text: str, what: str) -> int:
    stripped = text.strip()
    # int() accepts "1_0" and surrounding spaces; Kafka's Integer.parseInt accepts neither
    # underscores nor an empty string, so check digits explicitly.
    body = stripped[1:] if stripped[:1] == "-" else stripped
    if not body.isascii() or not body.isdigit():
        raise KafkaStorageError(f"malformed {what} in leader-epoch-checkpoint: {text!r}")
    return int(stripped)


def save_checkpoint(
    path: str | os.PathLike[str], cache: LeaderEpochCache, *, durable: bool = True
) -> None:
    """Writes ``cache`` to ``path`` atomically: temporary file, fsync, rename, fsync the dir.

    Kafka writes ``leader-epoch-checkpoint`` the same way. A crash at any point leaves either the
    previous checkpoint or the new one. ``durable=False`` skips both fsyncs: for a cache that
    :func:`rebuild_from_log` re-derives on open, where a lost or torn write costs nothing.

    Raises:
        KafkaStorageError: the write, fsync or rename failed (disk full, I/O error).
    """
    target = os.fspath(path)
    temporary = target + ".tmp"
    data = cache.to_checkpoint().encode("ascii")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, target)
        if not durable:
            return
        directory = os.path.dirname(target) or "."
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise KafkaStorageError(f"cannot write {target}: {exc}") from exc


def load_checkpoint(path: str | os.PathLike[str]) -> LeaderEpochCache:
    """Reads a ``leader-epoch-checkpoint`` file; a missing file is an empty cache.

    Raises:
        KafkaStorageError: unreadable or malformed file.
    """
    target = os.fspath(path)
    try:
        with open(target, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return LeaderEpochCache()
    except OSError as exc:
        raise KafkaStorageError(f"cannot read {target}: {exc}") from exc
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise KafkaStorageError(f"leader-epoch-checkpoint {target} is not ASCII") from exc
    return LeaderEpochCache.from_checkpoint(text)
