"""The Trio Producer against a real in-process broker on 127.0.0.1.

Round trips for every codec and acks level (read back by our Consumer: keys, values, headers,
timestamps, offsets), Kafka's key partitioning, back-pressure of a tiny buffer, retries that the
idempotent producer keeps duplicate-free (and a control run showing the duplicate without it),
leader errors that refresh metadata, typed errors, and kafka-python reading what we wrote.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.partitioner.default import murmur2 as kafka_murmur2

from quorumq import protocol as p
from quorumq.broker import Broker
from quorumq.client import Consumer, ConsumerRecord, Producer, TopicPartition, partition_for_key
from quorumq.errors import (
    ErrorCode,
    MessageTooLarge,
    NotEnoughReplicas,
    RequestTimedOut,
    UnknownTopicOrPartition,
)
from quorumq.testing import Cluster
from tests.client._helpers import (
    DROP,
    bootstrap_of,
    broker,  # noqa: F401  (fixture)
    decode_response,
    encode_response,
    start_proxy,
)

BASE_TS = 1_700_000_000_000


def keyed_records(n: int) -> list[tuple[bytes, bytes, tuple[tuple[str, bytes | None], ...], int]]:
    return [
        (
            b"key-%d" % (i % 17),
            b"value-%d-" % i + bytes(i % 50),
            (("i", str(i).encode()), ("null", None)) if i % 3 else (),
            BASE_TS + i,
        )
        for i in range(n)
    ]


async def read_all(bootstrap: str, topic: str, partitions: int, count: int) -> list[ConsumerRecord]:
    out: list[ConsumerRecord] = []
    async with Consumer(bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition(topic, i) for i in range(partitions)])
        with trio.fail_after(10):
            while len(out) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    out.extend(records)
    return out


@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
@pytest.mark.parametrize("acks", [0, 1, "all"])
async def test_round_trip_every_codec_and_acks(
    broker: Broker,  # noqa: F811
    compression: str,
    acks: int | str,
) -> None:
    records = keyed_records(60)
    topic = f"rt-{compression}-{acks}"
    async with Producer(bootstrap_of(broker), acks=acks, compression=compression) as producer:
        futures = [
            await producer.enqueue(topic, v, key=k, headers=h, timestamp_ms=ts)
            for k, v, h, ts in records
        ]
        await producer.flush()
        metas = [f.result() for f in futures]
    got = await read_all(bootstrap_of(broker), topic, 3, len(records))
    assert len(got) == len(records)
    by_partition: dict[int, list[ConsumerRecord]] = {}
    for r in got:
        by_partition.setdefault(r.partition, []).append(r)
    sent_by_partition: dict[int, list[int]] = {}
    for i, meta in enumerate(metas):
        sent_by_partition.setdefault(meta.partition, []).append(i)
    for partition, indexes in sent_by_partition.items():
        consumed = by_partition[partition]
        # Per-partition order is send order; offsets are dense from 0.
        assert [r.offset for r in consumed] == list(range(len(indexes)))
        for r, i in zip(consumed, indexes, strict=True):
            key, value, headers, ts = records[i]
            assert (r.key, r.value, r.headers, r.timestamp) == (key, value, headers, ts)
            assert r.partition == partition_for_key(key, 3)
            assert r.partition == (kafka_murmur2(key) & 0x7FFFFFFF) % 3  # kafka-python agrees
            if acks != 0:
                assert metas[i].offset == r.offset
                assert metas[i].timestamp == ts
            else:
                assert metas[i].offset == -1


async def test_send_waits_for_the_ack_and_null_keys_spread(broker: Broker) -> None:  # noqa: F811
    async with Producer(bootstrap_of(broker), linger_ms=0) as producer:
        first = await producer.send("nulls", b"a")
        assert (first.topic, first.offset) == ("nulls", 0)
        futures = [await producer.enqueue("nulls", b"x" * 100) for _ in range(200)]
        await producer.flush()
        partitions = {f.result().partition for f in futures}
        explicit = await producer.send("nulls", b"to-2", partition=2)
    assert explicit.partition == 2
    assert partitions <= {0, 1, 2}
    got = await read_all(bootstrap_of(broker), "nulls", 3, 202)
    assert sorted(r.value for r in got if r.value != b"x" * 100) == [b"a", b"to-2"]


async def test_tiny_buffer_applies_back_pressure(nursery: trio.Nursery, broker: Broker) -> None:  # noqa: F811
    proxy = await start_proxy(nursery, broker)
    value = b"v" * 400
    async with Producer(proxy.bootstrap, buffer_memory=1500, linger_ms=0, batch_size=1) as producer:
        await producer.send("bp", b"warm-up", partition=0)  # metadata, producer id known
        proxy.hold = trio.Event()  # the broker answers, the proxy keeps the answers
        futures = [await producer.enqueue("bp", value, partition=0) for _ in range(2)]
        futures.append(producer.send_nowait("bp", value, partition=0))
        assert producer._pool.used <= 1500
        with pytest.raises(trio.WouldBlock):
            producer.send_nowait("bp", value, partition=0)  # full: would block
        done = trio.Event()

        async def enqueue_fourth() -> None:
            futures.append(await producer.enqueue("bp", value, partition=0))
            done.set()

        nursery.start_soon(enqueue_fourth)
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        assert not done.is_set(), "enqueue must wait while the buffer is full"
        assert not any(f.done() for f in futures)
        proxy.hold.set()
        with trio.fail_after(10):
            await done.wait()
            await producer.flush()
        assert producer._pool.used == 0
        assert [f.result().offset for f in futures] == [1, 2, 3, 4]
    with pytest.raises(trio.WouldBlock):
        Producer(bootstrap_of(broker)).send_nowait("bp", b"x")  # no metadata yet


def lose_first_produce_response(proxy_state: dict[str, int]) -> object:
    def rewrite(header: p.RequestHeader, frame: bytes) -> bytes | None:
        if header.api_key == p.ApiKey.PRODUCE and proxy_state["lost"] == 0:
            proxy_state["lost"] += 1
            return DROP  # the broker appended; the producer never hears of it
        return frame

    return rewrite


@pytest.mark.parametrize("idempotent", [True, False])
async def test_lost_ack_is_retried_without_duplicate_only_when_idempotent(
    nursery: trio.Nursery,
    broker: Broker,  # noqa: F811
    idempotent: bool,
) -> None:
    state = {"lost": 0}
    proxy = await start_proxy(nursery, broker, lose_first_produce_response(state))  # type: ignore[arg-type]
    async with Producer(
        proxy.bootstrap, enable_idempotence=idempotent, retry_backoff_ms=10, linger_ms=0
    ) as producer:
        futures = [await producer.enqueue("idem", b"r%d" % i, partition=0) for i in range(5)]
        await producer.flush()
        offsets = [f.result().offset for f in futures]
    assert state["lost"] == 1
    assert proxy.connections >= 2  # the producer reconnected after the lost answer
    log_end_offset = broker.partition("idem", 0).log_end_offset
    got = await read_all(bootstrap_of(broker), "idem", 3, log_end_offset)
    values = [r.value for r in got if r.partition == 0]
    assert len(values) == log_end_offset
    if idempotent:
        assert values == [b"r%d" % i for i in range(5)]
        assert offsets == list(range(5))
    else:
        # The negative control: without idempotence the retry writes the batch again.
        assert len(values) > 5
        assert sorted(set(values)) == sorted(b"r%d" % i for i in range(5))


async def test_not_leader_refreshes_metadata_then_succeeds(
    nursery: trio.Nursery,
    broker: Broker,  # noqa: F811
) -> None:
    errors = {"left": 2}

    def rewrite(header: p.RequestHeader, frame: bytes) -> bytes | None:
        if header.api_key == p.ApiKey.PRODUCE and errors["left"]:
            errors["left"] -= 1
            response = decode_response(header, frame)
            topics = [
                attrs.evolve(
                    t,
                    partitions=[
                        attrs.evolve(x, error_code=ErrorCode.NOT_LEADER_OR_FOLLOWER, base_offset=-1)
                        for x in t.partitions
                    ],
                )
                for t in response.topics  # type: ignore[attr-defined]
            ]
            return encode_response(header, attrs.evolve(response, topics=topics))
        return frame

    proxy = await start_proxy(nursery, broker, rewrite)
    async with Producer(proxy.bootstrap, retry_backoff_ms=10) as producer:
        meta = await producer.send("moved", b"hello", partition=1)
        metadata_requests_before = proxy.count(p.ApiKey.METADATA)
    assert errors["left"] == 0
    # Appended on the first try, deduplicated on the retries: one record at offset 0.
    assert meta.offset == 0
    assert metadata_requests_before >= 2  # the error made the producer ask again
    got = await read_all(bootstrap_of(broker), "moved", 3, 1)
    assert [r.value for r in got] == [b"hello"]


async def test_retries_exhausted_raise_the_typed_error(
    nursery: trio.Nursery,
    broker: Broker,  # noqa: F811
) -> None:
    def rewrite(header: p.RequestHeader, frame: bytes) -> bytes | None:
        if header.api_key != p.ApiKey.PRODUCE:
            return frame
        response = decode_response(header, frame)
        topics = [
            attrs.evolve(
                t,
                partitions=[
                    attrs.evolve(x, error_code=ErrorCode.NOT_ENOUGH_REPLICAS, base_offset=-1)
                    for x in t.partitions
                ],
            )
            for t in response.topics  # type: ignore[attr-defined]
        ]
        return encode_response(header, attrs.evolve(response, topics=topics))

    proxy = await start_proxy(nursery, broker, rewrite)
    async with Producer(proxy.bootstrap, retries=2, retry_backoff_ms=5) as producer:
        with pytest.raises(NotEnoughReplicas):
            await producer.send("nope", b"x", partition=0)
        assert proxy.count(p.ApiKey.PRODUCE) == 3  # the first try and two retries
        proxy.rewrite = None
        # A failed idempotent batch leaves a gap in the broker's sequence: the producer takes a
        # new producer id, so the next record is accepted.
        again = await producer.send("nope", b"y", partition=0)
    assert again.offset >= 0
    assert proxy.count(p.ApiKey.INIT_PRODUCER_ID) == 2


async def test_bad_input_raises_typed_errors(broker: Broker) -> None:  # noqa: F811
    async with Producer(bootstrap_of(broker), max_request_size=10_000) as producer:
        with pytest.raises(MessageTooLarge):
            await producer.send("bad", b"x" * 20_000)
        with pytest.raises(UnknownTopicOrPartition):
            await producer.send("bad", b"x", partition=7)
        with pytest.raises(ValueError):
            Producer(bootstrap_of(broker), compression="brotli")
        with pytest.raises(ValueError):
            Producer(bootstrap_of(broker), acks=2)


async def test_kafka_python_reads_what_we_produce(broker: Broker) -> None:  # noqa: F811
    records = keyed_records(40)
    async with Producer(bootstrap_of(broker), compression="gzip") as producer:
        for k, v, h, ts in records:
            await producer.enqueue("to-kp", v, key=k, headers=h, timestamp_ms=ts, partition=0)

    def consume() -> list[tuple[int, bytes, bytes, list[tuple[str, bytes | None]], int]]:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap_of(broker),
            enable_auto_commit=False,
            group_id=None,
            consumer_timeout_ms=5_000,
        )
        tp = KafkaTopicPartition("to-kp", 0)
        try:
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            out = []
            for m in consumer:
                out.append((m.offset, m.key, m.value, list(m.headers), m.timestamp))
                if len(out) == len(records):
                    break
            return out
        finally:
            consumer.close()

    got = await trio.to_thread.run_sync(consume)
    assert [(o, k, v, h, ts) for o, k, v, h, ts in got] == [
        (i, k, v, list(h), ts) for i, (k, v, h, ts) in enumerate(records)
    ]


async def test_no_leader_fails_records_after_the_delivery_timeout(
    nursery: trio.Nursery,
    broker: Broker,  # noqa: F811
) -> None:
    def leaderless(header: p.RequestHeader, frame: bytes) -> bytes | None:
        if header.api_key != p.ApiKey.METADATA:
            return frame
        response = decode_response(header, frame)
        topics = [
            attrs.evolve(t, partitions=[attrs.evolve(x, leader_id=-1) for x in t.partitions])
            for t in response.topics  # type: ignore[attr-defined]
        ]
        return encode_response(header, attrs.evolve(response, topics=topics))

    proxy = await start_proxy(nursery, broker, leaderless)
    async with Producer(
        proxy.bootstrap, delivery_timeout_ms=200, retry_backoff_ms=20, linger_ms=0
    ) as producer:
        with trio.fail_after(10), pytest.raises(RequestTimedOut, match="no leader"):
            await producer.send("leaderless", b"x", partition=0)
        assert proxy.count(p.ApiKey.PRODUCE) == 0
        assert proxy.count(p.ApiKey.METADATA) >= 2  # it kept asking for a leader
        assert producer._pool.used == 0


async def test_send_nowait_learns_the_topic_in_the_background(broker: Broker) -> None:  # noqa: F811
    async with Producer(bootstrap_of(broker), linger_ms=0) as producer:
        with pytest.raises(trio.WouldBlock):
            producer.send_nowait("later", b"x")
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)  # the refresh ran
        assert "later" in producer.metadata.topics
        future = producer.send_nowait("later", b"y", key=b"k")
        meta = await future.get()
    assert (meta.partition, meta.offset) == (partition_for_key(b"k", 3), 0)


async def test_leader_failover_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """A real leader kill in a three-broker cluster: the producer finds the new leader through
    metadata refreshes and its acknowledged records are all there, once each, in order."""
    async with Cluster(
        brokers=3, tmp_path=tmp_path, session_timeout_ms=1000, heartbeat_interval_ms=200
    ) as cluster:
        await cluster.create_topic("fo", partitions=1, replication_factor=3)
        async with Producer(
            cluster.bootstrap,
            acks="all",
            retries=100,
            retry_backoff_ms=50,
            request_timeout_ms=5000,
            linger_ms=1,
        ) as producer:
            before = [await producer.send("fo", b"a%d" % i, partition=0) for i in range(20)]
            leader = await cluster.leader("fo")
            await cluster.kill_broker(leader)
            futures = [await producer.enqueue("fo", b"b%d" % i, partition=0) for i in range(20)]
            with trio.fail_after(30):
                await producer.flush()
            after = [f.result() for f in futures]
        assert await cluster.leader("fo") != leader
        # The bootstrap list still names the dead broker: the consumer skips it.
        async with Consumer(cluster.bootstrap, auto_offset_reset="earliest") as consumer:
            consumer.assign([TopicPartition("fo", 0)])
            got: list[ConsumerRecord] = []
            with trio.fail_after(20):
                while len(got) < 40:
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        got.extend(records)
    assert [r.value for r in got] == [b"a%d" % i for i in range(20)] + [
        b"b%d" % i for i in range(20)
    ]
    assert [r.offset for r in got] == [m.offset for m in before + after]
    assert all(x.offset < y.offset for x, y in itertools.pairwise(got))
