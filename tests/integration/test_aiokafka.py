"""aiokafka (asyncio) against a real broker on 127.0.0.1; each test runs its own asyncio loop."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.integration._workload import Received, Sample, check_round_trip, samples
from tests.integration.conftest import BrokerThread


async def produce(
    bootstrap: str,
    topic: str,
    records: list[Sample],
    *,
    acks: int | str,
    compression: str | None,
    idempotence: bool = False,
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks=acks,
        compression_type=compression,
        linger_ms=5,
        max_batch_size=64 * 1024,
        enable_idempotence=idempotence,
    )
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic,
                key=r.key,
                value=r.value,
                headers=list(r.headers),
                timestamp_ms=r.timestamp_ms,
                partition=0,
            )
            for r in records
        ]
        metadata = await asyncio.gather(*futures)
        if acks != 0:
            assert [m.offset for m in metadata] == list(range(len(records)))
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, count: int) -> list[Received]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: list[Received] = []
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        async with asyncio.timeout(30):
            while len(out) < count:
                batches = await consumer.getmany(tp, timeout_ms=500)
                for m in batches.get(tp, []):
                    out.append(Received(m.offset, m.key, m.value, tuple(m.headers), m.timestamp))
    finally:
        await consumer.stop()
    return out


def round_trip(
    broker: BrokerThread,
    topic: str,
    sent: list[Sample],
    acks: int | str,
    compression: str | None,
    idempotence: bool = False,
) -> list[Received]:
    async def main() -> list[Received]:
        await produce(
            broker.bootstrap,
            topic,
            sent,
            acks=acks,
            compression=compression,
            idempotence=idempotence,
        )
        return await consume(broker.bootstrap, topic, len(sent))

    return asyncio.run(main())


def test_aiokafka_round_trips_10000_records(broker: BrokerThread) -> None:
    sent = samples(10_000, tag="ak")
    check_round_trip(sent, round_trip(broker, "ak-plain", sent, 1, None))


@pytest.mark.parametrize(
    ("acks", "compression"),
    [(0, None), ("all", None), (1, "gzip"), (1, "lz4"), (1, "zstd"), ("all", "snappy")],
)
def test_aiokafka_acks_and_compression(
    broker: BrokerThread, acks: int | str, compression: str | None
) -> None:
    sent = samples(500, tag=f"{acks}{compression}")
    check_round_trip(sent, round_trip(broker, f"ak-{acks}-{compression}", sent, acks, compression))


def test_aiokafka_idempotent_producer(broker: BrokerThread) -> None:
    sent = samples(1_000, tag="idem")
    check_round_trip(sent, round_trip(broker, "ak-idem", sent, "all", "zstd", idempotence=True))
