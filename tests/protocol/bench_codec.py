"""Micro-measurement of the codec's hot paths (not a test: run it, read the numbers).

    uv run python -m tests.protocol.bench_codec

Prints microseconds per operation (best of several runs) for the hand-written hot paths, the
schema codec on the same messages, a 100-partition Metadata response, and kafka-python 3's
codec on the same values for scale. Results are recorded in docs/protocol.md.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

from kafka.protocol import consumer as kp_consumer
from kafka.protocol import metadata as kp_metadata
from kafka.protocol import producer as kp_producer

from quorumq.protocol import (
    ApiKey,
    FetchResponse,
    FetchResponsePartition,
    FetchResponseTopic,
    MetadataResponse,
    MetadataResponseBroker,
    MetadataResponsePartition,
    MetadataResponseTopic,
    ProduceRequest,
    ProduceRequestPartition,
    ProduceRequestTopic,
    RequestHeader,
    decode_request,
    decode_request_header,
    decode_response,
    encode_request,
    encode_response,
    frame_bytes,
)
from tests.protocol.kafka_python_bridge import to_kafka_python

BATCH = bytes(16 * 1024)  # one stored 16 KiB batch per partition


def best_us(fn: Callable[[], object], number: int = 2000) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def produce_request(partitions: int) -> ProduceRequest:
    return ProduceRequest(
        acks=-1,
        timeout_ms=30_000,
        topics=[
            ProduceRequestTopic(
                name="bench",
                partitions=[
                    ProduceRequestPartition(partition_index=i, records=BATCH)
                    for i in range(partitions)
                ],
            )
        ],
    )


def fetch_response(partitions: int) -> FetchResponse:
    return FetchResponse(
        topics=[
            FetchResponseTopic(
                name="bench",
                partitions=[
                    FetchResponsePartition(
                        partition_index=i,
                        high_watermark=1000,
                        last_stable_offset=1000,
                        log_start_offset=0,
                        records=[BATCH],
                    )
                    for i in range(partitions)
                ],
            )
        ]
    )


def metadata_response(topics: int, partitions: int) -> MetadataResponse:
    return MetadataResponse(
        brokers=[
            MetadataResponseBroker(node_id=i, host="127.0.0.1", port=9092 + i) for i in range(3)
        ],
        cluster_id="quorumq",
        controller_id=0,
        topics=[
            MetadataResponseTopic(
                error_code=0,
                name=f"topic-{t}",
                partitions=[
                    MetadataResponsePartition(
                        error_code=0,
                        partition_index=p,
                        leader_id=p % 3,
                        leader_epoch=1,
                        replica_nodes=[0, 1, 2],
                        isr_nodes=[0, 1, 2],
                    )
                    for p in range(partitions)
                ],
            )
            for t in range(topics)
        ],
    )


def main() -> None:
    rows: list[tuple[str, float]] = []

    for version in (8, 9):
        frame = frame_bytes(encode_request(ApiKey.PRODUCE, version, 1, "b", produce_request(10)))[
            4:
        ]

        def decode(frame: bytes = frame) -> object:
            header, offset = decode_request_header(frame)
            return decode_request(header, frame, offset)

        path = "hand-written" if version == 8 else "schema codec"
        rows.append((f"Produce v{version} request decode, 10 partitions ({path})", best_us(decode)))

    kp_frame = frame_bytes(encode_request(ApiKey.PRODUCE, 8, 1, "b", produce_request(10)))[4:]
    rows.append(
        (
            "  kafka-python 3: same Produce v8 decode",
            best_us(lambda: kp_producer.ProduceRequest.decode(kp_frame, version=8, header=True)),
        )
    )

    for version in (11, 12):
        header = RequestHeader(ApiKey.FETCH, version, 1, "b")
        response = fetch_response(10)
        path = "hand-written" if version == 11 else "schema codec"
        rows.append(
            (
                f"Fetch v{version} response encode, 10 partitions ({path})",
                best_us(lambda h=header, r=response: encode_response(h, r)),
            )
        )
    kp_fetch = to_kafka_python(
        FetchResponse(
            topics=[
                FetchResponseTopic(
                    name=t.name,
                    partitions=[
                        FetchResponsePartition(
                            partition_index=p.partition_index,
                            high_watermark=p.high_watermark,
                            records=BATCH,
                        )
                        for p in t.partitions
                    ],
                )
                for t in fetch_response(10).topics
            ]
        ),
        kp_consumer.FetchResponse,
        11,
    )
    kp_fetch.with_header(correlation_id=1)
    rows.append(
        (
            "  kafka-python 3: same Fetch v11 encode (copies batches)",
            best_us(lambda: kp_fetch.encode(header=True, framed=True)),
        )
    )

    metadata = metadata_response(10, 10)
    header = RequestHeader(ApiKey.METADATA, 8, 1, "b")
    rows.append(
        (
            "Metadata v8 response encode, 10 topics x 10 partitions",
            best_us(lambda: encode_response(header, metadata), number=200),
        )
    )
    frame = frame_bytes(encode_response(header, metadata))[4:]
    rows.append(
        (
            "Metadata v8 response decode, 10 topics x 10 partitions",
            best_us(lambda: decode_response(ApiKey.METADATA, 8, frame), number=200),
        )
    )
    kp_meta = to_kafka_python(metadata, kp_metadata.MetadataResponse, 8)
    kp_meta.with_header(correlation_id=1)
    rows.append(
        (
            "  kafka-python 3: same Metadata v8 encode",
            best_us(lambda: kp_meta.encode(header=True, framed=True), number=200),
        )
    )

    width = max(len(name) for name, _ in rows)
    for name, us in rows:
        print(f"{name:<{width}}  {us:9.1f} us")


if __name__ == "__main__":
    main()
