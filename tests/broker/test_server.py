"""The broker over real sockets: ordering, acks, bad input, fetch waits, idempotence, restart."""

from __future__ import annotations

import struct
from pathlib import Path

import trio

from quorumq import protocol as p
from quorumq.broker import Broker, BrokerConfig
from quorumq.client._connection import Connection, open_connection
from quorumq.errors import ErrorCode
from quorumq.log import CLEAN_SHUTDOWN_FILE
from quorumq.protocol.records import (
    ATTR_CONTROL,
    TimestampType,
    build_batch,
    compute_crc,
    decode_records,
    validate_batch,
)


def batch(*values: bytes, producer_id: int = -1, base_sequence: int = -1) -> bytes:
    return build_batch(
        [(b"k", v) for v in values],
        timestamp=1_700_000_000_000,
        producer_id=producer_id,
        producer_epoch=0 if producer_id >= 0 else -1,
        base_sequence=base_sequence,
    )


def produce_request(
    topic: str, records: bytes, acks: int = 1, partition: int = 0, timeout_ms: int = 5000
) -> p.ProduceRequest:
    return p.ProduceRequest(
        acks=acks,
        timeout_ms=timeout_ms,
        topics=[
            p.ProduceRequestTopic(
                name=topic,
                partitions=[p.ProduceRequestPartition(partition_index=partition, records=records)],
            )
        ],
    )


def fetch_request(
    topic: str, offset: int, *, max_wait_ms: int = 0, min_bytes: int = 1
) -> p.FetchRequest:
    return p.FetchRequest(
        max_wait_ms=max_wait_ms,
        min_bytes=min_bytes,
        topics=[
            p.FetchRequestTopic(
                name=topic,
                partitions=[
                    p.FetchRequestPartition(
                        partition_index=0, fetch_offset=offset, partition_max_bytes=1 << 20
                    )
                ],
            )
        ],
    )


async def produce(
    conn: Connection, topic: str, records: bytes, acks: int = 1
) -> p.ProduceResponsePartition:
    response = await conn.request(p.ApiKey.PRODUCE, 8, produce_request(topic, records, acks))
    return response.topics[0].partitions[0]


async def fetch(conn: Connection, topic: str, offset: int, **kw: int) -> p.FetchResponsePartition:
    response = await conn.request(p.ApiKey.FETCH, 11, fetch_request(topic, offset, **kw))
    return response.topics[0].partitions[0]


def values_of(records: object) -> list[bytes | None]:
    data = bytes(records)  # type: ignore[call-overload]
    out = []
    position = 0
    while position < len(data):
        size = 12 + struct.unpack_from(">i", data, position + 8)[0]
        out += [r.value for r in decode_records(data[position : position + size])]
        position += size
    return out


async def raw_stream(broker: Broker) -> trio.SocketStream:
    assert broker.port is not None
    return await trio.open_tcp_stream("127.0.0.1", broker.port)


async def read_frames(stream: trio.SocketStream, count: int) -> list[bytes]:
    reader = p.FrameReader()
    frames: list[bytes] = []
    while len(frames) < count:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise EOFError
        reader.feed(chunk)
        while (frame := reader.next_frame()) is not None:
            frames.append(bytes(frame))
    return frames


async def test_produce_then_fetch_returns_whole_batches(broker: Broker) -> None:
    assert broker.port
    async with open_connection("127.0.0.1", broker.port) as conn:
        await conn.request(
            p.ApiKey.METADATA, 8, p.MetadataRequest(topics=[p.MetadataRequestTopic(name="t")])
        )
        first = await produce(conn, "t", batch(b"a", b"b"))
        second = await produce(conn, "t", batch(b"c"))
        assert (first.error_code, first.base_offset) == (0, 0)
        assert (second.error_code, second.base_offset) == (0, 2)
        fetched = await fetch(conn, "t", 1)
        assert fetched.high_watermark == 3
        assert values_of(fetched.records) == [b"a", b"b", b"c"]  # whole batch from offset 0


async def test_a_request_behind_a_long_poll_ends_it_and_answers_follow_in_order(
    broker: Broker,
) -> None:
    """Responses leave in request order, so a request behind a waiting fetch would wait out
    the fetch's max_wait_ms; instead the fetch is answered as it stands (empty), then the
    request behind it. A follower abandoning its long-poll for a new partition did this."""
    broker.create_topic("t", 1)
    stream = await raw_stream(broker)
    frames = p.encode_request(
        p.ApiKey.FETCH, 11, 1, "test", fetch_request("t", 0, max_wait_ms=60_000)
    )
    frames += p.encode_request(p.ApiKey.METADATA, 8, 2, "test", p.MetadataRequest(topics=[]))
    await stream.send_all(b"".join(frames))
    with trio.fail_after(10):  # not the fetch's 60 s
        first, second = await read_frames(stream, 2)
    assert p.peek_correlation_id(first) == 1
    assert p.peek_correlation_id(second) == 2
    fetched = p.decode_response(p.ApiKey.FETCH, 11, first).topics[0].partitions[0]
    assert fetched.error_code == 0 and bytes(fetched.records or b"") == b""
    assert not broker.partition("t", 0).commit_watchers  # and nothing is left waiting
    await stream.aclose()


async def test_a_long_poll_over_several_partitions_wakes_for_any_of_them(
    broker: Broker,
) -> None:
    broker.create_topic("many", 4)
    request = p.FetchRequest(
        max_wait_ms=10_000,
        min_bytes=1,
        topics=[
            p.FetchRequestTopic(
                name="many",
                partitions=[
                    p.FetchRequestPartition(
                        partition_index=i, fetch_offset=0, partition_max_bytes=1 << 20
                    )
                    for i in range(4)
                ],
            )
        ],
    )
    async with (
        open_connection("127.0.0.1", broker.port or 0) as consumer,
        open_connection("127.0.0.1", broker.port or 0) as producer,
        trio.open_nursery() as nursery,
    ):

        async def wake_partition_2() -> None:
            await trio.sleep(0.05)
            await producer.request(
                p.ApiKey.PRODUCE, 8, produce_request("many", batch(b"two"), partition=2)
            )

        nursery.start_soon(wake_partition_2)
        with trio.fail_after(5):  # well before max_wait_ms
            response = await consumer.request(p.ApiKey.FETCH, 11, request)
    by_index = {part.partition_index: part for part in response.topics[0].partitions}
    assert values_of(by_index[2].records) == [b"two"]
    assert all(not by_index[i].records for i in (0, 1, 3))
    # The waiter left no event behind on any partition.
    assert not any(broker.partition("many", i).commit_watchers for i in range(4))


async def test_a_fetch_queued_behind_another_wait_sees_an_append_made_meanwhile(
    broker: Broker,
) -> None:
    """The second fetch's wait starts only when the first one's answer has left. An append to
    its partition in between must still wake it: before the fix it slept until its own
    max_wait_ms (the 500 ms isr stalls of the produce benchmark)."""
    broker.create_topic("slow", 1)
    broker.create_topic("t", 1)
    stream = await raw_stream(broker)
    frames = p.encode_request(
        p.ApiKey.FETCH, 11, 1, "test", fetch_request("slow", 0, max_wait_ms=300)
    )
    frames += p.encode_request(
        p.ApiKey.FETCH, 11, 2, "test", fetch_request("t", 0, max_wait_ms=20_000)
    )
    await stream.send_all(b"".join(frames))
    async with open_connection("127.0.0.1", broker.port or 0) as producer:
        await trio.sleep(0.1)  # both fetches read and queued; the first one's wait runs
        await produce(producer, "t", batch(b"meanwhile"))
    with trio.fail_after(5):  # the first fetch's 300 ms, not the second's 20 s
        first, second = await read_frames(stream, 2)
    assert [p.peek_correlation_id(f) for f in (first, second)] == [1, 2]
    response = p.decode_response(p.ApiKey.FETCH, 11, second)
    assert values_of(response.topics[0].partitions[0].records) == [b"meanwhile"]
    await stream.aclose()


async def test_fetch_with_max_wait_returns_empty_when_nothing_arrives(broker: Broker) -> None:
    broker.create_topic("t", 1)
    async with open_connection("127.0.0.1", broker.port or 0) as conn:
        fetched = await fetch(conn, "t", 0, max_wait_ms=50)
        assert fetched.error_code == 0
        assert bytes(fetched.records or b"") == b""


async def test_acks_zero_sends_no_response(broker: Broker) -> None:
    broker.create_topic("t", 1)
    async with open_connection("127.0.0.1", broker.port or 0) as conn:
        await conn.request(
            p.ApiKey.PRODUCE, 8, produce_request("t", batch(b"x"), acks=0), expect_response=False
        )
        fetched = await fetch(conn, "t", 0)  # answered: the acks=0 produce had no response slot
        assert values_of(fetched.records) == [b"x"]


async def test_bad_batches_get_kafka_errors(broker: Broker) -> None:
    broker.create_topic("small", 1, {"max.message.bytes": "200"})
    async with open_connection("127.0.0.1", broker.port or 0) as conn:
        corrupt = bytearray(batch(b"v"))
        corrupt[-1] ^= 0xFF
        assert (
            await produce(conn, "small", bytes(corrupt))
        ).error_code == ErrorCode.CORRUPT_MESSAGE
        control = bytearray(batch(b"v"))
        control[22] |= ATTR_CONTROL
        struct.pack_into(">I", control, 17, compute_crc(control))
        assert (await produce(conn, "small", bytes(control))).error_code == ErrorCode.INVALID_RECORD
        big = batch(b"x" * 500)
        assert (await produce(conn, "small", big)).error_code == ErrorCode.MESSAGE_TOO_LARGE
        unknown = await conn.request(p.ApiKey.PRODUCE, 8, produce_request("nope", batch(b"v")))
        assert unknown.topics[0].partitions[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        good = await produce(conn, "small", batch(b"ok"))
        assert (good.error_code, good.base_offset) == (0, 0)


async def test_bad_frames_close_only_their_connection(broker: Broker) -> None:
    broker.create_topic("t", 1)
    async with open_connection("127.0.0.1", broker.port or 0) as healthy:
        for bad in (
            struct.pack(">i", 200 * 1024 * 1024),  # above socket.request.max.bytes
            struct.pack(">i", 8) + struct.pack(">hhi", 999, 0, 1),  # unknown api key
            struct.pack(">i", 3) + b"abc",  # truncated header
            struct.pack(">i", -5),
        ):
            stream = await raw_stream(broker)
            await stream.send_all(bad)
            with trio.fail_after(5):
                assert await stream.receive_some(10) == b""
            await stream.aclose()
        assert (await produce(healthy, "t", batch(b"still"))).error_code == 0


async def test_idempotent_retries_are_not_duplicated(broker: Broker) -> None:
    broker.create_topic("t", 1)
    async with open_connection("127.0.0.1", broker.port or 0) as conn:
        init = await conn.request(p.ApiKey.INIT_PRODUCER_ID, 1, p.InitProducerIdRequest())
        pid = init.producer_id
        first = batch(b"a", b"b", producer_id=pid, base_sequence=0)
        assert (await produce(conn, "t", first, acks=-1)).base_offset == 0
        retry = await produce(conn, "t", first, acks=-1)
        assert (retry.error_code, retry.base_offset) == (0, 0)
        gap = await produce(conn, "t", batch(b"z", producer_id=pid, base_sequence=5))
        assert gap.error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
        nxt = await produce(conn, "t", batch(b"c", producer_id=pid, base_sequence=2))
        assert (nxt.error_code, nxt.base_offset) == (0, 2)
        assert values_of((await fetch(conn, "t", 0)).records) == [b"a", b"b", b"c"]


async def test_restart_keeps_data_topics_and_producer_state(tmp_path: Path) -> None:
    config = BrokerConfig(data_dir=tmp_path / "data", port=0)
    retried = batch(b"once", producer_id=0, base_sequence=0)

    async def run(check: bool) -> int:
        broker = Broker(config)
        async with trio.open_nursery() as nursery:
            port = await nursery.start(broker.serve)
            async with open_connection("127.0.0.1", port) as conn:
                if not check:
                    broker.create_topic("kept", 2, {"retention.ms": "123456"})
                    init = await conn.request(
                        p.ApiKey.INIT_PRODUCER_ID, 1, p.InitProducerIdRequest()
                    )
                    assert init.producer_id == 0
                    assert (await produce(conn, "kept", retried)).base_offset == 0
                    assert (await produce(conn, "kept", batch(b"two"))).base_offset == 1
                    pid = 0
                else:
                    again = await produce(conn, "kept", retried)  # a retry after the restart
                    assert (again.error_code, again.base_offset) == (0, 0)
                    fetched = await fetch(conn, "kept", 0)
                    assert values_of(fetched.records) == [b"once", b"two"]
                    assert fetched.high_watermark == 2
                    init = await conn.request(
                        p.ApiKey.INIT_PRODUCER_ID, 1, p.InitProducerIdRequest()
                    )
                    pid = init.producer_id
                    assert broker.topics is not None
                    assert broker.topics.get("kept").configs == {"retention.ms": "123456"}
            nursery.cancel_scope.cancel()
        return pid

    await run(check=False)
    assert await run(check=True) > 0


async def test_second_broker_on_a_taken_port_fails_with_one_line(
    broker: Broker, tmp_path: Path
) -> None:
    other = Broker(BrokerConfig(data_dir=tmp_path / "other", port=broker.port or 0))
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(other.serve)
    except* OSError as group:
        assert "address already in use" in str(group.exceptions[0])
    else:
        raise AssertionError("bound a taken port")


async def test_log_append_time_topics_stamp_batches(broker: Broker) -> None:
    broker.create_topic("lat", 1, {"message.timestamp.type": "LogAppendTime"})
    async with open_connection("127.0.0.1", broker.port or 0) as conn:
        produced = await produce(conn, "lat", batch(b"a", b"b"))
        assert produced.error_code == 0
        assert produced.log_append_time_ms > 1_700_000_000_000  # now, not the client's stamp
        fetched = await fetch(conn, "lat", 0)
        header = validate_batch(bytes(fetched.records or b""))  # the CRC was recomputed
        assert header.timestamp_type == TimestampType.LOG_APPEND_TIME
        assert header.max_timestamp == produced.log_append_time_ms
        assert values_of(fetched.records) == [b"a", b"b"]


async def test_only_the_first_partition_may_exceed_max_bytes(broker: Broker) -> None:
    broker.create_topic("two", 2)
    async with open_connection("127.0.0.1", broker.port or 0) as conn:
        for index in (0, 1):
            response = await conn.request(
                p.ApiKey.PRODUCE,
                8,
                produce_request("two", batch(b"x" * 300), partition=index),
            )
            assert response.topics[0].partitions[0].error_code == 0
        request = p.FetchRequest(
            max_wait_ms=0,
            min_bytes=1,
            max_bytes=100,
            topics=[
                p.FetchRequestTopic(
                    name="two",
                    partitions=[
                        p.FetchRequestPartition(
                            partition_index=i, fetch_offset=0, partition_max_bytes=100
                        )
                        for i in (0, 1)
                    ],
                )
            ],
        )
        first, second = (await conn.request(p.ApiKey.FETCH, 11, request)).topics[0].partitions
        assert values_of(first.records) == [b"x" * 300]  # KIP-74: progress despite max_bytes
        assert bytes(second.records or b"") == b""
        assert second.high_watermark == 1


async def test_retention_runs_in_the_background(tmp_path: Path) -> None:
    broker = Broker(
        BrokerConfig(data_dir=tmp_path / "data", port=0, log_retention_check_interval_ms=20)
    )
    async with trio.open_nursery() as nursery:
        port = await nursery.start(broker.serve)
        broker.create_topic("short", 1, {"retention.ms": "1000", "segment.bytes": "100"})
        async with open_connection("127.0.0.1", port) as conn:
            for i in range(4):  # 2023 timestamps: long past retention.ms; one segment each
                assert (await produce(conn, "short", batch(b"v" * 80 + bytes([i])))).error_code == 0
            with trio.fail_after(10):
                while broker.partition("short", 0).log_start_offset < 3:  # noqa: ASYNC110
                    await trio.sleep(0.02)
            fetched = await fetch(conn, "short", 0)
            assert fetched.error_code == ErrorCode.OFFSET_OUT_OF_RANGE
        nursery.cancel_scope.cancel()


async def test_shutdown_answers_what_was_read_then_closes(tmp_path: Path) -> None:
    broker = Broker(BrokerConfig(data_dir=tmp_path / "data", port=0))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(broker.serve)
        broker.create_topic("t", 1)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        frames = p.encode_request(
            p.ApiKey.FETCH, 11, 1, "test", fetch_request("t", 0, max_wait_ms=60_000)
        )
        await stream.send_all(b"".join(frames))
        watchers = broker.partition("t", 0).commit_watchers  # where a consumer's fetch waits
        with trio.fail_after(10):
            while not watchers:  # noqa: ASYNC110
                await trio.sleep(0.01)  # the fetch is read and waiting for data
        broker.shutdown()
        with trio.fail_after(10):
            (first,) = await read_frames(stream, 1)
            assert await stream.receive_some(10) == b""  # then the broker closes
        assert p.peek_correlation_id(first) == 1
        fetched = p.decode_response(p.ApiKey.FETCH, 11, first).topics[0].partitions[0]
        assert fetched.error_code == 0 and bytes(fetched.records or b"") == b""
        await stream.aclose()
    # serve() returned by itself (nothing cancelled the nursery) and closed the logs cleanly.
    assert (tmp_path / "data" / "t-0" / CLEAN_SHUTDOWN_FILE).exists()
