"""Idempotent-producer state of one partition: Kafka's ``ProducerStateManager``, sans-I/O.

Theory of operation: an idempotent producer (KIP-98) stamps every batch with its producer id,
producer epoch and the sequence number of its first record, counted per partition. The leader
keeps, per producer id, the epoch and the metadata of the last five batches
(:data:`NUM_BATCHES_TO_RETAIN`, the most a client keeps in flight:
``max.in.flight.requests.per.connection`` ≤ 5), and before each append asks :meth:`check`:

- an older epoch than the one seen is a zombie: :class:`InvalidProducerEpoch` (Kafka ≥ 2.7
  answers INVALID_PRODUCER_EPOCH, not PRODUCER_FENCED, so the client can recover);
- a newer epoch must start at sequence 0, else :class:`OutOfOrderSequenceNumber`;
- the same epoch and the same first and last sequence as one of the last five batches is a
  retry of a batch already in the log: :meth:`check` returns a :class:`DuplicateBatch` with the
  original offsets and the broker appends nothing;
- the same epoch with any other first sequence than ``last_sequence + 1`` (wrapping at 2**31)
  is a gap (or a retry too old to be retained): :class:`OutOfOrderSequenceNumber`;
- a producer id with no state here accepts any sequence. This is Kafka since 2.5 (KIP-360):
  a producer whose batches were all removed by retention, or that only wrote to other
  partitions until now, must not be refused; UNKNOWN_PRODUCER_ID is no longer sent.

After a successful append the log calls :meth:`on_append` with the assigned offsets. Followers
call only :meth:`on_append` (Kafka's REPLICATION origin: the leader validated already). On open,
the log rebuilds the state by feeding every batch header to :meth:`load_from_batches` (headers
only: the producer fields sit in the 61-byte header, records are never decoded), and after a
truncation :meth:`truncate_to` rebuilds from the surviving headers.

Duplicates, and what the broker answers: Kafka ≥ 1.0 (``UnifiedLog.append`` after
``analyzeAndValidateProducerState``) answers a duplicate with error NONE and the *original*
``base_offset`` (``log_append_time`` = the batch's timestamp), so every client completes the
retried batch with its true offset. DUPLICATE_SEQUENCE_NUMBER is what 0.11 brokers sent; Java's
client and librdkafka still treat it as success but lose the offset (Java reports -1). We
therefore recommend the broker answer NONE + :attr:`DuplicateBatch.first_offset`;
:class:`quorumq.errors.DuplicateSequenceNumber` stays available for the issue's literal wording.

Not covered: transactions (``currentTxnFirstOffset``, coordinator epochs, the last stable
offset). Control batches only move the producer epoch, as Kafka's end markers do.

The broker must run check → append → on_append for one partition without a checkpoint in
between (no ``await``): two concurrent retries of the same batch would otherwise both pass.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import attrs
from crc32c import crc32c

from quorumq.errors import (
    CorruptRecord,
    InvalidProducerEpoch,
    InvalidRecord,
    OutOfOrderSequenceNumber,
)
from quorumq.protocol.records import NO_PRODUCER_EPOCH, NO_SEQUENCE, BatchHeader

NUM_BATCHES_TO_RETAIN = 5
"""Batches remembered per producer for duplicate detection (Kafka's constant of that name)."""

DEFAULT_PRODUCER_ID_EXPIRATION_MS = 86_400_000
"""Kafka's ``producer.id.expiration.ms``: state of a producer silent this long is dropped."""

_MAX_SEQUENCE = (1 << 31) - 1

SNAPSHOT_VERSION = 1
_SNAPSHOT_HEADER = struct.Struct(">hI")  # version, CRC-32C of everything after it
_SNAPSHOT_BODY = struct.Struct(">qi")  # map_end_offset, producer count
_SNAPSHOT_PRODUCER = struct.Struct(">qhqb")  # producer_id, epoch, last_timestamp, batch count
_SNAPSHOT_BATCH = struct.Struct(">iiqqq")  # first/last sequence, first/last offset, timestamp


@attrs.frozen
class BatchMetadata:
    """What is remembered of one appended producer batch (Kafka's ``BatchMetadata``)."""

    first_sequence: int
    last_sequence: int
    first_offset: int
    last_offset: int
    timestamp: int  # the batch's max_timestamp (the log append time under LOG_APPEND_TIME)


@attrs.frozen
class DuplicateBatch:
    """:meth:`ProducerStateManager.check`'s verdict on a retried batch that is already in the log.

    The broker appends nothing and answers NONE with ``base_offset=first_offset``, exactly as
    it answered the first attempt (and ``log_append_time_ms=timestamp`` for LOG_APPEND_TIME
    topics).
    """

    producer_id: int
    producer_epoch: int
    first_offset: int
    last_offset: int
    timestamp: int


@attrs.define
class ProducerStateEntry:
    """One producer id's state in this partition (Kafka's ``ProducerStateEntry``).

    invariant: ``len(batches) <= NUM_BATCHES_TO_RETAIN``, oldest first, all of
    ``producer_epoch`` (an epoch change clears them).
    """

    producer_id: int
    producer_epoch: int
    batches: list[BatchMetadata] = attrs.Factory(list)
    last_timestamp: int = -1  # max timestamp of the producer's last batch (for expiration)

    @property
    def last_sequence(self) -> int:
        """The sequence of the producer's last record here, NO_SEQUENCE before any batch."""
        return self.batches[-1].last_sequence if self.batches else NO_SEQUENCE

    @property
    def last_offset(self) -> int:
        """The offset of the producer's last record here, -1 before any batch."""
        return self.batches[-1].last_offset if self.batches else -1

    def find_duplicate(self, first_sequence: int, last_sequence: int) -> BatchMetadata | None:
        """The retained batch with exactly this sequence range, if any."""
        for batch in self.batches:
            if batch.first_sequence == first_sequence and batch.last_sequence == last_sequence:
                return batch
        return None

    def update_epoch(self, producer_epoch: int) -> None:
        """Moves to ``producer_epoch``; the batches of another epoch say nothing about it."""
        if producer_epoch != self.producer_epoch:
            self.producer_epoch = producer_epoch
            self.batches.clear()

    def add_batch(self, producer_epoch: int, batch: BatchMetadata) -> None:
        self.update_epoch(producer_epoch)
        self.batches.append(batch)
        if len(self.batches) > NUM_BATCHES_TO_RETAIN:
            del self.batches[0]
        self.last_timestamp = batch.timestamp


def in_sequence(last_sequence: int, next_sequence: int) -> bool:
    """Whether ``next_sequence`` directly follows ``last_sequence`` (sequences wrap at 2**31)."""
    if last_sequence == _MAX_SEQUENCE:
        return next_sequence == 0
    return next_sequence == last_sequence + 1


@attrs.define
class ProducerStateManager:
    """The idempotent-producer state of one partition.

    invariant: ``map_end_offset`` is past every batch fed to :meth:`on_append` (Kafka's
    ``lastMapOffset``): state exists for exactly the batches below it.
    """

    producers: dict[int, ProducerStateEntry] = attrs.Factory(dict)
    map_end_offset: int = 0

    def check(self, header: BatchHeader) -> DuplicateBatch | None:
        """Validates a client's batch against the producer's state, before it is appended.

        Args:
            header: the batch as the client sent it (its offsets are not used).

        Returns:
            None when the batch is to be appended (also for non-idempotent batches,
            ``producer_id`` -1, and control batches); a :class:`DuplicateBatch` when it is a
            retry of one of the producer's last five batches, which must not be appended again.

        Raises:
            InvalidRecord: a producer id without a sequence (Kafka's ``LogValidator``).
            InvalidProducerEpoch: the epoch is older than the producer's current one.
            OutOfOrderSequenceNumber: a new epoch not starting at sequence 0, or a first
                sequence that does not follow the producer's last one.
        """
        producer_id = header.producer_id
        if producer_id < 0 or header.is_control:
            return None
        first_sequence = header.base_sequence
        if first_sequence < 0:
            raise InvalidRecord(f"batch of producer {producer_id} has sequence {first_sequence}")
        entry = self.producers.get(producer_id)
        if entry is None:
            return None  # KIP-360: no state here, accept any sequence.
        epoch = header.producer_epoch
        if epoch == entry.producer_epoch:
            duplicate = entry.find_duplicate(first_sequence, header.last_sequence)
            if duplicate is not None:
                return DuplicateBatch(
                    producer_id,
                    epoch,
                    duplicate.first_offset,
                    duplicate.last_offset,
                    duplicate.timestamp,
                )
        if epoch < entry.producer_epoch:
            raise InvalidProducerEpoch(
                f"producer {producer_id} epoch {epoch} is older than its current epoch "
                f"{entry.producer_epoch}"
            )
        if epoch != entry.producer_epoch:
            if first_sequence != 0 and entry.producer_epoch != NO_PRODUCER_EPOCH:
                raise OutOfOrderSequenceNumber(
                    f"producer {producer_id} starts epoch {epoch} at sequence {first_sequence}, "
                    f"not 0"
                )
            return None
        if entry.producer_epoch != NO_PRODUCER_EPOCH and not in_sequence(
            entry.last_sequence, first_sequence
        ):
            raise OutOfOrderSequenceNumber(
                f"producer {producer_id} epoch {epoch} sent sequence {first_sequence} after "
                f"{entry.last_sequence}"
            )
        return None

    def on_append(self, header: BatchHeader, base_offset: int | None = None) -> None:
        """Records a batch that is now in the log (leader append, follower append, recovery).

        Args:
            header: the appended batch's header.
            base_offset: the offset the log assigned, when ``header`` still carries the
                client's (saves re-parsing the patched batch); defaults to ``header.base_offset``.
        """
        first_offset = header.base_offset if base_offset is None else base_offset
        last_offset = first_offset + header.last_offset_delta
        if last_offset >= self.map_end_offset:
            self.map_end_offset = last_offset + 1
        producer_id = header.producer_id
        if producer_id < 0:
            return
        entry = self.producers.get(producer_id)
        if entry is None:
            entry = self.producers[producer_id] = ProducerStateEntry(
                producer_id, header.producer_epoch
            )
        if header.is_control:
            # A transaction marker moves the epoch (the coordinator bumps it on abort) and
            # carries no sequence.
            entry.update_epoch(header.producer_epoch)
            entry.last_timestamp = header.max_timestamp
            return
        entry.add_batch(
            header.producer_epoch,
            BatchMetadata(
                header.base_sequence,
                header.last_sequence,
                first_offset,
                last_offset,
                header.max_timestamp,
            ),
        )

    def load_from_batches(self, headers: Iterable[BatchHeader]) -> None:
        """Replays the headers of the log's batches, oldest first (on open, after truncation).

        Headers at or past :attr:`map_end_offset` are applied; earlier ones were already.
        """
        for header in headers:
            if header.base_offset >= self.map_end_offset:
                self.on_append(header)

    def truncate_to(self, offset: int, headers: Iterable[BatchHeader]) -> None:
        """Forgets the batches at and above ``offset`` after the log truncated there.

        Per-producer state cannot be rolled back (older batches than the retained five are
        gone), so it is rebuilt from ``headers``, the headers of the log from its start. They
        are consumed only when something at or above ``offset`` was applied, so pass a lazy
        iterable (a generator over the segments); headers at or past ``offset`` are ignored.
        """
        if offset >= self.map_end_offset:
            return
        self.producers.clear()
        self.map_end_offset = 0
        self.load_from_batches(h for h in headers if h.base_offset < offset)

    def to_snapshot(self) -> bytes:
        """Serializes the state, to be stored next to the log as of :attr:`map_end_offset`.

        With a snapshot, opening a log replays only the headers from ``map_end_offset`` on
        (Kafka's ``<offset>.snapshot``; unlike Kafka's, ours keeps all five batches per
        producer, so duplicates are still detected right after a restart).
        """
        out = bytearray(_SNAPSHOT_HEADER.size)
        out += _SNAPSHOT_BODY.pack(self.map_end_offset, len(self.producers))
        for entry in self.producers.values():
            out += _SNAPSHOT_PRODUCER.pack(
                entry.producer_id, entry.producer_epoch, entry.last_timestamp, len(entry.batches)
            )
            for b in entry.batches:
                out += _SNAPSHOT_BATCH.pack(
                    b.first_sequence, b.last_sequence, b.first_offset, b.last_offset, b.timestamp
                )
        _SNAPSHOT_HEADER.pack_into(out, 0, SNAPSHOT_VERSION, crc32c(memoryview(out)[6:]))
        return bytes(out)

    @classmethod
    def from_snapshot(cls, data: bytes | bytearray | memoryview) -> ProducerStateManager:
        """Restores a state written by :meth:`to_snapshot`.

        Raises:
            CorruptRecord: a torn or corrupt snapshot, or another version; the caller then
                deletes it and rebuilds from the log's headers, as Kafka does.
        """
        try:
            version, crc = _SNAPSHOT_HEADER.unpack_from(data, 0)
            if version != SNAPSHOT_VERSION:
                raise CorruptRecord(f"producer state snapshot version {version}")
            if crc32c(memoryview(data)[6:]) != crc:
                raise CorruptRecord("producer state snapshot fails its CRC-32C")
            position = _SNAPSHOT_HEADER.size
            map_end_offset, count = _SNAPSHOT_BODY.unpack_from(data, position)
            position += _SNAPSHOT_BODY.size
            state = cls(map_end_offset=map_end_offset)
            for _ in range(count):
                producer_id, epoch, last_timestamp, batch_count = _SNAPSHOT_PRODUCER.unpack_from(
                    data, position
                )
                position += _SNAPSHOT_PRODUCER.size
                batches = []
                for _ in range(batch_count):
                    batches.append(BatchMetadata(*_SNAPSHOT_BATCH.unpack_from(data, position)))
                    position += _SNAPSHOT_BATCH.size
                state.producers[producer_id] = ProducerStateEntry(
                    producer_id, epoch, batches, last_timestamp
                )
        except struct.error:
            raise CorruptRecord("producer state snapshot truncated") from None
        if position != len(data):
            raise CorruptRecord("producer state snapshot has trailing bytes")
        return state

    def last_entry(self, producer_id: int) -> ProducerStateEntry | None:
        """The state of ``producer_id`` in this partition, if any."""
        return self.producers.get(producer_id)

    def remove_expired(
        self, now_ms: int, producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS
    ) -> list[int]:
        """Drops producers whose last batch is older than ``producer.id.expiration.ms``.

        Returns:
            The producer ids removed.
        """
        expired = [
            producer_id
            for producer_id, entry in self.producers.items()
            if now_ms - entry.last_timestamp >= producer_id_expiration_ms
        ]
        for producer_id in expired:
            del self.producers[producer_id]
        return expired
