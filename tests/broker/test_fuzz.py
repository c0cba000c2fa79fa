"""Hostile bytes: random and mutated frames never take the broker down or touch acked data."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quorumq import protocol as p
from quorumq.protocol.records import build_batch
from tests.integration._workload import check_round_trip, samples
from tests.integration.conftest import BrokerThread
from tests.integration.test_kafka_python import consume, produce


def _frame(api_key: p.ApiKey, version: int, request: object) -> bytes:
    return b"".join(p.encode_request(api_key, version, 7, "fuzz", request))


def _templates() -> list[bytes]:
    batch = build_batch([(b"k", b"v"), (None, b"w")], timestamp=1_700_000_000_000)
    topic = "fuzz"
    return [
        _frame(p.ApiKey.API_VERSIONS, 3, p.ApiVersionsRequest(client_software_name="f")),
        _frame(p.ApiKey.API_VERSIONS, 0, p.ApiVersionsRequest()),
        _frame(
            p.ApiKey.METADATA, 8, p.MetadataRequest(topics=[p.MetadataRequestTopic(name=topic)])
        ),
        _frame(
            p.ApiKey.PRODUCE,
            8,
            p.ProduceRequest(
                acks=1,
                timeout_ms=1000,
                topics=[
                    p.ProduceRequestTopic(
                        name=topic,
                        partitions=[p.ProduceRequestPartition(partition_index=0, records=batch)],
                    )
                ],
            ),
        ),
        _frame(
            p.ApiKey.FETCH,
            11,
            p.FetchRequest(
                max_wait_ms=0,
                min_bytes=1,
                topics=[
                    p.FetchRequestTopic(
                        name=topic,
                        partitions=[
                            p.FetchRequestPartition(
                                partition_index=0, fetch_offset=0, partition_max_bytes=1 << 16
                            )
                        ],
                    )
                ],
            ),
        ),
        _frame(
            p.ApiKey.LIST_OFFSETS,
            5,
            p.ListOffsetsRequest(
                topics=[
                    p.ListOffsetsRequestTopic(
                        name=topic,
                        partitions=[p.ListOffsetsRequestPartition(partition_index=0, timestamp=-2)],
                    )
                ]
            ),
        ),
        _frame(
            p.ApiKey.CREATE_TOPICS,
            4,
            p.CreateTopicsRequest(
                topics=[
                    p.CreatableTopic(
                        name="fuzz-created",
                        num_partitions=2,
                        replication_factor=1,
                        configs=[p.CreatableTopicConfig(name="retention.ms", value="1000")],
                    )
                ]
            ),
        ),
        _frame(p.ApiKey.DELETE_TOPICS, 3, p.DeleteTopicsRequest(topic_names=["fuzz-created"])),
        _frame(
            p.ApiKey.DESCRIBE_CONFIGS,
            2,
            p.DescribeConfigsRequest(
                resources=[p.DescribeConfigsResource(resource_type=2, resource_name=topic)]
            ),
        ),
        _frame(p.ApiKey.INIT_PRODUCER_ID, 1, p.InitProducerIdRequest()),
        _frame(
            p.ApiKey.OFFSET_FOR_LEADER_EPOCH,
            3,
            p.OffsetForLeaderEpochRequest(
                topics=[
                    p.OffsetForLeaderTopic(
                        name=topic,
                        partitions=[p.OffsetForLeaderPartition(partition_index=0, leader_epoch=0)],
                    )
                ]
            ),
        ),
        _frame(p.ApiKey.FIND_COORDINATOR, 2, p.FindCoordinatorRequest(key="g")),
    ]


TEMPLATES = _templates()


@st.composite
def hostile_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "mutated", "truncated", "resized", "pipelined"]))
    if kind == "random":
        body = draw(st.binary(max_size=300))
        return struct.pack(">i", len(body)) + body
    template = draw(st.sampled_from(TEMPLATES))
    if kind == "truncated":
        return template[: draw(st.integers(0, len(template) - 1))]
    if kind == "resized":
        size = draw(st.integers(-(2**31), 2**31 - 1))
        return struct.pack(">i", size) + template[4:]
    if kind == "pipelined":
        return b"".join(draw(st.lists(st.sampled_from(TEMPLATES), min_size=2, max_size=6)))
    data = bytearray(template)
    for _ in range(draw(st.integers(1, 6))):
        # Mutate the body, keeping the size prefix: the frame arrives whole but makes no sense.
        position = draw(st.integers(4, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    return bytes(data)


def _send_and_drain(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass
        except (ConnectionResetError, BrokenPipeError):
            pass


def _healthy(port: int) -> None:
    """A well-formed ApiVersions on a fresh connection gets its answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(TEMPLATES[0])
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack_from(">i", data)[0]:
            chunk = sock.recv(65536)
            assert chunk, "the broker closed a well-behaved connection"
            data += chunk
        response = p.decode_response(p.ApiKey.API_VERSIONS, 3, data[4:])
        assert response.error_code == 0


@pytest.fixture(scope="module")
def fuzz_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    thread = BrokerThread(Path(tmp_path_factory.mktemp("fuzz")) / "data")
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()


def test_acknowledged_records_before_fuzzing(fuzz_broker: BrokerThread) -> None:
    produce(fuzz_broker.bootstrap, "precious", samples(200, tag="p"), acks="all", compression=None)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=hostile_bytes())
def test_broker_survives_hostile_frames(fuzz_broker: BrokerThread, data: bytes) -> None:
    _send_and_drain(fuzz_broker.port, data)
    _healthy(fuzz_broker.port)


def test_well_behaved_client_after_fuzzing(fuzz_broker: BrokerThread) -> None:
    sent = samples(200, tag="p")
    check_round_trip(sent, consume(fuzz_broker.bootstrap, "precious", len(sent)))
    more = samples(100, tag="after")
    produce(fuzz_broker.bootstrap, "after-fuzz", more, acks=1, compression="gzip")
    check_round_trip(more, consume(fuzz_broker.bootstrap, "after-fuzz", len(more)))
