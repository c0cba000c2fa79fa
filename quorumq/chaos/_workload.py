"""A produce workload that keeps its history, and the read-back that ends a chaos run.

The workload drives librdkafka (confluent-kafka), the client most Kafka users run, so what we
measure is what they would see. Each record's value is unique (``<run>-<seq>`` padded to the
record size): the checker identifies records by value. Latency is from ``produce()`` to the
delivery report, as in ``quorumq bench produce``; each report also stamps its time, so a caller
can cut the history into windows (before, during, after a fault).

Every loop is bounded by a record count and a deadline.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs

from quorumq.chaos._history import ProduceAttempt, ReadRecord
from quorumq.errors import QuorumqError


class WorkloadError(QuorumqError):
    """The workload could not run (client missing, topic unreadable)."""


@attrs.frozen
class Delivery:
    """One record's fate: when it was handed to the client, and when (if) it was answered."""

    value: bytes
    partition: int
    sent_at: float
    done_at: float | None
    acked: bool
    offset: int | None
    error: str | None = None

    @property
    def latency_ms(self) -> float | None:
        if not self.acked or self.done_at is None:
            return None
        return (self.done_at - self.sent_at) * 1000


@attrs.frozen
class WorkloadResult:
    """Everything the workload did, with times on ``time.perf_counter``'s clock."""

    deliveries: tuple[Delivery, ...]
    started_at: float
    finished_at: float
    events: tuple[tuple[float, str], ...] = ()
    """(time, what) for each fault the workload ran (``at`` callbacks)."""

    def attempts(self) -> list[ProduceAttempt]:
        return [
            ProduceAttempt(
                key=None, value=d.value, acked=d.acked, partition=d.partition, offset=d.offset
            )
            for d in self.deliveries
        ]

    @property
    def acked(self) -> int:
        return sum(d.acked for d in self.deliveries)

    def latencies_ms(
        self, sent_from: float | None = None, sent_to: float | None = None
    ) -> list[float]:
        """Latencies of acked records sent in ``[sent_from, sent_to)`` (all if None)."""
        out = []
        for d in self.deliveries:
            lat = d.latency_ms
            if lat is None:
                continue
            if sent_from is not None and d.sent_at < sent_from:
                continue
            if sent_to is not None and d.sent_at >= sent_to:
                continue
            out.append(lat)
        return out

    def acks_per_s(self, start: float, end: float) -> float:
        """Acknowledgements that arrived in ``[start, end)``, per second."""
        if end <= start:
            return 0.0
        n = sum(1 for d in self.deliveries if d.acked and d.done_at and start <= d.done_at < end)
        return n / (end - start)

    def longest_ack_gap_s(self, start: float | None = None) -> float:
        """The longest time with no acknowledgement at all, after ``start`` (while producing)."""
        times = sorted(d.done_at for d in self.deliveries if d.acked and d.done_at is not None)
        if start is not None:
            times = [start, *(t for t in times if t >= start)]
        if len(times) < 2:
            return 0.0
        return max(b - a for a, b in itertools.pairwise(times))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _confluent():  # type: ignore[no-untyped-def]
    try:
        import confluent_kafka
    except ImportError:
        raise WorkloadError("confluent-kafka is not installed: run `uv sync`") from None
    return confluent_kafka


def produce_workload(
    bootstrap: str,
    topic: str,
    *,
    records: int,
    record_size: int = 100,
    acks: str = "all",
    partitions: Sequence[int] = (0,),
    rate: float | None = None,
    duration_s: float | None = None,
    timeout_s: float = 60.0,
    at: Sequence[tuple[float, Callable[[], str]]] = (),
    run_id: str = "r",
    extra_config: dict[str, object] | None = None,
) -> WorkloadResult:
    """Produces up to ``records`` unique values round-robin over ``partitions`` and records each
    one's fate.

    Args:
        rate: records/s pacing (None: flat out).
        duration_s: stop sending after this many seconds even if ``records`` are not all sent.
        timeout_s: hard bound for the whole call, delivery waits included; records without an
            answer by then count as unacknowledged.
        at: (seconds after start, action) faults to run from the produce loop; an action
            returns a description, stored in ``events``.
    """
    ck = _confluent()
    conf: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "acks": acks,
        "linger.ms": 2,
        "batch.size": 262_144,
        "queue.buffering.max.messages": 200_000,
        "enable.idempotence": False,
        "compression.type": "none",
        "socket.nagle.disable": True,  # TCP_NODELAY, as Kafka's Java client (bench/_kafka.py)
        "request.timeout.ms": 5_000,
        "message.timeout.ms": max(1_000, int(timeout_s * 1000 * 0.6)),
        "topic.metadata.refresh.interval.ms": 1_000,
        "retry.backoff.ms": 50,
        "reconnect.backoff.max.ms": 200,
        "socket.connection.setup.timeout.ms": 2_000,
        # Refused connections to a killed broker are the experiment, not news: errors only
        # above "error" (librdkafka logs every failed reconnect at level 3).
        "log_level": 2,
    }
    conf.update(extra_config or {})
    producer = ck.Producer(conf)
    pad = max(0, record_size)
    deliveries: list[Delivery | None] = []
    pending_actions = sorted(at, key=lambda item: item[0])
    events: list[tuple[float, str]] = []

    def reporter(index: int, value: bytes, partition: int, sent_at: float):  # type: ignore[no-untyped-def]
        def on_delivery(err: object, msg: object) -> None:
            now = time.perf_counter()
            if err is None:
                # acks=0: no answer, so no offset. librdkafka says None, a negative logical
                # offset, or (measured, after the connection to a killed leader broke) batch-
                # relative numbers 0, 1, 2...: none of them is the record's offset.
                offset = msg.offset() if acks != "0" else None  # type: ignore[attr-defined]
                if offset is None:
                    offset = -1
                deliveries[index] = Delivery(value, partition, sent_at, now, True,
                                             offset if offset >= 0 else None)  # fmt: skip
            else:
                deliveries[index] = Delivery(value, partition, sent_at, now, False, None, str(err))

        return on_delivery

    # Metadata and connections first, outside the measured window (bounded).
    producer.list_topics(topic, timeout=10)
    start = time.perf_counter()
    hard_deadline = start + timeout_s
    send_deadline = start + (duration_s if duration_s is not None else timeout_s * 0.6)
    interval = 1.0 / rate if rate else 0.0
    sent = 0
    while sent < records:
        now = time.perf_counter()
        if now >= send_deadline:
            break
        while pending_actions and now - start >= pending_actions[0][0]:
            _, action = pending_actions.pop(0)
            events.append((time.perf_counter(), action()))
            now = time.perf_counter()
        if rate:
            target = start + sent * interval
            if target > now:
                producer.poll(min(target - now, 0.05))
                continue
        value = f"{run_id}-{sent:09d}-".encode().ljust(pad, b"x")
        partition = partitions[sent % len(partitions)]
        deliveries.append(None)
        try:
            producer.produce(
                topic, value, partition=partition,
                on_delivery=reporter(sent, value, partition, time.perf_counter()),
            )  # fmt: skip
        except BufferError:
            deliveries.pop()
            producer.poll(0.01)
            continue
        sent += 1
        if sent % 500 == 0:
            producer.poll(0)
    # Faults scheduled after the last send still run (a stall must end, a broker come back).
    for when, action in pending_actions:
        delay = start + when - time.perf_counter()
        if delay > 0:
            producer.poll(min(delay, max(0.0, hard_deadline - time.perf_counter())))
        events.append((time.perf_counter(), action()))
    producer.flush(max(0.0, hard_deadline - time.perf_counter()))
    finished = time.perf_counter()
    out = tuple(
        d
        if d is not None
        else Delivery(
            f"{run_id}-{i:09d}-".encode().ljust(pad, b"x"),
            partitions[i % len(partitions)],
            0.0,
            None,
            False,
            None,
            "no answer before the deadline",
        )
        for i, d in enumerate(deliveries)
    )
    return WorkloadResult(out, start, finished, tuple(events))


def _consumer(bootstrap: str, group: str, **extra: Any) -> Any:
    """A librdkafka consumer with the settings every consumer here shares: quiet, and quick to
    see a leader move (metadata every second, fetches that wait at most 100 ms). ``extra``:
    more settings, with ``_`` for ``.`` in their names (``enable_auto_commit=False``)."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "fetch.wait.max.ms": 100,
        "topic.metadata.refresh.interval.ms": 1_000,
        "log_level": 2,
    }
    config.update({name.replace("_", "."): value for name, value in extra.items()})
    return _confluent().Consumer(config)


def wait_leaders_serving(
    bootstrap: str, topic: str, partitions: Sequence[int], *, timeout_s: float = 30.0
) -> None:
    """Returns once every listed partition's leader answers for it (a ListOffsets), without
    writing anything.

    Why: Metadata is built from the controller's image and names a new topic's leaders a
    moment before they have opened their replicas (a worker thread does that); an acks=0
    write sent in between is dropped without a word, which a workload would count as lost.

    Raises:
        WorkloadError: a partition has no serving leader within ``timeout_s``.
    """
    consumer = _consumer(
        bootstrap, f"quorumq-ready-{time.monotonic_ns()}", enable_auto_commit=False
    )
    try:
        _end_offsets(consumer, topic, partitions, time.perf_counter() + timeout_s, retry_s=0.1)
    finally:
        consumer.close()


def _end_offsets(
    consumer: Any, topic: str, partitions: Sequence[int], deadline: float, *, retry_s: float
) -> dict[int, int]:
    """Each partition's high watermark, asked of its leader (ListOffsets), retried until the
    leader answers or ``deadline`` (``time.perf_counter()``) passes.

    Raises:
        WorkloadError: a partition's leader did not answer in time.
    """
    ck = _confluent()
    ends: dict[int, int] = {}
    for part in partitions:
        while True:
            try:
                _low, high = consumer.get_watermark_offsets(
                    ck.TopicPartition(topic, part), timeout=5, cached=False
                )
                ends[part] = high
                break
            except ck.KafkaException as exc:
                if time.perf_counter() > deadline:
                    raise WorkloadError(f"{topic}/{part}: end offset unknown: {exc}") from None
                time.sleep(retry_s)
    return ends


def read_back(
    bootstrap: str, topic: str, partitions: Sequence[int], *, timeout_s: float = 30.0
) -> list[ReadRecord]:
    """Reads every listed partition from its start to its current end (the high watermark).

    Raises:
        WorkloadError: a partition's end cannot be learned within ``timeout_s``.
    """
    ck = _confluent()
    consumer = _consumer(
        bootstrap,
        f"quorumq-readback-{time.monotonic_ns()}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        enable_partition_eof=True,
    )
    deadline = time.perf_counter() + timeout_s
    try:
        ends = _end_offsets(consumer, topic, partitions, deadline, retry_s=0.2)
        out: list[ReadRecord] = []
        todo = {part for part, end in ends.items() if end > 0}
        consumer.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in todo])
        while todo and time.perf_counter() < deadline:
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                error = msg.error()
                if error is not None:
                    # The end may be a control batch (a new quorum leader's LEADER_CHANGE
                    # record), which consumers skip: no record ever has the end's offset - 1.
                    if error.code() == ck.KafkaError._PARTITION_EOF and msg.offset() >= ends.get(
                        msg.partition(), 0
                    ):
                        todo.discard(msg.partition())
                    continue
                part, offset = msg.partition(), msg.offset()
                out.append(ReadRecord(part, offset, msg.key(), msg.value() or b""))
                if offset + 1 >= ends.get(part, 0):
                    todo.discard(part)
        if todo:
            raise WorkloadError(f"{topic}: partitions {sorted(todo)} not read to the end in time")
        return out
    finally:
        consumer.close()


@contextlib.contextmanager
def tailing(
    bootstrap: str, topic: str, partitions: Sequence[int], *, stop_timeout_s: float = 15.0
) -> Iterator[list[ReadRecord]]:
    """A consumer that follows ``partitions`` from their start in a thread of its own while
    the block runs (faults included); yields the list it fills with what it received. It
    stops when the block ends (joined within ``stop_timeout_s``). Run it inside a network
    lab's ``entered()``: its thread, and librdkafka's, inherit the namespace.

    Why: the read-back after a run shows what survived; only a consumer reading during the
    faults shows whether a record was visible before it was safe (:func:`check_reads`).
    """
    ck = _confluent()
    seen: list[ReadRecord] = []
    stop = threading.Event()
    consumer = _consumer(bootstrap, f"quorumq-tail-{time.monotonic_ns()}", enable_auto_commit=False)
    consumer.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in partitions])

    def run() -> None:
        while not stop.is_set():
            for msg in consumer.consume(num_messages=1_000, timeout=0.2):
                if msg.error() is None:
                    seen.append(
                        ReadRecord(msg.partition(), msg.offset(), msg.key(), msg.value() or b"")
                    )

    thread = threading.Thread(target=run, name=f"tail-{topic}", daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(stop_timeout_s)
        if not thread.is_alive():
            consumer.close()


@attrs.define
class GroupRun:
    """What the members of a consumer group received (``consuming_group``), shared with
    their threads."""

    consumed: list[ReadRecord] = attrs.field(factory=list)
    received: set[bytes] = attrs.field(factory=set)
    """The distinct values in ``consumed`` (what :meth:`wait_for` asks about)."""
    commit_failures: int = 0
    rejoins: int = 0
    """Times a member left the group and joined again (each one a rebalance)."""
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def add(self, records: list[ReadRecord]) -> None:
        with self._lock:
            self.consumed.extend(records)
            self.received.update(r.value for r in records)

    def failed_commit(self) -> None:
        with self._lock:
            self.commit_failures += 1

    def rejoined(self) -> None:
        with self._lock:
            self.rejoins += 1

    def wait_for(self, values: set[bytes], timeout_s: float) -> set[bytes]:
        """Waits until the members have received every one of ``values``, or ``timeout_s``;
        returns those still missing."""
        deadline = time.perf_counter() + timeout_s
        while True:
            with self._lock:
                missing = values - self.received
            if not missing or time.perf_counter() >= deadline:
                return missing
            time.sleep(0.2)


@contextlib.contextmanager
def consuming_group(
    bootstrap: str, topic: str, partitions: Sequence[int], members: int, *,
    group: str | None = None, rejoin_every_s: float | None = 8.0, stop_timeout_s: float = 15.0,
    enter: Callable[[int], contextlib.AbstractContextManager[None]] | None = None,
) -> Iterator[GroupRun]:  # fmt: skip
    """``members`` librdkafka consumers of one group subscribed to ``topic``, each in a thread
    of its own, committing synchronously after every batch it receives (at-least-once) while
    the block runs. Each member closes its consumer (leaving the group) and joins again every
    ``rejoin_every_s``, the members staggered, so the group rebalances throughout. Run it
    inside a network lab's ``entered()``, as :func:`tailing`; with ``enter``, member *i*
    runs inside ``enter(i)`` (its own host of the lab, so that it can be cut off alone).

    Why: a group must hand every record to some member even while brokers die, pause or are
    cut off and the coordinator moves: a member that takes over a partition resumes from the
    last committed offset, so nothing may be skipped (duplicates are allowed). Broker faults
    alone rarely make a group read its committed offsets (a new coordinator loads the group
    as it was, and heartbeats go on); the rejoins make every takeover go through them.

    The group starts with offset 0 committed for every partition, and its members reset to
    the *latest* offset when a committed offset is out of range. A correct cluster never
    needs that reset (a consumer commits only what it read, which is committed, which
    survives), and where one happens it skips records, which the check then finds. With
    ``earliest`` it would re-read from the start instead and hide any skip made before it.
    """
    ck = _confluent()
    run = GroupRun()
    stop = threading.Event()
    group = group or f"quorumq-soak-{time.monotonic_ns()}"
    starter = _consumer(bootstrap, group)
    deadline = time.perf_counter() + 30
    try:
        while True:
            try:
                starter.commit(
                    offsets=[ck.TopicPartition(topic, p, 0) for p in partitions],
                    asynchronous=False,
                )
                break
            except ck.KafkaException as exc:  # the coordinator still loading, or moving
                if time.perf_counter() > deadline:
                    raise WorkloadError(f"group {group}: first commit failed: {exc}") from None
                time.sleep(0.2)
    finally:
        starter.close()

    def member(index: int) -> None:
        with contextlib.nullcontext() if enter is None else enter(index):
            # Staggered: the first session of member i lasts (i + 1) / members of the period.
            length = None if rejoin_every_s is None else rejoin_every_s * (index + 1) / members
            session(index, length)
            while not stop.is_set():
                run.rejoined()
                session(index, rejoin_every_s)

    def session(index: int, length_s: float | None) -> None:
        until = None if length_s is None else time.perf_counter() + length_s
        consumer = _consumer(
            bootstrap,
            group,
            client_id=f"{group}-{index}",
            enable_auto_commit=False,
            auto_offset_reset="latest",
            session_timeout_ms=6_000,
            heartbeat_interval_ms=500,
        )
        try:
            consumer.subscribe([topic])
            while not stop.is_set() and (until is None or time.perf_counter() < until):
                msgs = consumer.consume(num_messages=500, timeout=0.2)
                batch = [
                    ReadRecord(m.partition(), m.offset(), m.key(), m.value() or b"")
                    for m in msgs
                    if m.error() is None
                ]
                if not batch:
                    continue
                run.add(batch)
                try:
                    consumer.commit(asynchronous=False)
                except ck.KafkaException:
                    run.failed_commit()  # not saved: a later owner re-reads these (duplicates)
        finally:
            consumer.close()

    threads = [
        threading.Thread(target=member, args=(i,), name=f"{group}-{i}", daemon=True)
        for i in range(members)
    ]
    for thread in threads:
        thread.start()
    try:
        yield run
    finally:
        stop.set()
        for thread in threads:
            thread.join(stop_timeout_s)
