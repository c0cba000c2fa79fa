"""quorumq's Trio producer: Kafka's partitioner, batching, a bounded buffer, acks, retries,
idempotence.

Theory of operation (Kafka's ``KafkaProducer`` in miniature):

* **Append.** :meth:`Producer.enqueue` reserves the record's size in the bounded buffer
  (``buffer_memory``; when it is full the call waits for acks to free space: back-pressure, the
  buffer never grows), picks the partition (explicit, else murmur2 of the key, else sticky), and
  appends the record to the open batch of that partition. It returns a :class:`RecordFuture`;
  :meth:`Producer.send` awaits it.
* **Drain.** One sender task wakes when a batch fills (``batch_size``), ages past ``linger_ms``,
  or a flush asks. It groups ready batches by their partition's leader and sends one Produce per
  leader, with at most ``max_in_flight`` Produce requests in flight per broker connection and at
  most **one batch in flight per partition**: that keeps per-partition order through retries
  without Kafka's in-flight re-sequencing.
* **Build once.** A batch is sealed into RecordBatch v2 bytes (``build_batch``, compressed) the
  first time it is sent; an idempotent batch gets its producer id, epoch and base sequence then.
  A retry resends the *same bytes*, so the broker recognises a duplicate (it answers NONE with the
  original offset) and nothing is written twice.
* **Errors.** Retriable errors (leader moved, timeouts, lost connections, NOT_ENOUGH_REPLICAS)
  put the batch back at the front of its partition's queue after ``retry_backoff_ms`` and
  refresh metadata; after ``retries`` retries, or on a non-retriable error, every record of the
  batch fails with the typed :class:`~quorumq.errors.QuorumqError`. A failed idempotent batch
  makes the producer ask a new producer id before its next batch, since the broker's sequence for
  the old one may now have a gap.

``acks=0`` sends with ``expect_response=False``: records complete with offset -1 once written to
the socket. Idempotence needs ``acks="all"`` (Kafka's rule): with acks 0 or 1 it is off.
"""

from __future__ import annotations

import contextlib
import logging
import math
import ssl
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import attrs
import trio

from quorumq import protocol as p
from quorumq.client._connection import SaslConfig
from quorumq.client._metadata import (
    RETRIABLE_LEADER_ERRORS,
    ClusterMetadata,
    TopicPartition,
    is_retriable,
)
from quorumq.client._partitioner import NullKeyStrategy, Partitioner
from quorumq.errors import (
    ErrorCode,
    MessageTooLarge,
    QuorumqError,
    RequestTimedOut,
    UnknownTopicOrPartition,
    error_for_code,
)
from quorumq.protocol.records import (
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    Compression,
    build_batch,
)
from quorumq.protocol.records import Record as _Record

__all__ = ["Producer", "RecordFuture", "RecordMetadata"]

log = logging.getLogger(__name__)

Header = tuple[str, bytes | None]
Acks = Literal["all", 0, 1, -1] | str | int

_COMPRESSION = {
    "none": Compression.NONE,
    "gzip": Compression.GZIP,
    "snappy": Compression.SNAPPY,
    "lz4": Compression.LZ4,
    "zstd": Compression.ZSTD,
}
_RECORD_OVERHEAD = 24  # varint lengths, attributes, deltas: Kafka's estimate per record
_BATCH_OVERHEAD = 61  # the RecordBatch v2 header
_MAX_SEQUENCE = (1 << 31) - 1
_CHECKPOINT_EVERY = 64


@attrs.frozen
class RecordMetadata:
    """Where an acknowledged record landed (Kafka's ``RecordMetadata``).

    ``offset`` is -1 for ``acks=0`` (no answer names it); ``timestamp`` is the broker's
    LogAppendTime when the topic uses it, else the record's create time.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int


class RecordFuture:
    """The pending result of one record: await :meth:`get` for its :class:`RecordMetadata`.

    All records of a batch share the batch's ``done`` event (one event per batch, not per
    record: the producer's hot path).
    """

    __slots__ = ("_done", "_error", "_result", "topic")

    def __init__(self, topic: str, done: trio.Event) -> None:
        self.topic = topic
        self._done = done
        self._result: RecordMetadata | None = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._done.is_set()

    async def get(self) -> RecordMetadata:
        """Waits for the ack; returns where the record landed.

        Raises:
            QuorumqError: the typed error the record failed with (after retries).
            ConnectionError: the broker could not be reached within the retries.
        """
        await self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def result(self) -> RecordMetadata:
        """The result of a done future (raises its error; ``trio.WouldBlock`` if not done)."""
        if not self._done.is_set():
            raise trio.WouldBlock
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def exception(self) -> BaseException | None:
        return self._error

    def _resolve(self, result: RecordMetadata) -> None:
        self._result = result

    def _fail(self, error: BaseException) -> None:
        self._error = error


@attrs.define(eq=False)
class _Batch:
    """Records bound for one partition; sealed into bytes when first sent.

    invariant: once ``payload`` is set the batch's records, producer id and sequence never
    change, so every retry sends the same bytes.
    """

    tp: TopicPartition
    created_at: float
    records: list[_Record] = attrs.Factory(list)
    futures: list[RecordFuture] = attrs.Factory(list)
    size: int = _BATCH_OVERHEAD
    reserved: int = 0
    full: bool = False
    payload: bytes | None = None
    producer_id: int = NO_PRODUCER_ID
    attempts: int = 0
    retry_at: float = 0.0
    done: trio.Event = attrs.Factory(trio.Event)


class _BufferPool:
    """``buffer_memory`` as a byte budget: reserve before append, release after the ack."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._freed = trio.Event()
        self._fifo = trio.Lock()  # waiters are served in arrival order

    def try_reserve(self, size: int) -> bool:
        if self.used + size > self.capacity or self._fifo.locked():
            return False
        self.used += size
        return True

    async def reserve(self, size: int) -> None:
        async with self._fifo:
            while self.used + size > self.capacity:
                await self._freed.wait()
            self.used += size

    def release(self, size: int) -> None:
        self.used -= size
        assert self.used >= 0
        self._freed.set()
        self._freed = trio.Event()


def _parse_acks(acks: Acks) -> int:
    if acks in ("all", -1, "-1"):
        return -1
    if acks in (0, "0"):
        return 0
    if acks in (1, "1"):
        return 1
    raise ValueError(f"acks must be 0, 1 or 'all', not {acks!r}")


class Producer:
    """A Trio Kafka producer. Use ``async with Producer(bootstrap=...) as producer:``.

    Args:
        bootstrap: ``"host:port[,host:port]"`` of one or more brokers.
        sasl: the SASL login (``SaslConfig(mechanism, username, password)``) for a
            SASL_PLAINTEXT or SASL_SSL listener.
        ssl_context: TLS (``ssl.SSLContext``) for an SSL or SASL_SSL listener.
        acks: 0 (no answer), 1 (the leader appended) or ``"all"`` (the high watermark passed).
        linger_ms: how long a batch waits for more records before it is sent.
        batch_size: bytes after which a batch is sent without waiting (``batch.size``).
        buffer_memory: bytes of records held before :meth:`enqueue` waits (``buffer.memory``).
        compression: ``"none"``, ``"gzip"``, ``"snappy"``, ``"lz4"`` or ``"zstd"``.
        enable_idempotence: InitProducerId and per-partition sequences so retries never write
            twice (effective with ``acks="all"`` only, as in Kafka).
        retries: retries of one batch on retriable errors before its records fail.
        retry_backoff_ms: the wait before a retry.
        request_timeout_ms: Produce's ``timeout_ms`` and the wait for any answer.
        delivery_timeout_ms: the longest a record may wait for a leader before it fails
            with ``RequestTimedOut`` (``delivery.timeout.ms``; an in-flight batch finishes its
            request first).
        max_in_flight: Produce requests in flight per broker connection.
        max_request_size: the largest record (and request) accepted (``max.request.size``).
        partitioner: the null-key strategy, or a :class:`Partitioner` (tests seed one).
    """

    def __init__(
        self,
        bootstrap: str | Sequence[str] = "127.0.0.1:9092",
        *,
        acks: Acks = "all",
        linger_ms: float = 5,
        batch_size: int = 16384,
        buffer_memory: int = 32 * 1024 * 1024,
        compression: str = "none",
        compression_level: int | None = None,
        enable_idempotence: bool = True,
        retries: int = 10,
        retry_backoff_ms: int = 100,
        request_timeout_ms: int = 30_000,
        delivery_timeout_ms: int = 120_000,
        max_in_flight: int = 5,
        max_request_size: int = 1024 * 1024,
        client_id: str = "quorumq-producer",
        partitioner: Partitioner | NullKeyStrategy = "sticky",
        sasl: SaslConfig | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.acks = _parse_acks(acks)
        if compression not in _COMPRESSION:
            raise ValueError(f"compression must be one of {sorted(_COMPRESSION)}")
        if max_in_flight < 1 or batch_size < 1 or buffer_memory < 1 or retries < 0:
            raise ValueError("max_in_flight, batch_size, buffer_memory >= 1 and retries >= 0")
        self.compression = _COMPRESSION[compression]
        self.compression_level = compression_level
        self.linger_s = linger_ms / 1000
        self.batch_size = batch_size
        self.idempotent = enable_idempotence and self.acks == -1
        self.retries = retries
        self.retry_backoff_s = retry_backoff_ms / 1000
        self.request_timeout_ms = request_timeout_ms
        self.max_in_flight = max_in_flight
        self.max_request_size = max_request_size
        self.delivery_timeout_s = delivery_timeout_ms / 1000
        self.partitioner = (
            partitioner if isinstance(partitioner, Partitioner) else Partitioner(partitioner)
        )
        self.metadata = ClusterMetadata(
            bootstrap,
            client_id=client_id,
            request_timeout_ms=request_timeout_ms,
            retry_backoff_ms=retry_backoff_ms,
            sasl=sasl,
            ssl_context=ssl_context,
        )
        self._pool = _BufferPool(buffer_memory)
        self._queues: dict[TopicPartition, deque[_Batch]] = {}
        self._in_flight_tps: set[TopicPartition] = set()
        self._in_flight_per_node: dict[int, int] = {}
        self._wakeup = trio.Event()
        self._flushing = 0
        self._producer_id = NO_PRODUCER_ID
        self._producer_epoch = NO_PRODUCER_EPOCH
        self._needs_producer_id = self.idempotent
        self._sequences: dict[TopicPartition, int] = {}
        self._nursery: trio.Nursery | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._closed = False
        self._refreshing = False
        self._appends_since_checkpoint = 0

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Producer:
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            await stack.enter_async_context(self.metadata)
            self._nursery = await stack.enter_async_context(trio.open_nursery())
            await self._nursery.start(self._run_sender)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                await self.flush()
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Stops the sender; records not yet acknowledged fail with ``RequestTimedOut``."""
        self._closed = True
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
        self._nursery = None
        closed = RequestTimedOut("producer closed before the record was acknowledged")
        for queue in self._queues.values():
            for batch in queue:
                self._complete(batch, error=closed)
        self._queues.clear()

    # --- sending -----------------------------------------------------------------------------

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Iterable[Header] = (),
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> RecordMetadata:
        """Sends one record and waits for its ack.

        Raises:
            MessageTooLarge: the record alone is larger than ``max_request_size`` or the buffer.
            QuorumqError: the typed error the record failed with after retries.
            ConnectionError: no broker could be reached.
        """
        future = await self.enqueue(topic, value, key, headers, partition, timestamp_ms)
        return await future.get()

    async def enqueue(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Iterable[Header] = (),
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> RecordFuture:
        """Appends one record to its partition's batch; waits only for buffer space (and, the
        first time, the topic's metadata). Returns the record's future.

        Raises:
            MessageTooLarge: the record can never fit (larger than a request or the buffer).
            UnknownTopicOrPartition: ``partition`` is not a partition of the topic.
        """
        headers = tuple(headers)
        size = _record_size(key, value, headers)
        self._check_size(size)
        checkpointed = False
        if not self._pool.try_reserve(size):
            await self._pool.reserve(size)  # back-pressure: wait for acks to free space
            checkpointed = True
        topic_meta = self.metadata.fresh_topic(topic)
        if topic_meta is None:
            try:
                topic_meta = await self.metadata.topic(topic)
            except BaseException:
                self._pool.release(size)
                raise
            checkpointed = True
        future = self._append(topic, topic_meta, value, key, headers, partition, timestamp_ms, size)
        # The fast path does not yield on every record (a scheduler round per record would cost
        # more than the append), but it does when the sender has work, and every 64 records.
        self._appends_since_checkpoint += 1
        if not checkpointed and (
            self._wakeup.is_set() or self._appends_since_checkpoint >= _CHECKPOINT_EVERY
        ):
            await trio.lowlevel.checkpoint()
            checkpointed = True
        if checkpointed:
            self._appends_since_checkpoint = 0
        return future

    def send_nowait(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Iterable[Header] = (),
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> RecordFuture:
        """Appends one record without waiting.

        Raises:
            trio.WouldBlock: the buffer is full, or the topic's metadata is not known yet
                (``await enqueue(...)`` waits for both).
            MessageTooLarge: the record can never fit.
        """
        headers = tuple(headers)
        size = _record_size(key, value, headers)
        self._check_size(size)
        topic_meta = self.metadata.topics.get(topic)
        if topic_meta is None or topic_meta.error_code or not topic_meta.partitions:
            # Ask for the topic now, so that a later call finds it.
            self.metadata.add_topics([topic])
            self._start_refresh()
            raise trio.WouldBlock
        if not self._pool.try_reserve(size):
            raise trio.WouldBlock
        return self._append(topic, topic_meta, value, key, headers, partition, timestamp_ms, size)

    async def flush(self) -> None:
        """Sends every buffered record now and waits until each is acknowledged or failed."""
        pending = [b for q in self._queues.values() for b in q]
        if not pending:
            return
        self._flushing += 1
        self._wake()
        try:
            for batch in pending:
                await batch.done.wait()
        finally:
            self._flushing -= 1

    def _check_size(self, size: int) -> None:
        limit = min(self.max_request_size, self._pool.capacity)
        if size + _BATCH_OVERHEAD > limit:
            raise MessageTooLarge(
                f"record of {size} bytes exceeds max_request_size/buffer_memory ({limit})"
            )
        if self._closed:
            raise RuntimeError("producer is closed")

    def _append(
        self,
        topic: str,
        topic_meta: Any,
        value: bytes | None,
        key: bytes | None,
        headers: tuple[Header, ...],
        partition: int | None,
        timestamp_ms: int | None,
        size: int,
    ) -> RecordFuture:
        num_partitions = topic_meta.num_partitions
        if partition is None:
            partition = self.partitioner.partition(
                topic, key, num_partitions, topic_meta.available()
            )
        elif not 0 <= partition < num_partitions:
            self._pool.release(size)
            raise UnknownTopicOrPartition(f"{topic} has no partition {partition}")
        tp = TopicPartition(topic, partition)
        queue = self._queues.setdefault(tp, deque())
        batch = queue[-1] if queue else None
        if (
            batch is not None
            and batch.payload is None
            and batch.size + size > self.max_request_size
        ):
            batch.full = True  # one more record would make the request too large
            self._wake()
        if batch is None or batch.full or batch.payload is not None:
            batch = _Batch(tp, trio.current_time())
            queue.append(batch)
        if timestamp_ms is None:
            timestamp_ms = _now_ms()
        future = RecordFuture(topic, batch.done)
        batch.records.append(_Record(len(batch.records), timestamp_ms, key, value, headers))
        batch.futures.append(future)
        batch.size += size
        batch.reserved += size
        if batch.size >= self.batch_size:
            batch.full = True
            if key is None:
                self.partitioner.on_new_batch(
                    topic, num_partitions, partition, topic_meta.available()
                )
            self._wake()
        elif len(batch.records) == 1:
            self._wake()  # the sender must arm the linger timer
        return future

    def _wake(self) -> None:
        self._wakeup.set()

    # --- the sender --------------------------------------------------------------------------

    async def _run_sender(self, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        assert self._nursery is not None
        while True:
            self._wakeup = trio.Event()
            if self._needs_producer_id and self._has_unsealed():
                await self._init_producer_id()
            next_deadline = self._drain()
            if next_deadline is None:
                await self._wakeup.wait()
            else:
                with trio.move_on_at(next_deadline):
                    await self._wakeup.wait()

    def _has_unsealed(self) -> bool:
        return any(b.payload is None for q in self._queues.values() for b in q)

    def _drain(self) -> float | None:
        """Starts one Produce per leader with the ready batches; returns when to look again."""
        now = trio.current_time()
        next_deadline: float | None = None
        per_node: dict[int, list[_Batch]] = {}
        per_node_bytes: dict[int, int] = {}
        need_metadata = False
        for tp, queue in self._queues.items():
            if not queue or tp in self._in_flight_tps:
                continue
            batch = queue[0]
            if batch.attempts:
                ready_at = batch.retry_at
            elif batch.full or self._flushing or len(queue) > 1:
                ready_at = now
            else:
                ready_at = batch.created_at + self.linger_s
            if ready_at > now:
                next_deadline = ready_at if next_deadline is None else min(next_deadline, ready_at)
                continue
            leader = self.metadata.cached_leader(tp)
            if leader is None:
                need_metadata = True
                if now - batch.created_at > self.delivery_timeout_s:
                    if batch.producer_id >= 0:
                        self._needs_producer_id = True  # its sequence was never written
                    self._complete(batch, error=RequestTimedOut(
                        f"{tp.topic}-{tp.partition}: no leader within the delivery timeout"
                    ))  # fmt: skip
                    next_deadline = now
                else:
                    retry = now + self.retry_backoff_s
                    next_deadline = retry if next_deadline is None else min(next_deadline, retry)
                continue
            if self._in_flight_per_node.get(leader, 0) >= self.max_in_flight:
                continue
            self._seal(batch)
            assert batch.payload is not None
            used = per_node_bytes.get(leader, 0)
            if used and used + len(batch.payload) > self.max_request_size:
                next_deadline = now if next_deadline is None else min(next_deadline, now)
                continue
            per_node_bytes[leader] = used + len(batch.payload)
            per_node.setdefault(leader, []).append(batch)
        assert self._nursery is not None
        for node_id, batches in per_node.items():
            for batch in batches:
                self._in_flight_tps.add(batch.tp)
            self._in_flight_per_node[node_id] = self._in_flight_per_node.get(node_id, 0) + 1
            self._nursery.start_soon(self._send_request, node_id, batches)
        if need_metadata:
            self._start_refresh()
        # Drop empty queues so a producer writing to many topics does not accumulate them.
        for tp in [tp for tp, q in self._queues.items() if not q]:
            del self._queues[tp]
        return next_deadline

    def _seal(self, batch: _Batch) -> None:
        if batch.payload is not None:
            return
        producer_id, producer_epoch, base_sequence = NO_PRODUCER_ID, NO_PRODUCER_EPOCH, NO_SEQUENCE
        if self.idempotent and self._producer_id >= 0:
            producer_id, producer_epoch = self._producer_id, self._producer_epoch
            base_sequence = self._sequences.get(batch.tp, 0)
            self._sequences[batch.tp] = (base_sequence + len(batch.records)) & _MAX_SEQUENCE
        batch.producer_id = producer_id
        batch.payload = build_batch(
            batch.records,
            compression=self.compression,
            compression_level=self.compression_level,
            producer_id=producer_id,
            producer_epoch=producer_epoch,
            base_sequence=base_sequence,
        )

    def _start_refresh(self) -> None:
        if not self._refreshing and self._nursery is not None:
            self._refreshing = True
            self._nursery.start_soon(self._refresh_metadata)

    async def _refresh_metadata(self) -> None:
        try:
            await self.metadata.refresh()
        except (ConnectionError, QuorumqError) as exc:
            log.debug("metadata refresh failed: %s", exc)
            await trio.sleep(self.retry_backoff_s)
        finally:
            self._refreshing = False
        self._wake()

    async def _init_producer_id(self) -> None:
        """Asks InitProducerId (any broker: there is no transaction coordinator to find)."""
        for attempt in range(self.retries + 1):
            try:
                _node_id, conn = await self.metadata.any_connection()
                version = conn.version_for(p.ApiKey.INIT_PRODUCER_ID)
                response = await conn.request(
                    p.ApiKey.INIT_PRODUCER_ID,
                    version,
                    p.InitProducerIdRequest(transactional_id=None),
                    timeout_s=self.request_timeout_ms / 1000,
                )
                if response.error_code == ErrorCode.NONE:
                    self._producer_id = response.producer_id
                    self._producer_epoch = response.producer_epoch
                    self._sequences.clear()
                    self._needs_producer_id = False
                    return
                code = response.error_code
                if not is_retriable(code) or attempt == self.retries:
                    break
            except (ConnectionError, QuorumqError) as exc:
                log.debug("InitProducerId failed: %s", exc)
                if isinstance(exc, QuorumqError) and not exc.retriable:
                    break
            await trio.sleep(self.retry_backoff_s)
        # Without a producer id we still deliver, only without broker-side dedup; say so.
        log.warning("InitProducerId failed; sending without idempotence")
        self._needs_producer_id = False
        self._producer_id = NO_PRODUCER_ID

    async def _send_request(self, node_id: int, batches: list[_Batch]) -> None:
        try:
            await self._produce(node_id, batches)
        finally:
            self._in_flight_per_node[node_id] -= 1
            for batch in batches:
                self._in_flight_tps.discard(batch.tp)
            self._wake()

    async def _produce(self, node_id: int, batches: list[_Batch]) -> None:
        by_topic: dict[str, list[p.ProduceRequestPartition]] = {}
        for batch in batches:
            by_topic.setdefault(batch.tp.topic, []).append(
                p.ProduceRequestPartition(partition_index=batch.tp.partition, records=batch.payload)
            )
        request = p.ProduceRequest(
            acks=self.acks,
            timeout_ms=self.request_timeout_ms,
            topics=[p.ProduceRequestTopic(name=t, partitions=ps) for t, ps in by_topic.items()],
        )
        try:
            conn = await self.metadata.connection(node_id)
            version = conn.version_for(p.ApiKey.PRODUCE)
            response = await conn.request(
                p.ApiKey.PRODUCE,
                version,
                request,
                expect_response=self.acks != 0,
                timeout_s=self.request_timeout_ms / 1000 + 5,
            )
        except (ConnectionError, RequestTimedOut) as exc:
            # The request may or may not have been written: retrying the same bytes is safe
            # with idempotence (the broker dedups) and Kafka's at-least-once without it.
            self.metadata.close_connection(node_id)
            self.metadata.invalidate()
            for batch in batches:
                self._retry_or_fail(batch, exc, ErrorCode.NETWORK_EXCEPTION)
            return
        except QuorumqError as exc:
            for batch in batches:
                self._retry_or_fail(batch, exc, int(exc.code))
            return
        if response is None:  # acks=0
            for batch in batches:
                self._complete(batch, base_offset=-1)
            return
        answers = {(t.name, pr.partition_index): pr for t in response.topics for pr in t.partitions}
        for batch in batches:
            answer = answers.get(batch.tp)
            if answer is None:
                error = QuorumqError(
                    f"produce response names no {batch.tp.topic}-{batch.tp.partition}"
                )
                self._retry_or_fail(batch, error, ErrorCode.UNKNOWN_SERVER_ERROR)
                continue
            code = answer.error_code
            if code in (ErrorCode.NONE, ErrorCode.DUPLICATE_SEQUENCE_NUMBER):
                self._complete(
                    batch,
                    base_offset=answer.base_offset,
                    log_append_time=answer.log_append_time_ms,
                )
                continue
            if code in RETRIABLE_LEADER_ERRORS:
                self.metadata.invalidate()
            message = answer.error_message or _code_name(code)
            cls = error_for_code(code)
            self._retry_or_fail(
                batch, cls(f"produce to {batch.tp.topic}-{batch.tp.partition}: {message}"), code
            )

    def _retry_or_fail(self, batch: _Batch, error: BaseException, code: int) -> None:
        retriable = code == ErrorCode.NETWORK_EXCEPTION or is_retriable(code)
        if retriable and batch.attempts < self.retries and not self._closed:
            batch.attempts += 1
            batch.retry_at = trio.current_time() + self.retry_backoff_s * min(
                2 ** (batch.attempts - 1), 10
            )
            log.debug("retrying %s (attempt %d): %s", batch.tp, batch.attempts, error)
            return  # the batch is still at the front of its queue
        if batch.producer_id >= 0:
            self._needs_producer_id = True  # the broker's sequence may now have a gap
        self._complete(batch, error=error)

    def _complete(
        self,
        batch: _Batch,
        *,
        base_offset: int = -1,
        log_append_time: int = -1,
        error: BaseException | None = None,
    ) -> None:
        if batch.done.is_set():
            return
        queue = self._queues.get(batch.tp)
        if queue and queue[0] is batch:
            queue.popleft()
        elif queue and batch in queue:
            queue.remove(batch)
        self._pool.release(batch.reserved)
        batch.reserved = 0
        for record, future in zip(batch.records, batch.futures, strict=True):
            if error is not None:
                future._fail(error)
            else:
                offset = base_offset + record.offset if base_offset >= 0 else -1
                timestamp = log_append_time if log_append_time >= 0 else record.timestamp
                future._resolve(
                    RecordMetadata(batch.tp.topic, batch.tp.partition, offset, timestamp)
                )
        batch.done.set()


def _record_size(key: bytes | None, value: bytes | None, headers: tuple[Header, ...]) -> int:
    size = _RECORD_OVERHEAD + (len(key) if key else 0) + (len(value) if value else 0)
    for name, header_value in headers:
        size += len(name) + (len(header_value) if header_value else 0) + 2
    return size


def _now_ms() -> int:
    return math.floor(time.time() * 1000)


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error code {code}"
