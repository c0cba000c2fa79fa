"""The Trio Consumer: fetch decoding (partial, compacted, control batches), positions and seeks,
auto_offset_reset, long polls, kafka-python interop, and group membership end to end (skipped
while the broker does not serve the group APIs)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka import KafkaConsumer, KafkaProducer

from quorumq import protocol as p
from quorumq.broker import Broker, BrokerConfig
from quorumq.broker._fetch_session import FetchContext, FetchSessionCache
from quorumq.client import Consumer, ConsumerRecord, Producer, TopicPartition, open_connection
from quorumq.client._consumer import decode_fetched
from quorumq.errors import CorruptRecord, ErrorCode, OffsetOutOfRange
from quorumq.protocol.records import ControlRecordType, Record, build_batch, control_record
from quorumq.testing import Cluster
from tests.client._helpers import (
    bootstrap_of,
    broker,  # noqa: F401  (fixture)
)

TP = TopicPartition("t", 0)


# --- decoding fetch answers ---------------------------------------------------------------------


def _batch(base: int, count: int, ts: int = 1000) -> bytes:
    return build_batch(
        [Record(base + i, ts + i, b"k%d" % (base + i), b"v%d" % (base + i)) for i in range(count)],
        base_offset=base,
    )


def test_decode_stops_at_a_partial_trailing_batch() -> None:
    data = _batch(0, 3) + _batch(3, 2)
    cut = data[: len(_batch(0, 3)) + 30]  # the second batch is cut inside its header
    records, next_offset = decode_fetched(TP, cut, 0)
    assert [r.offset for r in records] == [0, 1, 2]
    assert next_offset == 3
    records, next_offset = decode_fetched(TP, data[:-1], 0)  # cut in its last byte
    assert next_offset == 3
    records, next_offset = decode_fetched(TP, data, 0)
    assert [r.value for r in records] == [b"v0", b"v1", b"v2", b"v3", b"v4"]
    assert next_offset == 5


def test_decode_skips_records_below_the_fetch_offset() -> None:
    records, next_offset = decode_fetched(TP, _batch(10, 5), 12)
    assert [r.offset for r in records] == [12, 13, 14]
    assert next_offset == 15
    assert records[0] == ConsumerRecord("t", 0, 12, 1002, b"k12", b"v12", ())


def test_decode_compacted_batches_with_gaps_and_empty_ones() -> None:
    compacted = build_batch(
        [Record(20, 5, b"a", b"1"), Record(23, 6, b"b", None)],  # 21, 22, 24 compacted away
        base_offset=20,
        last_offset_delta=4,
    )
    emptied = build_batch([], base_offset=25, last_offset_delta=2)  # 25..27 all gone
    records, next_offset = decode_fetched(TP, compacted + emptied + _batch(28, 1), 20)
    assert [(r.offset, r.value) for r in records] == [(20, b"1"), (23, None), (28, b"v28")]
    assert next_offset == 29


def test_decode_control_batches_advance_without_records() -> None:
    marker = build_batch(
        [control_record(ControlRecordType.COMMIT, 5, 0)],
        base_offset=5,
        is_control=True,
        is_transactional=True,
        producer_id=7,
        producer_epoch=0,
    )
    records, next_offset = decode_fetched(TP, _batch(0, 5) + marker + _batch(6, 1), 0)
    assert [r.offset for r in records] == [0, 1, 2, 3, 4, 6]
    assert next_offset == 7


def test_decode_corrupt_whole_batch_is_typed() -> None:
    data = bytearray(_batch(0, 3))
    data[-1] ^= 0xFF
    with pytest.raises(CorruptRecord):
        decode_fetched(TP, bytes(data), 0)


# --- against the broker ---------------------------------------------------------------------


async def produce(bootstrap: str, topic: str, count: int, partition: int = 0) -> None:
    async with Producer(bootstrap, linger_ms=0, batch_size=200) as producer:
        for i in range(count):
            await producer.enqueue(topic, b"v%d" % i, key=b"k%d" % i, partition=partition)


async def drain(consumer: Consumer, count: int) -> list[ConsumerRecord]:
    out: list[ConsumerRecord] = []
    with trio.fail_after(10):
        while len(out) < count:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out.extend(records)
    return out


async def test_seek_position_and_seek_to_beginning_end(broker: Broker) -> None:  # noqa: F811
    await produce(bootstrap_of(broker), "s", 30)
    tp = TopicPartition("s", 0)
    async with Consumer(bootstrap_of(broker), max_partition_fetch_bytes=300) as consumer:
        consumer.assign([tp])
        assert consumer.assignment() == {tp}
        assert await consumer.position(tp) == 30  # auto_offset_reset="latest"
        consumer.seek_to_beginning()
        assert await consumer.position(tp) == 0
        first = await drain(consumer, 30)
        assert [r.offset for r in first] == list(range(30))
        assert await consumer.position(tp) == 30
        assert consumer.highwater(tp) == 30
        consumer.seek(tp, 17)
        record = await consumer.getone()
        assert (record.offset, record.value) == (17, b"v17")
        assert await consumer.position(tp) == 18
        async for record in consumer:  # the iterator continues from the position
            assert record.offset == 18
            break
        consumer.seek_to_end(tp)
        assert await consumer.position(tp) == 30
        assert await consumer.getmany(timeout_ms=0) == {}
        with pytest.raises(ValueError):
            consumer.seek(TopicPartition("s", 9), 0)
        with pytest.raises(ValueError):
            consumer.seek(tp, -1)


async def test_max_records_and_many_partitions(broker: Broker) -> None:  # noqa: F811
    for partition in range(3):
        await produce(bootstrap_of(broker), "m", 10, partition)
    async with Consumer(bootstrap_of(broker), auto_offset_reset="earliest") as consumer:
        consumer.assign([("m", 0), ("m", 1), ("m", 2)])
        batch = await consumer.getmany(timeout_ms=2000, max_records=4)
        assert sum(len(v) for v in batch.values()) == 4
        rest = await drain(consumer, 26)
        seen = {(r.partition, r.offset) for v in batch.values() for r in v} | {
            (r.partition, r.offset) for r in rest
        }
        assert seen == {(part, off) for part in range(3) for off in range(10)}


async def test_the_consumer_fetches_through_an_incremental_session(
    broker: Broker,  # noqa: F811
) -> None:
    """As Kafka's Java consumer does (KIP-227): once its session is open, an idle round names
    no partition, records still arrive from the partition that gets them, a broker that
    forgot the session (restart, eviction) gets a full fetch and a new one, and closing the
    consumer closes its session."""
    broker.create_topic("fs", 6)
    for partition in range(6):
        await produce(bootstrap_of(broker), "fs", 5, partition)
    named: list[int] = []
    contexts: list[FetchContext] = []
    original = broker.fetch_sessions.context

    def spy(request: p.FetchRequest, now: float = 0.0) -> FetchContext:
        named.append(sum(len(t.partitions) for t in request.topics))
        contexts.append(original(request, now))
        return contexts[-1]

    broker.fetch_sessions.context = spy  # type: ignore[method-assign]
    async with Consumer(
        bootstrap_of(broker), auto_offset_reset="earliest", fetch_max_wait_ms=100
    ) as consumer:
        consumer.assign([("fs", i) for i in range(6)])
        assert len(await drain(consumer, 30)) == 30
        assert len(broker.fetch_sessions) == 1
        named.clear()
        assert await consumer.getmany(timeout_ms=400) == {}
        assert len(named) >= 2 and named[-1] == 0  # idle rounds name nothing
        session = contexts[-1].session
        assert session is not None  # and the broker holds where the consumer is
        assert {q.fetch_offset for q in session.partitions.values()} == {5}
        await produce(bootstrap_of(broker), "fs", 2, 4)
        assert {r.partition for r in await drain(consumer, 2)} == {4}
        broker.fetch_sessions = FetchSessionCache()  # the broker forgot every session
        await produce(bootstrap_of(broker), "fs", 1, 5)
        assert [(r.partition, r.offset) for r in await drain(consumer, 1)] == [(5, 5)]
        assert len(broker.fetch_sessions) == 1
    assert len(broker.fetch_sessions) == 0  # closed with the consumer


async def test_out_of_range_resets_or_raises(broker: Broker) -> None:  # noqa: F811
    await produce(bootstrap_of(broker), "oor", 5)
    tp = TopicPartition("oor", 0)
    async with Consumer(bootstrap_of(broker), auto_offset_reset="earliest") as consumer:
        consumer.assign([tp])
        consumer.seek(tp, 1000)
        records = await drain(consumer, 5)
        assert [r.offset for r in records] == [0, 1, 2, 3, 4]
    async with Consumer(bootstrap_of(broker), auto_offset_reset="latest") as consumer:
        consumer.assign([tp])
        consumer.seek(tp, 1000)
        assert await consumer.getmany(timeout_ms=200) == {}
        assert await consumer.position(tp) == 5
    async with Consumer(bootstrap_of(broker), auto_offset_reset="none") as consumer:
        consumer.assign([tp])
        with pytest.raises(OffsetOutOfRange):
            await consumer.position(tp)  # no committed offset, no reset allowed
        consumer.seek(tp, 1000)
        with pytest.raises(OffsetOutOfRange):
            await consumer.getmany(timeout_ms=1000)


async def test_long_poll_returns_when_records_arrive(
    nursery: trio.Nursery,
    broker: Broker,  # noqa: F811
) -> None:
    await produce(bootstrap_of(broker), "lp", 1)
    async with Consumer(bootstrap_of(broker), fetch_max_wait_ms=5_000) as consumer:
        consumer.assign([("lp", 0)])
        assert await consumer.position(("lp", 0)) == 1
        got: list[ConsumerRecord] = []
        done = trio.Event()

        async def poll() -> None:
            for records in (await consumer.getmany(timeout_ms=10_000)).values():
                got.extend(records)
            done.set()

        nursery.start_soon(poll)
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        assert not done.is_set()  # waiting at the broker
        await produce(bootstrap_of(broker), "lp", 1)
        with trio.fail_after(5):
            await done.wait()
        assert [(r.offset, r.value) for r in got] == [(1, b"v0")]


async def test_we_read_what_kafka_python_produces(broker: Broker) -> None:  # noqa: F811
    sent = [
        (b"key-%d" % i, b"value-%d" % i, [("h", b"%d" % i)], 1_700_000_000_000 + i)
        for i in range(50)
    ]

    def produce_with_kafka_python() -> list[int]:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap_of(broker),
            acks="all",
            compression_type="gzip",
            linger_ms=5,
            enable_idempotence=False,
        )
        try:
            futures = [
                producer.send("from-kp", key=k, value=v, headers=h, timestamp_ms=ts, partition=1)
                for k, v, h, ts in sent
            ]
            producer.flush(timeout=20)
            return [f.get(timeout=10).offset for f in futures]
        finally:
            producer.close(timeout=5)

    offsets = await trio.to_thread.run_sync(produce_with_kafka_python)
    assert offsets == list(range(50))
    async with Consumer(bootstrap_of(broker), auto_offset_reset="earliest") as consumer:
        consumer.assign([("from-kp", 1)])
        got = await drain(consumer, 50)
    assert [(r.offset, r.key, r.value, list(r.headers), r.timestamp) for r in got] == [
        (i, k, v, h, ts) for i, (k, v, h, ts) in enumerate(sent)
    ]


# --- groups end to end (once the broker serves them) ----------------------------------------


GROUPS_ADVERTISED = (
    p.ApiKey.JOIN_GROUP in Broker(BrokerConfig(data_dir="unused")).advertised_versions()
)
needs_groups = pytest.mark.skipif(
    not GROUPS_ADVERTISED,
    reason="the broker does not serve the group APIs yet (no JoinGroup in ApiVersions; "
    "FindCoordinator answers COORDINATOR_NOT_AVAILABLE): waits for issue 6's coordinator",
)


async def group_apis_served(bootstrap: str) -> bool:
    host, port = bootstrap.rsplit(":", 1)
    async with open_connection(host, int(port)) as conn:
        if int(p.ApiKey.JOIN_GROUP) not in conn.api_versions:
            return False
        response = await conn.request(
            p.ApiKey.FIND_COORDINATOR,
            conn.version_for(p.ApiKey.FIND_COORDINATOR),
            p.FindCoordinatorRequest(key="probe"),
        )
        return bool(response.error_code == ErrorCode.NONE)


async def skip_without_groups(bootstrap: str) -> None:
    if not await group_apis_served(bootstrap):
        pytest.skip(
            "the broker does not serve the group APIs yet (FindCoordinator answers "
            "COORDINATOR_NOT_AVAILABLE / no JoinGroup): group tests wait for issue 6's coordinator"
        )


@needs_groups
async def test_group_members_split_partitions_and_resume_from_commits(
    broker: Broker,  # noqa: F811
) -> None:
    bootstrap = bootstrap_of(broker)
    await skip_without_groups(bootstrap)
    for partition in range(3):
        await produce(bootstrap, "g", 10, partition)
    async with (
        Consumer(bootstrap, auto_offset_reset="earliest", enable_auto_commit=False) as a,
        Consumer(bootstrap, auto_offset_reset="earliest", enable_auto_commit=False) as b,
    ):
        a.subscribe(["g"], group_id="grp", assignor="roundrobin")
        b.subscribe(["g"], group_id="grp", assignor="roundrobin")
        three = {TopicPartition("g", i) for i in range(3)}
        await pump_until([a, b], lambda: covers([a, b], three) and bool(a.assignment()))
        assert not a.assignment() & b.assignment()
        assert a.assignment() | b.assignment() == {TopicPartition("g", i) for i in range(3)}
        for tp in a.assignment():
            a.seek(tp, 4)
        for tp in b.assignment():
            b.seek(tp, 4)
        await a.commit()
        await b.commit()
    async with Consumer(bootstrap, group_id="grp", auto_offset_reset="earliest") as c:
        c.subscribe(["g"])
        records = await drain(c, 18)
        assert sorted((r.partition, r.offset) for r in records) == [
            (part, off) for part in range(3) for off in range(4, 10)
        ]
        assert await c.committed(TopicPartition("g", 0)) == 4


@needs_groups
async def test_assign_with_group_id_commits_outside_a_generation(
    broker: Broker,  # noqa: F811
) -> None:
    bootstrap = bootstrap_of(broker)
    await skip_without_groups(bootstrap)
    await produce(bootstrap, "ag", 5)
    tp = TopicPartition("ag", 0)
    async with Consumer(bootstrap, group_id="solo", auto_offset_reset="earliest") as consumer:
        consumer.assign([tp])
        await drain(consumer, 3)
        await consumer.commit({tp: 3})
        assert await consumer.committed(tp) == 3
    async with Consumer(bootstrap, group_id="solo") as consumer:
        consumer.assign([tp])
        assert await consumer.position(tp) == 3


async def pump_until(
    consumers: list[Consumer], done: Callable[[], bool], seconds: float = 20
) -> None:
    """Polls every consumer in its own task, as separate processes would (joins and rebalances
    happen inside getmany, and a JoinGroup waits for every member), until ``done()`` holds."""
    finished = trio.Event()

    async def pump(consumer: Consumer) -> None:
        while True:
            await consumer.getmany(50)
            if done():
                finished.set()

    with trio.fail_after(seconds):
        async with trio.open_nursery() as nursery:
            for consumer in consumers:
                nursery.start_soon(pump, consumer)
            await finished.wait()
            nursery.cancel_scope.cancel()


def covers(consumers: list[Consumer], partitions: set[TopicPartition]) -> bool:
    assigned = [c.assignment() for c in consumers]
    union = set().union(*assigned)
    return union == partitions and sum(map(len, assigned)) == len(partitions)


@needs_groups
async def test_members_take_over_when_one_leaves(broker: Broker) -> None:  # noqa: F811
    bootstrap = bootstrap_of(broker)
    await skip_without_groups(bootstrap)
    broker.create_topic("six", 6)
    six = {TopicPartition("six", i) for i in range(6)}
    options = {"heartbeat_interval_ms": 100, "auto_offset_reset": "earliest"}
    async with (
        Consumer(bootstrap, **options) as b,  # type: ignore[arg-type]
        Consumer(bootstrap, **options) as c,  # type: ignore[arg-type]
    ):
        async with Consumer(bootstrap, **options) as a:  # type: ignore[arg-type]
            for consumer in (a, b, c):
                consumer.subscribe(["six"], group_id="trio", assignor="range")
            await pump_until([a, b, c], lambda: covers([a, b, c], six) and all(
                len(x.assignment()) == 2 for x in (a, b, c)
            ))  # fmt: skip
        # Leaving the block closed ``a``: it committed and sent LeaveGroup.
        await pump_until([b, c], lambda: covers([b, c], six))
        assert {len(b.assignment()), len(c.assignment())} == {3}


@needs_groups
async def test_auto_commit_on_close_and_resume(broker: Broker) -> None:  # noqa: F811
    bootstrap = bootstrap_of(broker)
    await skip_without_groups(bootstrap)
    await produce(bootstrap, "ac", 8)
    options = {"auto_offset_reset": "earliest", "auto_commit_interval_ms": 50}
    async with Consumer(bootstrap, **options) as consumer:  # type: ignore[arg-type]
        consumer.subscribe(["ac"], group_id="auto")
        first = []
        with trio.fail_after(10):
            while len(first) < 5:
                first.append(await consumer.getone())
    assert [r.offset for r in first] == [0, 1, 2, 3, 4]
    async with Consumer(bootstrap, group_id="auto") as consumer:
        consumer.subscribe(["ac"])
        rest = await drain(consumer, 3)
        assert [r.offset for r in rest] == [5, 6, 7]
        assert await consumer.committed(TopicPartition("ac", 0)) == 5


@needs_groups
async def test_kafka_python_and_our_consumer_share_a_group(broker: Broker) -> None:  # noqa: F811
    """Either member may lead: the subscription and assignment bytes must agree both ways."""
    bootstrap = bootstrap_of(broker)
    await skip_without_groups(bootstrap)
    broker.create_topic("mixed", 4)
    four = {TopicPartition("mixed", i) for i in range(4)}
    theirs: dict[str, frozenset[TopicPartition]] = {"assigned": frozenset()}
    stop = threading.Event()

    def run_kafka_python() -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id="mixed",
            heartbeat_interval_ms=100,
            session_timeout_ms=6_000,
            enable_auto_commit=False,
        )
        # kafka-python 3.0.12 works around two client-side races (docs/groups.md): as group
        # leader it assigns nothing for a topic it has no metadata for yet, so load the topic's
        # metadata before subscribing; and a poll() that times out while its JoinGroup/SyncGroup
        # is in flight can drop the SyncGroup answer, so poll with a timeout longer than a
        # rebalance round trip.
        consumer.partitions_for_topic("mixed")
        consumer.subscribe(["mixed"])
        try:
            while not stop.is_set():
                consumer.poll(timeout_ms=1000)
                theirs["assigned"] = frozenset(
                    TopicPartition(tp.topic, tp.partition) for tp in consumer.assignment()
                )
        finally:
            consumer.close()

    def shared() -> bool:
        ours_now, theirs_now = ours.assignment(), theirs["assigned"]
        return (
            bool(ours_now and theirs_now)
            and ours_now | theirs_now == four
            and not (ours_now & theirs_now)
        )

    async with Consumer(bootstrap, heartbeat_interval_ms=100) as ours:
        ours.subscribe(["mixed"], group_id="mixed", assignor="range")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, run_kafka_python)
            try:
                await pump_until([ours], shared, seconds=30)
            finally:
                stop.set()
    assert len(ours.assignment()) == 2


async def test_consumer_follows_a_leader_change(tmp_path: Path) -> None:
    async with Cluster(
        brokers=3, tmp_path=tmp_path, session_timeout_ms=1000, heartbeat_interval_ms=200
    ) as cluster:
        await cluster.create_topic("cf", partitions=1, replication_factor=3)
        async with (
            Producer(cluster.bootstrap, retry_backoff_ms=50, request_timeout_ms=5000) as producer,
            Consumer(
                cluster.bootstrap, auto_offset_reset="earliest", retry_backoff_ms=50
            ) as consumer,
        ):
            for i in range(10):
                await producer.send("cf", b"a%d" % i, partition=0)
            consumer.assign([("cf", 0)])
            first = await drain(consumer, 10)
            await cluster.kill_broker(await cluster.leader("cf"))
            with trio.fail_after(30):
                for i in range(10):
                    await producer.send("cf", b"b%d" % i, partition=0)
            second = await drain(consumer, 10)
    assert [r.value for r in first + second] == [b"a%d" % i for i in range(10)] + [
        b"b%d" % i for i in range(10)
    ]
    assert [r.offset for r in first] == list(range(10))


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=6),
    cut=st.integers(min_value=0, max_value=10_000),
    fetch_offset=st.integers(min_value=0, max_value=40),
)
def test_decode_any_cut_returns_whole_batches_only(
    sizes: list[int], cut: int, fetch_offset: int
) -> None:
    batches, base = [], 0
    for size in sizes:
        batches.append(_batch(base, size))
        base += size
    data = b"".join(batches)
    cut = min(cut, len(data))
    records, next_offset = decode_fetched(TP, data[:cut], fetch_offset)
    whole, end = 0, 0  # offsets covered by the batches that fit entirely before the cut
    for size, batch in zip(sizes, batches, strict=True):
        if end + len(batch) > cut:
            break
        end += len(batch)
        whole += size
    assert [r.offset for r in records] == list(range(fetch_offset, whole))
    assert next_offset == max(fetch_offset, whole)
